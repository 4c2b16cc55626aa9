#!/usr/bin/env python3
"""Filtered nearest-neighbour search: `WHERE <condition> ORDER BY embedding <=> q LIMIT 10`.

Run through `bash benches/run.sh --filtered [options]` (see benches/README.md). On the real set
(debian-minilm-384, or the project's 3,000-row subset without ../shared), rows get two kinds of
categories: package-name families, which follow the meaning of the text and so the clusters
(lib* 38%, python3-* 6.6%, golang-* 3.1%, php-* 1.0%, xfonts* 0.1%), and random labels independent of
everything (50%, 10%, 1%, 0.1%). For each configuration, probes value and condition it measures
recall@10 against the exact filtered answer, the rows returned per query and single-client QPS:

  pgivf, filter columns   CREATE INDEX ... (embedding vector_cosine_ops, family, r50, r10, r1, r01)
  pgivf, plain index      (embedding vector_cosine_ops), ivfflat.iterative_scan = relaxed_order
  pgvector, plain index   the same, where pgvector is installed (--extension pgivf,vector)

Writes benches/results/filtered-<dataset>-latest.{json,md,png}.
"""
import argparse
import datetime
import gzip
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the harness's data loading, wire formats and machine facts)

np = bench.np
FAMILIES = [("lib", "lib%", "librust-%"), ("python3", "python3-%", None), ("golang", "golang-%", None),
            ("php", "php-%", None), ("xfonts", "xfonts%", None)]
RANDOM = [("r50", 0.5), ("r10", 0.1), ("r1", 0.01), ("r01", 0.001)]


def family_of(name):
    for family, like, unlike in FAMILIES:
        prefix = like.rstrip("%")
        if name.startswith(prefix) and not (unlike and name.startswith(unlike.rstrip("%"))):
            return family
    return "other"


def load(args):
    ds = bench.load_dataset("debian", args.quick, args.queries)
    full = bench.SHARED_DEBIAN / "debian-minilm-384.base.tsv.gz"
    tsv = full if ds.n > 3000 else bench.ROOT / "data" / "debian-minilm-3k.base.tsv.gz"
    names = [line.split("\t")[0] for line in gzip.open(tsv, "rt").read().splitlines()][: ds.n]
    families = np.array([family_of(n) for n in names])
    rng = np.random.default_rng(20261123)
    draws = rng.random(ds.n)
    labels = {name: (draws < share).astype(np.int32) for name, share in RANDOM}
    return ds, families, labels


def conditions(families, labels, n):
    """(name, SQL condition, boolean mask over rows)."""
    out = [("unfiltered", None, np.ones(n, dtype=bool))]
    for family, _, _ in FAMILIES:
        mask = families == family
        out.append((f"family {family} ({100 * mask.mean():.1f}%)", f"family = '{family}'", mask))
    for name, share in RANDOM:
        mask = labels[name] == 1
        out.append((f"random {100 * share:g}% ({100 * mask.mean():.2f}%)", f"{name} = 1", mask))
    return out


def exact_top10(ds, queries, mask):
    """Exact filtered top-10 by cosine distance (the vectors are unit length)."""
    ids = np.flatnonzero(mask)
    base = np.asarray(ds.base, dtype=np.float32)[ids]
    scores = np.asarray(queries, dtype=np.float32) @ base.T
    k = min(10, len(ids))
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return ids[np.take_along_axis(top, order, axis=1)]


def load_table(conn, ds, families, labels):
    conn.execute("DROP TABLE IF EXISTS items")
    conn.execute(f"CREATE TABLE items (id int PRIMARY KEY, embedding vector({ds.dim}), family text, r50 int, r10 int, r1 int, r01 int)")
    with conn.cursor().copy("COPY items (id, embedding) FROM STDIN WITH (FORMAT binary)") as copy:
        for chunk in bench.copy_binary_chunks(np.arange(ds.n, dtype=np.int32), ds.base):
            copy.write(chunk)
    conn.execute("CREATE TEMP TABLE labels (id int, family text, r50 int, r10 int, r1 int, r01 int)")
    with conn.cursor().copy("COPY labels FROM STDIN") as copy:
        for i in range(ds.n):
            copy.write_row((i, str(families[i]), int(labels["r50"][i]), int(labels["r10"][i]), int(labels["r1"][i]), int(labels["r01"][i])))
    conn.execute("UPDATE items SET family = l.family, r50 = l.r50, r10 = l.r10, r1 = l.r1, r01 = l.r01 FROM labels l WHERE l.id = items.id")
    conn.execute("DROP TABLE labels")
    conn.execute("VACUUM (ANALYZE) items")
    conn.execute("CHECKPOINT")


def build(conn, sql):
    t = time.perf_counter()
    conn.execute(sql)
    return time.perf_counter() - t


def measure(conn, ds, qvecs, truth, condition, probes, iterative, max_seconds):
    for s in bench.SESSION_SETTINGS + ["SET enable_seqscan = off", "SET enable_bitmapscan = off",
                                       f"SET ivfflat.probes = {probes}", f"SET ivfflat.iterative_scan = {iterative}"]:
        conn.execute(s)
    where = f"WHERE {condition} " if condition else ""
    sql = f"SELECT id FROM items {where}ORDER BY embedding <=> %s LIMIT 10"
    cur = conn.cursor()
    for v in qvecs[:5]:
        cur.execute(sql, (v,), prepare=True)
        cur.fetchall()
    results = []
    start = time.perf_counter()
    for v in qvecs:
        cur.execute(sql, (v,), prepare=True)
        results.append([r[0] for r in cur.fetchall()])
        if time.perf_counter() - start > max_seconds:
            break
    wall = time.perf_counter() - start
    recalls = [len(set(r) & set(int(x) for x in truth[i])) / len(truth[i]) for i, r in enumerate(results)]
    plan = [r[0] for r in conn.execute(f"EXPLAIN (COSTS OFF) SELECT id FROM items {where}ORDER BY embedding <=> '{bench.vector_text(ds.queries[0])}' LIMIT 10").fetchall()]
    return {
        "queries": len(results),
        "qps": len(results) / wall,
        "recall@10": float(np.mean(recalls)),
        "rows_per_query": float(np.mean([len(r) for r in results])),
        "full_limit_share": float(np.mean([len(r) == len(truth[i]) for i, r in enumerate(results)])),
        "plan": plan,
    }


def render(result, out_dir, label):
    lines = [f"# Filtered search: {result['dataset']['source']}", "",
             f"{result['dataset']['rows']:,} rows, {result['dataset']['dim']}-d, cosine, lists = {result['lists']}, "
             f"{result['queries']} queries, `WHERE <condition> ORDER BY embedding <=> q LIMIT 10`, one client. "
             f"Recall@10 is against the exact filtered answer. Run {result['started']}.", ""]
    for config in result["configs"]:
        lines.append(f"- **{config['name']}**: {config['index']} (build {config['build_s']:.1f} s, {config['index_mb']:.1f} MB)")
    lines += ["", "| condition | probes | " + " | ".join(f"{c['name']}: recall / QPS / rows" for c in result["configs"]) + " |",
              "|---|---|" + "---|" * len(result["configs"])]
    for cond in result["conditions"]:
        for probes in result["probes"]:
            cells = []
            for config in result["configs"]:
                m = config["runs"].get(f"{cond}|{probes}")
                cells.append("-" if m is None else f"{m['recall@10']:.3f} / {m['qps']:.0f} / {m['rows_per_query']:.1f}")
            lines.append(f"| {cond} | {probes} | " + " | ".join(cells) + " |")
    md = out_dir / f"filtered-{label}-latest.md"
    md.write_text("\n".join(lines) + "\n")
    png = out_dir / f"filtered-{label}-latest.png"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        conds = result["conditions"]
        cols = 5
        rows = (len(conds) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows), squeeze=False)
        for ax, cond in zip(axes.flat, conds):
            for config in result["configs"]:
                pts = [config["runs"][f"{cond}|{p}"] for p in result["probes"] if f"{cond}|{p}" in config["runs"]]
                ax.plot([m["recall@10"] for m in pts], [m["qps"] for m in pts], marker="o", label=config["name"])
            ax.set_title(cond, fontsize=9)
            ax.set_xlabel("recall@10 (filtered)", fontsize=8)
            ax.set_ylabel("QPS", fontsize=8)
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(conds):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(png, dpi=90)
    except ImportError:
        png = None
    return md, png


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", required=True)
    p.add_argument("--extension", default="pgivf", help="pgivf, or pgivf,vector to add pgvector's plain index")
    p.add_argument("--lists", type=int, default=250)
    p.add_argument("--probes", default="4,8,16,32")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--max-pass-seconds", type=float, default=30.0)
    p.add_argument("--quick", action="store_true", help="20,000 rows, 50 queries")
    p.add_argument("--out", default=str(bench.BENCHES / "results"))
    args = p.parse_args(argv)
    if args.quick:
        args.queries = min(args.queries, 50)
    probes = [int(x) for x in args.probes.split(",")]
    ds, families, labels = load(args)
    qvecs_np = np.asarray(ds.queries[: args.queries], dtype=np.float32)
    qvecs = [bench.BinaryVector(bench.vector_binary(v)) for v in qvecs_np]
    conds = conditions(families, labels, ds.n)
    bench.log(f"{ds.n:,} rows; exact filtered answers for {len(conds)} conditions")
    truth = {name: exact_top10(ds, qvecs_np, mask) for name, _, mask in conds}
    import psycopg

    admin = psycopg.connect(args.dsn, autocommit=True)
    result = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "dataset": ds.describe(),
              "lists": args.lists, "probes": probes, "queries": len(qvecs), "conditions": [c[0] for c in conds],
              "machine": bench.machine_info(), "configs": []}
    setups = [("pgivf, filter columns", "pgivf", f"(embedding vector_cosine_ops, family, r50, r10, r1, r01)", "off"),
              ("pgivf, plain index, relaxed_order", "pgivf", "(embedding vector_cosine_ops)", "relaxed_order")]
    if "vector" in args.extension.split(","):
        setups.append(("pgvector, plain index, relaxed_order", "vector", "(embedding vector_cosine_ops)", "relaxed_order"))
    loaded = set()
    for name, ext, columns, iterative in setups:
        db = f"pgivf_filtered_{ext}"
        if ext not in loaded:
            admin.execute(f"DROP DATABASE IF EXISTS {db}")
            admin.execute(f"CREATE DATABASE {db}")
        conn = bench.connect(args.dsn.replace("dbname=postgres", f"dbname={db}")) if ext in loaded else None
        if conn is None:
            setup_conn = psycopg.connect(args.dsn.replace("dbname=postgres", f"dbname={db}"), autocommit=True)
            setup_conn.execute(f"CREATE EXTENSION {ext}")
            setup_conn.close()
            conn = bench.connect(args.dsn.replace("dbname=postgres", f"dbname={db}"))
            bench.log(f"{name}: loading {ds.n:,} rows")
            load_table(conn, ds, families, labels)
            loaded.add(ext)
        conn.execute("DROP INDEX IF EXISTS items_ivf")
        build_s = build(conn, f"CREATE INDEX items_ivf ON items USING ivfflat {columns} WITH (lists = {args.lists})")
        index_mb = conn.execute("SELECT pg_relation_size('items_ivf')").fetchone()[0] / 1e6
        bench.log(f"{name}: built in {build_s:.1f} s, {index_mb:.1f} MB")
        config = {"name": name, "extension": ext, "index": f"USING ivfflat {columns}", "iterative_scan": iterative,
                  "build_s": build_s, "index_mb": index_mb, "runs": {}}
        for cond_name, cond_sql, _ in conds:
            for pr in probes:
                m = measure(conn, ds, qvecs, truth[cond_name], cond_sql, pr, iterative, args.max_pass_seconds)
                config["runs"][f"{cond_name}|{pr}"] = m
                bench.log(f"  {cond_name:28} probes {pr:3}: recall {m['recall@10']:.3f}, {m['qps']:7.1f} QPS, {m['rows_per_query']:.1f} rows")
        result["configs"].append(config)
        conn.close()
    admin.close()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    label = "debian" + ("-quick" if args.quick else "")
    (out_dir / f"filtered-{label}-latest.json").write_text(json.dumps(result, indent=1))
    md, png = render(result, out_dir, label)
    print(md.read_text())
    print(f"wrote {md}" + (f" and {png}" if png else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
