#!/usr/bin/env bash
# A long build reports its phases in pg_stat_progress_create_index, and a query cancel (here through
# statement_timeout) stops it within a second or so, leaving the session usable.
source "$(dirname "$0")/lib.sh"
new_cluster main
P=$PORT_main
sql $P -c "CREATE EXTENSION pgivf"
sql $P -c "CREATE TABLE big AS SELECT i AS id, $(vector_expr i 128) AS v FROM generate_series(1, 80000) i"
sql $P -c "ANALYZE big"

# Watch the progress view from a second session while the build runs.
sql $P -c "CREATE TABLE seen (phase text, tuples_done bigint, tuples_total bigint)"
(
    for _ in $(seq 1 400); do
        sql $P -c "INSERT INTO seen SELECT phase, tuples_done, tuples_total FROM pg_stat_progress_create_index" 2>/dev/null || true
        sleep 0.05
    done
) &
watcher=$!
start=$(date +%s.%N)
sql $P -c "SET max_parallel_maintenance_workers = 1" -c "CREATE INDEX big_v ON big USING ivfflat (v vector_l2_ops) WITH (lists = 400)"
build_seconds=$(awk "BEGIN { print $(date +%s.%N) - $start }")
kill $watcher 2>/dev/null || true
wait $watcher 2>/dev/null || true
echo "figure: build of 80,000 x 128 with 400 lists took $build_seconds s"
phases=$(sql $P -c "SELECT string_agg(DISTINCT phase, ',' ORDER BY phase) FROM seen WHERE phase LIKE 'building index:%'")
echo "phases seen: $phases"
[[ "$phases" == *"performing k-means"* || "$phases" == *"assigning tuples"* ]] || fail "no ivfflat build phase seen in pg_stat_progress_create_index"
# With a parallel worker allowed (and two cores), the threads' work says how many share it.
if (($(nproc) >= 2)); then
    [[ "$phases" == *" on 2 threads"* ]] || fail "no phase says it runs on 2 threads: $phases"
fi
check "assigning tuples reports its total" t "$(sql $P -c "SELECT coalesce(bool_or(tuples_total > 0), false) FROM seen WHERE phase LIKE '%assigning tuples%'" )"

# Cancel: a build far longer than the timeout stops promptly with the standard error.
sql $P -c "DROP INDEX big_v"
start=$(date +%s.%N)
if out=$(sql $P -c "SET statement_timeout = '1s'" -c "CREATE INDEX big_v ON big USING ivfflat (v vector_l2_ops) WITH (lists = 4000)" 2>&1); then
    fail "the build was expected to be cancelled"
fi
elapsed=$(awk "BEGIN { print $(date +%s.%N) - $start }")
echo "figure: build cancelled by statement_timeout after $elapsed s"
[[ "$out" == *"canceling statement due to statement timeout"* ]] || fail "unexpected error: $out"
awk "BEGIN { exit !($elapsed < 3.0) }" || fail "cancel took $elapsed s"
check "session usable after cancel" 1 "$(sql $P -c "SELECT 1")"
check "no index left behind" 0 "$(sql $P -c "SELECT count(*) FROM pg_class WHERE relname = 'big_v'")"
assert_no_crash "$DIR_main"
