#!/usr/bin/env bash
# Crash loop: concurrent inserters, updaters, deleters and VACUUM against an indexed table, the
# postmaster and all backends killed with SIGKILL at a random moment, restart (crash recovery from
# WAL), then: ivfflat_verify(heapallindexed) passes, every committed row is found through the index at
# probes = lists, and no row that is not in the table comes back. Also crashes in the middle of CREATE
# INDEX and of REINDEX CONCURRENTLY leave a usable database.
source "$(dirname "$0")/lib.sh"
CYCLES=${PGIVF_CRASH_CYCLES:-4}
new_cluster main
P=$PORT_main
sql $P -c "CREATE EXTENSION pgivf"
sql $P -c "CREATE TABLE items (id bigint PRIMARY KEY, v vector(48))"
# Every transaction that changes items changes this ledger in the same transaction, so after a crash
# the ledger lists exactly the rows that must be there.
sql $P -c "CREATE TABLE ledger (id bigint PRIMARY KEY)"
sql $P -c "INSERT INTO items SELECT i, $(vector_expr i 48) FROM generate_series(1, 6000) i"
sql $P -c "INSERT INTO ledger SELECT id FROM items"
sql $P -c "CREATE INDEX items_v ON items USING ivfflat (v vector_cosine_ops) WITH (lists = 20)"
# A filter column (an expression), with its per-list summaries and radii under the same crashes.
sql $P -c "CREATE INDEX items_filtered ON items USING ivfflat (v vector_l2_ops, (id % 5)) WITH (lists = 15)"
# Quantized lists: RaBitQ codes plus their vector chains (two WAL records per insert), and SQ8 codes
# re-ranked from the table.
# (RaBitQ on an expression, so that no other index of the same operator class competes for its queries.)
sql $P -c "CREATE INDEX items_rabitq ON items USING ivfflat ((l2_normalize(v)::vector(48)) vector_l2_ops) WITH (lists = 12, quantizer = 'rabitq')"
sql $P -c "CREATE INDEX items_sq8 ON items USING ivfflat (v vector_ip_ops) WITH (lists = 10, quantizer = 'sq8', rerank = 'heap', spill = on)"

rows_checked=0
for cycle in $(seq 1 "$CYCLES"); do
    base=$((cycle * 1000000))
    pids=()
    # inserters
    for w in 1 2; do
        (
            i=$((base + w * 100000))
            while true; do
                i=$((i + 1))
                sql $P -c "BEGIN" -c "INSERT INTO items VALUES ($i, $(vector_expr $i 48))" -c "INSERT INTO ledger VALUES ($i)" -c "COMMIT" >/dev/null 2>&1 || break
            done
        ) &
        pids+=($!)
    done
    # updater: moves rows to other lists (new vector, same id)
    (
        while true; do
            sql $P -c "UPDATE items SET v = $(vector_expr "id * 7 + $RANDOM" 48) WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT 5)" >/dev/null 2>&1 || break
        done
    ) &
    pids+=($!)
    # deleter
    (
        while true; do
            sql $P -c "WITH gone AS (DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY random() LIMIT 3) RETURNING id) DELETE FROM ledger WHERE id IN (SELECT id FROM gone)" >/dev/null 2>&1 || break
        done
    ) &
    pids+=($!)
    # vacuum
    (
        while true; do sql $P -c "VACUUM items" >/dev/null 2>&1 || break; sleep 0.3; done
    ) &
    pids+=($!)
    sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.1f", 2 + (r % 30) / 10 }')"
    crash "$DIR_main"
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    restart "$DIR_main"
    ledger=$(sql $P -c "SELECT count(*) FROM ledger")
    rows=$(sql $P -c "SELECT count(*) FROM items")
    check "cycle $cycle: table rows equal the committed ledger" "$ledger" "$rows"
    check "cycle $cycle: ledger and table hold the same ids" 0 "$(sql $P -c "SELECT count(*) FROM (SELECT id FROM ledger EXCEPT SELECT id FROM items) d")"
    sql $P -c "SELECT ivfflat_verify('items_v', heapallindexed => true)"
    sql $P -c "SELECT ivfflat_verify('items_filtered', heapallindexed => true)"
    sql $P -c "SELECT ivfflat_verify('items_rabitq', heapallindexed => true)"
    sql $P -c "SELECT ivfflat_verify('items_sq8', heapallindexed => true)"
    for spec in "items_rabitq|l2_normalize(v)::vector(48)|<->|12" "items_sq8|v|<#>|10"; do
        IFS='|' read -r name expr op lists <<<"$spec"
        q="(SELECT v FROM items ORDER BY id LIMIT 1)"
        found=$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = $lists" -c "SELECT count(*) FROM (SELECT id FROM items ORDER BY $expr $op $q) s")
        check "cycle $cycle: committed rows found through $name" "$ledger" "$found"
        nearest="SELECT string_agg(d::text, ',') FROM (SELECT $expr $op $q AS d FROM items ORDER BY $expr $op $q LIMIT 10) s"
        plan=$(sql $P -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) $nearest")
        [[ "$plan" == *"Index Scan using $name"* ]] || fail "the check of $name does not use it: $plan"
        check "cycle $cycle: $name returns the exact nearest distances" \
            "$(sql $P -c "SET enable_indexscan = off" -c "$nearest")" \
            "$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = $lists" -c "$nearest")"
    done
    check "cycle $cycle: committed rows with id % 5 = 2 found through the filter column" \
        "$(sql $P -c "SELECT count(*) FROM ledger WHERE id % 5 = 2")" \
        "$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.iterative_scan = strict_order" -c "SELECT count(*) FROM (SELECT id FROM items WHERE id % 5 = 2 ORDER BY v <-> (SELECT v FROM items LIMIT 1) LIMIT 1000000) s")"
    found=$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 20" -c "SELECT count(*) FROM (SELECT id FROM items ORDER BY v <=> (SELECT v FROM items LIMIT 1)) s")
    check "cycle $cycle: committed rows found through the index" "$ledger" "$found"
    missing=$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 20" -c "SELECT count(*) FROM (SELECT id FROM ledger EXCEPT SELECT id FROM (SELECT id FROM items ORDER BY v <=> (SELECT v FROM items LIMIT 1)) s) m")
    check "cycle $cycle: committed rows missing from index results" 0 "$missing"
    extra=$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 20" -c "SELECT count(*) FROM (SELECT id FROM (SELECT id FROM items ORDER BY v <=> (SELECT v FROM items LIMIT 1)) s EXCEPT SELECT id FROM ledger) x")
    check "cycle $cycle: rows returned that are not committed" 0 "$extra"
    rows_checked=$((rows_checked + ledger))
done
echo "figure: crash cycles survived: $CYCLES, rows checked: $rows_checked"

# A crash in the middle of a build: either no index (the build had not committed) or a complete one.
sql $P -c "CREATE TABLE big AS SELECT i AS id, $(vector_expr i 64) AS v FROM generate_series(1, 60000) i"
(sql $P -c "CREATE INDEX big_v ON big USING ivfflat (v vector_l2_ops) WITH (lists = 1000)" >/dev/null 2>&1 || true) &
sleep 1.5
crash "$DIR_main"
wait || true
restart "$DIR_main"
if [[ "$(sql $P -c "SELECT count(*) FROM pg_class WHERE relname = 'big_v'")" == 1 ]]; then
    echo "the build had committed before the crash"
    sql $P -c "SELECT ivfflat_verify('big_v', true)"
    sql $P -c "DROP INDEX big_v"
else
    echo "ok: the interrupted build left no index"
fi
sql $P -c "CREATE INDEX big_v ON big USING ivfflat (v vector_l2_ops) WITH (lists = 50)"
check "rebuilt index finds every row" 60000 "$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 50" -c "SELECT count(*) FROM (SELECT id FROM big ORDER BY v <-> (SELECT v FROM big LIMIT 1)) s")"

# A crash in the middle of REINDEX CONCURRENTLY: the old index keeps working; a leftover invalid
# copy (big_v_ccnew) can be dropped, and REINDEX works again.
(sql $P -c "REINDEX INDEX CONCURRENTLY big_v" >/dev/null 2>&1 || true) &
sleep 0.7
crash "$DIR_main"
wait || true
restart "$DIR_main"
for leftover in $(sql $P -c "SELECT relname FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid WHERE relname LIKE 'big_v%' AND NOT i.indisvalid"); do
    echo "dropping invalid leftover $leftover"
    sql $P -c "DROP INDEX $leftover"
done
valid=$(sql $P -c "SELECT relname FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid WHERE relname LIKE 'big_v%' AND i.indisvalid")
[[ -n "$valid" ]] || fail "no valid index left after a crash during REINDEX CONCURRENTLY"
sql $P -c "SELECT ivfflat_verify('$valid', true)"
check "index after the interrupted REINDEX finds every row" 60000 "$(sql $P -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 50" -c "SELECT count(*) FROM (SELECT id FROM big ORDER BY v <-> (SELECT v FROM big LIMIT 1)) s")"
sql $P -c "REINDEX INDEX CONCURRENTLY $valid"
sql $P -c "SELECT ivfflat_verify('$valid', true)"
# Our own SIGKILLs are the only signals allowed in the log.
if grep -E "terminated by signal (11|6|7|4|8)" "$DIR_main/server.log"; then fail "a backend crashed"; fi
