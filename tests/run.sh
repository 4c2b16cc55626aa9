#!/usr/bin/env bash
# Runs every pgivf test and exits non-zero if any fails:
#   1. the core crate's unit tests (plain `cargo test`),
#   2. the SQL regression tests in tests/sql (pg_regress against a throwaway cluster),
#   3. the integration tests in tests/integration (each a script with its own checks).
# The last line is the summary: "summary: N passed, M failed".
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
START=$(date +%s)

passed=0
failed=0
failures=()
count() { passed=$((passed + $1)); failed=$((failed + $2)); }
fail() { failures+=("$1"); }

echo "==> setup"
scripts/setup.sh || { echo "setup failed"; echo "summary: 0 passed, 1 failed"; exit 1; }

echo "==> core unit tests (cargo test -p pgivf-core)"
core_log=$(mktemp)
cargo test -p pgivf-core --release 2>&1 | tee "$core_log" | grep -E "^test result|FAILED|panicked" || true
core_status=${PIPESTATUS[0]}
while read -r p f; do count "$p" "$f"; done < <(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/p' "$core_log")
if [[ $core_status -ne 0 ]]; then fail "core unit tests"; grep -q "^test result" "$core_log" || count 0 1; fi

source scripts/cluster.sh
WORK="$(mktemp -d /tmp/pgivf-test.XXXXXX)"
chmod 755 "$WORK"
PORT="$(free_port)"
trap 'stop_cluster "$WORK/main"; [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"' EXIT
start_cluster "$WORK/main" "$PORT"

echo "==> SQL regression tests (pg_regress, tests/sql)"
mkdir -p "$WORK/regress"
chmod 777 "$WORK/regress"
"$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress" \
    --bindir="$PG_BIN" --host=127.0.0.1 --port="$PORT" --user=postgres \
    --inputdir=tests --outputdir="$WORK/regress" --load-extension=pgivf \
    --dbname=pgivf_regression --schedule=tests/schedule 2>&1 | tee "$WORK/regress/run.log" | grep -E "^(test|     |ok|not ok|#)" | sed 's/^/  /'
count "$(grep -cE '\.\.\. ok|^ok ' "$WORK/regress/run.log")" "$(grep -cE '\.\.\. FAILED|^not ok|failed \(ignored\)' "$WORK/regress/run.log")"
if grep -qE '\.\.\. FAILED|^not ok' "$WORK/regress/run.log"; then
    fail "pg_regress"
    [[ -f "$WORK/regress/regression.diffs" ]] && head -200 "$WORK/regress/regression.diffs"
fi

echo "==> integration tests (tests/integration)"
# Seconds one integration test may take (the slowest takes about 150 s here).
TEST_TIMEOUT=${PGIVF_TEST_TIMEOUT:-900}
for test in tests/integration/*.sh; do
    [[ "$(basename "$test")" == lib.sh ]] && continue
    [[ -e "$test" ]] || continue
    name=$(basename "$test" .sh)
    log="$WORK/$name.log"
    t0=$(date +%s)
    # A hung test fails with its log instead of holding CI until its own limit.
    PGIVF_PORT="$PORT" PGIVF_WORK="$WORK/$name" timeout --kill-after=30 "$TEST_TIMEOUT" bash "$test" >"$log" 2>&1
    status=$?
    if [[ $status -eq 0 ]]; then
        count 1 0
        echo "  ok    $name ($(($(date +%s) - t0)) s)"
        # Figures for the record (crash cycles, transactions, executions, ...), one per line.
        sed -n 's/^figure: /          /p' "$log"
    else
        count 0 1
        fail "$name"
        echo "  FAIL  $name ($(($(date +%s) - t0)) s$( ((status == 124 || status == 137)) && echo ", timed out after $TEST_TIMEOUT s")); last lines of its log:"
        tail -30 "$log" | sed 's/^/        /'
        if ((status == 124 || status == 137)); then
            echo "        server processes left:"
            ps -eo pid,ppid,stat,etime,wchan:20,args | grep -E "[p]ostgres" | sed 's/^/        /'
        fi
    fi
done

if assert_no_crash "$WORK/main"; then count 1 0; else count 0 1; fail "server log shows a crash"; fi

echo "==> finished in $(($(date +%s) - START)) s"
((${#failures[@]})) && printf 'failed: %s\n' "${failures[@]}"
echo "summary: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
