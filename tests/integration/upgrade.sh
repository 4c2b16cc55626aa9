#!/usr/bin/env bash
# ALTER EXTENSION pgivf UPDATE from the first release (0.1.0, its install script kept in tests/upgrade
# exactly as it shipped) to the current version: an index built under 0.1.0 keeps answering queries,
# the new functions appear, and the upgraded extension's objects are exactly those of a fresh install.
source "$(dirname "$0")/lib.sh"
EXTDIR="$("$PG_CONFIG" --sharedir)/extension"
CURRENT=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -1)
# The PGXN metadata and the upgrade path follow the crate's version.
meta_versions=$(python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); print(m["version"], m["provides"]["pgivf"]["version"])' "$ROOT/META.json")
check "META.json versions" "$CURRENT $CURRENT" "$meta_versions"
# Every release's upgrade script is installed, so that any earlier version can reach this one.
for script in "$ROOT"/sql/pgivf--*--*.sql; do
    [[ -f "$EXTDIR/$(basename "$script")" ]] || fail "the upgrade script $(basename "$script") is not installed"
done
# The old install script is only needed to create the old version; install it for the test's duration
# unless a real 0.1.0 installation already put it there.
if [[ ! -f "$EXTDIR/pgivf--0.1.0.sql" ]]; then
    cp "$ROOT/tests/upgrade/pgivf--0.1.0.sql" "$EXTDIR/pgivf--0.1.0.sql"
    trap 'rm -f "$EXTDIR/pgivf--0.1.0.sql"; cleanup' EXIT
fi
cmp -s "$ROOT/tests/upgrade/pgivf--0.1.0.sql" "$EXTDIR/pgivf--0.1.0.sql" || fail "$EXTDIR/pgivf--0.1.0.sql is not the released 0.1.0 script"

new_cluster main
P=$PORT_main
check "an update path from 0.1.0" "t" "$(sql $P -c "SELECT path IS NOT NULL FROM pg_extension_update_paths('pgivf') WHERE source = '0.1.0' AND target = '$CURRENT'")"
sql $P -c "CREATE DATABASE old"
sql $P -d old -c "CREATE EXTENSION pgivf VERSION '0.1.0'"
check "version installed" "0.1.0" "$(sql $P -d old -c "SELECT extversion FROM pg_extension WHERE extname = 'pgivf'")"
check "no ivfflat_stats in 0.1.0" "0" "$(sql $P -d old -c "SELECT count(*) FROM pg_proc WHERE proname = 'ivfflat_stats'")"
sql $P -d old -c "CREATE TABLE items (id int PRIMARY KEY, v vector(16))"
sql $P -d old -c "INSERT INTO items SELECT i, $(vector_expr i 16) FROM generate_series(1, 3000) i"
sql $P -d old -c "CREATE INDEX items_v ON items USING ivfflat (v vector_l2_ops) WITH (lists = 10)"
query="SET ivfflat.probes = 3; SELECT string_agg(id::text, ',') FROM (SELECT id FROM items ORDER BY v <-> (SELECT v FROM items WHERE id = 7) LIMIT 10) s"
before=$(sql $P -d old -c "$query")

sql $P -d old -c "ALTER EXTENSION pgivf UPDATE"
check "version after ALTER EXTENSION UPDATE" "$CURRENT" "$(sql $P -d old -c "SELECT extversion FROM pg_extension WHERE extname = 'pgivf'")"
check "same answers from the index built under 0.1.0" "$before" "$(sql $P -d old -c "$query")"
sql $P -d old -c "INSERT INTO items SELECT i, $(vector_expr i 16) FROM generate_series(3001, 3500) i"
check "ivfflat_stats on the index built under 0.1.0" "10|3500|3000" \
    "$(sql $P -d old -c "SELECT lists, rows, rows_at_build FROM ivfflat_stats('items_v')")"
out=$(sql $P -d old -c "SELECT ivfflat_verify('items_v', true)")
[[ "$out" == "ivfflat index OK"* ]] || fail "items_v after the upgrade: $out"
echo "ok: the index verifies after the upgrade and more inserts"

# Upgraded and fresh installs must have the same objects with the same definitions.
sql $P -c "CREATE DATABASE fresh"
sql $P -d fresh -c "CREATE EXTENSION pgivf"
describe="
SELECT pg_describe_object(d.classid, d.objid, 0) || coalesce(' | ' || (
        SELECT concat_ws(' ', p.prorettype::regtype, p.proargtypes::regtype[], p.proallargtypes::regtype[],
            p.proargnames, p.proargmodes, p.provolatile, p.proparallel, p.proisstrict, p.prosrc, p.probin,
            pg_get_expr(p.proargdefaults, 0))
        FROM pg_proc p WHERE d.classid = 'pg_proc'::regclass AND p.oid = d.objid), '')
    || coalesce(' | ' || obj_description(d.objid, d.classid::regclass::text), '')
FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'pgivf'
UNION ALL
-- operators and support functions of the ivfflat operator families (members of the families, not of
-- the extension)
SELECT concat_ws(' ', f.opfname, 'operator', o.amopstrategy, o.amoplefttype::regtype, o.amoprighttype::regtype,
        o.amopopr::regoperator, o.amoppurpose, o.amopsortfamily)
FROM pg_amop o JOIN pg_opfamily f ON f.oid = o.amopfamily JOIN pg_am a ON a.oid = f.opfmethod WHERE a.amname = 'ivfflat'
UNION ALL
SELECT concat_ws(' ', f.opfname, 'function', p.amprocnum, p.amproclefttype::regtype, p.amprocrighttype::regtype, p.amproc::regprocedure)
FROM pg_amproc p JOIN pg_opfamily f ON f.oid = p.amprocfamily JOIN pg_am a ON a.oid = f.opfmethod WHERE a.amname = 'ivfflat'
ORDER BY 1"
sql $P -d old -c "$describe" >"$WORK/upgraded.txt"
sql $P -d fresh -c "$describe" >"$WORK/fresh.txt"
diff "$WORK/upgraded.txt" "$WORK/fresh.txt" >"$WORK/objects.diff" ||
    fail "upgraded and fresh installs differ: $(head -20 "$WORK/objects.diff")"
objects=$(wc -l <"$WORK/fresh.txt")
echo "ok: the upgraded extension has the same $objects objects and operator family members as a fresh install, definitions and comments included"
echo "figure: upgrade 0.1.0 -> $CURRENT with ALTER EXTENSION UPDATE: $objects objects and operator family members identical to a fresh install"
