#!/usr/bin/env bash
# The pgivf benchmark (see benches/README.md). `make bench ARGS="..."` runs this script.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/benches/.venv"
PY="$VENV/bin/python"

usage() {
    cat <<'EOF'
usage: bash benches/run.sh [run.sh options] [bench.py options]

  Creates benches/.venv (psycopg, numpy, matplotlib) if missing, runs scripts/setup.sh (installs and
  builds pgivf; idempotent), starts a throwaway PostgreSQL 15 cluster (pg_test_configs/base.conf +
  benches/bench.conf) unless --dsn is given, runs benches/bench.py and stops the cluster.
  Results: benches/results/<dataset>-<timestamp>.json, <dataset>-latest.md, <dataset>-latest.png.

run.sh options:
  --help          this text and bench.py's options
  --paired        instead: paired rounds (benches/paired.py): pgivf's quantized index and pgvector's
                  IVFFlat built side by side, the probes values around recall 0.95 of each timed in
                  alternation, round after round; the median and spread of the QPS ratio
  --filtered      instead: the filtered-search benchmark (benches/filtered.py: WHERE conditions of
                  50% to 0.1% of the rows, following the clusters or not; filter columns in the
                  index against plain indexes with iterative scans, pgvector's included with
                  --extension pgivf,vector)
  --criterion [FILTER...]
                  instead: the criterion benchmarks of the core crate (distance kernels in GB/s,
                  k-means training time): cargo bench -p pgivf-core --bench kernels [-- FILTER]
  --no-setup      skip scripts/setup.sh (measure the pgivf already installed)
  --keep-cluster  leave the cluster running and print how to connect and stop it

examples:
  bash benches/run.sh                                          # pgivf on the debian set
  bash benches/run.sh --extension pgivf,vector                 # side by side with pgvector
  bash benches/run.sh --quick --extension pgivf,vector         # 3-minute smoke run
  bash benches/run.sh --dataset synthetic-768 --lists 316 --probes 1,4,16,64
  bash benches/run.sh --filtered --extension pgivf,vector      # filtered search, both extensions
  bash benches/run.sh --paired --rounds 9                      # pgivf rabitq against pgvector, paired
  bash benches/run.sh --scale                                  # 100k, 300k, 731k rows of pypi-minilm-384
  make bench ARGS="--extension pgivf,vector --lists 100,250"

EOF
}

ensure_venv() {
    if [[ -x "$PY" ]] && "$PY" -c "import psycopg, numpy, matplotlib" 2>/dev/null; then
        return
    fi
    echo "==> creating $VENV (psycopg[binary], numpy, matplotlib)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q "psycopg[binary]" numpy matplotlib
}

criterion=0
filtered=0
paired=0
help=0
setup=1
keep=0
external=0
args=()
for arg in "$@"; do
    case "$arg" in
        -h | --help) help=1 ;;
        --criterion) criterion=1 ;;
        --filtered) filtered=1 ;;
        --paired) paired=1 ;;
        --no-setup) setup=0 ;;
        --keep-cluster) keep=1 ;;
        --dsn | --dsn=* | --report | --report=*) external=1; args+=("$arg") ;;
        *) args+=("$arg") ;;
    esac
done

SCRIPT="$ROOT/benches/bench.py"
((filtered)) && SCRIPT="$ROOT/benches/filtered.py"
((paired)) && SCRIPT="$ROOT/benches/paired.py"
if ((help)); then
    # The options of the harness chosen (--filtered and --paired have their own); bench.py's need
    # only argparse, the others import bench.py's numpy.
    usage
    if [[ "$SCRIPT" == */bench.py ]]; then
        python3 "$SCRIPT" --help | sed -n '/^options:/,$p'
    else
        ensure_venv
        "$PY" "$SCRIPT" --help | sed -n '/^options:/,$p'
    fi
    exit 0
fi

if ((criterion)); then
    export PATH="$HOME/.cargo/bin:$PATH"
    cd "$ROOT/crates/pgivf-core"
    if ((${#args[@]})); then
        exec cargo bench -p pgivf-core --bench kernels -- "${args[@]}"
    fi
    exec cargo bench -p pgivf-core --bench kernels
fi

# The pypi sets are built once per machine, outside the repository (an hour or more on two cores):
# say so, and show the progress, before any cluster starts.
needs_pypi=0
previous=""
for arg in ${args[@]+"${args[@]}"}; do
    case "$arg" in
        --scale | --dataset=*pypi*) needs_pypi=1 ;;
        *pypi*) [[ "$previous" == --dataset ]] && needs_pypi=1 ;;
    esac
    previous=$arg
done
if ((needs_pypi)); then
    # PGIVF_PYPI_ROWS=300000: a set of that many rows will do (built so when none is found).
    python3 "$ROOT/benches/pypi_data.py" ensure ${PGIVF_PYPI_ROWS:+--rows "$PGIVF_PYPI_ROWS"} >/dev/null
fi

ensure_venv
if ((external)); then
    exec "$PY" "$SCRIPT" "${args[@]}"
fi
if ((setup)); then
    "$ROOT/scripts/setup.sh"
fi

source "$ROOT/scripts/cluster.sh"
WORK="$(mktemp -d /tmp/pgivf-bench.XXXXXX)"
chmod 755 "$WORK"
PORT="$(free_port)"
cleanup() {
    if ((keep)); then
        echo "==> cluster left running: psql -h 127.0.0.1 -p $PORT -U postgres; stop it with:"
        echo "    runuser -u postgres -- $PG_BIN/pg_ctl -D $WORK/cluster/data stop && rm -rf $WORK"
        return
    fi
    stop_cluster "$WORK/cluster"
    rm -rf "$WORK"
}
trap cleanup EXIT
echo "==> starting a throwaway PostgreSQL 15 cluster on port $PORT ($WORK)"
start_cluster "$WORK/cluster" "$PORT" "$ROOT/benches/bench.conf"
status=0
"$PY" "$SCRIPT" --dsn "host=127.0.0.1 port=$PORT user=postgres dbname=postgres" ${args[@]+"${args[@]}"} || status=$?
if ! assert_no_crash "$WORK/cluster"; then
    status=1
fi
if ((status)); then
    echo "==> benchmark failed (status $status); server log tail:" >&2
    tail -20 "$WORK/cluster/server.log" >&2 || true
fi
exit "$status"
