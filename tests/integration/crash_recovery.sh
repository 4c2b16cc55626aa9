#!/usr/bin/env bash
# kill -9 the postmaster while rows are being inserted and deleted, restart, and check that every
# committed row is found through the index and no deleted row is; also a crash in the middle of
# CREATE INDEX leaves a usable database.
source "$(dirname "$0")/lib.sh"
new_cluster main
P=$PORT_main
sql $P -c "CREATE EXTENSION pgivf"
sql $P -c "CREATE TABLE items (id bigint PRIMARY KEY, v vector(48))"
sql $P -c "CREATE TABLE committed (id bigint PRIMARY KEY)"
sql $P -c "INSERT INTO items SELECT i, $(vector_expr i 48) FROM generate_series(1, 5000) i"
sql $P -c "INSERT INTO committed SELECT id FROM items"
sql $P -c "CREATE INDEX items_v ON items USING ivfflat (v vector_cosine_ops) WITH (lists = 20)"

for cycle in 1 2 3; do
    # Each transaction inserts a row into both tables, so `committed` lists exactly the rows that
    # must survive; deletes remove from both in one transaction too.
    (
        i=$((cycle * 100000))
        while true; do
            i=$((i + 1))
            sql $P -c "BEGIN" -c "INSERT INTO items VALUES ($i, $(vector_expr $i 48))" -c "INSERT INTO committed VALUES ($i)" \
                -c "DELETE FROM committed WHERE id = $((i % 5000 + 1))" -c "DELETE FROM items WHERE id = $((i % 5000 + 1))" -c "COMMIT" >/dev/null 2>&1 || break
        done
    ) &
    writer=$!
    (sql $P -c "VACUUM items" >/dev/null 2>&1 || true) &
    sleep $((2 + cycle))
    crash "$DIR_main"
    wait $writer || true
    wait || true
    sleep 1
    restart "$DIR_main"
    committed=$(sql $P -c "SELECT count(*) FROM committed")
    rows=$(sql $P -c "SELECT count(*) FROM items")
    check "cycle $cycle: rows equal committed rows" "$committed" "$rows"
    found=$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 20" -c "SELECT count(*) FROM (SELECT id FROM items ORDER BY v <=> (SELECT v FROM items LIMIT 1)) s")
    check "cycle $cycle: committed rows found through the index" "$committed" "$found"
    wrong=$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 20" -c "SELECT count(*) FROM (SELECT id FROM items ORDER BY v <=> (SELECT v FROM items LIMIT 1)) s WHERE id NOT IN (SELECT id FROM committed)")
    check "cycle $cycle: rows returned that are not committed" 0 "$wrong"
    sql $P -c "SELECT ivfflat_verify('items_v', heapallindexed => true)"
done

# A crash in the middle of a build: the database comes back and the index can be built again.
sql $P -c "CREATE TABLE big AS SELECT i AS id, $(vector_expr i 64) AS v FROM generate_series(1, 60000) i"
(sql $P -c "CREATE INDEX big_v ON big USING ivfflat (v vector_l2_ops) WITH (lists = 1000)" >/dev/null 2>&1 || true) &
sleep 1.5
crash "$DIR_main"
wait || true
restart "$DIR_main"
# The build either never committed (no index) or committed completely; never a broken index.
if [[ "$(sql $P -c "SELECT count(*) FROM pg_class WHERE relname = 'big_v'")" == 1 ]]; then
    echo "the build had committed before the crash"
    sql $P -c "DROP INDEX big_v"
else
    echo "ok: the interrupted build left no index"
fi
sql $P -c "CREATE INDEX big_v ON big USING ivfflat (v vector_l2_ops) WITH (lists = 50)"
check "rebuilt index finds every row" 60000 "$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 50" -c "SELECT count(*) FROM (SELECT id FROM big ORDER BY v <-> (SELECT v FROM big LIMIT 1)) s")"
# Our own SIGKILLs are the only signals allowed in the log.
if grep -E "terminated by signal (11|6|7|4|8)" "$DIR_main/server.log"; then fail "a backend crashed"; fi
