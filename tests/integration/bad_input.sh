#!/usr/bin/env bash
# Hostile input must give clean errors, never a backend crash, and the session must keep working:
#   1. text literals (designed edge cases, ~500 random ones, random bytes, 100,000-digit numbers,
#      16,000/16,001 elements, deep whitespace), judged against pgvector's own vector_in algorithm
#      (run in Python with the C library's strtof): same SQLSTATE, and the same float bits when accepted;
#   2. binary COPY files (\copy ... (FORMAT binary), so the data comes over the protocol) with valid
#      framing around truncated, oversized, NaN/Inf, unused != 0 and wrong-typmod vector payloads, judged
#      against pgvector's vector_recv; plus broken framing;
#   3. wrong dimensions everywhere (operators, functions, aggregates, index scans with a wrong-dimension
#      query vector, index inserts through an expression index), aggregate state arrays, casts from
#      arrays (NULLs, 2-D, NaN/Infinity, huge numerics), bad typmods, options and settings;
#   4. corrupted index files: ivfflat indexes built, the cluster stopped, one kind of damage written into
#      each index's relation file (page layout: crates/pgivf-core/src/page.rs), the cluster started, and
#      for each index ivfflat_verify(heapallindexed), a forced index scan, a VACUUM and an INSERT, each
#      in its own session under a watchdog: each must end by itself (statement_timeout 1 s) with a clean
#      result, the verifier must flag the damage, and a SELECT must never write to the table.
# Prints "bad inputs tried: N, clean errors: E, accepted: A". Needs python3 (standard library only).
source "$(dirname "$0")/lib.sh"
problems=()
problem() {
    echo "FAIL: $*" >&2
    problems+=("$*")
}

CORPUS="$ROOT/tests/integration/bad_input_corpus.py"

# ---------------------------------------------------------------------------------------------------
# 1-3: the statement corpus, in one session
new_cluster main
P=$PORT_main
sql $P -q <<'SQL'
CREATE EXTENSION pgivf;
CREATE TABLE bin_any (v vector);
CREATE TABLE bin3 (v vector(3));
CREATE TABLE wide (v vector(2001));
CREATE TABLE anyv (id int, v vector);
SET client_min_messages = warning;
CREATE INDEX bin3_v ON bin3 USING ivfflat (v) WITH (lists = 1);
CREATE INDEX anyv_v3 ON anyv USING ivfflat ((v::vector(3))) WITH (lists = 1);
SQL
for spec in l2:vector_l2_ops ip:vector_ip_ops cos:vector_cosine_ops; do
    name=${spec%%:*}
    sql $P -c "CREATE TABLE items_$name (id int PRIMARY KEY, v vector(16))"
    sql $P -c "INSERT INTO items_$name SELECT i, $(vector_expr i 16) FROM generate_series(1, 2000) i"
    sql $P -c "CREATE INDEX items_${name}_v ON items_$name USING ivfflat (v ${spec#*:}) WITH (lists = 10)"
done
sql $P -c "ANALYZE"
# The wrong-dimension query vectors must reach the index scan, not a sort over a sequential scan.
for spec in l2:'<->' ip:'<#>' cos:'<=>'; do
    plan=$(sql $P -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) SELECT id FROM items_${spec%%:*} ORDER BY v ${spec#*:} '[1,2,3]' LIMIT 5")
    [[ "$plan" == *"Index Scan using items_${spec%%:*}_v"* ]] || problem "wrong-dimension query on items_${spec%%:*} does not use the ivfflat index: $plan"
done

python3 "$CORPUS" gen "$WORK"
start=$(date +%s.%N)
rc=0
timeout 300 psql -X -q -At -h 127.0.0.1 -p $P -U postgres -v ON_ERROR_STOP=0 -f "$WORK/corpus.sql" \
    >"$WORK/corpus.out" 2>"$WORK/corpus.err" || rc=$?
echo "corpus ran in $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }") s (psql exit status $rc)"
[[ $rc -eq 0 ]] || problem "psql exited with status $rc while running the corpus (2: the connection was lost; 124: it hung)"
if ! python3 "$CORPUS" check "$WORK" | tee "$WORK/corpus.check"; then
    problem "$(grep -c '^FAIL' "$WORK/corpus.check") corpus statements did not give pgvector's result (listed above)"
fi
check "session still answers after the corpus" 1 "$(sql $P -c "SELECT 1")"
if ! assert_no_crash "$DIR_main"; then problem "the server log of the corpus cluster shows a crash"; fi
stop_cluster "$DIR_main"

# ---------------------------------------------------------------------------------------------------
# 4: corrupted index files
KINDS=(random_bytes zero_special bad_magic dir_past_end self_loop next_to_meta nan_centroid pd_lower
    first_entry meta_lists meta_metric meta_metric_high meta_flags meta_shape zero_meta garbage_page truncated tid_invalid_block tid_past_heap
    tid_offset_zero cycle q_location_p_new q_location_past_end q_location_offset q_random_codes
    q_heap_random_codes tail_to_directory dead_next_self newer_format format_1)
# Quantized lists (q_*): codes with their vectors' locations in the index, or (q_heap_*) codes only.
# A damaged location must reach the scan: without spilling, no second code of the row stands in.
declare -A INDEX_OPTIONS=([q_location_p_new]="quantizer = 'rabitq', spill = off"
    [q_location_past_end]="quantizer = 'rabitq', spill = off" [q_location_offset]="quantizer = 'sq8', spill = off"
    [q_random_codes]="quantizer = 'rabitq'" [q_heap_random_codes]="quantizer = 'sq8', rerank = 'heap'")
# Damage the verifier may miss: random bytes can be valid floats; NaN centroids are caught, but TIDs
# are only caught through heapallindexed (the rows they replaced are missing). A scan re-ranks from
# the table what damaged codes of rerank = 'heap' point at, and may find nothing wrong.
declare -A QUERY_MAY_SUCCEED=([random_bytes]=1 [nan_centroid]=1 [tid_invalid_block]=1 [tid_past_heap]=1 [tid_offset_zero]=1
    [q_random_codes]=1 [q_heap_random_codes]=1 [tail_to_directory]=1 [format_1]=1)
declare -A VERIFY_MAY_PASS=([random_bytes]=1 [format_1]=1)

FORMAT_VERSION=$(sed -n 's/^pub const FORMAT_VERSION: u32 = \([0-9]*\);$/\1/p' "$ROOT/crates/pgivf-core/src/page.rs")
[[ -n "$FORMAT_VERSION" ]] || fail "FORMAT_VERSION not found in crates/pgivf-core/src/page.rs"
new_cluster corrupt
PC=$PORT_corrupt
sql $PC -c "CREATE EXTENSION pgivf"
sql $PC -c "CREATE TABLE t_base (id int, v vector(16))"
sql $PC -c "INSERT INTO t_base SELECT i, $(vector_expr i 16) FROM generate_series(1, 5000) i"
Q=$(sql $PC -c "SELECT v FROM t_base WHERE id = 1")
for kind in "${KINDS[@]}"; do
    # One table per index, so that the damaged index is the only path to ORDER BY v <-> q.
    sql $PC -c "CREATE TABLE t_$kind AS SELECT * FROM t_base"
    sql $PC -c "CREATE INDEX idx_$kind ON t_$kind USING ivfflat (v vector_l2_ops) WITH (lists = 10${INDEX_OPTIONS[$kind]:+, ${INDEX_OPTIONS[$kind]}})"
done
# A table whose stored vectors will lie about their length (rows 1, 2, 3: 32767, -1 and 8 dimensions).
sql $PC -c "CREATE TABLE t_heap AS SELECT * FROM t_base"
sql $PC -c "CREATE INDEX idx_heap ON t_heap USING ivfflat (v vector_l2_ops) WITH (lists = 10)"
HEAP_SPEC=$(sql $PC -c "SELECT json_agg(json_build_array(v::text, CASE id WHEN 1 THEN 32767 WHEN 2 THEN -1 ELSE 8 END) ORDER BY id) FROM t_base WHERE id <= 3")
HEAP_FILE=$(sql $PC -c "SELECT pg_relation_filepath('t_heap')")
sql $PC -c "ANALYZE"
declare -A FILE
for kind in "${KINDS[@]}"; do
    plan=$(sql $PC -c "SET enable_seqscan = off" -c "EXPLAIN (COSTS OFF) SELECT id FROM t_$kind ORDER BY v <-> '$Q' LIMIT 5")
    [[ "$plan" == *"Index Scan using idx_$kind"* ]] || problem "the query on t_$kind does not use idx_$kind: $plan"
    FILE[$kind]=$(sql $PC -c "SELECT pg_relation_filepath('idx_$kind')")
done
sql $PC -c "CHECKPOINT"
stop_cluster "$DIR_corrupt"
for kind in "${KINDS[@]}"; do
    python3 "$CORPUS" corrupt "$DIR_corrupt/data/${FILE[$kind]}" "${kind/q_heap_/q_}"
done
python3 "$CORPUS" corrupt_heap "$DIR_corrupt/data/$HEAP_FILE" "$HEAP_SPEC"
restart "$DIR_corrupt"

mkdir -p "$WORK/ops"
chmod 777 "$WORK/ops"
KILLED=()
RESULT=""
# run_op KIND OP STATEMENT: runs STATEMENT in a fresh session (index scans forced, statement_timeout
# 1 s) under a watchdog, then checks that the session still answers. Sets RESULT to "CODE message"
# (00000 on success), or to "HUNG ..." when the backend had to be stopped: still running 0.5 s after
# its statement_timeout -> pg_cancel_backend; 0.5 s later -> pg_terminate_backend; 0.5 s later (or as
# soon as it holds 1.5 GB) -> SIGKILL, which makes the postmaster restart every backend.
run_op() {
    local kind=$1 op=$2 stmt=$3 base="$WORK/ops/$1.$2"
    local app="bad_input_${kind}_${op}" pid="" bg rc=0 tick=0 rss=0 peak=0 actions=""
    cat >"$base.sql" <<EOF
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET jit = off;
SET ivfflat.probes = 10;
SET statement_timeout = '1s';
SELECT pg_relation_size('t_$kind') / 8192 AS heap_before, pg_relation_size('idx_$kind') / 8192 AS index_before \\gset
$stmt;
\\echo RESULT :SQLSTATE :LAST_ERROR_MESSAGE
SELECT pg_relation_size('t_$kind') / 8192 AS heap_after, pg_relation_size('idx_$kind') / 8192 AS index_after \\gset
\\echo HEAP :heap_before :heap_after
\\echo INDEX :index_before :index_after
SELECT 1 AS alive \\gset
\\echo ALIVE :alive
EOF
    PGAPPNAME=$app psql -X -q -At -h 127.0.0.1 -p $PC -U postgres -v ON_ERROR_STOP=0 -f "$base.sql" >"$base.out" 2>"$base.err" </dev/null &
    bg=$!
    while kill -0 $bg 2>/dev/null; do
        sleep 0.1
        tick=$((tick + 1))
        if [[ -z "$pid" && $((tick % 3)) -eq 0 ]]; then
            pid=$(psql -X -At -h 127.0.0.1 -p $PC -U postgres -c "SELECT pid FROM pg_stat_activity WHERE application_name = '$app'" 2>/dev/null || true)
        fi
        if [[ -n "$pid" && -r /proc/$pid/status ]]; then
            rss=$(awk '/^VmRSS/ { print $2 }' /proc/$pid/status 2>/dev/null || echo 0)
            ((${rss:-0} > peak)) && peak=${rss:-0}
        fi
        [[ -n "$pid" ]] || continue
        if ((tick == 15)); then
            psql -X -At -h 127.0.0.1 -p $PC -U postgres -c "SELECT pg_cancel_backend($pid)" >/dev/null 2>&1 || true
            actions+="pg_cancel_backend at 1.5 s; "
        elif ((tick == 20)); then
            psql -X -At -h 127.0.0.1 -p $PC -U postgres -c "SELECT pg_terminate_backend($pid)" >/dev/null 2>&1 || true
            actions+="pg_terminate_backend at 2 s; "
        fi
        if ((tick >= 25 || ${rss:-0} > 1500000)) && grep -q '^postgres' /proc/$pid/cmdline 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
            KILLED+=("$pid")
            actions+="SIGKILL at $(awk "BEGIN { print $tick / 10 }") s; "
            break
        fi
    done
    wait $bg || rc=$?
    if [[ -n "$actions" ]]; then
        RESULT="HUNG: still running after its 1 s statement_timeout; peak RSS $((peak / 1024)) MB; $actions"
        # After a SIGKILL the postmaster reinitialises: wait until it accepts connections again.
        for _ in $(seq 1 120); do
            sql $PC -c "SELECT 1" >/dev/null 2>&1 && break
            sleep 0.5
        done
        return
    fi
    RESULT=$(sed -n 's/^RESULT //p' "$base.out")
    [[ -n "$RESULT" ]] || RESULT="NO RESULT (psql status $rc): $(tr '\n' ' ' <"$base.err" | cut -c1-200)"
    [[ "$(sed -n 's/^ALIVE //p' "$base.out")" == 1 ]] || problem "$kind/$op: the session did not answer SELECT 1 afterwards"
    local change
    if [[ "$op" == query ]] && change=$(size_change HEAP "$base.out"); then
        problem "$kind: a SELECT through the corrupted index changed the table's size $change"
    fi
    if [[ "$op" == query || "$op" == verify ]] && change=$(size_change INDEX "$base.out"); then
        problem "$kind: a read ($op) of the corrupted index changed its size $change"
    fi
}

# size_change TAG OUT: "from B to A pages" when the "TAG before after" line of OUT shows the
# relation's size changed during the statement; fails otherwise.
size_change() {
    local sizes
    sizes=$(sed -n "s/^$1 //p" "$2")
    [[ -n "$sizes" && "${sizes% *}" != "${sizes#* }" ]] && echo "from ${sizes% *} to ${sizes#* } pages"
}

# Stored vectors whose dimension count does not fit their size: reading them must fail cleanly
# ("error" operations); the others may succeed or fail cleanly.
line="heap:"
while IFS='|' read -r op must stmt; do
    run_op heap "$op" "$stmt"
    code=${RESULT%% *}
    code=${code%:}
    line+=" $op=$code"
    [[ "$code" == 00000 ]] || echo "    heap/$op: $RESULT"
    if [[ "$code" == HUNG* || "$code" == NO || "$code" == 57014 ]] || { [[ "$code" != 00000 ]] && ! clean_error "$code"; }; then
        problem "heap/$op: $RESULT"
    elif [[ "$must" == error && "$code" == 00000 ]]; then
        problem "heap/$op: a stored vector that does not fit its own size was used without an error"
    fi
done <<EOF
out|error|SELECT v FROM t_heap WHERE id = 1
distance|error|SELECT v <-> '$Q' FROM t_heap WHERE id = 2
send|error|SELECT vector_send(v) FROM t_heap WHERE id = 1
short|any|SELECT vector_dims(v), v FROM t_heap WHERE id = 3
scan|any|SELECT count(*) FROM (SELECT id FROM t_heap ORDER BY v <-> '$Q' LIMIT 10000) s
verify|error|SELECT ivfflat_verify('idx_heap', true)
build|error|CREATE INDEX idx_heap2 ON t_heap USING ivfflat (v vector_l2_ops) WITH (lists = 10)
avg|error|SELECT avg(v) FROM t_heap
insert|error|INSERT INTO t_heap SELECT id + 100000, v FROM t_heap WHERE id <= 3
vacuum_full|any|VACUUM FULL t_heap
EOF
echo "$line"

for kind in "${KINDS[@]}"; do
    line="$kind:"
    for op in verify query vacuum insert; do
        case $op in
            verify) stmt="SELECT ivfflat_verify('idx_$kind', true)" ;;
            # LIMIT above the row count: every entry of every list (probes = lists) reaches the executor.
            query) stmt="SELECT count(*) FROM (SELECT id FROM t_$kind ORDER BY v <-> '$Q' LIMIT 10000) s" ;;
            insert) stmt="INSERT INTO t_$kind SELECT id + 100000, v FROM t_base WHERE id % 10 = 0" ;;
            vacuum) stmt="VACUUM t_$kind" ;;
        esac
        run_op "$kind" "$op" "$stmt"
        code=${RESULT%% *}
        code=${code%:}
        line+=" $op=$code"
        [[ "$code" == 00000 ]] || echo "    $kind/$op: $RESULT"
        if [[ "$code" == HUNG* || "$code" == NO ]]; then
            problem "$kind/$op did not end by itself: $RESULT"
        elif [[ "$code" == 57014 ]]; then
            problem "$kind/$op ran into statement_timeout (a loop that does not end on its own): $RESULT"
        elif [[ "$code" != 00000 ]] && ! clean_error "$code"; then
            problem "$kind/$op: unexpected SQLSTATE: $RESULT"
        elif [[ "$op" == verify && "$code" == 00000 && -z "${VERIFY_MAY_PASS[$kind]:-}" ]]; then
            problem "$kind: ivfflat_verify did not flag the damage"
        elif [[ "$op" == query && "$code" == 00000 && -z "${QUERY_MAY_SUCCEED[$kind]:-}" ]]; then
            problem "$kind: the index scan returned rows from a damaged index without an error"
        fi
        # An index of a later format is refused by every operation that reads it, saying so, not
        # reported as damage (VACUUM after no deletions does not read the index).
        expected="0A000 index \"idx_$kind\": ivfflat index has format version $((FORMAT_VERSION + 1)), this pgivf reads versions 1 to $FORMAT_VERSION; REINDEX it"
        if [[ "$kind" == newer_format && "$op" != vacuum && "$RESULT" != "$expected" ]]; then
            problem "$kind/$op: expected '$expected', got '$RESULT'"
        fi
        # An index that says format 1 (0.1.0 to 0.3.0 wrote that) is read, verified and written.
        if [[ "$kind" == format_1 && "$code" != 00000 ]]; then
            problem "$kind/$op: an index of format version 1 must work: $RESULT"
        fi
    done
    echo "$line"
done

# Backends this test killed itself (hangs, reported above) show as "terminated by signal 9"; any other
# crash line is a real crash.
log="$DIR_corrupt/server.log"
if ((${#KILLED[@]} == 0)); then
    assert_no_crash "$DIR_corrupt" || problem "the server log of the corruption cluster shows a crash"
else
    pattern=$(printf '|%s' "${KILLED[@]}")
    others=$(grep -E "terminated by signal|was terminated by exception|PANIC" "$log" | grep -vE "process \(PID (${pattern:1})\) was terminated by signal 9" || true)
    [[ -z "$others" ]] || problem "crashes in the server log besides the backends this test killed: $others"
fi

if found=$(abort_error "$log"); then problem "an error inside a transaction's abort: $found"; fi

summary=($(cat "$WORK/corpus.summary"))
echo "figure: bad inputs tried: ${summary[0]}, clean errors: ${summary[1]}, accepted: ${summary[2]}; corrupted indexes: ${#KINDS[@]} x 4 operations"
if ((${#problems[@]})); then
    printf 'problem: %s\n' "${problems[@]}" >&2
    fail "${#problems[@]} problems"
fi
echo "ok: every bad input gave a clean result"
