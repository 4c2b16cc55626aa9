#!/usr/bin/env bash
# Runs every pgivf test and exits non-zero if any fails:
#   1. the core crate's unit tests (plain `cargo test`),
#   2. the SQL regression tests in tests/sql (pg_regress against a throwaway cluster),
#   3. the integration tests in tests/integration (each a script with its own checks),
# on the first PostgreSQL of PGIVF_TEST_VERSIONS (default "15 17 18"), then on each other one the
# SQL regression tests and the crash-recovery and standby tests (18 is the assert-enabled build).
# The last line is the summary: "summary: N passed, M failed".
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
START=$(date +%s)

passed=0
failed=0
failures=()
skipped=()
count() { passed=$((passed + $1)); failed=$((failed + $2)); }
fail() { failures+=("$1"); }

VERSIONS=(${PGIVF_TEST_VERSIONS:-15 17 18})
echo "==> setup (PostgreSQL ${VERSIONS[*]})"
PGIVF_VERSIONS="${VERSIONS[*]}" scripts/setup.sh || { echo "setup failed"; echo "summary: 0 passed, 1 failed"; exit 1; }
declare -A PG_CONFIGS
for version in "${VERSIONS[@]}"; do PG_CONFIGS[$version]=$(scripts/setup-postgres.sh "$version"); done
export PGIVF_PG_CONFIG="${PG_CONFIGS[${VERSIONS[0]}]}"
# The upgrade test goes from the first version to 17.
[[ -n "${PG_CONFIGS[17]:-}" ]] && export PGIVF_PG17_CONFIG="${PG_CONFIGS[17]}"

echo "==> core unit tests (cargo test -p pgivf-core)"
core_log=$(mktemp)
cargo test -p pgivf-core --release 2>&1 | tee "$core_log" | grep -E "^test result|FAILED|panicked" || true
core_status=${PIPESTATUS[0]}
while read -r p f; do count "$p" "$f"; done < <(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$core_log")
if [[ $core_status -ne 0 ]]; then fail "core unit tests"; grep -q "^test result" "$core_log" || count 0 1; fi

source scripts/cluster.sh
echo "==> PostgreSQL ${VERSIONS[0]}: every test ($("$PG_CONFIG" --version))"
WORK="$(mktemp -d /tmp/pgivf-test.XXXXXX)"
chmod 755 "$WORK"
PORT="$(free_port)"
trap 'for dir in "$WORK"/main*; do stop_cluster "$dir"; done; [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"' EXIT
start_cluster "$WORK/main" "$PORT"

# run_regress DIR PORT: pg_regress of tests/sql against the cluster on PORT; counts and reports.
run_regress() {
    local dir=$1 port=$2
    mkdir -p "$dir"
    chmod 777 "$dir"
    "$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress" \
        --bindir="$PG_BIN" --host=127.0.0.1 --port="$port" --user=postgres \
        --inputdir=tests --outputdir="$dir" --load-extension=pgivf \
        --dbname=pgivf_regression --schedule=tests/schedule 2>&1 | tee "$dir/run.log" | grep -E "^(test|     |ok|not ok|#)" | sed 's/^/  /'
    count "$(grep -cE '\.\.\. ok|^ok ' "$dir/run.log")" "$(grep -cE '\.\.\. FAILED|^not ok|failed \(ignored\)' "$dir/run.log")"
    if grep -qE '\.\.\. FAILED|^not ok' "$dir/run.log"; then
        fail "pg_regress ($("$PG_CONFIG" --version))"
        [[ -f "$dir/regression.diffs" ]] && head -200 "$dir/regression.diffs"
    fi
}

# run_integration NAME...: runs tests/integration/NAME.sh each under a time limit; counts and reports.
# Seconds one integration test may take (the slowest takes about 150 s here).
TEST_TIMEOUT=${PGIVF_TEST_TIMEOUT:-900}
run_integration() {
    local name log t0 status
    for name in "$@"; do
        log="$WORK/$name.log"
        t0=$(date +%s)
        # A hung test fails with its log instead of holding CI until its own limit.
        PGIVF_PORT="$PORT" PGIVF_WORK="$WORK/$name" timeout --kill-after=30 "$TEST_TIMEOUT" bash "tests/integration/$name.sh" >"$log" 2>&1
        status=$?
        if [[ $status -eq 77 ]]; then
            # A test whose prerequisite cannot be had here (it says which); not a pass.
            echo "  skip  $name: $(grep -m1 '^skipped: ' "$log" | cut -c10-)"
            skipped+=("$name")
        elif [[ $status -eq 0 ]]; then
            count 1 0
            echo "  ok    $name ($(($(date +%s) - t0)) s)"
            # Figures for the record (crash cycles, transactions, executions, ...), one per line.
            sed -n 's/^figure: /          /p' "$log"
        else
            count 0 1
            fail "$name ($("$PG_CONFIG" --version))"
            echo "  FAIL  $name ($(($(date +%s) - t0)) s$( ((status == 124 || status == 137)) && echo ", timed out after $TEST_TIMEOUT s")); last lines of its log:"
            tail -30 "$log" | sed 's/^/        /'
            if ((status == 124 || status == 137)); then
                echo "        server processes left:"
                ps -eo pid,ppid,stat,etime,wchan:20,args | grep -E "[p]ostgres" | sed 's/^/        /'
            fi
        fi
    done
}

echo "==> SQL regression tests (pg_regress, tests/sql)"
run_regress "$WORK/regress" "$PORT"

echo "==> integration tests (tests/integration)"
names=()
for test in tests/integration/*.sh; do
    name=$(basename "$test" .sh)
    [[ "$name" == lib ]] && continue
    if [[ "$name" == pg_upgrade && -z "${PGIVF_PG17_CONFIG:-}" ]]; then
        echo "  skip  pg_upgrade (PostgreSQL 17 is not among PGIVF_TEST_VERSIONS)"
        continue
    fi
    names+=("$name")
done
run_integration "${names[@]}"

if assert_no_crash "$WORK/main"; then count 1 0; else count 0 1; fail "server log shows a crash"; fi
stop_cluster "$WORK/main"

for version in "${VERSIONS[@]:1}"; do
    export PGIVF_PG_CONFIG="${PG_CONFIGS[$version]}"
    PG_CONFIG="$PGIVF_PG_CONFIG"
    PG_BIN="$("$PG_CONFIG" --bindir)"
    echo "==> PostgreSQL $version: pg_regress, crash recovery and standby ($("$PG_CONFIG" --version)$("$PG_CONFIG" --configure | grep -q enable-cassert && echo ", assertions enabled"))"
    PORT="$(free_port)"
    start_cluster "$WORK/main-$version" "$PORT"
    run_regress "$WORK/regress-$version" "$PORT"
    if assert_no_crash "$WORK/main-$version"; then count 1 0; else count 0 1; fail "PostgreSQL $version: server log shows a crash"; fi
    stop_cluster "$WORK/main-$version"
    WORK_BASE="$WORK"
    WORK="$WORK_BASE/pg$version"
    mkdir -p "$WORK"
    run_integration crash_recovery standby
    WORK="$WORK_BASE"
done

echo "==> finished in $(($(date +%s) - START)) s"
((${#failures[@]})) && printf 'failed: %s\n' "${failures[@]}"
((${#skipped[@]})) && printf 'skipped: %s\n' "${skipped[@]}"
echo "summary: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
