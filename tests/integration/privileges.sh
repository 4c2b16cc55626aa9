#!/usr/bin/env bash
# A role that may not run ivfflat_verify or ivfflat_stats on a table gets its error at once, without
# taking a lock on the table first: while the owner holds the table locked, the other role's calls
# end with insufficient_privilege instead of waiting (a lock taken first would have made them wait,
# and would have let any role block the owner's writes). The SQL side of the rules is in
# tests/sql/ivfflat_privileges.sql.
source "$(dirname "$0")/lib.sh"
new_cluster main
P=$PORT_main
sql $P -c "CREATE EXTENSION pgivf"
sql $P -c "CREATE ROLE owner_role LOGIN; CREATE ROLE other_role LOGIN"
sql $P -c "GRANT CREATE, USAGE ON SCHEMA public TO owner_role"
sql $P -c "GRANT EXECUTE ON FUNCTION ivfflat_verify(regclass, boolean), ivfflat_stats(regclass) TO owner_role, other_role"
sql $P -U owner_role -d postgres -c "CREATE TABLE owned (id int, v vector(8))"
sql $P -U owner_role -d postgres -c "INSERT INTO owned SELECT i, $(vector_expr i 8) FROM generate_series(1, 2000) i"
sql $P -U owner_role -d postgres -c "CREATE INDEX owned_v ON owned USING ivfflat (v) WITH (lists = 8)"

# The owner holds the table in ACCESS EXCLUSIVE mode for a while.
sql $P -U owner_role -d postgres -c "BEGIN; LOCK TABLE owned IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(20); COMMIT" &
holder=$!
for _ in $(seq 1 100); do
    locked=$(sql $P -c "SELECT count(*) FROM pg_locks WHERE relation = 'owned'::regclass AND mode = 'AccessExclusiveLock' AND granted")
    [[ "$locked" == 1 ]] && break
    sleep 0.1
done
[[ "$locked" == 1 ]] || fail "the owner's lock was not taken"

for call in "SELECT ivfflat_verify('owned_v')" "SELECT ivfflat_verify('owned_v', true)" "SELECT count(*) FROM ivfflat_stats('owned_v')"; do
    t0=$(date +%s%N)
    out=$(PGOPTIONS="-c lock_timeout=5s -c statement_timeout=8s" psql -X -q -At -h 127.0.0.1 -p $P -U other_role -d postgres \
        -c "\\set VERBOSITY verbose" -c "$call" 2>&1 || true)
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    [[ "$out" == *"42501"* ]] || fail "$call by another role: expected insufficient_privilege (42501), got: $out"
    (( ms < 3000 )) || fail "$call by another role waited $ms ms for the owner's lock before its privilege check"
    echo "ok: $call by another role: insufficient_privilege after $ms ms, without waiting for the table's lock"
done
sql $P -c "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE relation = 'owned'::regclass AND mode = 'AccessExclusiveLock'" >/dev/null
wait "$holder" 2>/dev/null || true
out=$(sql $P -U owner_role -d postgres -c "SELECT ivfflat_verify('owned_v', true)")
[[ "$out" == "ivfflat index OK"* ]] || fail "the owner's verify: $out"
echo "ok: the owner verifies its index"
