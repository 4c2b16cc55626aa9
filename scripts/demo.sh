#!/usr/bin/env bash
# The demo: install what is missing, build and install pgivf, start a throwaway cluster, load 3,000
# real sentence embeddings of Debian package descriptions with their names and summaries, index them
# with ivfflat, and print the nearest packages to a few held-out package summaries.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/setup.sh"
source "$ROOT/scripts/cluster.sh"

WORK="$(mktemp -d /tmp/pgivf-demo.XXXXXX)"
PORT="$(free_port)"
trap 'stop_cluster "$WORK"; rm -rf "$WORK"' EXIT
echo "==> starting a throwaway PostgreSQL 15 cluster on port $PORT"
start_cluster "$WORK" "$PORT"
psql() { command psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }

psql -c "CREATE EXTENSION pgivf" \
     -c "CREATE TABLE packages (id int PRIMARY KEY, embedding vector(384), package text, summary text)"
python3 "$ROOT/scripts/vecs.py" copy "$ROOT/data/debian-minilm-3k.base.fvecs.gz" "$ROOT/data/debian-minilm-3k.base.tsv.gz" |
    psql -c "COPY packages (id, embedding, package, summary) FROM STDIN"
psql -c "CREATE INDEX ON packages USING ivfflat (embedding vector_cosine_ops) WITH (lists = 50)" -c "ANALYZE packages"
echo "==> loaded $(psql -At -c 'SELECT count(*) FROM packages') packages, indexed with ivfflat (lists = 50)"

python3 "$ROOT/scripts/vecs.py" literals "$ROOT/data/debian-minilm-3k.query.fvecs.gz" --limit 3 >"$WORK/queries"
zcat "$ROOT/data/debian-minilm-3k.query.tsv.gz" | head -3 >"$WORK/query-texts"
while IFS= read -r query && IFS=$'\t' read -r package summary <&3; do
    echo
    echo "Packages nearest to \"$summary\" (the summary of $package, which is not in the table):"
    psql -P footer=off -c "SET ivfflat.probes = 10" -c "
        SELECT package, summary, round((embedding <=> '$query')::numeric, 3) AS cosine_distance
        FROM packages ORDER BY embedding <=> '$query' LIMIT 5"
done <"$WORK/queries" 3<"$WORK/query-texts"
echo "==> the plan of that query:"
psql -At -c "SET ivfflat.probes = 10" -c "EXPLAIN (COSTS OFF) SELECT package FROM packages ORDER BY embedding <=> '$(head -1 "$WORK/queries")' LIMIT 5" | cut -c1-100
