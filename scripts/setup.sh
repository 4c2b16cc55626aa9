#!/usr/bin/env bash
# Installs everything pgivf needs on a Debian bookworm machine (as root), then builds and installs the
# extension into the system PostgreSQL 15, and into the other versions in PGIVF_VERSIONS (e.g.
# "15 17 18"; scripts/setup-postgres.sh makes them available). Safe to run again: every step is
# skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PGRX_VERSION=0.18.0
need_packages=()
for pkg in postgresql-15 postgresql-server-dev-15 sudo clang libclang-dev pkg-config make python3 python3-venv libipc-run-perl patchelf; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_packages+=("$pkg")
done
if ((${#need_packages[@]})); then
    echo "==> installing Debian packages: ${need_packages[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_packages[@]}" >/dev/null
fi
# Debian's postgresql package starts a cluster on port 5432; our clusters are throwaway ones, so leave it be.

export PATH="$HOME/.cargo/bin:$PATH"
if [[ "$(cargo pgrx --version 2>/dev/null || true)" != "cargo-pgrx $PGRX_VERSION" ]]; then
    echo "==> installing cargo-pgrx $PGRX_VERSION (takes a few minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi
VERSIONS=(${PGIVF_VERSIONS:-15})
declare -A PG_CONFIGS
init_args=()
for version in "${VERSIONS[@]}"; do
    PG_CONFIGS[$version]=$(bash scripts/setup-postgres.sh "$version")
    init_args+=("--pg$version" "${PG_CONFIGS[$version]}")
done
configured=1
for version in "${VERSIONS[@]}"; do
    grep -q "^pg$version *= *\"${PG_CONFIGS[$version]}\"" "$HOME/.pgrx/config.toml" 2>/dev/null || configured=0
done
if ((!configured)); then
    echo "==> cargo pgrx init ${init_args[*]}"
    cargo pgrx init "${init_args[@]}" >/dev/null
fi

if [[ "${PGIVF_SKIP_INSTALL:-0}" != 1 ]]; then
    for version in "${VERSIONS[@]}"; do
        pg_config=${PG_CONFIGS[$version]}
        echo "==> building and installing pgivf for PostgreSQL $version (release)"
        # Unlink the old library first: servers that have it loaded keep their copy (overwriting it
        # in place would change code under them), and a failed build cannot pass for a good one.
        rm -f "$("$pg_config" --pkglibdir)/pgivf.so"
        cargo pgrx install --release --pg-config "$pg_config" 2>&1 | grep -E "^(error|warning: unused)|Installing|Finished" || true
        test -f "$("$pg_config" --pkglibdir)/pgivf.so" || { echo "pgivf.so was not installed for PostgreSQL $version" >&2; exit 1; }
    done
fi
