#!/usr/bin/env bash
# pg_upgrade from PostgreSQL 15 to 17 keeps pgivf's data and indexes usable: a 15 cluster with flat,
# quantized and filtered ivfflat indexes (and rows inserted and deleted after their builds) is
# upgraded in place with 17's pg_upgrade; on 17 every index verifies with heapallindexed, answers
# exactly what it answered on 15, and takes inserts, deletes and VACUUM. Needs pgivf installed for
# both versions (tests/run.sh does it); PGIVF_PG17_CONFIG names 17's pg_config.
source "$(dirname "$0")/lib.sh"
NEW_CONFIG="${PGIVF_PG17_CONFIG:-}"
[[ -n "$NEW_CONFIG" && -x "$NEW_CONFIG" ]] || fail "PGIVF_PG17_CONFIG does not name PostgreSQL 17's pg_config"
NEW_BIN="$("$NEW_CONFIG" --bindir)"
[[ -f "$("$NEW_CONFIG" --pkglibdir)/pgivf.so" ]] || fail "pgivf is not installed for PostgreSQL 17"

new_cluster old
P=$PORT_old
sql $P -c "CREATE EXTENSION pgivf"
sql $P -c "CREATE TABLE items (id int PRIMARY KEY, category int, v vector(24))"
sql $P -c "INSERT INTO items SELECT i, i % 7, $(vector_expr i 24) FROM generate_series(1, 6000) i"
sql $P -c "CREATE INDEX items_flat ON items USING ivfflat (v vector_l2_ops) WITH (lists = 20)"
sql $P -c "CREATE INDEX items_rabitq ON items USING ivfflat (v vector_cosine_ops) WITH (lists = 20, quantizer = 'rabitq')"
sql $P -c "CREATE INDEX items_filtered ON items USING ivfflat (v vector_ip_ops, category) WITH (lists = 20, quantizer = 'sq8', rerank = 'heap')"
sql $P -c "INSERT INTO items SELECT i, i % 7, $(vector_expr i 24) FROM generate_series(6001, 7000) i"
sql $P -c "DELETE FROM items WHERE id % 10 = 3" -c "VACUUM items"
answers() {
    local port=$1
    for q in 5 1234 6789; do
        sql "$port" -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 4" -c "
            SELECT (SELECT string_agg(id::text, ',') FROM (SELECT id FROM items ORDER BY v <-> (SELECT v FROM items WHERE id = $q) LIMIT 10) s)
            || ' | ' || (SELECT string_agg(id::text, ',') FROM (SELECT id FROM items ORDER BY v <=> (SELECT v FROM items WHERE id = $q) LIMIT 10) s)
            || ' | ' || (SELECT string_agg(id::text, ',') FROM (SELECT id FROM items WHERE category = 2 ORDER BY v <#> (SELECT v FROM items WHERE id = $q) LIMIT 10) s)"
    done
}
before=$(answers $P)
old_version=$(sql $P -c "SHOW server_version_num")
stop_cluster "$DIR_old"

new_dir="$WORK/new"
rm -rf "$new_dir"
mkdir -p "$new_dir"
chown postgres: "$new_dir"
runuser -u postgres -- "$NEW_BIN/initdb" -D "$new_dir/data" -A trust -U postgres --no-sync >/dev/null
# pg_upgrade writes its logs into the current directory and the new cluster's.
(cd "$new_dir" && runuser -u postgres -- "$NEW_BIN/pg_upgrade" -b "$PG_BIN" -B "$NEW_BIN" \
    -d "$DIR_old/data" -D "$new_dir/data" -U postgres --link >"$new_dir/pg_upgrade.log" 2>&1) ||
    { tail -30 "$new_dir/pg_upgrade.log"; fail "pg_upgrade failed"; }
echo "ok: pg_upgrade from $old_version to $("$NEW_CONFIG" --version)"
NP=$(free_port)
{
    cat "$ROOT/pg_test_configs/base.conf"
    echo "port = $NP"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$new_dir'"
} >>"$new_dir/data/postgresql.conf"
runuser -u postgres -- env -u RUST_BACKTRACE "$NEW_BIN/pg_ctl" -D "$new_dir/data" -l "$new_dir/server.log" -w -t 60 start >/dev/null
CLUSTERS+=("$new_dir")
check "server version after the upgrade" "17" "$(sql $NP -c "SHOW server_version_num" | cut -c1-2)"
check "the same answers from the upgraded indexes" "$before" "$(answers $NP)"
for idx in items_flat items_rabitq items_filtered; do
    out=$(sql $NP -c "SELECT ivfflat_verify('$idx', heapallindexed => true)")
    [[ "$out" == "ivfflat index OK"* ]] || fail "$idx after the upgrade: $out"
    echo "ok: $idx verifies after the upgrade"
done
sql $NP -c "INSERT INTO items SELECT i, i % 7, $(vector_expr i 24) FROM generate_series(7001, 7500) i"
sql $NP -c "DELETE FROM items WHERE id % 10 = 4" -c "VACUUM items"
for idx in items_flat items_rabitq items_filtered; do
    out=$(sql $NP -c "SELECT ivfflat_verify('$idx', heapallindexed => true)")
    [[ "$out" == "ivfflat index OK"* ]] || fail "$idx after writes on 17: $out"
done
rows=$(sql $NP -c "SELECT count(*) FROM items")
check "every row found through the upgraded index after writes on 17" "$rows" \
    "$(sql $NP -c "SET enable_seqscan = off" -c "SET ivfflat.probes = 20" -c "SELECT count(*) FROM (SELECT id FROM items ORDER BY v <-> (SELECT v FROM items LIMIT 1)) s")"
assert_no_crash "$new_dir"
echo "figure: pg_upgrade 15 -> 17: 3 ivfflat indexes (flat, rabitq, sq8 with a filter column) verified and answering as before"
