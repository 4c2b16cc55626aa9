#!/usr/bin/env bash
# Concurrency soak: 8 pgbench clients mixing inserts, updates, deletes and searches, with a VACUUM
# every second, against one ivfflat index, for PGIVF_SOAK_SECONDS per index (60 in CI; run it for an
# hour with PGIVF_SOAK_SECONDS=3600 bash tests/integration/concurrency.sh): a flat index, then a
# RaBitQ one that spills (each row's code in two lists, sharing one vector), with ivfflat_verify
# running in a loop beside the writers, where it must never report a healthy index as corrupted.
# No errors; afterwards the verifier passes, every row is found through the index exactly once, and
# at probes = lists the index returns exactly what a sequential scan returns.
source "$(dirname "$0")/lib.sh"
SECONDS_TO_RUN=${PGIVF_SOAK_SECONDS:-60}
new_cluster main
P=$PORT_main
sql $P -c "CREATE EXTENSION pgivf"
for options in "lists = 16" "lists = 16, quantizer = 'rabitq'"; do
echo "index WITH ($options)"
sql $P -c "DROP TABLE IF EXISTS items"
sql $P -c "CREATE TABLE items (id bigserial PRIMARY KEY, v vector(32))"
sql $P -c "INSERT INTO items (v) SELECT $(vector_expr i 32) FROM generate_series(1, 3000) i"
sql $P -c "CREATE INDEX items_v ON items USING ivfflat (v vector_l2_ops) WITH ($options)"

cat >"$WORK/insert.sql" <<'SQL'
INSERT INTO items (v) SELECT (SELECT array_agg(random() * 2 - 1) FROM generate_series(1, 32))::vector(32);
SQL
cat >"$WORK/update.sql" <<'SQL'
\set id random(1, 3000)
UPDATE items SET v = (SELECT array_agg(random() * 2 - 1) FROM generate_series(1, 32))::vector(32) WHERE id = :id;
SQL
cat >"$WORK/delete.sql" <<'SQL'
\set id random(1, 6000)
DELETE FROM items WHERE id = :id;
SQL
cat >"$WORK/search.sql" <<'SQL'
SET ivfflat.probes = 4;
SELECT id FROM items ORDER BY v <-> (SELECT array_agg(random() * 2 - 1) FROM generate_series(1, 32))::vector(32) LIMIT 10;
SQL
(
    end=$((SECONDS + SECONDS_TO_RUN))
    while ((SECONDS < end)); do sql $P -c "VACUUM items" || exit 1; sleep 1; done
) &
vacuum_pid=$!
(
    end=$((SECONDS + SECONDS_TO_RUN))
    runs=0
    while ((SECONDS < end)); do
        out=$(sql $P -c "SELECT ivfflat_verify('items_v')" 2>&1) || { echo "$out" >"$WORK/verify.failed"; exit 1; }
        runs=$((runs + 1))
    done
    echo "$runs" >"$WORK/verify.runs"
) &
verify_pid=$!
"$PG_BIN/pgbench" -n -h 127.0.0.1 -p $P -U postgres -c 8 -j 2 -T "$SECONDS_TO_RUN" \
    -f "$WORK/insert.sql@4" -f "$WORK/update.sql@2" -f "$WORK/delete.sql@1" -f "$WORK/search.sql@3" postgres >"$WORK/pgbench.log" 2>&1 ||
    { cat "$WORK/pgbench.log"; fail "pgbench reported errors"; }
wait $vacuum_pid || fail "concurrent VACUUM failed"
wait $verify_pid || fail "ivfflat_verify beside the writers reported: $(cat "$WORK/verify.failed")"
echo "figure: ivfflat_verify of WITH ($options) beside the writers: $(cat "$WORK/verify.runs") runs, no false report"
grep -E "^(number of transactions actually processed|number of failed transactions|tps)" "$WORK/pgbench.log" || true
echo "figure: soak of WITH ($options): $SECONDS_TO_RUN s, $(sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' "$WORK/pgbench.log") transactions, 8 clients"

rows=$(sql $P -c "SELECT count(*) FROM items")
via_index=$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 16" -c "SELECT count(*) FROM (SELECT id FROM items ORDER BY v <-> (SELECT v FROM items LIMIT 1)) s")
check "rows found through the index after the concurrent run" "$rows" "$via_index"
missing=$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 16" -c "SELECT count(*) FROM (SELECT id FROM items EXCEPT ALL SELECT id FROM (SELECT id FROM items ORDER BY v <-> (SELECT v FROM items LIMIT 1)) s) m")
check "rows missing from the index" 0 "$missing"
sql $P -c "VACUUM items"
again=$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 16" -c "SELECT count(*) FROM (SELECT id FROM items ORDER BY v <-> (SELECT v FROM items LIMIT 1)) s")
check "rows found after a final VACUUM" "$rows" "$again"
sql $P -c "SELECT ivfflat_verify('items_v', heapallindexed => true)"
# probes = lists is an exact search: the same top 10 as a sequential scan, for a few queries.
for q in 1 2 3 4 5; do
    query="SELECT string_agg(id::text, ',' ORDER BY d, id) FROM (SELECT id, v <-> (SELECT v FROM items ORDER BY id OFFSET $((q * 97)) LIMIT 1) AS d FROM items ORDER BY v <-> (SELECT v FROM items ORDER BY id OFFSET $((q * 97)) LIMIT 1) LIMIT 10) s"
    exact=$(sql $P -c "SET enable_indexscan = off" -c "$query")
    indexed=$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 16" -c "$query")
    check "query $q: index at probes = lists equals the exact answer" "$exact" "$indexed"
done
done
assert_no_crash "$DIR_main"
