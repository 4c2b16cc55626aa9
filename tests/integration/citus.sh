#!/usr/bin/env bash
# Scale-out on Citus: a coordinator and two workers on this machine, a distributed table of real
# embeddings (debian-minilm-384 when ../shared has it, else the 3,000-row subset in data/) with pgivf
# indexes on every shard. Checks that CREATE EXTENSION and CREATE INDEX reach every shard; that
# SET LOCAL ivfflat.probes (citus.propagate_set_commands = 'local') reaches the shards' queries, by
# comparing the merged answer with the shards' own answers at that setting; that ORDER BY distance
# LIMIT k, prepared as drivers send it, is pushed to every shard and answered by its index; that
# probes = lists gives the exact answer and lower probes a recall close to one server's (no lower
# with lists sized by rows); that filtered and radius searches, inserts, deletes, VACUUM and the
# per-shard functions work; that a worker killed in the middle of a load comes back with its indexes
# verified and no committed row lost; and that a third worker and a rebalance give the moved shards
# their indexes. Reports two-client throughput against one server. Citus is built once from
# ../shared/vendor by scripts/setup-citus.sh; where it cannot be built the test says so and is
# skipped (exit 77).
source "$(dirname "$0")/lib.sh"
if ! citus_version=$(bash "$ROOT/scripts/setup-citus.sh" "$PG_CONFIG" 2>"$WORK/citus-build.log"); then
    echo "skipped: Citus could not be built for $("$PG_CONFIG" --version): $(tail -3 "$WORK/citus-build.log")"
    exit 77
fi
echo "ok: Citus $citus_version"
printf "shared_preload_libraries = 'citus'\nmax_connections = 100\n" >"$WORK/citus.conf"
new_cluster coord "$WORK/citus.conf"
new_cluster w1 "$WORK/citus.conf"
new_cluster w2 "$WORK/citus.conf"
new_cluster single
C=$PORT_coord
W1=$PORT_w1
W2=$PORT_w2
S=$PORT_single
for port in $C $W1 $W2; do sql $port -c "CREATE EXTENSION citus"; done
sql $C -c "SELECT citus_set_coordinator_host('127.0.0.1', $C)" >/dev/null
sql $C -c "SELECT citus_add_node('127.0.0.1', $W1)" -c "SELECT citus_add_node('127.0.0.1', $W2)" >/dev/null

# CREATE EXTENSION on the coordinator reaches the workers.
sql $C -c "CREATE EXTENSION pgivf"
sql $S -c "CREATE EXTENSION pgivf"
check "pgivf on both workers" "true|0.3.0 true|0.3.0" \
    "$(sql $C -c "SELECT string_agg(success || '|' || result, ' ' ORDER BY nodeport) FROM run_command_on_workers(\$\$SELECT extversion FROM pg_extension WHERE extname = 'pgivf'\$\$)")"

# Real data: base rows with their package family, and held-out queries.
data="$ROOT/../shared/data/debian-minilm-384"
if [[ -f "$data.base.fvecs.gz" ]]; then
    base="$data.base.fvecs.gz" meta="$data.base.tsv.gz" queries="$data.query.fvecs.gz" LISTS=40 QUERIES=500
else
    base="$ROOT/data/debian-minilm-3k.base.fvecs.gz" meta="$ROOT/data/debian-minilm-3k.base.tsv.gz"
    queries="$ROOT/data/debian-minilm-3k.query.fvecs.gz" LISTS=8 QUERIES=20
fi
for port in $C $S; do
    sql $port -c "CREATE TABLE items (id int PRIMARY KEY, embedding vector(384), package text, summary text, family text)"
done
sql $C -c "SELECT create_distributed_table('items', 'id', shard_count => 4)" >/dev/null
for port in $C $S; do
    python3 "$ROOT/scripts/vecs.py" copy "$base" "$meta" | sql $port -c "COPY items (id, embedding, package, summary) FROM STDIN"
    sql $port -c "UPDATE items SET family = CASE WHEN package LIKE 'python3-%' THEN 'python3' WHEN package LIKE 'golang-%' THEN 'golang' WHEN package LIKE 'lib%' THEN 'lib' ELSE 'other' END"
    sql $port -c "CREATE TABLE queries (q int PRIMARY KEY, v vector(384))"
done
python3 "$ROOT/scripts/vecs.py" literals "$queries" --limit "$QUERIES" | awk '{ print NR "\t" $0 }' >"$WORK/queries.tsv"
for port in $C $S; do sql $port -c "\\copy queries FROM '$WORK/queries.tsv'"; done
sql $C -c "SELECT create_reference_table('queries')" >/dev/null
rows=$(sql $C -c "SELECT count(*) FROM items")
echo "ok: $rows rows distributed over 4 shards on 2 workers"

# CREATE INDEX reaches every shard: a RaBitQ index now, a two-column filtered one below. One server
# gets the same index with as many lists as a shard has.
for port in $C $S; do
    sql $port -c "CREATE INDEX items_rabitq ON items USING ivfflat (embedding vector_cosine_ops) WITH (lists = $LISTS, quantizer = 'rabitq')"
    sql $port -c "ANALYZE items"
done 2>&1 | grep -v "little data\|This will cause\|Drop the index" || true
check "an ivfflat index on every shard" "4|1" \
    "$(sql $C -c "SELECT count(*) || '|' || min(result) FROM run_command_on_shards('items', \$\$SELECT count(*) FROM pg_indexes WHERE tablename = '%s' AND indexdef LIKE '%%ivfflat%%'\$\$)")"

# The merged top 10 for query q at per-shard probes p, through the coordinator (SET LOCAL, carried to
# the shards by citus.propagate_set_commands), as a driver sends it: a prepared statement.
merged() {
    local q=$1 p=$2 v
    v=$(sql $C -c "SELECT v FROM queries WHERE q = $q")
    # A prepared statement run seven times, as a driver's (psycopg, JDBC) is: the last answer counts.
    sql $C -c "SET citus.propagate_set_commands = 'local'" -c "BEGIN" -c "SET LOCAL ivfflat.probes = $p" \
        -c "PREPARE knn(vector) AS SELECT id FROM items ORDER BY embedding <=> \$1 LIMIT 10" \
        -c "EXECUTE knn('$v')" -c "EXECUTE knn('$v')" -c "EXECUTE knn('$v')" -c "EXECUTE knn('$v')" \
        -c "EXECUTE knn('$v')" -c "EXECUTE knn('$v')" -c "EXECUTE knn('$v')" -c "COMMIT" | tail -10 | paste -sd,
}
# The same from the shards themselves: each shard's top 10 at probes p, asked on its worker directly,
# merged by distance.
from_shards() {
    local q=$1 p=$2 v
    v=$(sql $C -c "SELECT v FROM queries WHERE q = $q")
    {
        while IFS='|' read -r shard port; do
            sql "$port" -c "SET ivfflat.probes = $p" -c "SET enable_seqscan = off" \
                -c "SELECT id || '|' || (embedding <=> '$v') FROM (SELECT id, embedding FROM items_$shard ORDER BY embedding <=> '$v' LIMIT 10) s"
        done < <(sql $C -c "SELECT shardid || '|' || nodeport FROM citus_shards WHERE table_name = 'items'::regclass ORDER BY shardid")
    } | sort -t'|' -k2,2g -k1,1n | head -10 | cut -d'|' -f1 | paste -sd,
}
differs=0
for q in 1 2 3; do
    for p in 1 3; do
        check "query $q, probes $p: the coordinator's answer is the merge of the shards' own answers at probes $p" \
            "$(from_shards $q $p)" "$(merged $q $p)"
    done
    [[ "$(from_shards $q 1)" != "$(from_shards $q $LISTS)" ]] && differs=$((differs + 1))
done
echo "ok: the shards' answers at probes 1 and $LISTS differ for $differs of 3 queries (the setting matters there)"

plan=$(sql $C -c "SET citus.propagate_set_commands = 'local'" -c "BEGIN" -c "SET LOCAL ivfflat.probes = 3" \
    -c "EXPLAIN (COSTS OFF, VERBOSE) SELECT id FROM items ORDER BY embedding <=> (SELECT v FROM queries WHERE q = 1) LIMIT 10" -c "COMMIT")
[[ "$plan" == *"Task Count: 4"* && "$plan" == *"Index Scan using items_rabitq_"* && "$plan" == *"Order By: (items.embedding <=>"* && "$plan" == *"LIMIT '10'"* ]] ||
    fail "the query is not pushed to every shard with its LIMIT and answered by the shards' index: $plan"
echo "ok: ORDER BY distance LIMIT 10 goes to all 4 shards, each answering with its ivfflat index"

# probes = lists on the shards: the exact answer, rows and distances.
exact_sql="SELECT string_agg(id || ':' || round((embedding <=> v)::numeric, 6), ',' ORDER BY embedding <=> v, id) FROM (SELECT id, embedding FROM items ORDER BY embedding <=> (SELECT v FROM queries WHERE q = QQ) LIMIT 10) s, queries WHERE q = QQ"
for q in 1 4 7; do
    exact=$(sql $S -c "SET enable_indexscan = off" -c "${exact_sql//QQ/$q}")
    got=$(sql $C -c "SET citus.propagate_set_commands = 'local'" -c "BEGIN" -c "SET LOCAL ivfflat.probes = $LISTS" -c "${exact_sql//QQ/$q}" -c "COMMIT")
    check "query $q at probes = lists: the exact rows and distances" "$exact" "$got"
done

# Recall@10 against the exact answer over the queries: sharded at per-shard probes p, and one server
# holding every row with the same lists and probes.
sql $S -c "SET enable_indexscan = off" -c "CREATE TABLE truth AS SELECT q, ARRAY(SELECT id FROM items ORDER BY embedding <=> v, id LIMIT 10) AS ids FROM queries"
sql $S -c "COPY truth TO STDOUT" >"$WORK/truth.tsv"
sql $C -c "CREATE TABLE truth (q int, ids int[])" -c "SELECT create_reference_table('truth')" >/dev/null
sql $C -c "\\copy truth FROM '$WORK/truth.tsv'"
# Citus plans no subquery correlated with a reference table, so each query runs on its own, from a
# function on the coordinator, as an application would send them.
for port in $C $S; do
    sql $port -c "CREATE FUNCTION recall_at_10() RETURNS numeric LANGUAGE plpgsql AS \$\$
        DECLARE
            vectors vector[] := ARRAY(SELECT v FROM queries ORDER BY q);
            truths int[] := ARRAY(SELECT ids FROM truth ORDER BY q);
            found int := 0;
        BEGIN
            FOR i IN 1 .. array_length(vectors, 1) LOOP
                found := found + (SELECT count(*) FROM (SELECT id FROM items ORDER BY embedding <=> vectors[i] LIMIT 10) s
                                  WHERE id = ANY(truths[i:i][1:10]));
            END LOOP;
            RETURN round(found / (10.0 * array_length(vectors, 1)), 3);
        END \$\$"
done
recall_of() {
    local port=$1 p=$2 citus_setting=()
    [[ $port == "$C" ]] && citus_setting=(-c "SET citus.propagate_set_commands = 'local'")
    sql "$port" "${citus_setting[@]}" -c "BEGIN" -c "SET LOCAL ivfflat.probes = $p" -c "SELECT recall_at_10()" -c "COMMIT"
}
# With as many lists on each shard as on the one server, each shard's lists hold a quarter of the
# one server's rows, so both read the same share of the rows at the same probes: their recall should
# be close. With lists sized by rows (the one server with four times a shard's lists, as lists =
# rows / 1000 gives), the shards together read four times the one server's share: their recall must
# be at least the one server's. Both rise with probes.
declare -A sharded_at
previous=0
for p in 1 2 4; do
    sharded=$(recall_of $C $p)
    single=$(recall_of $S $p)
    echo "figure: recall@10 at probes $p: sharded $sharded; one server with $LISTS lists $single ($QUERIES queries, $LISTS lists per shard)"
    awk -v a="$sharded" -v b="$single" 'BEGIN { exit !(a >= b - 0.05) }' || fail "probes $p: sharded recall $sharded more than 0.05 below one server's $single"
    awk -v a="$sharded" -v b="$previous" 'BEGIN { exit !(a > b) }' || fail "probes $p: sharded recall $sharded not above $previous at fewer probes"
    previous=$sharded
    sharded_at[$p]=$sharded
done
by_rows=$(sql $S -c "BEGIN" -c "DROP INDEX items_rabitq" \
    -c "CREATE INDEX items_by_rows ON items USING ivfflat (embedding vector_cosine_ops) WITH (lists = $((4 * LISTS)), quantizer = 'rabitq')" \
    -c "SET LOCAL ivfflat.probes = 1" -c "SELECT recall_at_10()" -c "SET LOCAL ivfflat.probes = 2" -c "SELECT recall_at_10()" \
    -c "SET LOCAL ivfflat.probes = 4" -c "SELECT recall_at_10()" -c "ROLLBACK" | paste -sd' ')
read -r single1 single2 single4 <<<"$by_rows"
for p in 1 2 4; do
    single_var="single$p"
    single=${!single_var}
    echo "figure: recall@10 at probes $p: sharded ${sharded_at[$p]}; one server with $((4 * LISTS)) lists (as many rows per list as a shard) $single"
    awk -v a="${sharded_at[$p]}" -v b="$single" 'BEGIN { exit !(a >= b) }' || fail "probes $p: sharded recall ${sharded_at[$p]} below one server's $single with lists sized by rows"
done

# Throughput with two clients, through the coordinator and on one server holding every row, both
# with the RaBitQ index alone. This machine has two cores for the coordinator, both workers and the
# clients: the figure is Citus's overhead per query, not a speedup (which needs workers on machines
# of their own).
printf '\\set q random(1, %s)\nSELECT id FROM items ORDER BY embedding <=> (SELECT v FROM queries WHERE q = :q) LIMIT 10;\n' "$QUERIES" >"$WORK/knn.sql"
tps() {
    "$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$1" -U postgres -c 2 -j 2 -T 10 -M prepared -f "$WORK/knn.sql" postgres 2>/dev/null |
        sed -nE 's/^tps = ([0-9]+).*/\1/p'
}
# ALTER DATABASE ... SET on the coordinator reaches the workers (for drivers in autocommit mode,
# where SET LOCAL has no transaction to live in): new sessions there start with it.
sql $C -c "ALTER DATABASE postgres SET ivfflat.probes = 2"
sql $S -c "ALTER DATABASE postgres SET ivfflat.probes = 2"
check "ALTER DATABASE SET ivfflat.probes on the coordinator, in the workers' new sessions" "2 2" \
    "$(sql $C -c "SELECT string_agg(result, ' ' ORDER BY nodeport) FROM run_command_on_workers(\$\$SELECT current_setting('ivfflat.probes')\$\$)")"
distributed=$(tps $C)
single=$(tps $S)
[[ -n "$distributed" && -n "$single" ]] || fail "pgbench did not run"
sql $C -c "ALTER DATABASE postgres RESET ivfflat.probes"
sql $S -c "ALTER DATABASE postgres RESET ivfflat.probes"
echo "figure: 2 clients, probes 2 on every shard: $distributed queries/s through the coordinator and 2 workers, $single on one server ($(awk -v a="$distributed" -v b="$single" 'BEGIN { printf "%.0f", (2 / a - 2 / b) * 1e6 }') us more per query through Citus, on one 2-core machine)"

# The filtered index, created on the distributed table after the recall and throughput measurements
# (the planner may take it for unfiltered queries too).
sql $C -c "CREATE INDEX items_family ON items USING ivfflat (embedding vector_cosine_ops, family) WITH (lists = $LISTS)" -c "ANALYZE items"
check "both ivfflat indexes on every shard" "4|2" \
    "$(sql $C -c "SELECT count(*) || '|' || min(result) FROM run_command_on_shards('items', \$\$SELECT count(*) FROM pg_indexes WHERE tablename = '%s' AND indexdef LIKE '%%ivfflat%%'\$\$)")"

# Filtered search with the filter column, and a radius query. The planner costs the filter index's
# scan by the lists it must read to find ten matching rows, and the plain RaBitQ index's by its probes
# lists (where it would find few matching rows: pgvector's model, left as it is); so the filter index
# answers here with the other one dropped, in a transaction rolled back afterwards.
for family in python3 golang; do
    exact=$(sql $S -c "SET enable_indexscan = off" -c "SELECT string_agg(id::text, ',' ORDER BY d, id) FROM (SELECT id, embedding <=> (SELECT v FROM queries WHERE q = 2) AS d FROM items WHERE family = '$family' ORDER BY d, id LIMIT 10) s")
    got=$(sql $C -c "SET citus.propagate_set_commands = 'local'" -c "BEGIN" -c "DROP INDEX items_rabitq" -c "SET LOCAL ivfflat.probes = $LISTS" \
        -c "EXPLAIN (COSTS OFF, VERBOSE) SELECT id FROM items WHERE family = '$family' ORDER BY embedding <=> (SELECT v FROM queries WHERE q = 2) LIMIT 10" \
        -c "SELECT string_agg(id::text, ',') FROM (SELECT id FROM items WHERE family = '$family' ORDER BY embedding <=> (SELECT v FROM queries WHERE q = 2) LIMIT 10) s" -c "ROLLBACK")
    [[ "$got" == *"Index Scan using items_family_"*"Index Cond: (items.family = '$family'::text)"* ]] ||
        fail "the filter is not an index condition on the shards: $got"
    check "filtered search (family = $family) at probes = lists, the filter an index condition on the shards" "$exact" "${got##*$'\n'}"
done
# A radius query as a driver sends it, the vector a literal (the radius reaches the index only when
# both distance expressions are the same: two subqueries would be two parameters): every row inside
# the radius, whatever the probes, with the radius an index condition on the shards.
v3=$(sql $S -c "SELECT v FROM queries WHERE q = 3")
radius=$(sql $S -c "SELECT (embedding <=> '$v3') FROM items ORDER BY 1 LIMIT 1 OFFSET 30")
within="SELECT id FROM items WHERE embedding <=> '$v3' <= $radius ORDER BY embedding <=> '$v3' LIMIT 1000"
radius_plan=$(sql $C -c "EXPLAIN (COSTS OFF, VERBOSE) $within")
[[ "$radius_plan" == *"Index Cond: (items.embedding <<=>> ROW("* ]] || fail "the radius is not an index condition on the shards: ${radius_plan:0:2000}"
check "rows within a radius, through the coordinator" \
    "$(sql $S -c "SELECT count(*) FROM items WHERE embedding <=> '$v3' <= $radius")" \
    "$(sql $C -c "SELECT count(*) FROM ($within) s")"

# Writes: inserts, deletes, VACUUM; every shard's indexes verify; ivfflat_stats per shard.
sql $C -c "INSERT INTO items SELECT id + 1000000, embedding, package, summary, family FROM items WHERE id % 10 = 0"
sql $C -c "DELETE FROM items WHERE id % 7 = 0"
sql $C -c "VACUUM items"
verified=$(sql $C -c "SELECT count(*) FILTER (WHERE result LIKE 'ivfflat index OK%') || '/' || count(*) FROM run_command_on_shards('items', \$\$SELECT ivfflat_verify(('items_rabitq_' || substring('%s' from '[0-9]+\$'))::regclass, true)\$\$)")
check "ivfflat_verify(heapallindexed) on every shard's RaBitQ index after writes" "4/4" "$verified"
stats=$(sql $C -c "SELECT sum(split_part(trim(both '()' from result), ',', 5)::int) FROM run_command_on_shards('items', \$\$SELECT ivfflat_stats(('items_rabitq_' || substring('%s' from '[0-9]+\$'))::regclass)\$\$)")
check "ivfflat_stats' rows over the shards" "$(sql $C -c "SELECT count(*) FROM items")" "$stats"

# A worker killed with SIGKILL in the middle of a load: committed rows survive, indexes verify.
sql $C -c "CREATE TABLE loaded (batch int PRIMARY KEY)" -c "SELECT create_reference_table('loaded')" >/dev/null
per_batch=$(sql $C -c "SELECT count(*) FROM items WHERE id < 200")
(
    for b in $(seq 1 200); do
        sql $C -c "BEGIN" -c "INSERT INTO items SELECT id + $((b * 10000000)), embedding, package, summary, family FROM items WHERE id < 200" \
            -c "INSERT INTO loaded VALUES ($b)" -c "COMMIT" 2>/dev/null || true
    done
) &
loader=$!
sleep 3
crash "$DIR_w1"
echo "ok: worker 1 killed while the load was running"
sleep 2
restart "$DIR_w1"
wait $loader || true
# A transaction prepared on the worker when it died is committed or rolled back here, as Citus's
# maintenance daemon would do a little later.
sql $C -c "SELECT recover_prepared_transactions()" >/dev/null
committed=$(sql $C -c "SELECT count(*) FROM loaded")
check "rows of every committed batch are there" "$((committed * per_batch))" \
    "$(sql $C -c "SELECT count(*) FROM items WHERE id >= 10000000")"
verified=$(sql $C -c "SELECT count(*) FILTER (WHERE result = 't') || '/' || count(*) FROM run_command_on_shards('items', \$\$SELECT ivfflat_verify(('items_rabitq_' || substring('%1\$s' from '[0-9]+\$'))::regclass, true) LIKE 'ivfflat index OK%%' AND ivfflat_verify(('items_family_' || substring('%1\$s' from '[0-9]+\$'))::regclass, true) LIKE 'ivfflat index OK%%'\$\$)")
check "both indexes of every shard verify after the worker's crash" "4/4" "$verified"
echo "figure: Citus $citus_version: $committed of 200 load batches committed around a worker's SIGKILL, none lost"

# A third worker and a rebalance: the shards moved to it get their indexes from the table's index
# definitions, as CREATE INDEX made them, with the same answers before and after. (Citus hides shards
# from the catalog views of sessions it did not open unless told to show them.)
answer_sql="SELECT string_agg(id::text, ',') FROM (SELECT id FROM items ORDER BY embedding <=> (SELECT v FROM queries WHERE q = 5) LIMIT 10) s"
before=$(sql $C -c "SET citus.propagate_set_commands = 'local'" -c "BEGIN" -c "SET LOCAL ivfflat.probes = $LISTS" -c "$answer_sql" -c "COMMIT")
new_cluster w3 "$WORK/citus.conf"
W3=$PORT_w3
sql $W3 -c "CREATE EXTENSION citus"
sql $C -c "SELECT citus_add_node('127.0.0.1', $W3)" >/dev/null
check "pgivf on the new worker" "0.3.0" "$(sql $W3 -c "SELECT extversion FROM pg_extension WHERE extname = 'pgivf'")"
sql $C -c "SELECT rebalance_table_shards('items', shard_transfer_mode => 'block_writes')" >/dev/null 2>&1
moved=$(sql $C -c "SELECT count(*) FROM citus_shards WHERE table_name = 'items'::regclass AND nodeport = $W3")
((moved > 0)) || fail "the rebalance moved no shard of items to the new worker"
check "both ivfflat indexes on each of the $moved shards moved to the new worker" "$moved" \
    "$(sql $W3 -c "SET citus.show_shards_for_app_name_prefixes = '*'" -c "SELECT count(*) FROM pg_indexes WHERE indexdef LIKE '%USING ivfflat%' AND tablename LIKE 'items_%'" | awk '{ print $1 / 2 }')"
verified=$(sql $C -c "SELECT count(*) FILTER (WHERE result = 't') || '/' || count(*) FROM run_command_on_shards('items', \$\$SELECT ivfflat_verify(('items_rabitq_' || substring('%1\$s' from '[0-9]+\$'))::regclass, true) LIKE 'ivfflat index OK%%' AND ivfflat_verify(('items_family_' || substring('%1\$s' from '[0-9]+\$'))::regclass, true) LIKE 'ivfflat index OK%%'\$\$)")
check "both indexes of every shard verify after the rebalance" "4/4" "$verified"
check "the exact answer (probes = lists) after the rebalance" "$before" \
    "$(sql $C -c "SET citus.propagate_set_commands = 'local'" -c "BEGIN" -c "SET LOCAL ivfflat.probes = $LISTS" -c "$answer_sql" -c "COMMIT")"

for dir in "$DIR_coord" "$DIR_w1" "$DIR_w2" "$DIR_w3" "$DIR_single"; do assert_no_crash "$dir"; done
