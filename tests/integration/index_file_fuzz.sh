#!/usr/bin/env bash
# Random damage to quantized index files. Builds PGIVF_INDEX_FUZZ_CASES (default 24) small indexes,
# each with a quantizer, re-rank source, spill setting, operator class and dimension drawn from a
# seeded generator (PGIVF_INDEX_FUZZ_SEED, default 1), stops the cluster, damages one page of each
# file (flipped bits, a span of random bytes, a garbage page, or a u32/u16 overwritten with a value
# chosen to hurt: 0, 0xFFFFFFFF, NaN, the page count, ...), restarts it, and runs on every index
# ivfflat_verify(heapallindexed), ordered scans by all three operators, a filtered scan, a radius
# query, an insert, a delete, VACUUM and ivfflat_stats, each in its own session under
# statement_timeout. Each must end by itself, with success or a clean error; no read may change
# the index's size; the server must never crash. bad_input.sh holds the targeted damage (each
# bug this found has a kind there); this one looks for what nobody thought of.
source "$(dirname "$0")/lib.sh"
CASES=${PGIVF_INDEX_FUZZ_CASES:-24}
SEED=${PGIVF_INDEX_FUZZ_SEED:-1}
new_cluster fuzz
P=$PORT_fuzz
problems=()
problem() {
    echo "FAIL: $*" >&2
    problems+=("$*")
}

cat >"$WORK/damage.py" <<'PY'
#!/usr/bin/env python3
"""index_file_fuzz.sh's generator: `plan SEED CASES` prints one index per line (case, dim, WITH
options, operator class); `damage SEED CASE FILE` damages one page of FILE and prints what it did."""
import random
import struct
import sys

BLOCK = 8192
HEADER = 24
OPTIONS = ["quantizer = 'rabitq'", "quantizer = 'rabitq', rerank = 'heap'", "quantizer = 'sq8'",
           "quantizer = 'sq8', rerank = 'heap'", "quantizer = 'rabitq', spill = off",
           "quantizer = 'sq8', spill = on", "quantizer = 'rabitq', rerank = 'heap', spill = on"]
OPCLASSES = ["vector_l2_ops", "vector_ip_ops", "vector_cosine_ops"]
DIMS = [16, 64, 130]


def plan(seed, cases):
    for case in range(cases):
        rng = random.Random(seed * 100003 + case)
        print(case, rng.choice(DIMS), rng.choice(OPTIONS), rng.choice(OPCLASSES), sep='|')


def damage(seed, case, path):
    rng = random.Random(seed * 7919 + case)
    with open(path, 'rb') as f:
        buf = bytearray(f.read())
    pages = len(buf) // BLOCK
    kind = rng.choice(['flip', 'span', 'garbage', 'u32', 'u16', 'u32', 'flip'])
    page = rng.randrange(1, pages) if rng.random() < 0.9 else 0
    base = page * BLOCK
    what = kind
    if kind == 'flip':
        for _ in range(rng.choice([1, 4, 32])):
            buf[base + rng.randrange(HEADER, BLOCK)] ^= 1 << rng.randrange(8)
    elif kind == 'span':
        at = rng.randrange(HEADER, BLOCK - 256)
        length = rng.choice([8, 64, 256])
        buf[base + at:base + at + length] = bytes(rng.randrange(256) for _ in range(length))
        what += f' of {length} bytes at {at}'
    elif kind == 'garbage':
        buf[base + HEADER:base + BLOCK] = bytes(rng.randrange(256) for _ in range(BLOCK - HEADER))
    elif kind == 'u32':
        at = HEADER + 4 * rng.randrange((BLOCK - HEADER - 4) // 4)
        value = rng.choice([0, 0xFFFFFFFF, 0x7FC00000, 0x7F800000, pages, pages + 5, 1 << 31, rng.randrange(1 << 32)])
        struct.pack_into('<I', buf, base + at, value)
        what += f' at {at} = {value:#x}'
    else:
        at = HEADER + 2 * rng.randrange((BLOCK - HEADER - 2) // 2)
        value = rng.choice([0, 0xFFFF, 8192, 8191, rng.randrange(1 << 16)])
        struct.pack_into('<H', buf, base + at, value)
        what += f' at {at} = {value:#x}'
    with open(path, 'wb') as f:
        f.write(buf)
    print(f'{what} on page {page} of {pages}')


if __name__ == '__main__':
    if sys.argv[1] == 'plan':
        plan(int(sys.argv[2]), int(sys.argv[3]))
    else:
        damage(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
PY

sql $P -c "CREATE EXTENSION pgivf"
for dim in 16 64 130; do
    sql $P -c "CREATE TABLE base$dim AS SELECT i AS id, i % 7 AS cat, $(vector_expr i "$dim") AS v FROM generate_series(1, 3000) i"
done
declare -A FILE QUERY
while IFS='|' read -r case dim options opclass; do
    sql $P -c "CREATE TABLE t$case AS SELECT * FROM base$dim"
    sql $P -c "CREATE INDEX idx$case ON t$case USING ivfflat (v $opclass, cat) WITH (lists = 8, $options)"
    FILE[$case]=$(sql $P -c "SELECT pg_relation_filepath('idx$case')")
    QUERY[$case]=$(sql $P -c "SELECT v FROM base$dim WHERE id = 7")
    echo "index $case: vector($dim) $opclass WITH (lists = 8, $options)"
done < <(python3 "$WORK/damage.py" plan "$SEED" "$CASES")
sql $P -c "ANALYZE"
sql $P -c "CHECKPOINT"
stop_cluster "$DIR_fuzz"
for case in "${!FILE[@]}"; do
    echo "index $case: $(python3 "$WORK/damage.py" damage "$SEED" "$case" "$DIR_fuzz/data/${FILE[$case]}")"
done
restart "$DIR_fuzz"

errors=0
for case in $(printf '%s\n' "${!FILE[@]}" | sort -n); do
    q=${QUERY[$case]}
    line="index $case:"
    while IFS='|' read -r op stmt; do
        out="$WORK/$case.$op.out"
        cat >"$WORK/$case.$op.sql" <<EOF
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET ivfflat.probes = 8;
SET statement_timeout = '3s';
SELECT pg_relation_size('idx$case') / 8192 AS index_before \\gset
$stmt;
\\echo RESULT :SQLSTATE
SELECT pg_relation_size('idx$case') / 8192 AS index_after \\gset
\\echo INDEX :index_before :index_after
EOF
        # A session the server does not end within its statement_timeout is a hang: the client gives
        # up after 20 s, and the test fails.
        if ! timeout 20 psql -X -q -At -h 127.0.0.1 -p "$P" -U postgres -v ON_ERROR_STOP=0 -f "$WORK/$case.$op.sql" >"$out" 2>"$out.err"; then
            problem "index $case/$op: the session did not end by itself or lost its connection: $(tr '\n' ' ' <"$out.err" | cut -c1-200)"
            continue
        fi
        code=$(sed -n 's/^RESULT //p' "$out")
        line+=" $op=$code"
        if [[ "$code" != 00000 ]]; then
            errors=$((errors + 1))
            if ! clean_error "$code"; then
                problem "index $case/$op: $code $(grep ERROR "$out.err" | head -1)"
            fi
        fi
        index=$(sed -n 's/^INDEX //p' "$out")
        if [[ "$op" != insert && "$op" != delete && "$op" != vacuum && -n "$index" && "${index% *}" != "${index#* }" ]]; then
            problem "index $case/$op: a read changed the index's size from ${index% *} to ${index#* } pages"
        fi
    done <<EOF
verify|SELECT ivfflat_verify('idx$case', true)
l2|SELECT count(*) FROM (SELECT id FROM t$case ORDER BY v <-> '$q' LIMIT 10000) s
ip|SELECT count(*) FROM (SELECT id FROM t$case ORDER BY v <#> '$q' LIMIT 20) s
cosine|SELECT count(*) FROM (SELECT id FROM t$case ORDER BY v <=> '$q' LIMIT 20) s
filter|SELECT count(*) FROM (SELECT id FROM t$case WHERE cat IN (1, 2) ORDER BY v <-> '$q' LIMIT 100) s
radius|SELECT count(*) FROM t$case WHERE v <-> '$q' < 1.5
insert|INSERT INTO t$case SELECT id + 100000, cat, v FROM t$case WHERE id % 10 = 0
delete|DELETE FROM t$case WHERE id % 7 = 0
vacuum|VACUUM t$case
stats|SELECT count(*) FROM ivfflat_stats('idx$case')
EOF
    echo "$line"
done
check "server still answers" 1 "$(sql $P -c "SELECT 1")"
assert_no_crash "$DIR_fuzz" || problem "the server log shows a crash"
if found=$(abort_error "$DIR_fuzz/server.log"); then problem "an error inside a transaction's abort: $found"; fi
echo "figure: $CASES damaged quantized indexes x 10 operations: $errors clean errors, the rest succeeded"
if ((${#problems[@]})); then
    printf 'problem: %s\n' "${problems[@]}" >&2
    fail "${#problems[@]} problems"
fi
echo "ok: every operation on a damaged index ended cleanly"
