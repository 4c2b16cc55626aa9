# Throwaway PostgreSQL clusters for the demo, the tests and the benchmarks. Source this file.
#
# PostgreSQL refuses to run as root, so clusters run as the `postgres` user in a temporary directory,
# on a free loopback port, with the settings of pg_test_configs/base.conf (plus any extra fragments).
# Clients connect over TCP as the `postgres` superuser with trust authentication.

# PGIVF_PG_CONFIG picks another PostgreSQL than the one on the PATH (tests of other versions).
PG_CONFIG="${PGIVF_PG_CONFIG:-pg_config}"
PG_BIN="$("$PG_CONFIG" --bindir)"
PGIVF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_cluster DIR PORT [EXTRA_CONF_FILE...]: initdb in DIR/data and start; log in DIR/server.log.
start_cluster() {
    local dir=$1 port=$2
    shift 2
    mkdir -p "$dir"
    chown postgres: "$dir"
    chmod 700 "$dir"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
    {
        cat "$PGIVF_ROOT/pg_test_configs/base.conf"
        for extra in "$@"; do cat "$extra"; done
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir'"
    } >>"$dir/data/postgresql.conf"
    # RUST_BACKTRACE in the environment would make pgrx append backtraces to error details.
    runuser -u postgres -- env -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
}

stop_cluster() {
    local dir=$1
    [[ -f "$dir/data/postmaster.pid" ]] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# A backend that died of a signal takes the whole server down: no test may leave one in the log.
assert_no_crash() {
    local dir=$1
    if grep -E "terminated by signal|was terminated by exception|PANIC" "$dir/server.log" >/dev/null; then
        echo "server crash found in $dir/server.log:" >&2
        grep -E "terminated by signal|was terminated by exception|PANIC" "$dir/server.log" >&2
        return 1
    fi
}
