#!/usr/bin/env bash
# Resource limits hold, and long work stops when asked:
#   1. a build whose k-means cannot fit even ten samples per list in maintenance_work_mem fails
#      once it has sampled them, before k-means, with "memory required is N MB, maintenance_work_mem is M MB" (54000), and
#      N MB is indeed enough (with a NOTICE that it sampled fewer rows than pgvector's 50 per list);
#      a build whose entries exceed maintenance_work_mem writes them as it goes, and the backend's
#      private memory grows by no more than maintenance_work_mem and 4 MB;
#   2. statement_timeout stops long index scans (200,000 rows x 128 dimensions, lists = 50, probes = 50,
#      an iterative scan whose WHERE clause rejects every row) within a second, and so does
#      pg_cancel_backend from another session;
#   3. pg_cancel_backend stops CREATE INDEX within a second in each build phase;
#   4. 10,000 rescans of an index scan (a LATERAL join) use no more memory than 1,000;
#   5. an iterative scan stops reading lists at work_mem × ivfflat.scan_mem_multiplier, and a scan
#      that cannot get memory (RLIMIT_DATA) ends in a clean out-of-memory ERROR.
# Prints the figures (times, memory) along the way.
source "$(dirname "$0")/lib.sh"
problems=()
problem() {
    echo "FAIL: $*" >&2
    problems+=("$*")
}
now() { date +%s.%N; }
seconds() { awk "BEGIN { printf \"%.3f\", $2 - $1 }"; }
below() { awk "BEGIN { exit !($1 < $2) }"; }

new_cluster main
P=$PORT_main
sql $P -c "CREATE EXTENSION pgivf"
# 200,000 distinct 128-dimensional vectors: 2,000 random ones plus 100 small random offsets each.
sql $P -q <<'SQL'
CREATE TABLE base AS SELECT i AS id, array(SELECT random()::real FROM generate_series(1, 128) WHERE i > 0)::vector(128) AS v
    FROM generate_series(1, 2000) i;
CREATE TABLE noise AS SELECT i AS id, array(SELECT (random() * 0.01)::real FROM generate_series(1, 128) WHERE i > 0)::vector(128) AS v
    FROM generate_series(1, 100) i;
CREATE TABLE big (id int, v vector(128));
INSERT INTO big SELECT (b.id - 1) * 100 + n.id, b.v + n.v FROM base b CROSS JOIN noise n;
ANALYZE big;
SQL
check "rows in big" 200000 "$(sql $P -c "SELECT count(*) FROM big")"

# ---------------------------------------------------------------------------------------------------
# 1. maintenance_work_mem
# run_build SETTINGS... : runs CREATE INDEX big_v (lists = $LISTS) after the given SET commands; sets
# BUILD_SECONDS, BUILD_OUT (psql output, verbose errors) and BUILD_OK (1 when the index was built).
run_build() {
    local t0
    t0=$(now)
    BUILD_OK=1
    BUILD_OUT=$(sql $P -v VERBOSITY=verbose "$@" -c "CREATE INDEX big_v ON big USING ivfflat (v vector_l2_ops) WITH (lists = $LISTS)" 2>&1) || BUILD_OK=0
    BUILD_SECONDS=$(seconds "$t0" "$(now)")
}
# lists = 1000 needs at least 10 samples per list: 1 MB cannot hold them, and the error says how much
# can, once the sample shows the table has that many rows (an empty table needs none).
LISTS=1000
run_build -c "SET maintenance_work_mem = '1MB'"
echo "lists = 1000, maintenance_work_mem = 1MB: $BUILD_SECONDS s: $(grep ERROR <<<"$BUILD_OUT")"
((BUILD_OK == 0)) || fail "the build with lists = 1000 and maintenance_work_mem = 1MB succeeded"
[[ "$BUILD_OUT" =~ ERROR:\ \ 54000:\ memory\ required\ is\ ([0-9]+)\ MB,\ maintenance_work_mem\ is\ 1\ MB ]] ||
    fail "unexpected error: $BUILD_OUT"
required=${BASH_REMATCH[1]}
early_seconds=$BUILD_SECONDS
below "$early_seconds" 2 || problem "the failing build took $early_seconds s"
if ((required > 1)); then
    run_build -c "SET maintenance_work_mem = '$((required - 1))MB'"
    ((BUILD_OK == 0)) || problem "the build succeeded with $((required - 1)) MB although it said it needs $required MB"
fi
# The figure from the message is enough: the build samples what fits (fewer than pgvector's 50 per
# list) and says so.
run_build -c "SET maintenance_work_mem = '${required}MB'"
((BUILD_OK == 1)) || fail "the build failed with the $required MB it said it needs: $BUILD_OUT"
[[ "$BUILD_OUT" =~ NOTICE:\ \ 00000:\ ivfflat\ index\ sampled\ ([0-9]+)\ rows\ for\ k-means\ instead\ of\ up\ to\ 50000 ]] ||
    fail "no NOTICE of the smaller sample: $BUILD_OUT"
echo "lists = 1000, maintenance_work_mem = ${required}MB (the figure from the message): built in $BUILD_SECONDS s with ${BASH_REMATCH[1]} samples"
echo "figure: memory check: fails after $early_seconds s, before k-means; the build with the memory it names takes $BUILD_SECONDS s"
below "$early_seconds" "$(awk "BEGIN { print $BUILD_SECONDS / 2 }")" ||
    problem "the failing build ($early_seconds s) did not stop well before a whole build ($BUILD_SECONDS s)"
sql $P -c "DROP INDEX big_v"

# lists = 50 at 16 MB: the 10,000 samples fit, the 200,000 entries (104 MB) do not, and are written
# as the budget fills. The backend's private memory (RssAnon, sampled every 10 ms) grows by no more
# than maintenance_work_mem and 4 MB for everything else (the rows being read, PostgreSQL's own).
LISTS=50
sql $P -c "SELECT pg_backend_pid()" -c "SET maintenance_work_mem = '16MB'" \
    -c "CREATE INDEX big_v ON big USING ivfflat (v vector_l2_ops) WITH (lists = $LISTS)" >"$WORK/build16.out" 2>&1 &
builder=$!
pid=""
for _ in $(seq 1 100); do pid=$(head -1 "$WORK/build16.out" 2>/dev/null); [[ -n "$pid" ]] && break; sleep 0.01; done
anon() { awk '/^RssAnon:/ { print $2 }' "/proc/$pid/status" 2>/dev/null; }
before=$(anon)
peak=$before
while kill -0 $builder 2>/dev/null; do
    now_kb=$(anon)
    [[ -n "$now_kb" ]] && ((now_kb > peak)) && peak=$now_kb
    sleep 0.01
done
wait $builder || fail "the build with maintenance_work_mem = 16MB failed: $(cat "$WORK/build16.out")"
grown_mb=$(((peak - before) / 1024))
echo "figure: a build of 200,000 x 128 (104 MB of entries) at maintenance_work_mem = 16MB grew the backend's private memory by $grown_mb MB"
((grown_mb <= 16 + 4)) || problem "the build grew the backend by $grown_mb MB with maintenance_work_mem = 16MB"
sql $P -c "SELECT ivfflat_verify('big_v', true)" | grep -q "ivfflat index OK" || fail "big_v does not verify"

# ---------------------------------------------------------------------------------------------------
# 2. statement_timeout and pg_cancel_backend on long index scans
SCAN_SETTINGS=(-c "SET jit = off" -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 50" -c "SET ivfflat.iterative_scan = relaxed_order")
FULL_SCAN="SELECT * FROM big WHERE id < 0 ORDER BY v <-> (SELECT v FROM base WHERE id = 1) LIMIT 10"
# 200 of those in one statement: about 200 times as long.
MANY_SCANS="SELECT count(*) FROM generate_series(1, 200) g CROSS JOIN LATERAL (SELECT id FROM big WHERE id < 0 ORDER BY v <-> (SELECT v FROM base WHERE id = g) LIMIT 10) s"
plan=$(sql $P "${SCAN_SETTINGS[@]}" -c "EXPLAIN (COSTS OFF) $FULL_SCAN")
[[ "$plan" == *"Index Scan using big_v"* ]] || fail "the full scan does not use the index: $plan"
sql $P "${SCAN_SETTINGS[@]}" -c "$FULL_SCAN" >/dev/null # warm the buffer cache
t0=$(now)
sql $P -c "SELECT 1" >/dev/null
connect_seconds=$(seconds "$t0" "$(now)")
t0=$(now)
rows=$(sql $P "${SCAN_SETTINGS[@]}" -c "$FULL_SCAN" | wc -l)
full_seconds=$(seconds "$t0" "$(now)")
check "rows from the full scan (WHERE rejects all)" 0 "$rows"
echo "one uncancelled full index scan (200,000 rows checked): $full_seconds s including $connect_seconds s to connect"

# timed_error LABEL TIMEOUT SQL: runs SQL with statement_timeout = TIMEOUT; prints the elapsed time.
timed_error() {
    local label=$1 timeout=$2 query=$3 t0 out elapsed
    t0=$(now)
    if out=$(sql $P "${SCAN_SETTINGS[@]}" -c "SET statement_timeout = '$timeout'" -c "$query" 2>&1); then
        problem "$label: finished within statement_timeout = $timeout"
        return
    fi
    elapsed=$(seconds "$t0" "$(now)")
    echo "$label, statement_timeout = $timeout: error after $elapsed s: $out"
    [[ "$out" == *"canceling statement due to statement timeout"* ]] || problem "$label: unexpected error: $out"
    below "$elapsed" "$4" || problem "$label: took $elapsed s with statement_timeout = $timeout"
}
timed_error "full index scan" 50ms "$FULL_SCAN" 1.0
timed_error "200 full index scans" 50ms "$MANY_SCANS" 1.0
timed_error "200 full index scans" 1s "$MANY_SCANS" 2.0

# pg_cancel_backend from another session, half a second into the 200 scans.
sql $P "${SCAN_SETTINGS[@]}" -c "SET application_name = 'long_scan'" -c "$MANY_SCANS" >"$WORK/scan.out" 2>&1 &
scan=$!
t0=$(now)
sleep 0.5
scan_pid=$(sql $P -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'long_scan' AND state = 'active'")
[[ -n "$scan_pid" ]] || fail "the 200 scans were not running 0.5 s after they started: $(cat "$WORK/scan.out")"
cancel_at=$(sql $P -c "SELECT extract(epoch FROM clock_timestamp()) FROM (SELECT pg_cancel_backend($scan_pid) AS ok OFFSET 0) s WHERE ok")
scan_rc=0
wait $scan || scan_rc=$?
ended=$(now)
[[ -n "$cancel_at" ]] || fail "pg_cancel_backend($scan_pid) failed"
((scan_rc != 0)) || fail "the 200 scans finished despite pg_cancel_backend"
grep -q "canceling statement due to user request" "$WORK/scan.out" || problem "cancelled scans: unexpected output: $(cat "$WORK/scan.out")"
latency=$(seconds "$cancel_at" "$ended")
echo "figure: 200 full index scans, pg_cancel_backend after $(seconds "$t0" "$cancel_at") s: ended $latency s after the cancel"
below "$latency" 1.0 || problem "the index scans ended $latency s after pg_cancel_backend"
check "session usable after the cancels" 1 "$(sql $P -c "SELECT 1")"

# ---------------------------------------------------------------------------------------------------
# 3. pg_cancel_backend stops CREATE INDEX in each phase
sql $P -c "DROP INDEX big_v"
# cancel_when PHASE DELAY: waits until a CREATE INDEX reports PHASE, DELAY seconds more if it still does,
# cancels it and returns the time of the cancel (epoch seconds).
sql $P -q <<'SQL'
CREATE FUNCTION cancel_when(target text, delay float8) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    p int;
BEGIN
    FOR i IN 1..6000 LOOP
        PERFORM pg_stat_clear_snapshot();
        -- A phase run on more than one thread says how many: 'performing k-means on 2 threads'.
        SELECT pid INTO p FROM pg_stat_progress_create_index WHERE phase = target OR phase LIKE target || ' on % threads';
        IF p IS NOT NULL THEN
            PERFORM pg_sleep(delay);
            PERFORM pg_stat_clear_snapshot();
            IF EXISTS (SELECT FROM pg_stat_progress_create_index WHERE pid = p AND (phase = target OR phase LIKE target || ' on % threads')) THEN
                PERFORM pg_cancel_backend(p);
                RETURN extract(epoch FROM clock_timestamp());
            END IF;
            RETURN NULL;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN NULL;
END $$;
SQL
# Each spec is PHASE:DELAY:LISTS. k-means gets 2,000 lists (100,000 samples): with 400 lists on this
# well-clustered table it converges in a few tenths of a second on a fast machine, shorter than the delay.
for spec in "performing k-means:0.3:2000" "assigning tuples:0.1:400" "loading tuples:0.2:400"; do
    IFS=: read -r phase delay lists <<<"$spec"
    sql $P -c "SET max_parallel_maintenance_workers = 1" -c "CREATE INDEX big_cancel ON big USING ivfflat (v vector_l2_ops) WITH (lists = $lists)" >"$WORK/build.out" 2>&1 &
    build=$!
    cancel_at=$(sql $P -c "SELECT cancel_when('building index: $phase', $delay)")
    build_rc=0
    wait $build || build_rc=$?
    ended=$(now)
    if [[ -z "$cancel_at" ]]; then
        problem "CREATE INDEX was never seen in phase '$phase' (status $build_rc): $(cat "$WORK/build.out")"
        sql $P -c "DROP INDEX IF EXISTS big_cancel"
        continue
    fi
    latency=$(seconds "$cancel_at" "$ended")
    echo "CREATE INDEX cancelled while $phase: ended $latency s after pg_cancel_backend: $(cat "$WORK/build.out")"
    ((build_rc != 0)) || problem "CREATE INDEX finished despite the cancel while $phase"
    grep -q "canceling statement due to user request" "$WORK/build.out" || problem "cancel while $phase: unexpected output: $(cat "$WORK/build.out")"
    below "$latency" 1.0 || problem "CREATE INDEX ended $latency s after pg_cancel_backend while $phase"
    check "no index left after the cancel while $phase" 0 "$(sql $P -c "SELECT count(*) FROM pg_class WHERE relname = 'big_cancel'")"
done

# ---------------------------------------------------------------------------------------------------
# 4. memory across rescans. jit = off: with enable_seqscan = off the plan's cost passes jit_above_cost,
# and loading LLVM would add some 75 MB to the backend in the middle of the measurement.
sql $P -q <<SQL
CREATE TABLE r (id int PRIMARY KEY, v vector(32));
INSERT INTO r SELECT i, $(vector_expr i 32) FROM generate_series(1, 10000) i;
CREATE INDEX r_v ON r USING ivfflat (v vector_l2_ops) WITH (lists = 20);
ANALYZE r;
SQL
RESCAN="SELECT count(*) FROM generate_series(1, NNN) g CROSS JOIN LATERAL (SELECT id FROM r ORDER BY v <-> (SELECT v FROM r WHERE id = (g % 1000) + 1) LIMIT 3) s"
# The same nested loop over a btree index, for PostgreSQL's own growth (generate_series keeps its rows).
CONTROL="SELECT count(*) FROM generate_series(1, NNN) g CROSS JOIN LATERAL (SELECT id FROM r WHERE id >= (SELECT id FROM r WHERE id = (g % 1000) + 1) ORDER BY id LIMIT 3) s"
plan=$(sql $P -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) ${RESCAN/NNN/1000}")
[[ "$plan" == *"Index Scan using r_v"* && "$plan" == *"Nested Loop"* ]] || fail "the rescan query does not rescan the ivfflat index: $plan"

# measure QUERY: runs QUERY with N = 1,000 (twice: the first loads caches), then N = 10,000 in one backend,
# printing VmHWM, RssAnon and the total of pg_backend_memory_contexts after each.
measure() {
    psql -X -q -At -h 127.0.0.1 -p $P -U postgres -v ON_ERROR_STOP=1 <<EOF
SELECT pg_backend_pid() AS pid \gset
\setenv PGIVF_PID :pid
SET jit = off;
SET enable_seqscan = off;
SET ivfflat.probes = 1;
${1/NNN/1000};
${1/NNN/1000};
\! awk '/^(VmHWM|RssAnon)/ { printf "%s %s ", \$1, \$2 }' /proc/\$PGIVF_PID/status
SELECT 'contexts ' || sum(total_bytes) FROM pg_backend_memory_contexts;
${1/NNN/10000};
\! awk '/^(VmHWM|RssAnon)/ { printf "%s %s ", \$1, \$2 }' /proc/\$PGIVF_PID/status
SELECT 'contexts ' || sum(total_bytes) FROM pg_backend_memory_contexts;
EOF
}
t0=$(now)
out=$(measure "$RESCAN")
echo "rescans: $(seconds "$t0" "$(now)") s for 12,000 rescans of the ivfflat scan"
read -r -a m <<<"$(tr '\n' ' ' <<<"$out")"
# m: 3000 3000 VmHWM: a RssAnon: b contexts c 30000 VmHWM: d RssAnon: e contexts f
[[ "${m[0]} ${m[1]} ${m[8]}" == "3000 3000 30000" ]] || fail "unexpected output from the rescan queries: $out"
hwm_growth=$((m[10] - m[3]))
anon_growth=$((m[12] - m[5]))
ctx_growth=$((m[14] - m[7]))
echo "figure: ivfflat rescans: after N = 1,000: VmHWM ${m[3]} kB, RssAnon ${m[5]} kB, contexts ${m[7]} bytes;" \
    "after N = 10,000: VmHWM ${m[10]} kB, RssAnon ${m[12]} kB, contexts ${m[14]} bytes;" \
    "growth: VmHWM $hwm_growth kB, RssAnon $anon_growth kB, contexts $ctx_growth bytes"
out=$(measure "$CONTROL")
read -r -a c <<<"$(tr '\n' ' ' <<<"$out")"
echo "btree control, same nested loop: VmHWM ${c[3]} -> ${c[10]} kB ($((c[10] - c[3])) kB), RssAnon ${c[5]} -> ${c[12]} kB ($((c[12] - c[5])) kB)"
((hwm_growth < 5 * 1024)) || problem "VmHWM grew by $hwm_growth kB from 1,000 to 10,000 rescans"
((anon_growth < 5 * 1024)) || problem "RssAnon grew by $anon_growth kB from 1,000 to 10,000 rescans"
((ctx_growth < 1024 * 1024)) || problem "memory contexts grew by $ctx_growth bytes from 1,000 to 10,000 rescans"

# ---------------------------------------------------------------------------------------------------
# 5. A scan's memory: an iterative scan stops reading lists once its buffers pass work_mem ×
# ivfflat.scan_mem_multiplier (and says so); a scan whose buffers the system cannot give ends in a
# clean "out of memory" ERROR (53200), not a process abort that restarts every session. The
# quantized lists of a spilling index hold two codes a row: a scan of every list queues 400,000.
sql $P -c "DROP INDEX IF EXISTS big_v" -c "SET maintenance_work_mem = '256MB'" \
    -c "CREATE INDEX big_q ON big USING ivfflat (v vector_l2_ops) WITH (lists = 50, quantizer = 'rabitq')"
ITERATIVE=(-c "SET jit = off" -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 1" -c "SET ivfflat.max_probes = 50"
    -c "SET ivfflat.iterative_scan = relaxed_order" -c "SET client_min_messages = debug1")
# Every row is rejected by the WHERE clause: the scan reads list after list, up to max_probes.
lists_read() {
    sql $P "${ITERATIVE[@]}" -c "SET work_mem = '$1'" -c "$FULL_SCAN" 2>&1 | tee "$WORK/iterative-$1.out" |
        sed -n 's/.*ivfflat scan: \([0-9]*\) lists probed.*/\1/p'
}
read_64mb=$(lists_read 64MB)
read_1mb=$(lists_read 1MB)
echo "figure: an iterative scan rejecting every row read $read_64mb lists at work_mem = 64MB, $read_1mb at 1MB"
check "lists read by the iterative scan at work_mem = 64MB" 50 "$read_64mb"
[[ -n "$read_1mb" ]] && ((read_1mb > 1 && read_1mb < 50)) || problem "at work_mem = 1MB the iterative scan read ${read_1mb:-no} lists"
grep -q "NOTICE:  ivfflat index scan stopped reading lists at its memory limit" "$WORK/iterative-1MB.out" ||
    problem "no NOTICE of the memory limit: $(cat "$WORK/iterative-1MB.out")"
grep -q "stopped reading lists" "$WORK/iterative-64MB.out" && problem "a NOTICE of the memory limit at work_mem = 64MB"
taken_kb=$(sed -n 's/^DETAIL:  Its buffers took \([0-9]*\) kB.*/\1/p' "$WORK/iterative-1MB.out")
# work_mem × the default multiplier (2 MB) and what the list that crossed it added.
((${taken_kb:-99999} <= 8 * 1024)) || problem "the iterative scan's buffers took ${taken_kb:-?} kB at work_mem = 1MB"

# The same cluster with 16 MB of private data per process (RLIMIT_DATA; a backend needs about 4):
# malloc fails as it does under vm.overcommit_memory = 2 when memory runs out.
stop_cluster "$DIR_main"
runuser -u postgres -- bash -c "ulimit -d 16384 && exec env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE '$PG_BIN/pg_ctl' -D '$DIR_main/data' -l '$DIR_main/server.log' -w -t 120 start" >/dev/null
limited() {
    psql -X -q -At -h 127.0.0.1 -p $P -U postgres -v VERBOSITY=verbose "${ITERATIVE[@]}" -c "SET client_min_messages = notice" "$@" -c "SELECT 'alive'" 2>&1
}
out=$(limited -c "SELECT count(*) FROM (SELECT id FROM big ORDER BY v <-> (SELECT v FROM base WHERE id = 1) LIMIT 10) s")
check "an ordinary scan within 16 MB" "$(printf '10\nalive')" "$out"
for case in "every list at once|SET ivfflat.probes = 50" "an iterative scan with work_mem = 1GB|SET work_mem = '1GB'"; do
    label=${case%%|*}
    out=$(limited -c "SET ivfflat.scan_mem_multiplier = 1000" -c "${case#*|}" -c "$FULL_SCAN")
    echo "16 MB of private data, $label: $(grep ERROR <<<"$out")"
    [[ "$out" == *"ERROR:  53200: out of memory"* && "$out" == *'DETAIL:  Failed to grow the buffers of a scan of ivfflat index "big_q"'* ]] ||
        problem "$label within 16 MB: no clean out-of-memory error: $out"
    [[ "$out" == *alive ]] || problem "$label within 16 MB: the session did not go on: $out"
done
assert_no_crash "$DIR_main" || problem "the server log shows a crash after the scans within 16 MB"
stop_cluster "$DIR_main"
restart "$DIR_main"

assert_no_crash "$DIR_main" || problem "the server log shows a crash"
if ((${#problems[@]})); then
    printf 'problem: %s\n' "${problems[@]}" >&2
    fail "${#problems[@]} problems"
fi
echo "ok: limits hold and long work stops promptly"
