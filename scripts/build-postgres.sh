#!/usr/bin/env bash
# Builds PostgreSQL MAJOR (17 or 18) from Debian's source package, once per machine, into
# $PGIVF_PG_PREFIX/MAJOR (default /opt/pgivf-postgres/MAJOR), outside the repository, and prints the
# path of its pg_config. Bookworm packages only PostgreSQL 15; trixie has postgresql-17 and unstable
# postgresql-18, and their source packages come from the distribution's own registry.
#
#   scripts/build-postgres.sh 17 [--cassert]
#
# --cassert builds with assertions (--enable-cassert): what the tests run against to catch what
# release builds hide. Safe to run again: a finished build of the same kind is reused.
set -euo pipefail
major=${1:?usage: build-postgres.sh MAJOR [--cassert]}
cassert=0
[[ "${2:-}" == --cassert ]] && cassert=1
prefix="${PGIVF_PG_PREFIX:-/opt/pgivf-postgres}/$major"
stamp="$prefix/.pgivf-build"
want="major=$major cassert=$cassert icu=1"
if [[ -x "$prefix/bin/pg_config" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$prefix/bin/pg_config"
    exit 0
fi
log() { echo "==> $*" >&2; }

need=()
for pkg in dpkg-dev build-essential bison flex libreadline-dev zlib1g-dev pkg-config libicu-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
sources=/etc/apt/sources.list.d/pgivf-postgres-src.sources
if [[ ! -f "$sources" ]]; then
    # The URI of the distribution's own list, for source packages of the newer suites only.
    uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    uri=${uri:-http://deb.debian.org/debian}
    printf 'Types: deb-src\nURIs: %s\nSuites: trixie unstable\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$uri" >"$sources"
    updated=0
fi
if ((${#need[@]})) || [[ -n "${updated+x}" ]]; then
    log "apt-get update and install: ${need[*]:-nothing}"
    apt-get update -q >/dev/null
    ((${#need[@]} == 0)) || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/pgivf-pg$major-src.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
log "fetching Debian's source of postgresql-$major"
apt-get source -q --download-only "postgresql-$major" >/dev/null
tarball=$(ls postgresql-"$major"_*.orig.tar.* | head -1)
tar xf "$tarball"
src=$(find . -maxdepth 1 -type d -name "postgresql-$major*" | head -1)
cd "$src"
options=(--prefix="$prefix" --with-icu --with-readline --with-zlib --enable-debug)
((cassert)) && options+=(--enable-cassert)
log "building PostgreSQL $(sed -n 's/^PACKAGE_VERSION=.\(.*\).$/\1/p' configure) ($( ((cassert)) && echo assert-enabled || echo release)) into $prefix; about 5 minutes on two cores"
CFLAGS="-O2" ./configure "${options[@]}" >"$work/configure.log" 2>&1 || { tail -30 "$work/configure.log" >&2; exit 1; }
make -s -j"$(nproc)" world-bin >"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; exit 1; }
rm -rf "$prefix"
make -s install-world-bin >"$work/install.log" 2>&1 || { tail -30 "$work/install.log" >&2; exit 1; }
echo "$want" >"$stamp"
echo "$prefix/bin/pg_config"
