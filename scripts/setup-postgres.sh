#!/usr/bin/env bash
# Makes PostgreSQL MAJOR available on this machine, once, and prints the path of its pg_config:
#   15  the distribution's packages (bookworm's own server)
#   17  Debian trixie's binary packages, unpacked under /opt/pgivf-postgres/17 (scripts/debian_postgres.py;
#       the registry serves their binaries but not their source)
#   18  built from Debian unstable's source package, with assertions, under /opt/pgivf-postgres/18
#       (scripts/build-postgres.sh): the tests' assert-enabled server
# Safe to run again: what is there is reused.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
major=${1:?usage: setup-postgres.sh MAJOR}
prefix="${PGIVF_PG_PREFIX:-/opt/pgivf-postgres}"
log() { echo "==> $*" >&2; }
case $major in
15)
    need=()
    for pkg in postgresql-15 postgresql-server-dev-15; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
    done
    if ((${#need[@]})); then
        log "installing ${need[*]}"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
    fi
    echo /usr/bin/pg_config
    ;;
17)
    pg_config="$prefix/17/usr/lib/postgresql/17/bin/pg_config"
    if [[ ! -x "$pg_config" ]] || ! "$pg_config" --version >/dev/null 2>&1; then
        command -v patchelf >/dev/null || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q patchelf >/dev/null; }
        log "unpacking PostgreSQL 17 from Debian trixie's packages into $prefix/17"
        python3 "$ROOT/scripts/debian_postgres.py" 17 trixie "$prefix/17" >/dev/null
    fi
    echo "$pg_config"
    ;;
18)
    PGIVF_PG_PREFIX="$prefix" bash "$ROOT/scripts/build-postgres.sh" 18 --cassert
    ;;
*)
    echo "setup-postgres.sh: PostgreSQL $major is not one pgivf is tested with (15, 17, 18)" >&2
    exit 2
    ;;
esac
