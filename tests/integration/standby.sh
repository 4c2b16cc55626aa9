#!/usr/bin/env bash
# A streaming standby (pg_basebackup over loopback) replays builds, inserts, deletes and VACUUM of
# ivfflat indexes from Generic WAL and answers queries exactly like the primary.
source "$(dirname "$0")/lib.sh"
new_cluster primary
P=$PORT_primary
sql $P -c "CREATE EXTENSION pgivf"
sql $P -c "CREATE TABLE items (id int PRIMARY KEY, v vector(24), cat int)"
sql $P -c "INSERT INTO items SELECT i, $(vector_expr i 24), i % 7 FROM generate_series(1, 4000) i"
sql $P -c "CREATE INDEX items_l2 ON items USING ivfflat (v vector_l2_ops) WITH (lists = 10)"

S_DIR="$WORK/standby"
S_PORT=$(free_port)
rm -rf "$S_DIR"
mkdir -p "$S_DIR"
chown postgres: "$S_DIR"
chmod 700 "$S_DIR"
runuser -u postgres -- "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p $P -U postgres -D "$S_DIR/data" -R -X stream >/dev/null
{
    echo "port = $S_PORT"
    echo "unix_socket_directories = '$S_DIR'"
    echo "hot_standby = on"
} >>"$S_DIR/data/postgresql.conf"
runuser -u postgres -- env -u RUST_BACKTRACE "$PG_BIN/pg_ctl" -D "$S_DIR/data" -l "$S_DIR/server.log" -w -t 60 start >/dev/null
CLUSTERS+=("$S_DIR")

# Work that only reaches the standby through WAL: a new index, inserts that split pages, deletes,
# VACUUM (dead marks and free-slot hints) and inserts reusing freed slots.
sql $P -c "CREATE INDEX items_cos ON items USING ivfflat (v vector_cosine_ops) WITH (lists = 7)"
sql $P -c "CREATE INDEX items_cat ON items USING ivfflat (v vector_l2_ops, cat) WITH (lists = 8)"
# Quantized lists: RaBitQ codes with their vector chains, and SQ8 codes re-ranked from the table.
sql $P -c "CREATE INDEX items_ip_rabitq ON items USING ivfflat (v vector_ip_ops) WITH (lists = 6, quantizer = 'rabitq')"
sql $P -c "CREATE TABLE qitems AS SELECT id, v FROM items"
sql $P -c "CREATE INDEX qitems_sq8 ON qitems USING ivfflat (v vector_l2_ops) WITH (lists = 9, quantizer = 'sq8', rerank = 'heap')"
sql $P -c "INSERT INTO qitems SELECT i, $(vector_expr i 24) FROM generate_series(4001, 5000) i"
sql $P -c "DELETE FROM qitems WHERE id % 4 = 1"
sql $P -c "VACUUM qitems"
sql $P -c "INSERT INTO qitems SELECT i, $(vector_expr i 24) FROM generate_series(5001, 5500) i"
sql $P -c "INSERT INTO items SELECT i, $(vector_expr i 24), i % 9 FROM generate_series(4001, 6000) i"
sql $P -c "DELETE FROM items WHERE id % 3 = 0"
sql $P -c "VACUUM items"
sql $P -c "INSERT INTO items SELECT i, $(vector_expr i 24) + $(vector_expr i 24) + $(vector_expr i 24), 8 FROM generate_series(6001, 7000) i"

lsn=$(sql $P -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 1 120); do
    replayed=$(sql $S_PORT -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'::pg_lsn")
    [[ "$replayed" == t ]] && break
    sleep 0.5
done
check "standby replayed the workload" t "$replayed"

for op in "<->" "<=>" "<#>"; do
    for probes in 1 3 10; do
        for q in 17 2500 6500; do
            query="SET enable_seqscan = off; SET ivfflat.probes = $probes; SELECT string_agg(id::text, ',') FROM (SELECT id FROM items ORDER BY v $op (SELECT v FROM items WHERE id = $q) LIMIT 20) s"
            on_primary=$(sql $P -c "$query" | tail -1)
            on_standby=$(sql $S_PORT -c "$query" | tail -1)
            [[ -n "$on_primary" ]] || fail "empty result on the primary"
            check "same result on the standby ($op, probes $probes, query $q)" "$on_primary" "$on_standby"
        done
    done
done
# The filter-column index: summaries and radii reach the standby through WAL too.
plan=$(sql $S_PORT -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) SELECT id FROM items WHERE cat = 3 ORDER BY v <-> (SELECT v FROM items WHERE id = 17) LIMIT 20")
[[ "$plan" == *"Index Scan using items_cat"*"Index Cond: (cat = 3)"* ]] || fail "the standby does not use items_cat with an index condition: $plan"
for cat in 3 8; do
    for mode in off strict_order; do
        query="SET enable_seqscan = off; SET ivfflat.probes = 1; SET ivfflat.iterative_scan = $mode; SELECT string_agg(id::text, ',') FROM (SELECT id FROM items WHERE cat = $cat ORDER BY v <-> (SELECT v FROM items WHERE id = 17) LIMIT 20) s"
        on_primary=$(sql $P -c "$query" | tail -1)
        check "same filtered result on the standby (cat = $cat, $mode)" "$on_primary" "$(sql $S_PORT -c "$query" | tail -1)"
    done
done
sql $S_PORT -c "SELECT ivfflat_verify('items_cat')"
check "standby sees every row through the index" "$(sql $P -c "SELECT count(*) FROM items")" \
    "$(sql $S_PORT -c "SET enable_seqscan = off; SET ivfflat.probes = 10; SELECT count(*) FROM (SELECT id FROM items ORDER BY v <-> (SELECT v FROM items LIMIT 1)) s" | tail -1)"
sql $S_PORT -c "SELECT ivfflat_verify('items_l2')"
sql $S_PORT -c "SELECT ivfflat_verify('items_ip_rabitq')"
sql $S_PORT -c "SELECT ivfflat_verify('qitems_sq8')"
for q in 18 2500 4500; do
    for probes in 1 9; do
        query="SET enable_seqscan = off; SET ivfflat.probes = $probes; SELECT string_agg(id::text, ',') FROM (SELECT id FROM qitems ORDER BY v <-> (SELECT v FROM qitems WHERE id = $q) LIMIT 20) s"
        on_primary=$(sql $P -c "$query" | tail -1)
        [[ -n "$on_primary" ]] || fail "empty quantized result on the primary"
        check "same quantized result on the standby (sq8, heap re-rank, probes $probes, query $q)" "$on_primary" "$(sql $S_PORT -c "$query" | tail -1)"
    done
    exact="SET enable_indexscan = off; SELECT string_agg(round((v <-> (SELECT v FROM qitems WHERE id = $q))::numeric, 6)::text, ',') FROM (SELECT v FROM qitems ORDER BY v <-> (SELECT v FROM qitems WHERE id = $q) LIMIT 20) s"
    indexed="SET enable_seqscan = off; SET ivfflat.probes = 9; SELECT string_agg(round((v <-> (SELECT v FROM qitems WHERE id = $q))::numeric, 6)::text, ',') FROM (SELECT v FROM qitems ORDER BY v <-> (SELECT v FROM qitems WHERE id = $q) LIMIT 20) s"
    check "standby's quantized index gives the exact distances at probes = lists (query $q)" "$(sql $S_PORT -c "$exact" | tail -1)" "$(sql $S_PORT -c "$indexed" | tail -1)"
done
sql $S_PORT -c "SELECT ivfflat_verify('items_cos')"
assert_no_crash "$DIR_primary"
assert_no_crash "$S_DIR"
