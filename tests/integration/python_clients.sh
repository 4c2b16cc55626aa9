#!/usr/bin/env bash
# Real clients, unchanged: the pytest suite in tests/python runs psycopg 3 with pgvector-python's
# adapters (text and binary parameters and results, binary and text COPY, errors and their SQLSTATEs)
# and SQLAlchemy 2 with pgvector.sqlalchemy's Vector (declarative model, ivfflat indexes declared in
# the ORM, distance methods, aggregates) against pgivf, every answer checked against numpy.
# The clients (tests/python/requirements.txt, pinned) live in a virtualenv under target/pyvenv,
# created once and reused while requirements.txt and the Python interpreter stay the same.
# Prints "figure: python clients: N pytest tests passed (versions)".
source "$(dirname "$0")/lib.sh"
REQUIREMENTS="$ROOT/tests/python/requirements.txt"
VENV="$ROOT/target/pyvenv"

# A Python that can create virtualenvs (Debian's python3 needs the python3-venv package for that).
PY=python3
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q python3-venv >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null; } ||
        fail "cannot install python3-venv"
    "$PY" -c 'import venv, ensurepip' 2>/dev/null || PY=/usr/bin/python3
    "$PY" -c 'import venv, ensurepip' || fail "$PY cannot create virtualenvs even with python3-venv installed"
fi

# The virtualenv, keyed by the requirements and the interpreter; a lock keeps two runs from building
# it at once. The stamp is written last, so an interrupted install is redone next time.
mkdir -p "$ROOT/target"
exec 9>"$ROOT/target/pyvenv.lock"
flock 9
key=$({ sha256sum <"$REQUIREMENTS"; "$PY" -c 'import sys; print(sys.executable, sys.version)'; } | sha256sum | cut -d' ' -f1)
if [[ -x "$VENV/bin/python" && "$(cat "$VENV/.pgivf-key" 2>/dev/null)" == "$key" ]] && "$VENV/bin/python" -c 'import sys'; then
    echo "reusing the virtualenv $VENV"
else
    t0=$SECONDS
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: -r "$REQUIREMENTS" ||
        fail "pip install -r $REQUIREMENTS failed"
    echo "$key" >"$VENV/.pgivf-key"
    echo "created the virtualenv $VENV in $((SECONDS - t0)) s"
fi
flock -u 9

new_cluster main
P=$PORT_main
sql $P -c "CREATE DATABASE pyclients"
export PGIVF_DSN="host=127.0.0.1 port=$P user=postgres dbname=pyclients"

status=0
(cd "$ROOT/tests/python" && PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m pytest -p no:cacheprovider -q -rfE \
    --junitxml="$WORK/pytest.xml" .) || status=$?
[[ -f "$WORK/pytest.xml" ]] || fail "pytest wrote no report (exit status $status)"
read -r tests failures errors skipped < <("$VENV/bin/python" - "$WORK/pytest.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == "testsuite" else root.find("testsuite")
print(*(int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")))
PY
)
versions=$("$VENV/bin/python" -c 'from importlib.metadata import version as v
print(", ".join(f"{p} {v(p)}" for p in ("psycopg", "pgvector", "SQLAlchemy", "numpy", "pytest")))')
((status == 0)) || fail "pytest exited with status $status: $failures failed, $errors errors of $tests tests"
((tests > 0 && failures == 0 && errors == 0 && skipped == 0)) ||
    fail "pytest: $tests tests, $failures failed, $errors errors, $skipped skipped"
assert_no_crash "$DIR_main"
echo "figure: python clients: $tests pytest tests passed ($versions)"
