# Shared helpers for the integration tests. Each test starts its own throwaway clusters under
# $PGIVF_WORK (given by tests/run.sh, or a temporary directory) and stops them on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/cluster.sh"
WORK="${PGIVF_WORK:-$(mktemp -d /tmp/pgivf-it.XXXXXX)}"
mkdir -p "$WORK"
chmod 755 "$WORK"
CLUSTERS=()
cleanup() {
    for dir in "${CLUSTERS[@]}"; do stop_cluster "$dir"; done
}
trap cleanup EXIT

# new_cluster NAME [EXTRA_CONF...]: starts a cluster, prints nothing, sets PORT_<NAME> and DIR_<NAME>.
new_cluster() {
    local name=$1
    shift
    local dir="$WORK/$name" port
    port="$(free_port)"
    rm -rf "$dir"
    start_cluster "$dir" "$port" "$@"
    CLUSTERS+=("$dir")
    printf -v "PORT_$name" '%s' "$port"
    printf -v "DIR_$name" '%s' "$dir"
}

# sql PORT [psql args...]: runs psql as postgres against the cluster on PORT, unaligned, quiet.
sql() {
    local port=$1
    shift
    psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

check() {
    local description=$1 expected=$2 actual=$3
    if [[ "$expected" != "$actual" ]]; then
        fail "$description: expected '$expected', got '$actual'"
    fi
    echo "ok: $description ($actual)"
}

# A random-looking but deterministic vector expression of dimension $2 for row expression $1.
vector_expr() {
    echo "(SELECT array_agg(sin(($1) * 0.37 + d * 1.3) + cos(($1) * 0.11 * d)) FROM generate_series(1, $2) d)::vector($2)"
}

# crash DIR: kills the postmaster and all its children with SIGKILL at once, like a power failure.
# The postmaster is stopped first: a backend it forked between the listing of its children and the
# kill would outlive the crash, and one that then waits on a lightweight lock of a killed backend
# waits forever (those waits do not watch for postmaster death), and so would its client and the test.
crash() {
    local dir=$1 pm
    pm=$(head -1 "$dir/data/postmaster.pid")
    kill -STOP "$pm" 2>/dev/null || true
    kill -9 "$pm" $(pgrep -P "$pm") 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pm" 2>/dev/null || break; sleep 0.1; done
}

# restart DIR: starts a cluster again after a crash (runs crash recovery).
restart() {
    local dir=$1
    runuser -u postgres -- env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 start >/dev/null
}

# clean_error SQLSTATE: an error PostgreSQL reports properly for damaged data (index corrupted, data
# corrupted, internal, data exception, a block that does not exist...), not a timeout or a lost
# connection.
clean_error() {
    [[ "$1" =~ ^(XX00[0-2]|22[0-9A-Z]{3}|42[0-9A-Z]{3}|0A000|58P01|58030)$ ]]
}

# abort_error LOG: prints the first error raised inside a transaction's abort (a resource released
# twice), which shows only as a "while in ABORT state" warning; fails when there is none.
abort_error() {
    grep -q "while in ABORT state" "$1" && grep -m1 -A1 "while in ABORT state" "$1" | tr '\n' ' '
}
