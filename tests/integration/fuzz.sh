#!/usr/bin/env bash
# Fuzzes pgivf-core's decoders with cargo-fuzz (libFuzzer + AddressSanitizer, overflow checks and
# debug assertions on): text_parse, binary_decode and page_decode, from crates/pgivf-core/fuzz.
# Each target runs for PGIVF_FUZZ_SECONDS (default 60) from a copy of its checked-in seed corpus,
# so the repository is left as it was. Fails on any crash, panic, sanitizer report, leak or hang.
# A longer run: PGIVF_FUZZ_SECONDS=3600 bash tests/integration/fuzz.sh (see the fuzz README).
#
# Needs no PostgreSQL. cargo-fuzz wants nightly-only rustc flags (-Zsanitizer=address); the stable
# toolchain accepts them with RUSTC_BOOTSTRAP=1, which is set for this build only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export PATH="$HOME/.cargo/bin:$PATH"
START=$(date +%s)

SECONDS_PER_TARGET="${PGIVF_FUZZ_SECONDS:-60}"
TARGETS=(${PGIVF_FUZZ_TARGETS:-text_parse binary_decode page_decode})
CARGO_FUZZ_VERSION=0.13.2
FUZZ_DIR="$ROOT/crates/pgivf-core/fuzz"
TARGET_DIR="$FUZZ_DIR/target"

own_work=0
if [[ -n "${PGIVF_WORK:-}" ]]; then
    WORK="$PGIVF_WORK"
else
    WORK="$(mktemp -d /tmp/pgivf-fuzz.XXXXXX)"
    own_work=1
fi
mkdir -p "$WORK"
status=1
# A work directory of our own is removed on success and kept (crash inputs inside) on failure.
trap '[[ $own_work == 1 && $status == 0 ]] && rm -rf "$WORK"' EXIT

# libFuzzer is compiled from C++ source by the libfuzzer-sys crate and links libstdc++.
if ! command -v c++ >/dev/null 2>&1; then
    echo "==> installing g++ (libFuzzer is C++)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++ >/dev/null
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION (about a minute)"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
echo "==> $(cargo fuzz --version | head -1), $(rustc --version)"

triple="$(rustc -vV | sed -n 's/^host: //p')"
echo "==> building fuzz targets (release, debug assertions, AddressSanitizer)"
t0=$(date +%s)
if ! RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir "$FUZZ_DIR" --target "$triple" --target-dir "$TARGET_DIR" \
    --release --debug-assertions >"$WORK/build.log" 2>&1; then
    tail -60 "$WORK/build.log" | sed 's/^/    /'
    echo "FAIL: cargo fuzz build" >&2
    exit 1
fi
grep -E '^(warning|error)' "$WORK/build.log" | sort | uniq -c | sed 's/^/    /' || true
echo "    built in $(($(date +%s) - t0)) s"

failed=()
for target in "${TARGETS[@]}"; do
    binary="$TARGET_DIR/$triple/release/$target"
    [[ -x "$binary" ]] || { echo "FAIL: $binary was not built" >&2; exit 1; }
    corpus="$WORK/corpus/$target"
    artifacts="$WORK/artifacts/$target"
    rm -rf "$corpus" "$artifacts"
    mkdir -p "$corpus" "$artifacts"
    cp "$FUZZ_DIR/corpus/$target"/* "$corpus/"
    seeds=$(find "$corpus" -type f | wc -l)
    max_len=4096
    [[ $target == page_decode ]] && max_len=16384 # two 8 KiB pages
    log="$WORK/$target.log"
    echo "==> $target: ${SECONDS_PER_TARGET} s from $seeds seeds"
    rc=0
    "$binary" "$corpus" -max_total_time="$SECONDS_PER_TARGET" -max_len="$max_len" -timeout=30 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || rc=$?
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
    done_line=$(grep -E '^Done [0-9]+ runs in' "$log" | tail -1 || true)
    crashes=$(find "$artifacts" -type f | wc -l)
    if [[ $rc -ne 0 || $crashes -ne 0 || -z "$done_line" ]]; then
        failed+=("$target")
        echo "FAIL: $target: libFuzzer exited with $rc after ${runs:-?} executions (log: $log); its report:"
        grep -E -A4 'panicked at|ERROR: [A-Za-z]+Sanitizer|ERROR: libFuzzer|^SUMMARY|Test unit written' "$log" |
            grep -vE '^ +[0-9]+: |^ +at |^ +#[0-9]+ ' | head -40 | sed 's/^/    /'
        for input in "$artifacts"/*; do
            [[ -f $input ]] || continue
            echo "    input $input ($(stat -c %s "$input") bytes), first bytes:"
            od -A d -t x1z -N 256 "$input" | sed 's/^/      /'
            echo "    reproduce: $binary $input"
        done
    else
        echo "figure: fuzz $target: $runs executions ($done_line), corpus $seeds -> $(find "$corpus" -type f | wc -l) inputs, no crash"
    fi
done

echo "==> fuzzing finished in $(($(date +%s) - START)) s"
if ((${#failed[@]})); then
    echo "FAIL: crashes in: ${failed[*]} (work directory $WORK)" >&2
    exit 1
fi
status=0
