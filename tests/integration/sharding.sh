#!/usr/bin/env bash
# Sharding with postgres_fdw: two shard servers each hold part of the rows with their own ivfflat
# index; a coordinator has a table partitioned by hash on id whose partitions are foreign tables on
# the shards. Checks that postgres_fdw pushes ORDER BY distance (and a metadata WHERE) to every shard,
# that the shards answer it with their ivfflat index, where LIMIT is and is not pushed (PostgreSQL 15),
# that at probes = lists on the shards the coordinator returns exactly what one server holding every
# row returns, and the ways to set ivfflat.probes for the shards' sessions. See docs/scaling.md.
source "$(dirname "$0")/lib.sh"
DIM=32
ROWS=6000
LISTS=20
new_cluster shard1
new_cluster shard2
new_cluster coord
S1=$PORT_shard1
S2=$PORT_shard2
C=$PORT_coord

for port in $S1 $S2; do
    sql $port -c "CREATE EXTENSION pgivf"
    sql $port -c "CREATE TABLE items (id int PRIMARY KEY, category int NOT NULL, embedding vector($DIM) NOT NULL)"
    # lets the coordinator read the ivfflat.probes of its remote session (the cast loads pgivf;
    # postgres_fdw's sessions run with search_path = pg_catalog, hence public.vector)
    sql $port -c "CREATE FUNCTION session_probes() RETURNS text LANGUAGE plpgsql AS \$\$
        BEGIN PERFORM '[1]'::public.vector; RETURN current_setting('ivfflat.probes'); END \$\$"
    sql $port -c "CREATE VIEW session_probes AS SELECT session_probes() AS probes"
done

# The coordinator: the extension (the type and its operators), postgres_fdw, one server per shard.
# extensions 'pgivf' tells postgres_fdw that pgivf's operators and functions exist on the remote side
# and may be shipped; without it nothing involving the vector operators is pushed down.
sql $C -c "CREATE EXTENSION pgivf"
sql $C -c "CREATE EXTENSION postgres_fdw"
for s in 1 2; do
    port_var=S$s
    sql $C -c "CREATE SERVER shard$s FOREIGN DATA WRAPPER postgres_fdw
        OPTIONS (host '127.0.0.1', port '${!port_var}', dbname 'postgres', extensions 'pgivf', batch_size '500')"
    sql $C -c "CREATE USER MAPPING FOR postgres SERVER shard$s OPTIONS (user 'postgres')"
    sql $C -c "CREATE FOREIGN TABLE shard${s}_probes (probes text) SERVER shard$s OPTIONS (table_name 'session_probes')"
done
sql $C -c "CREATE TABLE items (id int NOT NULL, category int NOT NULL, embedding vector($DIM) NOT NULL) PARTITION BY HASH (id)"
sql $C -c "CREATE FOREIGN TABLE items_shard1 PARTITION OF items FOR VALUES WITH (MODULUS 2, REMAINDER 0) SERVER shard1 OPTIONS (table_name 'items')"
sql $C -c "CREATE FOREIGN TABLE items_shard2 PARTITION OF items FOR VALUES WITH (MODULUS 2, REMAINDER 1) SERVER shard2 OPTIONS (table_name 'items')"

# Rows are inserted through the coordinator: hash routing sends each to its shard (batched inserts).
sql $C -c "INSERT INTO items SELECT i, i % 7, $(vector_expr i $DIM) FROM generate_series(1, $ROWS) i"
n1=$(sql $S1 -c "SELECT count(*) FROM items")
n2=$(sql $S2 -c "SELECT count(*) FROM items")
echo "figure: rows per shard: $n1 + $n2"
check "every row is on one shard" "$ROWS" "$((n1 + n2))"
((n1 > ROWS / 3 && n2 > ROWS / 3)) || fail "hash routing is lopsided: $n1 / $n2"
for port in $S1 $S2; do
    sql $port -c "CREATE INDEX items_embedding_idx ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = $LISTS)"
    sql $port -c "ANALYZE items"
done
sql $C -c "ANALYZE items"

# The reference: one server holding every row, the same rows generated locally on the coordinator.
sql $C -c "CREATE TABLE items_all (id int PRIMARY KEY, category int NOT NULL, embedding vector($DIM) NOT NULL)"
sql $C -c "INSERT INTO items_all SELECT i, i % 7, $(vector_expr i $DIM) FROM generate_series(1, $ROWS) i"
sql $C -c "CREATE INDEX ON items_all USING ivfflat (embedding vector_l2_ops) WITH (lists = $LISTS)"
sql $C -c "ANALYZE items_all"
check "the shards hold exactly the reference rows" \
    "$(sql $C -c "SELECT md5(string_agg(id || ':' || category || ':' || embedding::text, ',' ORDER BY id)) FROM items_all")" \
    "$(sql $C -c "SELECT md5(string_agg(id || ':' || category || ':' || embedding::text, ',' ORDER BY id)) FROM items")"

q=$(sql $C -c "SELECT $(vector_expr 100.5 $DIM)")
remote_order="ORDER BY (embedding OPERATOR(public.<->) '$q') ASC NULLS LAST"

# (1) The partitioned table: Merge Append of one Foreign Scan per shard, each with ORDER BY distance
# in its remote SQL. PostgreSQL 15 does not push the LIMIT into a partition's remote query.
plan=$(sql $C -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM items ORDER BY embedding <-> '$q' LIMIT 10")
echo "$plan" | grep -E "Limit|Merge Append|Foreign Scan|Remote SQL" | sed "s/'\[[^]]*\]'/'[...]'/g"
grep -q "Merge Append" <<<"$plan" || fail "no Merge Append: $plan"
check "remote queries with ORDER BY distance" 2 "$(grep -cF "Remote SQL: SELECT id, embedding FROM public.items $remote_order" <<<"$plan")"
pushed=$(grep "Remote SQL" <<<"$plan" | grep -c "LIMIT" || true)
check "LIMIT is not in the partitions' remote queries (PostgreSQL 15)" 0 "$pushed"
echo "figure: LIMIT pushed to the shards for the partitioned table: no (ORDER BY: yes, Merge Append on the coordinator)"

# The same plan through a function parameter (prepared statements, drivers): the remote query takes
# the vector as a parameter.
plan=$(sql $C -c "PREPARE knn(vector) AS SELECT id FROM items ORDER BY embedding <-> \$1 LIMIT 10" \
    -c "SET plan_cache_mode = force_generic_plan" -c "EXPLAIN (VERBOSE, COSTS OFF) EXECUTE knn('$q')")
check "generic plan: remote queries ORDER BY a parameter" 2 \
    "$(grep -cF 'ORDER BY (embedding OPERATOR(public.<->) $1::public.vector) ASC NULLS LAST' <<<"$plan")"

# One foreign table, and a UNION ALL of per-shard subqueries: ORDER BY ... LIMIT is pushed.
plan=$(sql $C -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM items_shard1 ORDER BY embedding <-> '$q' LIMIT 10")
check "one foreign table: ORDER BY ... LIMIT in the remote query" 1 "$(grep -cF "$remote_order LIMIT 10::bigint" <<<"$plan")"
union="(SELECT id, embedding <-> '$q' AS distance FROM items_shard1 ORDER BY embedding <-> '$q' LIMIT 10)
    UNION ALL (SELECT id, embedding <-> '$q' FROM items_shard2 ORDER BY embedding <-> '$q' LIMIT 10)
    ORDER BY distance LIMIT 10"
plan=$(sql $C -c "EXPLAIN (VERBOSE, COSTS OFF) $union")
echo "$plan" | grep -E "Limit|Merge Append|Foreign Scan|Remote SQL" | sed "s/'\[[^]]*\]'/'[...]'/g"
check "UNION ALL of the shards: ORDER BY ... LIMIT in both remote queries" 2 "$(grep -cF "$remote_order LIMIT 10::bigint" <<<"$plan")"
echo "figure: LIMIT pushed to the shards for a UNION ALL of per-shard LIMIT subqueries: yes"

# use_remote_estimate asks the shards for costs with EXPLAIN, which costs the ordered query as a
# full sort of the shard: the coordinator may then prefer to fetch every row and sort them itself.
for s in 1 2; do sql $C -c "ALTER SERVER shard$s OPTIONS (ADD use_remote_estimate 'true')"; done
plan=$(sql $C -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM items ORDER BY embedding <-> '$q' LIMIT 10")
echo "figure: with use_remote_estimate 'true', ORDER BY in the remote queries: $(grep -q "Remote SQL.*ORDER BY" <<<"$plan" && echo yes || echo "no (every row fetched, sorted on the coordinator)")"
for s in 1 2; do sql $C -c "ALTER SERVER shard$s OPTIONS (DROP use_remote_estimate)"; done

# Without extensions 'pgivf' the coordinator may not ship pgivf's operators: every row comes back
# and the coordinator sorts them.
sql $C -c "CREATE SERVER shard1_plain FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '$S1', dbname 'postgres')"
sql $C -c "CREATE USER MAPPING FOR postgres SERVER shard1_plain OPTIONS (user 'postgres')"
sql $C -c "CREATE FOREIGN TABLE plain_items (id int, category int, embedding vector($DIM)) SERVER shard1_plain OPTIONS (table_name 'items')"
plan=$(sql $C -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM plain_items ORDER BY embedding <-> '$q' LIMIT 10")
check "without extensions 'pgivf': no ORDER BY in the remote query" "Remote SQL: SELECT id, embedding FROM public.items" \
    "$(grep -o "Remote SQL: .*" <<<"$plan")"
grep -q "Sort Key" <<<"$plan" || fail "expected a local sort: $plan"

# (2) The shards answer the pushed query with their ivfflat index. postgres_fdw runs it through a
# cursor (planned for cursor_tuple_fraction of the rows), for which the shard picks the index scan;
# the same SELECT planned to run to completion would sort the whole shard.
remote_sql=$(sql $C -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM items ORDER BY embedding <-> '$q' LIMIT 10" | sed -n 's/^ *Remote SQL: //p' | head -1)
for port in $S1 $S2; do
    shard_plan=$(sql $port -c "BEGIN" -c "EXPLAIN (COSTS OFF) DECLARE c1 CURSOR FOR $remote_sql" -c "COMMIT")
    grep -q "Index Scan using items_embedding_idx on items" <<<"$shard_plan" || fail "the shard does not use its index for the cursor: $shard_plan"
done
echo "ok: both shards plan the remote cursor as an ivfflat index scan"
echo "figure: shard plan of the remote query as a plain SELECT (no cursor): $(sql $S1 -c "EXPLAIN (COSTS OFF) $remote_sql" | head -1 | sed 's/ *(.*//')"
idx_scans() { sql $1 -c "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'items_embedding_idx'"; }
before1=$(idx_scans $S1 | tail -1)
before2=$(idx_scans $S2 | tail -1)
sql $C -c "SELECT id FROM items ORDER BY embedding <-> '$q' LIMIT 10" >/dev/null
sql $C -c "$union" >/dev/null
# the remote sessions end with the coordinator's session; their statistics arrive shortly after
for _ in $(seq 1 50); do
    after1=$(idx_scans $S1 | tail -1)
    after2=$(idx_scans $S2 | tail -1)
    ((after1 >= before1 + 2 && after2 >= before2 + 2)) && break
    sleep 0.2
done
check "ivfflat index scans on shard 1 for the two coordinator queries" 2 "$((after1 - before1))"
check "ivfflat index scans on shard 2 for the two coordinator queries" 2 "$((after2 - before2))"

# (3) probes = lists on the shards: the coordinator's answers (ids and distances, in order) equal
# the exact answers of the single server. ivfflat.probes is set for the shards' sessions with ALTER
# DATABASE on each shard; postgres_fdw keeps its connections, so they are reopened to see it.
for port in $S1 $S2; do sql $port -c "ALTER DATABASE postgres SET ivfflat.probes = $LISTS"; done
check "a shard session's probes after ALTER DATABASE and reconnecting" "$LISTS|$LISTS" \
    "$(sql $C -c "SELECT postgres_fdw_disconnect_all()" -c "SELECT (SELECT probes FROM shard1_probes) || '|' || (SELECT probes FROM shard2_probes)" | tail -1)"
nearest() { # nearest TABLE K X [WHERE]: the K nearest rows (id, distance) to vector_expr X
    local v
    v=$(vector_expr "$3" $DIM)
    echo "SELECT id, embedding <-> $v AS distance FROM $1 WHERE ${4:-true} ORDER BY embedding <-> $v LIMIT $2"
}
knn() { # the same as one line "id:distance,...", in the order the query returns them
    echo "SELECT string_agg(id || ':' || distance, ',') FROM ($(nearest "$@")) s"
}
knn_union() { # knn_union K X: the UNION ALL form over the two foreign tables
    local v
    v=$(vector_expr "$2" $DIM)
    echo "SELECT string_agg(id || ':' || distance, ',') FROM ((SELECT id, embedding <-> $v AS distance FROM items_shard1 ORDER BY embedding <-> $v LIMIT $1) UNION ALL (SELECT id, embedding <-> $v FROM items_shard2 ORDER BY embedding <-> $v LIMIT $1) ORDER BY distance LIMIT $1) s"
}
# check_same DESCRIPTION EXPECTED ACTUAL for "id:distance,..." lists: on success prints the length and the first pair
check_same() {
    [[ -n "$3" ]] || fail "$1: no rows"
    [[ "$2" == "$3" ]] || fail "$1: expected '$2', got '$3'"
    echo "ok: $1 ($(tr ',' '\n' <<<"$3" | wc -l) rows, nearest ${3%%,*})"
}
exact() { sql $C -c "SET enable_indexscan = off" -c "$1" | tail -1; }
queries="0.5 17.5 999.5 2500.5 4321.5 5999.5 7000.5"
for x in $queries; do
    for k in 10 50; do
        expected=$(exact "$(knn items_all $k $x)")
        [[ $(tr ',' '\n' <<<"$expected" | wc -l) == "$k" ]] || fail "the exact answer has not $k rows"
        check_same "partitioned table = one server, exact (query $x, k $k)" "$expected" "$(sql $C -c "$(knn items $k $x)")"
        check_same "UNION ALL form = one server, exact (query $x, k $k)" "$expected" "$(sql $C -c "$(knn_union $k $x)")"
    done
done

# (4) A metadata filter is pushed into every shard's remote query with the ORDER BY.
plan=$(sql $C -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM items WHERE category = 3 ORDER BY embedding <-> '$q' LIMIT 10")
check "WHERE category = 3 and ORDER BY in both remote queries" 2 \
    "$(grep -cF "Remote SQL: SELECT id, embedding FROM public.items WHERE ((category = 3)) $remote_order" <<<"$plan")"
for x in $queries; do
    check_same "filtered: partitioned table = one server (query $x)" "$(exact "$(knn items_all 10 $x 'category = 3')")" \
        "$(sql $C -c "$(knn items 10 $x 'category = 3')")"
done
# A filter on the shard key prunes to one shard; whether ORDER BY goes with it is a cost decision
# (it does here, with the coordinator's statistics); the answer is right either way.
on_shard1=$(sql $S1 -c "SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM items ORDER BY id LIMIT 300) s")
plan=$(sql $C -c "EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM items WHERE id = ANY('$on_shard1') ORDER BY embedding <-> '$q' LIMIT 10")
check "a filter on the shard key prunes to one shard" "1 items_shard1" "$(grep -c "Foreign Scan" <<<"$plan") $(grep -o "Foreign Scan on public.items_shard[12]" <<<"$plan" | sed 's/.*public\.//')"
echo "figure: pruned to one shard, ORDER BY in its remote query: $(grep -q "Remote SQL.*ORDER BY" <<<"$plan" && echo yes || echo no)"
for x in $queries; do
    check_same "pruned: partitioned table = one server (query $x)" "$(exact "$(knn items_all 10 $x "id = ANY('$on_shard1')")")" \
        "$(sql $C -c "$(knn items 10 $x "id = ANY('$on_shard1')")")"
done

# (5) Fewer probes on the shards. SET ivfflat.probes on the coordinator does not reach the shards;
# the server option options '-c ivfflat.probes=N' (libpq's options, which postgres_fdw passes on)
# does, and overrides ALTER DATABASE. With probes = 1 or 3, the coordinator returns the merge of what
# each shard returns on its own at that many probes.
check "SET on the coordinator does not reach the shards' sessions" "$LISTS|$LISTS" \
    "$(sql $C -c "SET ivfflat.probes = 1" -c "SELECT (SELECT probes FROM shard1_probes) || '|' || (SELECT probes FROM shard2_probes)" | tail -1)"
for s in 1 2; do sql $C -c "ALTER SERVER shard$s OPTIONS (ADD options '-c ivfflat.probes=3')"; done
check "the server option sets the shard sessions' probes (over ALTER DATABASE)" "3|3" \
    "$(sql $C -c "SELECT (SELECT probes FROM shard1_probes) || '|' || (SELECT probes FROM shard2_probes)" | tail -1)"
for port in $S1 $S2; do sql $port -c "ALTER DATABASE postgres RESET ivfflat.probes"; done
merged_shards() { # merged_shards PROBES X: the merge of each shard's own top 10 at PROBES, queried on the shards
    for port in $S1 $S2; do
        sql $port -c "SET ivfflat.probes = $1" -c "SELECT id || ':' || distance FROM ($(nearest items 10 $2)) s"
    done | sort -t: -k2,2g -k1,1n | head -10 | paste -sd,
}
nq=$(wc -w <<<"$queries")
for probes in 3 1; do
    for s in 1 2; do sql $C -c "ALTER SERVER shard$s OPTIONS (SET options '-c ivfflat.probes=$probes')"; done
    recall_hits=0
    for x in $queries; do
        got=$(sql $C -c "$(knn items 10 $x)")
        check_same "probes $probes: coordinator = merge of the shards' own answers (query $x)" "$(merged_shards $probes $x)" "$got"
        want=$(exact "$(knn items_all 10 $x)")
        recall_hits=$((recall_hits + $(comm -12 <(tr ',' '\n' <<<"$got" | sort) <(tr ',' '\n' <<<"$want" | sort) | wc -l)))
    done
    echo "figure: recall@10 through the coordinator at probes $probes of $LISTS per shard: $(awk -v h=$recall_hits -v n=$nq 'BEGIN { printf "%.3f", h / (10 * n) }')"
done
# The shards' index scans really probe one list: an ORDER BY without a small LIMIT returns only the
# rows of the probed lists, as many as each shard's own index scan returns at probes = 1.
own=0
for port in $S1 $S2; do
    own=$((own + $(sql $port -c "SET ivfflat.probes = 1" -c "SET enable_seqscan = off" -c "SELECT count(*) FROM (SELECT id FROM items ORDER BY embedding <-> '$q') s" | tail -1)))
done
through=$(sql $C -c "SELECT count(*) FROM (SELECT id FROM items ORDER BY embedding <-> '$q' LIMIT 5000) s")
check "probes 1: rows reachable through the coordinator = rows in the shards' probed lists" "$own" "$through"
((through < ROWS / 2)) || fail "probes 1 reached $through rows"
for s in 1 2; do sql $C -c "ALTER SERVER shard$s OPTIONS (SET options '-c ivfflat.probes=3')"; done

# Timing: one psql session running 50 top-10 queries each way (probes 3 of 20 on the shards and locally).
for i in $(seq 1 50); do echo "SELECT id FROM items ORDER BY embedding <-> $(vector_expr "$i * 97.5" $DIM) LIMIT 10;"; done >"$WORK/partitioned.sql"
for i in $(seq 1 50); do echo "$(knn_union 10 "$i * 97.5");"; done >"$WORK/union.sql"
for i in $(seq 1 50); do echo "SELECT id FROM items_all ORDER BY embedding <-> $(vector_expr "$i * 97.5" $DIM) LIMIT 10;"; done >"$WORK/local.sql"
t0=$(date +%s%N)
sql $C -f "$WORK/partitioned.sql" >/dev/null
t1=$(date +%s%N)
sql $C -f "$WORK/union.sql" >/dev/null
t2=$(date +%s%N)
sql $C -c "SET ivfflat.probes = 3" -f "$WORK/local.sql" >/dev/null
t3=$(date +%s%N)
echo "figure: 50 top-10 queries ($ROWS rows, $DIM dimensions): $(((t1 - t0) / 1000000)) ms through the coordinator (partitioned table), $(((t2 - t1) / 1000000)) ms (UNION ALL form), $(((t3 - t2) / 1000000)) ms on one local server"

for dir in "$DIR_shard1" "$DIR_shard2" "$DIR_coord"; do assert_no_crash "$dir"; done
