#!/usr/bin/env bash
# Migrating from pgvector: a plain pg_dump made by pgvector 0.8.6 (tests/fixtures, made once with
# pgvector built by hand; CI does not have pgvector) restores into pgivf after the one documented edit,
# naming the extension pgivf instead of vector. Vectors, vector arrays, NULLs, extreme floats, views
# using the operators and all three ivfflat opclasses come back, and give pgvector's exact output.
# Then a pgivf database survives pg_dump and pg_restore in custom format, indexes included.
source "$(dirname "$0")/lib.sh"
FIXTURES="$ROOT/tests/fixtures"
new_cluster main
P=$PORT_main

# The documented migration step (docs/migrating.md).
sed -e 's/^CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA/CREATE EXTENSION IF NOT EXISTS pgivf WITH SCHEMA/' \
    -e '/^COMMENT ON EXTENSION vector IS/d' "$FIXTURES/pgvector-0.8.6-dump.sql" >"$WORK/dump.sql"
sql $P -c "CREATE DATABASE migrated"
sql $P -d migrated -f "$WORK/dump.sql" >/dev/null
check "extension after restore" "pgivf" "$(sql $P -d migrated -c "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")"
rows=$(sql $P -d migrated -c "SELECT id, embedding::text, (SELECT string_agg(x::text, ',') FROM unnest(tags) x) FROM items ORDER BY id")
[[ "$rows" == "$(cat "$FIXTURES/pgvector-0.8.6-rows.txt")" ]] ||
    fail "restored rows differ from pgvector's output: $(diff <(echo "$rows") "$FIXTURES/pgvector-0.8.6-rows.txt" | head -5)"
echo "ok: 202 rows (vectors, vector[], NULL, 1e-38, -0, FLT_MAX) print exactly as under pgvector"
# Distances are summed in f32, as pgvector does, but the order of the additions (and whether they
# are fused with the multiplications) differs between SIMD kernels, and between pgvector builds: the
# values agree to f32 precision, not to the last bit of the float8 printed.
sql $P -d migrated -c "SELECT * FROM nearest ORDER BY id" >"$WORK/view.txt"
worst=$(paste -d'|' "$WORK/view.txt" "$FIXTURES/pgvector-0.8.6-view.txt" | awk -F'|' '
    function rel(a, b) { d = a - b; if (d < 0) d = -d; m = (b < 0 ? -b : b); return d / (m > 1 ? m : 1) }
    { if ($1 != $6) { print "row order differs: " $1 " " $6; exit } for (i = 2; i <= 5; i++) { r = rel($i, $(i + 5)); if (r > worst) worst = r } }
    END { printf "%.2e\n", worst }')
[[ "$worst" != row* ]] || fail "$worst"
awk -v w="$worst" 'BEGIN { exit !(w < 1e-6) }' || fail "the view's distances differ from pgvector's by up to $worst (relative)"
echo "ok: the view's <->, <=>, <#> and l1_distance values equal pgvector's within $worst (relative, or absolute below 1)"
check "ivfflat indexes restored" "items_cos vector_cosine_ops,items_ip vector_ip_ops,items_l2 vector_l2_ops" \
    "$(sql $P -d migrated -c "SELECT string_agg(i.relname || ' ' || o.opcname, ',' ORDER BY i.relname) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am a ON a.oid = i.relam JOIN pg_opclass o ON o.oid = x.indclass[0] WHERE a.amname = 'ivfflat'")"
for idx in items_l2 items_cos items_ip; do
    out=$(sql $P -d migrated -c "SELECT ivfflat_verify('$idx', heapallindexed => true)")
    [[ "$out" == "ivfflat index OK"* ]] || fail "$idx: $out"
done
echo "ok: the three restored indexes verify, every row indexed"
for op in "<->" "<=>" "<#>"; do
    exact=$(sql $P -d migrated -c "SET enable_indexscan = off" -c "SELECT string_agg(id::text, ',') FROM (SELECT id FROM items ORDER BY embedding $op '[0.5,0.5,0.1]' LIMIT 10) s")
    plan=$(sql $P -d migrated -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY embedding $op '[0.5,0.5,0.1]' LIMIT 10")
    [[ "$plan" == *"Index Scan using items_"* ]] || fail "$op does not use an ivfflat index: $plan"
    indexed=$(sql $P -d migrated -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 4" -c "SELECT string_agg(id::text, ',') FROM (SELECT id FROM items ORDER BY embedding $op '[0.5,0.5,0.1]' LIMIT 10) s")
    check "top 10 by $op through the restored index equal the exact answer" "$exact" "$indexed"
done

# A dump with hnsw indexes (the two lines pg_dump writes for them under pgvector 0.8.6): the restore
# docs/migrating.md gives stops at the first error, names it, and leaves nothing half restored;
# the documented rewrite makes them ivfflat indexes, and everything restores.
cp "$WORK/dump.sql" "$WORK/hnsw.sql"
cat >>"$WORK/hnsw.sql" <<'EOF_HNSW'
CREATE INDEX items_hnsw ON public.items USING hnsw (embedding public.vector_l2_ops);
CREATE INDEX items_hnsw2 ON public.items USING hnsw (embedding public.vector_cosine_ops) WITH (m='16', ef_construction='64');
EOF_HNSW
sql $P -c "CREATE DATABASE with_hnsw"
status=0
out=$(psql -X -q -h 127.0.0.1 -p $P -U postgres -d with_hnsw -v ON_ERROR_STOP=1 --single-transaction -f "$WORK/hnsw.sql" 2>&1 >/dev/null) || status=$?
check "psql's status when the restore stops" 3 "$status"
[[ "$out" == *'ERROR:  access method "hnsw" does not exist'* ]] || fail "the restore did not name the hnsw index: $out"
check "tables left by the stopped restore" 0 "$(sql $P -d with_hnsw -c "SELECT count(*) FROM pg_class WHERE relname = 'items'")"
echo "ok: a dump with an hnsw index stops at it, says so, and restores nothing"
sed -E 's/ USING hnsw \(([^)]*)\)( WITH \([^)]*\))?;$/ USING ivfflat (\1);/' "$WORK/hnsw.sql" >"$WORK/hnsw-as-ivfflat.sql"
psql -X -q -h 127.0.0.1 -p $P -U postgres -d with_hnsw -v ON_ERROR_STOP=1 --single-transaction -f "$WORK/hnsw-as-ivfflat.sql" >/dev/null 2>&1 ||
    fail "the dump with its hnsw indexes rewritten as ivfflat did not restore"
check "the hnsw indexes, rewritten" "items_hnsw ivfflat vector_l2_ops,items_hnsw2 ivfflat vector_cosine_ops" \
    "$(sql $P -d with_hnsw -c "SELECT string_agg(i.relname || ' ' || a.amname || ' ' || o.opcname, ',' ORDER BY i.relname) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am a ON a.oid = i.relam JOIN pg_opclass o ON o.oid = x.indclass[0] WHERE i.relname LIKE 'items_hnsw%'")"
# The preflight query runs anywhere (here on the pgivf database, where it finds nothing to report).
check "preflight rows on a pgivf database" "" "$(sql $P -d with_hnsw -f "$ROOT/scripts/pgvector-preflight.sql")"

# pgivf to pgivf: custom-format dump and pg_restore into a fresh database.
mkdir -p "$WORK/dumps"
chown postgres: "$WORK/dumps"
runuser -u postgres -- "$PG_BIN/pg_dump" -h 127.0.0.1 -p $P -U postgres -Fc -f "$WORK/dumps/migrated.dump" migrated
sql $P -c "CREATE DATABASE restored"
runuser -u postgres -- "$PG_BIN/pg_restore" -h 127.0.0.1 -p $P -U postgres -d restored --exit-on-error "$WORK/dumps/migrated.dump"
[[ "$rows" == "$(sql $P -d restored -c "SELECT id, embedding::text, (SELECT string_agg(x::text, ',') FROM unnest(tags) x) FROM items ORDER BY id")" ]] ||
    fail "rows differ after pg_dump -Fc and pg_restore"
echo "ok: rows unchanged by pg_dump -Fc and pg_restore"
out=$(sql $P -d restored -c "SELECT ivfflat_verify('items_l2', true)")
[[ "$out" == "ivfflat index OK"* ]] || fail "items_l2 after pg_restore: $out"
echo "ok: pg_restore rebuilt the ivfflat indexes"
echo "figure: migration: a pgvector 0.8.6 dump (202 rows, 3 ivfflat indexes, a view) restored into pgivf with one edited line; rows identical, distances within $worst"
echo "ok: migration works"
