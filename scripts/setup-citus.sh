#!/usr/bin/env bash
# Builds Citus from ../shared/vendor (13.2.2 for PostgreSQL 15-17, 14.0.1 for 16-18) into the
# PostgreSQL whose pg_config is given, once per machine, outside the repository: the sharding tests
# run against it. Users install Citus from Citus's own packages instead (docs/scaling.md).
#
#   scripts/setup-citus.sh PG_CONFIG
#
# Prints the Citus version installed; exits 3 (with the reason on stderr) where it cannot build.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
pg_config=${1:?usage: setup-citus.sh PG_CONFIG}
vendor="${PGIVF_VENDOR:-$ROOT/../shared/vendor}"
major=$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
if ((major <= 17)); then version=13.2.2; else version=14.0.1; fi
tarball="$vendor/citus-$version.tar.gz"
if [[ -f "$("$pg_config" --pkglibdir)/citus.so" && -f "$("$pg_config" --sharedir)/extension/citus.control" ]]; then
    echo "$version"
    exit 0
fi
[[ -f "$tarball" ]] || { echo "setup-citus.sh: $tarball not found" >&2; exit 3; }
need=()
for pkg in liblz4-dev libzstd-dev libcurl4-openssl-dev libkrb5-dev libssl-dev libselinux1-dev libpam0g-dev libxslt1-dev libreadline-dev zlib1g-dev autoconf flex bison; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    echo "==> installing ${need[*]}" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
work=$(mktemp -d /tmp/pgivf-citus.XXXXXX)
trap 'rm -rf "$work"' EXIT
tar xzf "$tarball" -C "$work"
src=$(find "$work" -maxdepth 1 -mindepth 1 -type d | head -1)
cd "$src"
# PostgreSQL 15.20 exports a function Citus 13.2.2 defines for itself.
if [[ $version == 13.2.2 && -f "$vendor/citus-13.2.2-pg15.patch" ]]; then
    patch -p1 -s <"$vendor/citus-13.2.2-pg15.patch"
fi
echo "==> building Citus $version for PostgreSQL $major (about 5 minutes)" >&2
./configure PG_CONFIG="$pg_config" --without-libcurl >"$work/configure.log" 2>&1 || { tail -20 "$work/configure.log" >&2; exit 3; }
make -s -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; exit 3; }
make -s install >"$work/install.log" 2>&1 || { tail -20 "$work/install.log" >&2; exit 3; }
echo "$version"
