#!/usr/bin/env python3
"""Paired rounds: pgivf's quantized index and pgvector's IVFFlat, timed in alternation.

bench.py measures each extension's whole curve in turn, minutes apart; on a shared machine the load
can change in between, and the single-client ratio of one run moves with it (benches/README.md).
Here both indexes of one lists value exist at once, each in its own database on the same server,
and every round times, back to back, the two probes values around recall@10 = 0.95 of each
(alternating which extension goes first). Each round gives each curve's QPS at recall 0.95
(interpolated as in bench.py) and their ratio; the report gives every round's ratio, the median and
the spread, for QPS and for the server's CPU time per query.

Each round also times, on each side's connection, a statement that sends the same vector and gets
ten rows back without searching: the round trip's floor, which no index can go below. The report
gives it and the ratio of the two sides' times above it, so that a low QPS ratio can be told apart
from a slow index: on a shared VM a round trip's cost moves with the other tenants' load.

Run through `bash benches/run.sh --paired [options]` (a throwaway cluster) or with --dsn.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import bench
from bench import log, np

THRESHOLD = 0.95


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", required=True, help="libpq connection string of a server with pgivf and pgvector installed")
    p.add_argument("--lists", default="100,250", help="comma-separated lists values. Default 100,250")
    p.add_argument("--pgivf-options", default="quantizer = 'rabitq'", help="pgivf index options besides lists. Default: quantizer = 'rabitq'")
    p.add_argument("--pgivf-probes", default="4,8,12,16,24,32,48,64", help="probes values searched for the recall 0.95 crossing")
    p.add_argument("--pgvector-probes", default="16,24,32,40,48,64,96,128", help="the same for pgvector")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per lists value. Default 7")
    p.add_argument("--queries", type=int, default=300, help="query vectors. Default 300")
    p.add_argument("--min-pass-seconds", type=float, default=2.0, help="a timed pass goes round the queries until this long. Default 2")
    p.add_argument("--out", default=str(bench.BENCHES / "results"), help="output directory. Default benches/results")
    p.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    return p.parse_args(argv)


class Side:
    """One extension's database, connection and index at the current lists value."""

    def __init__(self, ext, admin, base_dsn, ds):
        import psycopg
        import psycopg.conninfo

        self.ext = ext
        self.display = bench.EXTENSIONS[ext][1]
        self.dbname = f"pgivf_paired_{ext}"
        admin.execute(f"DROP DATABASE IF EXISTS {self.dbname}")
        admin.execute(f"CREATE DATABASE {self.dbname}")
        self.dsn = psycopg.conninfo.make_conninfo(base_dsn, dbname=self.dbname)
        try:
            with psycopg.connect(self.dsn, autocommit=True) as c:
                c.execute(f"CREATE EXTENSION {bench.EXTENSIONS[ext][0]}")
                self.version = c.execute("SELECT extversion FROM pg_extension WHERE extname = %s", (bench.EXTENSIONS[ext][0],)).fetchone()[0]
        except psycopg.Error as e:
            admin.execute(f"DROP DATABASE IF EXISTS {self.dbname}")
            raise SystemExit(f"paired rounds need {self.display} installed in the server: {str(e).strip()}") from None
        self.conn = bench.connect(self.dsn)
        log(f"{self.display} {self.version}: loading {ds.n:,} rows")
        bench.load_table(self.conn, ds)

    def build(self, ds, options):
        seconds, size, _, _ = bench.build_index(self.conn, ds, options, 0)
        log(f"  {self.display} WITH ({options}): build {seconds:.2f} s, {size / 2**20:.1f} MB")
        return {"options": options, "build_s": seconds, "index_mb": size / 2**20}

    def recall(self, ds, qvecs, probes):
        res, _, _, _, _ = bench.run_queries(self.conn, ds, qvecs, bench.index_settings(probes), 10, 600, warmup=5)
        return float(np.mean([ds.recall(qi, r, 10) for qi, r in enumerate(res)]))

    def timed(self, ds, qvecs, probes, min_seconds):
        _, _, timed, wall, cpu = bench.run_queries(self.conn, ds, qvecs, bench.index_settings(probes), 10, 600, warmup=5, min_seconds=min_seconds)
        return {"qps": timed / wall, "backend_cpu_us": None if cpu is None else cpu / timed * 1e6}


def bracket(side, ds, qvecs, grid):
    """The probes values just below and at the first recall 0.95 crossing, with their recalls:
    [(probes, recall), ...] (one pair when the grid's first value is already above; None when the
    grid never reaches it)."""
    previous = None
    for probes in grid:
        recall = side.recall(ds, qvecs, probes)
        log(f"  {side.display} probes {probes}: recall@10 {recall:.4f}")
        if recall >= THRESHOLD:
            return [previous, (probes, recall)] if previous else [(probes, recall)]
        previous = (probes, recall)
    return None


def at_threshold(points, key):
    """bench.qps_at_recall over the bracketing points of one round."""
    return bench.qps_at_recall({"probes": [{"probes": p, "recall@10": r, key: figures[key]} for p, r, figures in points]}, THRESHOLD, key)


def paired_lists(lists, sides, ds, qvecs, args):
    out = {"lists": lists, "indexes": {}, "rounds": []}
    pgivf, pgvector = sides
    out["indexes"]["pgivf"] = pgivf.build(ds, f"lists = {lists}, {args.pgivf_options}" if args.pgivf_options else f"lists = {lists}")
    out["indexes"]["vector"] = pgvector.build(ds, f"lists = {lists}")
    grids = {ext: [int(x) for x in spec.split(",")] for ext, spec in (("pgivf", args.pgivf_probes), ("vector", args.pgvector_probes))}
    brackets = {}
    for side in sides:
        found = bracket(side, ds, qvecs, grids[side.ext])
        if found is None:
            log(f"  {side.display} lists {lists}: recall 0.95 not reached on its probes grid: skipped")
            return None
        brackets[side.ext] = found
        out["indexes"][side.ext]["bracket"] = [{"probes": p, "recall@10": r} for p, r in found]
    for round_no in range(args.rounds):
        order = sides if round_no % 2 == 0 else sides[::-1]
        figures = {}
        for side in order:
            points = [(p, r, side.timed(ds, qvecs, p, args.min_pass_seconds)) for p, r in brackets[side.ext]]
            figures[side.ext] = {
                "points": [{"probes": p, **f} for p, _, f in points],
                "qps": at_threshold(points, "qps"),
                "backend_cpu_us": at_threshold(points, "backend_cpu_us"),
                "floor": bench.round_trip_floor(side.conn, ds, qvecs, args.min_pass_seconds),
            }
        qps_ratio = figures["pgivf"]["qps"] / figures["vector"]["qps"]
        cpu = (figures["vector"]["backend_cpu_us"], figures["pgivf"]["backend_cpu_us"])
        cpu_ratio = cpu[0] / cpu[1] if None not in cpu else None
        above = {ext: 1e6 / f["qps"] - f["floor"]["us"] for ext, f in figures.items()}
        # A side at its floor has nothing above it to compare.
        above_ratio = above["vector"] / above["pgivf"] if above["pgivf"] > 0 else None
        out["rounds"].append({"figures": figures, "qps_ratio": qps_ratio, "cpu_ratio": cpu_ratio, "above_floor_ratio": above_ratio})
        log(
            f"  lists {lists} round {round_no + 1}: pgivf {figures['pgivf']['qps']:,.0f} QPS, pgvector {figures['vector']['qps']:,.0f}: "
            f"{qps_ratio:.2f}x" + (f" (server CPU {cpu_ratio:.2f}x)" if cpu_ratio else "")
            + f"; round trip floor {figures['pgivf']['floor']['us']:.0f} us" + (f", above it {above_ratio:.2f}x" if above_ratio else "")
        )
    for key in ("qps_ratio", "cpu_ratio", "above_floor_ratio"):
        values = [r[key] for r in out["rounds"] if r[key] is not None]
        if values:
            out[key] = spread(values)
    out["floor_us"] = spread([f["floor"]["us"] for r in out["rounds"] for f in r["figures"].values()])
    return out


def spread(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bracket_text(lr, ext):
    """The probes values (and their recall) one extension's rounds were timed at."""
    return ", ".join(f"{b['probes']} ({b['recall@10']:.3f})" for b in lr["indexes"][ext]["bracket"])


def render_markdown(result):
    lines = [
        f"# Paired rounds: pgivf against pgvector, {result['dataset']['name']}",
        "",
        f"{result['started']}, commit {result['build'].get('git_commit', '?')}; {result['dataset']['rows']:,} rows × {result['dataset']['dim']}, "
        f"{result['args']['queries']} queries, one client, `LIMIT 10`. Each round times the two probes values around "
        f"recall@10 = {THRESHOLD} of each index back to back (passes of at least {result['args']['min_pass_seconds']} s, "
        "alternating which goes first) and interpolates each curve's QPS at that recall; the ratio is taken within the round."
        + (
            " The round trip floor is a statement sending the same vector and getting ten rows back without a search, "
            "timed on each side's connection in the same round; \"above the floor\" compares the two sides' µs a query beyond it."
            if any("floor_us" in lr for lr in result["lists"])
            else " (This run predates the round trip floor's measurement.)"
        ),
        "",
        "| lists | pgivf index | probes (recall@10) | pgvector probes (recall@10) | rounds | QPS ratio median | min - max | server CPU ratio median | min - max | floor µs median (min - max) | ratio above the floor, median |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lr in result["lists"]:
        q = lr["qps_ratio"]
        c = lr.get("cpu_ratio")
        floor, above = lr.get("floor_us"), lr.get("above_floor_ratio")
        lines.append(
            f"| {lr['lists']} | {lr['indexes']['pgivf']['options']} | {bracket_text(lr, 'pgivf')} | {bracket_text(lr, 'vector')} | {len(lr['rounds'])} | "
            f"**{q['median']:.2f}x** | {q['min']:.2f}-{q['max']:.2f}x | "
            + (f"{c['median']:.2f}x | {c['min']:.2f}-{c['max']:.2f}x | " if c else "- | - | ")
            + (f"{floor['median']:.0f} ({floor['min']:.0f} - {floor['max']:.0f}) | " if floor else "- | ")
            + (f"{above['median']:.2f}x |" if above else "- |")
        )
    lines += [
        "",
        f"Per round (QPS at recall {THRESHOLD}, interpolated; µs a query):",
        "",
        "| lists | round | pgivf QPS | pgvector QPS | ratio | pgivf server µs | pgvector server µs | floor µs (pgivf / pgvector side) | ratio above the floor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for lr in result["lists"]:
        for i, r in enumerate(lr["rounds"], 1):
            f = r["figures"]
            floors = " / ".join(f"{f[ext]['floor']['us']:.0f}" if "floor" in f[ext] else "-" for ext in ("pgivf", "vector"))
            above = r.get("above_floor_ratio")
            lines.append(
                f"| {lr['lists']} | {i} | {f['pgivf']['qps']:,.0f} | {f['vector']['qps']:,.0f} | {r['qps_ratio']:.2f}x | "
                f"{bench.fmt_num(f['pgivf']['backend_cpu_us'])} | {bench.fmt_num(f['vector']['backend_cpu_us'])} | "
                f"{floors} | {f'{above:.2f}x' if above else '-'} |"
            )
    lines += ["", f"Raw figures: `{result['json_name']}.json`.", ""]
    return "\n".join(lines)


def render_plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for lr, color in zip(result["lists"], ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]):
        rounds = range(1, len(lr["rounds"]) + 1)
        ax.plot(rounds, [r["qps_ratio"] for r in lr["rounds"]], marker="o", color=color, label=f"lists {lr['lists']}: QPS ratio")
        cpus = [r["cpu_ratio"] for r in lr["rounds"]]
        if None not in cpus:
            ax.plot(rounds, cpus, marker="s", linestyle="--", color=color, alpha=0.6, label=f"lists {lr['lists']}: server CPU ratio")
        above = [r.get("above_floor_ratio") for r in lr["rounds"]]
        if None not in above:
            ax.plot(rounds, above, marker="^", linestyle=":", color=color, alpha=0.6, label=f"lists {lr['lists']}: ratio above the round trip floor")
    ax.set_xlabel("round")
    ax.set_ylabel("pgivf / pgvector at recall@10 = 0.95")
    ax.set_title(f"{result['dataset']['name']}: paired rounds, one client")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def history_rows(result):
    """Each lists value's paired rounds as a history line: the median QPS ratio to pgvector."""
    return [
        {
            "started": result["started"], "commit": (result.get("build") or {}).get("git_commit"),
            "harness": "paired", "dataset": result["dataset"]["name"], "extension": "pgivf",
            "index": result["args"].get("pgivf_options"), "lists": lr["lists"],
            "ratio": lr["qps_ratio"]["median"], "cpu": (result.get("machine") or {}).get("cpu_model"),
        }
        for lr in result["lists"]
    ]


def main(argv):
    import psycopg

    args = parse_args(argv)
    ds = bench.load_dataset("debian", False, args.queries)
    qvecs = [bench.BinaryVector(bench.vector_binary(q)) for q in ds.queries[: args.queries]]
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    result = {
        "started": started,
        "json_name": f"paired-{ds.name}-latest",
        "args": vars(args) | {"dsn": None},
        "dataset": {"name": ds.name, "rows": ds.n, "dim": ds.dim, "metric": ds.metric, "source": ds.source},
        "machine": bench.machine_info(),
        "build": bench.pgivf_build_info(),
        "lists": [],
    }
    admin = psycopg.connect(args.dsn, autocommit=True)
    result["server"] = bench.server_info(admin)
    sides = [Side("pgivf", admin, args.dsn, ds), Side("vector", admin, args.dsn, ds)]
    t0 = time.perf_counter()
    for lists in [int(x) for x in args.lists.split(",")]:
        lr = paired_lists(lists, sides, ds, qvecs, args)
        if lr:
            result["lists"].append(lr)
            q = lr["qps_ratio"]
            log(f"lists {lists}: QPS ratio median {q['median']:.2f}x ({q['min']:.2f}-{q['max']:.2f}x over {len(lr['rounds'])} rounds)")
    result["total_s"] = time.perf_counter() - t0
    for side in sides:
        side.conn.close()
        if not args.keep:
            admin.execute(f"DROP DATABASE {side.dbname}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{result['json_name']}.json").write_text(json.dumps(result, indent=1, default=float))
    bench.append_history(out, history_rows(result))
    md = out / f"paired-{ds.name}-latest.md"
    md.write_text(render_markdown(result))
    render_plot(result, out / f"paired-{ds.name}-latest.png")
    print(md.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
