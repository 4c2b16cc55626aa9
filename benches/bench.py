#!/usr/bin/env python3
"""pgivf benchmark harness: build time, index size, recall, QPS and latency of ivfflat indexes,
pgivf and (optionally) pgvector side by side in one PostgreSQL cluster.

Usually run through `make bench` / `bash benches/run.sh`, which start a throwaway cluster and pass
--dsn; see benches/README.md. Writes benches/results/<dataset>-latest.json (everything measured)
and <dataset>-latest.{md,png} (table and recall/QPS plot).
"""
import argparse
import datetime
import gzip
import hashlib
import json
import math
import multiprocessing
import os
import platform
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pypi_data  # beside this file; standard library only

try:
    import numpy as np
except ImportError:  # --help works without the venv; everything else needs it
    np = None

ROOT = Path(__file__).resolve().parent.parent
BENCHES = ROOT / "benches"
CACHE = BENCHES / "cache"
SHARED_DEBIAN = ROOT.parent / "shared" / "data"
INSERT_ID_BASE = 1_000_000_000
COPY_ID_BASE = 1_500_000_000
START = time.monotonic()

EXTENSIONS = {
    # name -> (CREATE EXTENSION name, display name)
    "pgivf": ("pgivf", "pgivf"),
    "vector": ("vector", "pgvector"),
}
QUANTIZERS = ("none", "sq8", "rabitq")  # pgivf's index option quantizer; 'none' = flat float32 lists
RERANKS = ("index", "heap")  # pgivf's index option rerank (quantized lists only); 'index' is the default
SPILLS = {"spill": "on", "nospill": "off"}  # pgivf's index option spill; not given = 'auto'
SYNTHETIC_ROWS = {128: 1_000_000, 768: 100_000, 1536: 50_000, 3072: 50_000}
ALL_DATASETS = ["debian", "synthetic-128", "synthetic-768", "synthetic-1536"]
# pypi-minilm-384 (benches/pypi_data.py finds or builds it) and random subsets of its base rows, for
# how builds, sizes and queries grow with the rows.
PYPI_SUBSETS = {"pypi": None, "pypi-100k": 100_000, "pypi-300k": 300_000}
PYPI_SUBSET_SEED = 20261207
# --scale: each size with lists about rows / 1000 (pgvector's advice up to a million rows), and
# lists 1000 on the whole set, where the build comparison is asked for.
SCALE_LISTS = {"pypi-100k": 100, "pypi-300k": 300, "pypi": 1000}


def log(message):
    print(f"[{time.monotonic() - START:7.1f}s] {message}", flush=True)


# ------------------------------------------------------------------------------------------------
# Data sets


def read_vecs(path, dtype):
    """fvecs/ivecs, optionally gzipped: per vector an int32 count, then that many values."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = np.frombuffer(f.read(), dtype=dtype)
    d = raw[:1].view(np.int32)[0]
    return np.ascontiguousarray(raw.reshape(-1, d + 1)[:, 1:])


def cached(name, make):
    """Arrays make() returns, cached as benches/cache/<name>.<key>.npy."""
    CACHE.mkdir(parents=True, exist_ok=True)
    keys = ("base", "queries", "gt")
    paths = {k: CACHE / f"{name}.{k}.npy" for k in keys}
    if all(p.exists() for p in paths.values()):
        return {k: np.load(p, mmap_mode="r") for k, p in paths.items()}
    arrays = make()
    for k in keys:
        tmp = CACHE / f"{name}.{k}.tmp.npy"
        np.save(tmp, arrays[k])
        tmp.rename(paths[k])
    return {k: np.load(p, mmap_mode="r") for k, p in paths.items()}


def normalized(x):
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return x / norms


def brute_force_knn(base, queries, k, metric, block=32768):
    """Exact top-k row numbers per query, nearest first: a float32 candidate pass (blocked matrix
    products, k+32 candidates) re-ranked with float64 distances."""
    t0 = time.monotonic()
    n = base.shape[0]
    kk = min(n, k + 32)
    q = np.asarray(queries, dtype=np.float32)
    if metric == "cosine":
        q = normalized(q)
    best_d = np.full((len(q), 0), np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), 0), dtype=np.int64)
    for start in range(0, n, block):
        b = np.asarray(base[start : start + block], dtype=np.float32)
        if metric == "cosine":
            d = -(q @ normalized(b).T)
        else:
            d = (b * b).sum(axis=1)[None, :] - 2 * (q @ b.T)
        take = min(kk, d.shape[1])
        idx = np.argpartition(d, take - 1, axis=1)[:, :take] if take < d.shape[1] else np.tile(np.arange(d.shape[1]), (len(q), 1))
        cand_d = np.concatenate([best_d, np.take_along_axis(d, idx, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, idx + start], axis=1)
        if cand_d.shape[1] > kk:
            sel = np.argpartition(cand_d, kk - 1, axis=1)[:, :kk]
            cand_d = np.take_along_axis(cand_d, sel, axis=1)
            cand_i = np.take_along_axis(cand_i, sel, axis=1)
        best_d, best_i = cand_d, cand_i
    out = np.empty((len(q), min(k, n)), dtype=np.int32)
    for qi in range(len(q)):
        ids = best_i[qi]
        exact = exact_distances(base, queries[qi], ids, metric)
        order = np.lexsort((ids, exact))[: out.shape[1]]
        out[qi] = ids[order]
    log(f"  exact top-{k} of {len(q)} queries over {n:,} rows in {time.monotonic() - t0:.1f} s")
    return out


def exact_distances(base, query, ids, metric):
    """float64 distances from query to base[ids]: cosine distance or Euclidean distance."""
    b = np.asarray(base[np.asarray(ids)], dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    if metric == "cosine":
        denom = np.linalg.norm(b, axis=1) * np.linalg.norm(q)
        denom[denom == 0] = 1
        return 1.0 - (b @ q) / denom
    return np.sqrt(((b - q) ** 2).sum(axis=1))


def synthetic(n, dim, n_queries=1000, blobs=1000, latent=32, seed=None):
    """n + n_queries clustered points with a low intrinsic dimension, like real embeddings: a mixture
    of `blobs` Gaussian blobs (gamma(2) sizes, spreads 0.5-1.0 around N(0, 1) centres) in a
    `latent`-dimensional space, mapped into `dim` dimensions by a fixed random linear map, plus
    N(0, 0.05²) noise in every dimension. The last n_queries rows are the held-out queries.
    (Full-rank blobs make high-dimensional sets too easy: at 768-d every blob's points are each
    other's nearest neighbours and one probe finds 90% of them.)"""
    seed = 20261123 + dim if seed is None else seed
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((blobs, latent), dtype=np.float32)
    weights = rng.gamma(2.0, 1.0, blobs)
    weights /= weights.sum()
    spreads = rng.uniform(0.5, 1.0, blobs).astype(np.float32)
    mapping = rng.standard_normal((latent, dim), dtype=np.float32) / np.float32(np.sqrt(latent))
    total = n + n_queries
    labels = rng.choice(blobs, size=total, p=weights)
    x = np.empty((total, dim), dtype=np.float32)
    step = 100_000
    for s in range(0, total, step):
        lab = labels[s : s + step]
        z = centres[lab] + spreads[lab, None] * rng.standard_normal((len(lab), latent), dtype=np.float32)
        x[s : s + step] = z @ mapping + np.float32(0.05) * rng.standard_normal((len(lab), dim), dtype=np.float32)
    return x[:n], x[n:]


class Dataset:
    def __init__(self, name, metric, base, queries, gt, source):
        self.name = name
        self.metric = metric
        self.base = base
        self.queries = queries
        self.gt = gt
        self.source = source
        self.n, self.dim = base.shape
        self.opclass = "vector_cosine_ops" if metric == "cosine" else "vector_l2_ops"
        self.op = "<=>" if metric == "cosine" else "<->"
        # What the index is on and the queries order by: the column, or for pgvector past 2,000
        # dimensions the halfvec expression its users index instead (see `use_halfvec_expression`).
        self.key = "embedding"
        self.param = "%s"
        self.index_key = f"embedding {self.opclass}"
        self._kth = {}

    def use_halfvec_expression(self, on):
        """pgvector indexes vectors of more than 2,000 dimensions as an expression,
        `(embedding::halfvec(d))` with a halfvec opclass, and queries order by the same expression."""
        if on:
            cast = f"::halfvec({self.dim})"
            self.key = f"(embedding{cast})"
            self.param = f"%s{cast}"
            self.index_key = f"(embedding{cast}) {self.opclass.replace('vector_', 'halfvec_')}"
        else:
            self.key, self.param, self.index_key = "embedding", "%s", f"embedding {self.opclass}"

    def kth_distance(self, k):
        """Per query, the exact distance of its k-th true neighbour."""
        if k not in self._kth:
            self._kth[k] = np.array(
                [exact_distances(self.base, self.queries[qi], [self.gt[qi, k - 1]], self.metric)[0] for qi in range(len(self.queries))]
            )
        return self._kth[k]

    def recall(self, qi, ids, k):
        """Share of the true top-k found in the first k returned ids. A returned row outside the true
        top-k still counts when its exact distance equals the k-th true distance (duplicates)."""
        ids = list(ids[:k])
        truth = set(int(i) for i in self.gt[qi, :k])
        hits = sum(1 for i in ids if i in truth)
        others = [i for i in ids if i not in truth and 0 <= i < self.n]
        if others:
            kth = self.kth_distance(k)[qi]
            d = exact_distances(self.base, self.queries[qi], others, self.metric)
            hits += int(np.sum(d <= kth + 1e-6 * max(1.0, abs(kth))))
        return hits / k

    def describe(self):
        return {
            "name": self.name,
            "source": self.source,
            "rows": int(self.n),
            "dim": int(self.dim),
            "metric": self.metric,
            "opclass": self.opclass,
            "operator": self.op,
            "queries_available": int(len(self.queries)),
        }


def load_dataset(name, quick, n_queries):
    quick_rows = 20_000
    if name == "debian":
        full = SHARED_DEBIAN / "debian-minilm-384.base.fvecs.gz"
        if full.exists():
            data = cached(
                "debian-minilm-384",
                lambda: {
                    "base": read_vecs(full, np.float32),
                    "queries": read_vecs(SHARED_DEBIAN / "debian-minilm-384.query.fvecs.gz", np.float32),
                    "gt": read_vecs(SHARED_DEBIAN / "debian-minilm-384.gt.ivecs.gz", np.int32),
                },
            )
            source = str(SHARED_DEBIAN / "debian-minilm-384.*")
            if quick:
                base = np.ascontiguousarray(data["base"][:quick_rows])
                queries = np.ascontiguousarray(data["queries"][:n_queries])
                gt = brute_force_knn(base, queries, 100, "cosine")
                return Dataset("debian", "cosine", base, queries, gt, source + f" (first {quick_rows:,} rows)")
            return Dataset("debian", "cosine", data["base"], data["queries"], data["gt"], source)
        subset = ROOT / "data" / "debian-minilm-3k.base.fvecs.gz"
        log(f"{full} not found: using the project's 3,000-row subset {subset}")
        base = read_vecs(subset, np.float32)
        queries = read_vecs(ROOT / "data" / "debian-minilm-3k.query.fvecs.gz", np.float32)
        gt = brute_force_knn(base, queries, 100, "cosine")
        return Dataset("debian", "cosine", base, queries, gt, str(subset))
    if name.startswith("synthetic-"):
        dim = int(name.split("-")[1])
        n = SYNTHETIC_ROWS.get(dim, 100_000)
        if quick:
            n = quick_rows

        def make():
            log(f"  generating {n:,} + 1,000 clustered {dim}-d points")
            base, queries = synthetic(n, dim)
            return {"base": base, "queries": queries, "gt": brute_force_knn(base, queries, 100, "l2")}

        data = cached(f"synthetic-v2-{dim}-n{n}", make)
        source = (
            f"synthetic: {n:,} points from 1,000 Gaussian blobs in a 32-d latent space mapped linearly to {dim}-d plus noise "
            f"(benches/bench.py synthetic(), seed {20261123 + dim})"
        )
        return Dataset(name, "l2", data["base"], data["queries"], data["gt"], source)
    if name in PYPI_SUBSETS:
        return load_pypi(name, quick, quick_rows)
    raise SystemExit(f"unknown dataset {name}")


def load_pypi(name, quick, quick_rows):
    wanted = quick_rows if quick else PYPI_SUBSETS[name]
    prefix = pypi_data.find(wanted)
    if prefix is None:
        raise SystemExit(f"{pypi_data.PREFIX} not found: `python3 benches/pypi_data.py ensure` builds it (benches/run.sh does so itself)")
    data = cached(
        prefix.name,
        lambda: {
            "base": read_vecs(f"{prefix}.base.fvecs.gz", np.float32),
            "queries": read_vecs(f"{prefix}.query.fvecs.gz", np.float32),
            "gt": read_vecs(f"{prefix}.gt.ivecs.gz", np.int32),
        },
    )
    rows = wanted
    source = f"{prefix}.*"
    if rows is None or rows == len(data["base"]):
        if prefix.name != pypi_data.PREFIX:
            source += f" (the generator's first {len(data['base']):,} rows in the summaries file's order; queries from all)"
        return Dataset(name, "cosine", data["base"], data["queries"], data["gt"], source)

    def make():
        # A random subset, not the first rows: the base is in the summaries file's order (by name).
        pick = np.sort(np.random.default_rng(PYPI_SUBSET_SEED).permutation(len(data["base"]))[:rows])
        base = np.ascontiguousarray(data["base"][pick])
        return {"base": base, "queries": np.asarray(data["queries"]), "gt": brute_force_knn(base, data["queries"], 100, "cosine")}

    subset = cached(f"{prefix.name}-random-{rows}", make)
    return Dataset(name, "cosine", subset["base"], subset["queries"], subset["gt"], source + f" (random {rows:,} of its rows, seed {PYPI_SUBSET_SEED})")


# ------------------------------------------------------------------------------------------------
# Wire formats


def vector_binary(v):
    """pgvector's binary format: int16 dim, int16 unused = 0, float4[dim], big-endian."""
    v = np.asarray(v, dtype=">f4")
    return struct.pack(">hh", len(v), 0) + v.tobytes()


def vector_text(v):
    return "[" + ",".join("%.9g" % x for x in np.asarray(v, dtype=np.float32).tolist()) + "]"


def copy_binary_chunks(ids, vecs, chunk=50_000):
    """PGCOPY binary stream of (id int4, embedding vector) rows, in chunks."""
    d = vecs.shape[1]
    dt = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("id", ">i4"), ("l2", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("v", ">f4", (d,))])
    yield b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
    for s in range(0, len(ids), chunk):
        part = np.asarray(vecs[s : s + chunk], dtype=np.float32)
        rec = np.empty(len(part), dtype=dt)
        rec["nf"] = 2
        rec["l1"] = 4
        rec["id"] = ids[s : s + chunk]
        rec["l2"] = 4 + 4 * d
        rec["dim"] = d
        rec["unused"] = 0
        rec["v"] = part
        yield rec.tobytes()
    yield struct.pack(">h", -1)


def copy_text_data(ids, vecs):
    d = vecs.shape[1]
    fmt = "%d\t[" + ",".join(["%.9g"] * d) + "]\n"
    return "".join(fmt % ((int(i),) + tuple(v)) for i, v in zip(ids, np.asarray(vecs, dtype=np.float32).tolist())).encode()


class BinaryVector(bytes):
    """A query vector already in pgvector's binary format."""


def connect(dsn):
    import psycopg
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    conn = psycopg.connect(dsn, autocommit=True)
    oid = conn.execute("SELECT 'vector'::regtype::oid").fetchone()[0]

    class VectorDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj):
            return bytes(obj)

    VectorDumper.oid = oid
    conn.adapters.register_dumper(BinaryVector, VectorDumper)
    return conn


def query_sql(ds, limit):
    return f"SELECT id FROM items ORDER BY {ds.key} {ds.op} {ds.param} LIMIT {limit}"


# The k-NN query's round trip without the search: the same vector parameter, ten int rows back.
FLOOR_SQL = "SELECT g FROM generate_series(1, 10) g WHERE %s::vector IS NOT NULL"


SESSION_SETTINGS = ["SET jit = off", "SET max_parallel_workers_per_gather = 0"]


def index_settings(probes, extra=()):
    return SESSION_SETTINGS + ["SET enable_seqscan = off", f"SET ivfflat.probes = {probes}"] + list(extra)


def parse_variants(spec):
    """--quantizers: 'none,sq8,rabitq,rabitq:heap' -> [{"quantizer": q, "rerank": r}], in order, without
    duplicates. rerank is None for 'none' (flat lists have nothing to re-rank)."""
    variants = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        q, *mods = item.split(":")
        if q not in QUANTIZERS:
            raise ValueError(f"unknown quantizer {q!r} in {item!r} ({', '.join(QUANTIZERS)})")
        r = next((m for m in mods if m in RERANKS), None)
        spill = next((SPILLS[m] for m in mods if m in SPILLS), None)
        unknown = [m for m in mods if m not in RERANKS and m not in SPILLS]
        if unknown:
            raise ValueError(f"unknown modifier {unknown[0]!r} in {item!r} ({', '.join(RERANKS + tuple(SPILLS))})")
        if q == "none" and mods:
            raise ValueError(f"{item!r}: rerank and spill apply to quantized lists only (sq8, rabitq)")
        v = {"quantizer": q, "rerank": None if q == "none" else (r or "index")}
        if spill:
            v["spill"] = spill
        if v not in variants:
            variants.append(v)
    if not variants:
        raise ValueError("no quantizer given")
    return variants


def variant_label(display, variant):
    """Curve label of an index: 'pgivf', 'pgivf sq8', 'pgivf rabitq heap'; the display name alone
    for pgvector and flat pgivf lists."""
    if not variant or variant.get("quantizer", "none") == "none":
        return display
    spill = {"on": " spill", "off": " nospill"}.get(variant.get("spill"), "")
    return f"{display} {variant['quantizer']}" + (" heap" if variant.get("rerank") == "heap" else "") + spill


def index_with(lists, variant):
    """The WITH (...) options of CREATE INDEX. Flat lists get lists only, so that a pgivf without the
    quantizer options (and pgvector) accepts them."""
    options = [f"lists = {lists}"]
    if variant and variant["quantizer"] != "none":
        options += [f"quantizer = '{variant['quantizer']}'", f"rerank = '{variant['rerank']}'"]
        if variant.get("spill"):
            options.append(f"spill = '{variant['spill']}'")
    return ", ".join(options)


def variant_settings(variant, args):
    """Query settings of one index variant besides probes: ivfflat.rerank_factor for quantized lists
    when --rerank-factor is given."""
    if variant and variant["quantizer"] != "none" and args.rerank_factor is not None:
        return [f"SET ivfflat.rerank_factor = {args.rerank_factor!r}"]
    return []


def exact_settings():
    return SESSION_SETTINGS + ["SET enable_indexscan = off", "SET enable_bitmapscan = off"]


# ------------------------------------------------------------------------------------------------
# Measurements


def memory_bandwidth():
    """Single-core memory read bandwidth: numpy sum over a 1 GiB float32 array, best of 3."""
    a = np.ones(1 << 28, dtype=np.float32)
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    del a
    return (1 << 30) / best / 1e9


def local_backend_pid(conn):
    """The server process of `conn` when the server runs on this machine (a Unix socket or a
    loopback address, and that process id is a postgres process here); None otherwise, so that a
    remote server's process id never reads an unrelated local process's CPU time."""
    host = conn.info.host or ""
    if not (host.startswith("/") or host in ("localhost", "127.0.0.1", "::1")):
        return None
    pid = conn.info.backend_pid
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return None
    except OSError:
        return None
    return pid


def backend_cpu_seconds(pid):
    """CPU time the server process `pid` has run so far (user and kernel, nanosecond clock from
    /proc/PID/schedstat); None for no pid (a server elsewhere) or when the kernel keeps no
    schedstat."""
    if pid is None:
        return None
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def run_queries(conn, ds, queries, settings, limit, max_seconds, warmup=0, min_seconds=0.0, sql=None):
    """Runs the prepared k-NN query (or `sql`, with one vector parameter) once per query vector, in
    order, stopping after max_seconds; then, until min_seconds have passed, goes round the queries
    again (timed, not returned): a pass of a fast index over 300 queries lasts a fraction of a
    second, and one hiccup of this shared machine would then decide its QPS, while a slow index's
    pass averages over seconds.
    Returns (ids per query of the first round, latencies in s, queries run, wall seconds, the
    server process's CPU seconds over them or None)."""
    for s in settings:
        conn.execute(s)
    sql = sql or query_sql(ds, limit)
    cur = conn.cursor()
    for v in queries[:warmup]:
        cur.execute(sql, (v,), prepare=True)
        cur.fetchall()
    results, latencies = [], []
    backend = local_backend_pid(conn)
    cpu_start = backend_cpu_seconds(backend)
    t_start = time.perf_counter()
    for v in queries:
        t0 = time.perf_counter()
        cur.execute(sql, (v,), prepare=True)
        rows = cur.fetchall()
        latencies.append(time.perf_counter() - t0)
        results.append([r[0] for r in rows])
        if time.perf_counter() - t_start > max_seconds:
            break
    i = 0
    while time.perf_counter() - t_start < min(min_seconds, max_seconds):
        t0 = time.perf_counter()
        cur.execute(sql, (queries[i % len(queries)],), prepare=True)
        cur.fetchall()
        latencies.append(time.perf_counter() - t0)
        i += 1
    wall = time.perf_counter() - t_start
    cpu_end = backend_cpu_seconds(backend)
    cpu = None if cpu_start is None or cpu_end is None else cpu_end - cpu_start
    return results, np.array(latencies), len(latencies), wall, cpu


def round_trip_floor(conn, ds, queries, min_seconds):
    """The round trip's floor, FLOOR_SQL timed like a k-NN pass: what no index can answer faster
    than on this connection, and on a shared VM a measure of the other tenants' load at the time.
    µs a query, and the server's CPU µs a query (None where it cannot be read)."""
    _, _, timed, wall, cpu = run_queries(conn, ds, queries, SESSION_SETTINGS, 10, 600, warmup=5, min_seconds=min_seconds, sql=FLOOR_SQL)
    return {"us": wall / timed * 1e6, "backend_cpu_us": None if cpu is None else cpu / timed * 1e6}


def client_process(dsn, sql, settings, queries, offset, duration, barrier, out):
    conn = connect(dsn)
    for s in settings:
        conn.execute(s)
    cur = conn.cursor()
    n_q = len(queries)
    for j in range(3):
        cur.execute(sql, (queries[(offset + j) % n_q],), prepare=True)
        cur.fetchall()
    barrier.wait()
    start = time.monotonic()
    done = 0
    i = offset
    while True:
        cur.execute(sql, (queries[i % n_q],), prepare=True)
        cur.fetchall()
        done += 1
        i += 1
        end = time.monotonic()
        if end - start >= duration:
            break
    conn.close()
    out.put((done, start, end))


def concurrent_qps(dsn, ds, queries, settings, clients, duration):
    """QPS of `clients` processes running the query mix concurrently for `duration` seconds."""
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(clients)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=client_process, args=(dsn, query_sql(ds, 10), settings, queries, c * len(queries) // clients, duration, barrier, out))
        for c in range(clients)
    ]
    for p in procs:
        p.start()
    got = [out.get(timeout=duration + 300) for _ in procs]
    for p in procs:
        p.join()
    done = sum(g[0] for g in got)
    wall = max(g[2] for g in got) - min(g[1] for g in got)
    return done / wall


def single_client(conn, ds, qvecs, settings, args, ks=(10, 100)):
    """Recall@100 pass (also the warm-up), then the timed LIMIT 10 pass (recall@10, QPS, latency)."""
    out = {}
    if 100 in ks:
        res100, _, _, _, _ = run_queries(conn, ds, qvecs, settings, 100, args.max_pass_seconds, warmup=5)
        out["recall@100"] = float(np.mean([ds.recall(qi, r, 100) for qi, r in enumerate(res100)]))
        out["recall@100_queries"] = len(res100)
    res10, lat, timed, wall, cpu = run_queries(
        conn, ds, qvecs, settings, 10, args.max_pass_seconds, warmup=0 if 100 in ks else 5, min_seconds=args.min_pass_seconds
    )
    out["recall@10"] = float(np.mean([ds.recall(qi, r, 10) for qi, r in enumerate(res10)]))
    out["queries"] = len(res10)
    out["timed_queries"] = timed
    out["timed_s"] = wall
    out["qps"] = timed / wall
    if cpu is not None:
        # The server's own work per query, which the round trips of one client do not include: on
        # a 2-core VM waking the idle CPU of the other side costs about as much as a fast index's scan.
        out["backend_cpu_us"] = cpu / timed * 1e6
    out["latency_ms"] = {
        "mean": float(lat.mean() * 1e3),
        "p50": float(np.percentile(lat, 50) * 1e3),
        "p90": float(np.percentile(lat, 90) * 1e3),
        "p99": float(np.percentile(lat, 99) * 1e3),
        "max": float(lat.max() * 1e3),
    }
    return out


def plan_of(conn, ds, settings):
    for s in settings:
        conn.execute(s)
    literal = vector_text(ds.queries[0])
    rows = conn.execute(f"EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY {ds.key} {ds.op} {ds.param.replace('%s', repr(literal))} LIMIT 10").fetchall()
    return [r[0][:120] for r in rows]


def load_table(conn, ds):
    conn.execute("DROP TABLE IF EXISTS items")
    conn.execute(f"CREATE TABLE items (id int PRIMARY KEY, embedding vector({ds.dim}))")
    t = time.perf_counter()
    with conn.cursor().copy("COPY items (id, embedding) FROM STDIN WITH (FORMAT binary)") as copy:
        for chunk in copy_binary_chunks(np.arange(ds.n, dtype=np.int32), ds.base):
            copy.write(chunk)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    conn.execute("VACUUM (ANALYZE) items")
    conn.execute("CHECKPOINT")
    vacuum_s = time.perf_counter() - t
    size = conn.execute("SELECT pg_table_size('items'), pg_total_relation_size('items')").fetchone()
    return {
        "copy_binary_s": load_s,
        "rows_per_s": ds.n / load_s,
        "vacuum_analyze_checkpoint_s": vacuum_s,
        "table_mb": size[0] / 1e6,
        "table_total_mb": size[1] / 1e6,
    }


def write_tests(conn, ds, args, copy_payloads, stats_index=None):
    """Single-row autocommit INSERT throughput for insert_seconds, then COPY of copy_rows rows in
    binary and in text format; the rows are deleted (and vacuumed) afterwards."""
    out = {}
    cur = conn.cursor()
    sql = "INSERT INTO items (id, embedding) VALUES (%s, %s)"
    vecs = [BinaryVector(vector_binary(ds.base[i])) for i in range(min(ds.n, 2000))]
    n = 0
    t = time.perf_counter()
    while True:
        cur.execute(sql, (INSERT_ID_BASE + n, vecs[n % len(vecs)]), prepare=True)
        n += 1
        if n % 20 == 0 and time.perf_counter() - t >= args.insert_seconds:
            break
    out["insert_rows_per_s"] = n / (time.perf_counter() - t)
    out["insert_rows"] = n
    for fmt, payload in copy_payloads.items():
        t = time.perf_counter()
        option = "WITH (FORMAT binary)" if fmt == "binary" else ""
        with cur.copy(f"COPY items (id, embedding) FROM STDIN {option}") as copy:
            for chunk in payload:
                copy.write(chunk)
        out[f"copy_{fmt}_rows_per_s"] = args.copy_rows / (time.perf_counter() - t)
        if fmt == "binary" and stats_index:
            # What ivfflat_stats tells a DBA after a load into a trained index: rows since the
            # build and how far they lie from their centroids against the build's rows.
            row = conn.execute(
                f"SELECT rows_inserted_since_build, build_mean_distance, insert_mean_distance, drift, recommendation FROM ivfflat_stats('{stats_index}')"
            ).fetchone()
            out["stats_after_copy"] = dict(zip(("rows_inserted_since_build", "build_mean_distance", "insert_mean_distance", "drift", "recommendation"), row))
        conn.execute(f"DELETE FROM items WHERE id >= {COPY_ID_BASE}")
    out["copy_rows"] = args.copy_rows
    t = time.perf_counter()
    conn.execute(f"DELETE FROM items WHERE id >= {INSERT_ID_BASE}")
    conn.execute("VACUUM items")
    out["delete_vacuum_s"] = time.perf_counter() - t
    return out


def build_index(conn, ds, options, workers):
    """CREATE INDEX ... WITH (options); returns (seconds, index bytes, notices)."""
    notices = []
    phases = {}

    def handler(diag):
        message = diag.message_primary or ""
        # pgivf says at DEBUG1 where its build's time went.
        m = re.match(
            r"ivfflat build: (\d+) samples in ([\d.]+) s, k-means ([\d.]+) s, reading and assigning (\d+) rows ([\d.]+) s, writing ([\d.]+) s",
            message,
        )
        if m:
            phases.update(
                samples=int(m[1]), sampling_s=float(m[2]), kmeans_s=float(m[3]), assigning_s=float(m[5]), writing_s=float(m[6])
            )
        elif diag.severity_nonlocalized in ("NOTICE", "WARNING"):
            notices.append(message)

    conn.add_notice_handler(handler)
    try:
        conn.execute("DROP INDEX IF EXISTS items_embedding_idx")
        conn.execute("SET maintenance_work_mem = '2GB'")
        conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
        conn.execute("SET client_min_messages = debug1")
        t = time.perf_counter()
        conn.execute(f"CREATE INDEX items_embedding_idx ON items USING ivfflat ({ds.index_key}) WITH ({options})")
        seconds = time.perf_counter() - t
        conn.execute("RESET client_min_messages")
        size = conn.execute("SELECT pg_relation_size('items_embedding_idx')").fetchone()[0]
    finally:
        conn.execute("RESET client_min_messages")
        conn.execute("RESET max_parallel_maintenance_workers")
        conn.remove_notice_handler(handler)
    return seconds, size, notices, phases


def bench_extension(ext, base_dsn, admin, ds, args, qvecs, copy_payloads, result):
    create_name, display = EXTENSIONS[ext]
    dbname = f"pgivf_bench_{ext}"
    import psycopg.conninfo

    admin.execute(f"DROP DATABASE IF EXISTS {dbname}")
    admin.execute(f"CREATE DATABASE {dbname}")
    dsn = psycopg.conninfo.make_conninfo(base_dsn, dbname=dbname)
    conn = __import__("psycopg").connect(dsn, autocommit=True)
    try:
        conn.execute(f"CREATE EXTENSION {create_name}")
    except Exception as e:  # noqa: BLE001 - any failure means: not measurable here
        log(f"{display}: CREATE EXTENSION {create_name} failed ({str(e).strip()}): skipped")
        conn.close()
        admin.execute(f"DROP DATABASE IF EXISTS {dbname}")
        return None
    version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = %s", (create_name,)).fetchone()[0]
    conn.close()
    conn = connect(dsn)
    er = {"extension": ext, "display": display, "version": version, "database": dbname, "indexes": []}
    result["extensions"][ext] = er
    log(f"{display} {version}: loading {ds.n:,} rows")
    er["load"] = load_table(conn, ds)
    log(f"  COPY binary {er['load']['rows_per_s']:,.0f} rows/s, table {er['load']['table_mb']:.1f} MB")

    settings = exact_settings()
    er["exact_plan"] = plan_of(conn, ds, settings)
    n_exact = max(5, min(len(qvecs), args.exact_queries))
    res, lat, timed, wall, _ = run_queries(conn, ds, qvecs[:n_exact], settings, 10, args.budget, warmup=2)
    er["exact"] = {
        "queries": len(res),
        "qps": timed / wall,
        "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "recall@10": float(np.mean([ds.recall(qi, r, 10) for qi, r in enumerate(res)])),
        "scan_gb_per_s": ds.n * 4 * ds.dim * len(res) / wall / 1e9,
    }
    log(f"  exact scan: {er['exact']['qps']:.1f} QPS, recall@10 {er['exact']['recall@10']:.3f} (sanity check, should be 1)")

    er["writes_no_vector_index"] = write_tests(conn, ds, args, copy_payloads)
    w = er["writes_no_vector_index"]
    log(f"  no vector index: INSERT {w['insert_rows_per_s']:,.0f} rows/s, COPY binary {w['copy_binary_rows_per_s']:,.0f} rows/s, text {w['copy_text_rows_per_s']:,.0f} rows/s")

    variants = args.variants if ext == "pgivf" else [None]
    # pgvector indexes no vector of more than 2,000 dimensions; its users index a halfvec cast.
    ds.use_halfvec_expression(ext == "vector" and ds.dim > 2000)
    if ds.key != "embedding":
        er["index_expression"] = ds.index_key
        log(f"  {display}: indexing and ordering by {ds.key}, as its users do past 2,000 dimensions")
    try:
        for lists in args.lists_by_dataset.get(ds.name, args.lists):
            for variant in variants:
                bench_index(conn, dsn, ds, args, qvecs, copy_payloads, result, er, lists, variant)
    finally:
        ds.use_halfvec_expression(False)
    conn.close()
    if not args.keep:
        admin.execute(f"DROP DATABASE {dbname}")
    return er


def bench_index(conn, dsn, ds, args, qvecs, copy_payloads, result, er, lists, variant):
    """One index (lists value, pgivf variant): parallel and serial build, the probes values, writes;
    dropped afterwards. A build the server refuses (an option this pgivf lacks) is logged, recorded in
    er["failed_indexes"] and skipped."""
    import psycopg

    label = variant_label(er["display"], variant)
    options = index_with(lists, variant)
    extra = variant_settings(variant, args)
    ir = {"lists": lists, "label": label, "index_options": options}
    if variant:
        ir["quantizer"] = variant["quantizer"]
        ir["rerank"] = variant["rerank"]
        if variant.get("spill"):
            ir["spill"] = variant["spill"]
    if extra:
        ir["settings"] = extra
    try:
        seconds, size, notices, _ = build_index(conn, ds, options, 2)
    except psycopg.Error as e:
        log(f"  {label} lists {lists}: CREATE INDEX ... WITH ({options}) failed ({str(e).strip()}): skipped")
        er.setdefault("failed_indexes", []).append({**ir, "error": str(e).strip()})
        conn.execute("DROP INDEX IF EXISTS items_embedding_idx")
        save_partial(result, args)
        return
    er["indexes"].append(ir)
    ir["build_parallel2_s"] = seconds
    log(f"  {label} lists {lists}: build with max_parallel_maintenance_workers = 2: {seconds:.2f} s (WITH ({options}))")
    seconds, size, notices, phases = build_index(conn, ds, options, 0)
    ir["build_s"] = seconds
    if phases:
        ir["build_phases"] = phases
    ir["index_bytes"] = size
    ir["index_mb"] = size / 1e6
    ir["build_notices"] = sorted(set(notices))
    log(f"  {label} lists {lists}: serial build {seconds:.2f} s, index {size / 1e6:.1f} MB")
    ir["plan"] = plan_of(conn, ds, index_settings(args.probes[0], extra))
    if not any("items_embedding_idx" in line for line in ir["plan"]):
        log(f"  WARNING: the plan does not use the index: {ir['plan']}")
    ir["probes"] = []
    floor_before = round_trip_floor(conn, ds, qvecs, args.min_pass_seconds)
    for probes in args.probes:
        if probes > lists:
            continue
        settings = index_settings(probes, extra)
        pr = {"probes": probes}
        pr.update(single_client(conn, ds, qvecs, settings, args))
        duration = min(args.budget, max(2.0, len(qvecs) / pr["qps"]))
        for clients in (2, 4):
            pr[f"qps_{clients}_clients"] = concurrent_qps(dsn, ds, qvecs, settings, clients, duration)
        pr["loadavg_1min"] = os.getloadavg()[0]
        probed_rows = min(1.0, probes / lists) * ds.n
        pr["est_rows_probed"] = probed_rows
        pr["scan_gb_per_s"] = probed_rows * 4 * ds.dim * pr["qps"] / 1e9
        ir["probes"].append(pr)
        log(
            f"  {label} lists {lists} probes {probes}: recall@10 {pr['recall@10']:.3f} recall@100 {pr['recall@100']:.3f} "
            f"QPS {pr['qps']:.0f} / {pr['qps_2_clients']:.0f} / {pr['qps_4_clients']:.0f} (1/2/4 clients), "
            f"p50 {pr['latency_ms']['p50']:.2f} ms p99 {pr['latency_ms']['p99']:.2f} ms, server {fmt_num(pr.get('backend_cpu_us'))} us/query, "
            f"scan {pr['scan_gb_per_s']:.1f} GB/s"
        )
        save_partial(result, args)
    ir["floor_us"] = {"before": floor_before["us"], "after": round_trip_floor(conn, ds, qvecs, args.min_pass_seconds)["us"]}
    log(f"  {label} lists {lists}: round trip floor {ir['floor_us']['before']:.0f} us a query before its passes, {ir['floor_us']['after']:.0f} after")
    ir["writes"] = write_tests(conn, ds, args, copy_payloads, "items_embedding_idx" if er["extension"] == "pgivf" else None)
    w = ir["writes"]
    log(
        f"  {label} lists {lists} indexed: INSERT {w['insert_rows_per_s']:,.0f} rows/s, COPY binary {w['copy_binary_rows_per_s']:,.0f} rows/s, "
        f"text {w['copy_text_rows_per_s']:,.0f} rows/s, delete+vacuum {w['delete_vacuum_s']:.2f} s"
    )
    conn.execute("DROP INDEX items_embedding_idx")
    save_partial(result, args)


# ------------------------------------------------------------------------------------------------
# Environment


def machine_info():
    info = {"platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        for line in cpuinfo.splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        flags = next((l.split(":", 1)[1].split() for l in cpuinfo.splitlines() if l.startswith("flags")), [])
        info["simd"] = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16") if f in flags]
    except OSError:
        pass
    info["cpu_count"] = os.cpu_count()
    info["cpus_usable"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        mem = next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal"))
        info["memory_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    try:
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def pgivf_build_info():
    info = {}
    try:
        info["git_commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
        info["git_dirty"] = bool(dirty.strip())
    except OSError:
        pass
    try:
        libdir = subprocess.run(["pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
        so = Path(libdir) / "pgivf.so"
        if so.exists():
            info["pgivf_so_mtime"] = datetime.datetime.fromtimestamp(so.stat().st_mtime).isoformat(timespec="seconds")
            info["pgivf_so_sha256"] = hashlib.sha256(so.read_bytes()).hexdigest()[:16]
    except OSError:
        pass
    return info


def server_info(admin):
    names = [
        "server_version", "shared_buffers", "work_mem", "maintenance_work_mem", "max_parallel_maintenance_workers",
        "max_parallel_workers_per_gather", "jit", "fsync", "synchronous_commit", "wal_level", "max_wal_size",
        "effective_cache_size", "random_page_cost",
    ]
    rows = admin.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)", (names,)).fetchall()
    settings = dict(rows)
    available = dict(admin.execute("SELECT name, default_version FROM pg_available_extensions WHERE name IN ('pgivf', 'vector')").fetchall())
    return {"settings": settings, "available_extensions": available}


# ------------------------------------------------------------------------------------------------
# Report


def fmt_num(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def best_at_recall(indexes, threshold=0.95):
    """The fastest single-client (index, probes, figures) over `indexes` reaching recall@10 >= threshold."""
    best = None
    for ir in indexes:
        for pr in ir["probes"]:
            if pr["recall@10"] >= threshold and (best is None or pr["qps"] > best[2]["qps"]):
                best = (ir, pr["probes"], pr)
    return best


def qps_at_recall(ir, threshold=0.95, key="qps"):
    """Single-client QPS (or another per-probes figure, `key`) of one index at recall@10 = threshold,
    interpolated (log QPS linear in recall) between the two probes values around the first crossing.
    A grid of probes values makes the best measured configuration jump: one index may reach 0.951 at
    some probes value and another 0.949 at the same step, and the next step can cost a third of the
    QPS. Interpolation compares the curves at the same recall. None when the curve never reaches it
    (or a point lacks the figure); the first point's value when it starts above (a bound)."""
    if any(pr.get(key) is None for pr in ir["probes"]):
        return None
    points = sorted((pr["probes"], pr["recall@10"], pr[key]) for pr in ir["probes"])
    previous = None
    for _, recall, value in points:
        if recall >= threshold:
            if previous is None or previous[0] >= recall:
                return value
            r0, v0 = previous
            t = (threshold - r0) / (recall - r0)
            return math.exp(math.log(v0) + t * (math.log(value) - math.log(v0)))
        previous = (recall, value)
    return None


def index_label(er, ir):
    """Curve label of an index record ('pgivf sq8'); results of older runs have none: the extension's."""
    return ir.get("label", er["display"])


def curves(exts):
    """One curve per extension and index variant, in measurement order: [(key, er, label, [index
    records, one per lists value])]."""
    out = {}
    for key, er in exts.items():
        for ir in er["indexes"]:
            label = index_label(er, ir)
            out.setdefault((key, label), (key, er, label, []))[3].append(ir)
    return list(out.values())


def ratio(a, b, digits=2):
    return "-" if a is None or b is None or not b else f"{a / b:.{digits}f}x"


def render_best_at_recall(exts, threshold=0.95):
    """Per lists value and overall, each curve's fastest configuration reaching the recall, its QPS
    against pgvector's (same lists; overall: pgvector's overall best) and its index size against the
    flat pgivf index of the same lists."""
    lines = []
    lines.append(f"## QPS at recall@10 ≥ {threshold} (best single-client configuration measured)")
    lines.append("")
    lines.append(
        "Per `lists` value and over all of them: the fastest probes value reaching the recall, its QPS against pgvector's best at the "
        "same recall (above 1 = faster), and the index size against pgivf's flat (`quantizer = 'none'`) index of the same lists."
    )
    lines.append("")
    lines.append(
        f"Interpolated: QPS at recall@10 = {threshold} exactly, log QPS linear in recall between the probes values on either side "
        "of the first crossing (the best measured configuration jumps with the probes grid: a curve at 0.949 on one step takes the "
        "next step, often a third slower)."
    )
    lines.append("")
    lines.append(
        "| lists | index | QPS | probes | recall@10 | p50 ms | QPS 4 clients | QPS / pgvector | QPS interpolated | / pgvector interpolated "
        "| index MB | size / flat pgivf |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    cs = curves(exts)
    all_lists = []
    for _, _, _, irs in cs:
        for ir in irs:
            if ir["lists"] not in all_lists:
                all_lists.append(ir["lists"])
    flat = {ir["lists"]: ir for key, er, label, irs in cs if key == "pgivf" for ir in irs if ir.get("quantizer", "none") == "none"}
    vector_curve = next((irs for key, _, _, irs in cs if key == "vector"), None)
    for lists in all_lists + (["all"] if len(all_lists) > 1 else []):
        vbest, vector_interpolated = None, None
        if vector_curve:
            vsel = [ir for ir in vector_curve if lists == "all" or ir["lists"] == lists]
            vbest = best_at_recall(vsel, threshold)
            if lists != "all" and len(vsel) == 1:
                vector_interpolated = qps_at_recall(vsel[0], threshold)
        for key, er, label, irs in cs:
            sel = [ir for ir in irs if lists == "all" or ir["lists"] == lists]
            if not sel:
                continue
            b = best_at_recall(sel, threshold)
            vs = "" if key == "vector" or not vector_curve else ratio(b[2]["qps"] if b else None, vbest[2]["qps"] if vbest else None)
            if b is None:
                size_ir = sel[0] if lists != "all" else None
                cells = ["none measured reaches it", "", "", "", ""]
            else:
                size_ir = b[0]
                ir, probes, pr = b
                cells = [f"{pr['qps']:,.0f}", str(probes), f"{pr['recall@10']:.3f}", f"{pr['latency_ms']['p50']:.2f}", f"{pr['qps_4_clients']:,.0f}"]
            mb = fmt_num(size_ir["index_mb"], 1) if size_ir else ""
            frac = ""
            if key == "pgivf" and size_ir and size_ir["lists"] in flat:
                frac = ratio(size_ir["index_mb"], flat[size_ir["lists"]]["index_mb"])
            interpolated, vs_interpolated = "", ""
            if lists != "all" and len(sel) == 1:
                q = qps_at_recall(sel[0], threshold)
                interpolated = fmt_num(q)
                if key != "vector" and vector_curve:
                    vs_interpolated = ratio(q, vector_interpolated)
            shown_lists = lists if lists != "all" else (f"all ({b[0]['lists']})" if b else "all")
            lines.append(
                f"| {shown_lists} | {label} | " + " | ".join(cells) + f" | {vs} | {interpolated} | {vs_interpolated} | {mb} | {frac} |"
            )
    vbest = best_at_recall(vector_curve, threshold) if vector_curve else None
    summary = []
    for key, er, label, irs in cs:
        b = best_at_recall(irs, threshold)
        if key == "pgivf" and b and vbest:
            summary.append(f"{label} / pgvector at recall@10 ≥ {threshold}: **{b[2]['qps'] / vbest[2]['qps']:.2f}x** QPS (one client, any lists).")
    if summary:
        lines.append("")
        lines += summary
    lines += render_server_work(cs, threshold)
    return lines


def render_server_work(cs, threshold):
    """Per lists value, each curve's server CPU per query at the recall (interpolated like QPS) and
    pgvector's against it: the work each index does for a query, without the client's round trips,
    which on this VM cost a fast index about as much as its scan. Empty for results without it."""
    rows = []
    vector = {ir["lists"]: ir for key, _, _, irs in cs if key == "vector" for ir in irs}
    for key, er, label, irs in cs:
        for ir in irs:
            cpu = qps_at_recall(ir, threshold, "backend_cpu_us")
            if cpu is None:
                continue
            reference = vector.get(ir["lists"]) if key != "vector" else None
            vcpu, vqps = (qps_at_recall(reference, threshold, "backend_cpu_us"), qps_at_recall(reference, threshold)) if reference else (None, None)
            qps = qps_at_recall(ir, threshold)
            floor = ir.get("floor_us")
            floor_cell = f"{floor['before']:.0f} / {floor['after']:.0f}" if floor else "-"
            rows.append(
                (ir["lists"], f"| {ir['lists']} | {label} | {cpu:,.0f} | {ratio(vcpu, cpu, 1)} | {fmt_num(qps)} | {ratio(qps, vqps, 1)} | {floor_cell} |")
            )
    if not rows:
        return []
    return [
        "",
        f"## Server CPU per query at recall@10 = {threshold} (one client, interpolated)",
        "",
        "The server process's CPU time (user and kernel, from /proc/PID/schedstat) over the timed pass, per query: the work an index "
        "does for a query. Single-client QPS also pays the client and the round trips: on a 2-core VM each one wakes the other "
        "side's idle CPU, about as costly as a fast index's whole scan (benches/README.md). pgvector / this above 1 = less work. "
        "Round trip floor: the same vector sent and ten rows returned without a search, timed on the index's connection before "
        "and after its passes; no index answers faster, and it moves with the machine's load.",
        "",
        "| lists | index | server µs / query | pgvector's / this | QPS | QPS / pgvector | round trip floor µs (before / after) |",
        "|---|---|---|---|---|---|---|",
    ] + [row for _, row in sorted(rows, key=lambda r: r[0])]


def render_markdown(result):
    ds = result["dataset"]
    m = result["machine"]
    exts = result["extensions"]
    lines = []
    lines.append(f"# ivfflat benchmark: {ds['name']} ({ds['rows']:,} × {ds['dim']}, {ds['metric']})")
    lines.append("")
    versions = ", ".join(f"{e['display']} {e['version']}" for e in exts.values())
    build = result.get("pgivf_build", {})
    lines.append(
        f"Run {result['started']} on {m.get('cpu_model', '?')} ({m.get('cpus_usable')} cores, {', '.join(m.get('simd', []))}), "
        f"PostgreSQL {result['server']['settings'].get('server_version')}, {versions}; pgivf commit {build.get('git_commit', '?')}"
        f"{' (dirty tree)' if build.get('git_dirty') else ''}, pgivf.so built {build.get('pgivf_so_mtime', '?')}."
    )
    a = result["args"]
    lines.append(
        f"{result['queries']} queries, `ORDER BY embedding {ds['operator']} $1 LIMIT 10`, prepared, binary parameters, after a warm-up; "
        f"`enable_seqscan = off`, `max_parallel_workers_per_gather = 0`, shared_buffers {result['server']['settings'].get('shared_buffers')}. "
        f"Builds serial unless noted (`maintenance_work_mem = 2GB`). Data: {ds['source']}."
    )
    lines.append(
        f"Single-core memory read bandwidth (numpy sum over 1 GiB, best of 3): **{result['memory_bandwidth_gb_per_s']:.1f} GB/s**. "
        "Scan GB/s = estimated vector bytes in the probed lists (probes/lists × rows × 4·dim) × single-client QPS."
    )
    loads = [pr.get("loadavg_1min") for er in exts.values() for ir in er["indexes"] for pr in ir["probes"] if pr.get("loadavg_1min") is not None]
    if loads:
        lines.append(
            f"1-minute load average during the query measurements: {min(loads):.1f}-{max(loads):.1f} on {m.get('cpus_usable')} cores "
            "(the client processes count too; above the core count, other work was competing for the CPU)."
        )
    quantized = [ir for er in exts.values() for ir in er["indexes"] if ir.get("quantizer", "none") != "none"]
    if quantized or a.get("rerank_factor") is not None:
        lines.append(
            f"pgivf index variants (`--quantizers {a.get('quantizers', 'none')}`): `pgivf` = flat float32 lists (`quantizer = 'none'`), "
            "`pgivf sq8` / `pgivf rabitq` = `WITH (quantizer = ..., rerank = 'index')`, `... heap` = `rerank = 'heap'`, "
            "`... spill` / `... nospill` = `spill = 'on'` / `'off'` (otherwise `auto`: spilled with `rerank = 'index'`); "
            + (f"`ivfflat.rerank_factor = {a['rerank_factor']}` for the quantized ones. " if a.get("rerank_factor") is not None else "server default `ivfflat.rerank_factor`. ")
            + "Their scan GB/s counts float32 bytes (4·dim per row), not the bytes of the codes."
        )
    failed = [f for er in exts.values() for f in er.get("failed_indexes", [])]
    if failed:
        lines.append("")
        for f in failed:
            lines.append(f"- **not measured: {f['label']} lists {f['lists']}**, `CREATE INDEX ... WITH ({f['index_options']})` failed: {f['error']}")
    if a.get("quick"):
        lines.append("")
        lines.append("**Quick smoke run (reduced sizes): not for comparison.**")
    lines.append("")
    lines.append(
        "| extension | lists | build s | build s (2 workers) | index MB | probes | recall@10 | recall@100 | QPS 1 | QPS 2 | QPS 4 | p50 ms | p99 ms "
        "| server µs / query | scan GB/s |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for er in exts.values():
        for ir in er["indexes"]:
            for pr in ir["probes"]:
                lines.append(
                    f"| {index_label(er, ir)} | {ir['lists']} | {ir['build_s']:.2f} | {ir['build_parallel2_s']:.2f} | {ir['index_mb']:.1f} | {pr['probes']} | "
                    f"{pr['recall@10']:.3f} | {pr['recall@100']:.3f} | {pr['qps']:,.0f} | {pr['qps_2_clients']:,.0f} | {pr['qps_4_clients']:,.0f} | "
                    f"{pr['latency_ms']['p50']:.2f} | {pr['latency_ms']['p99']:.2f} | {fmt_num(pr.get('backend_cpu_us'))} | {pr['scan_gb_per_s']:.1f} |"
                )
        if "exact" in er:
            x = er["exact"]
            lines.append(
                f"| {er['display']} | exact scan | | | | | {x['recall@10']:.3f} | | {x['qps']:,.1f} | | | {x['p50_ms']:.2f} | | | {x['scan_gb_per_s']:.1f} |"
            )

    if "pgivf" in exts and "vector" in exts:
        p, v = exts["pgivf"], exts["vector"]
        lines.append("")
        lines.append("## pgivf / pgvector at equal lists and probes")
        lines.append("")
        lines.append("| pgivf index | lists | probes | QPS 1 | QPS 2 | QPS 4 | p50 | recall@10 Δ | recall@100 Δ | build | build (2 workers) | index size |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        vidx = {ir["lists"]: ir for ir in v["indexes"]}
        for ip in p["indexes"]:
            iv = vidx.get(ip["lists"])
            if not iv:
                continue
            vpr = {pr["probes"]: pr for pr in iv["probes"]}
            for pp in ip["probes"]:
                vp = vpr.get(pp["probes"])
                if not vp:
                    continue
                lines.append(
                    f"| {index_label(p, ip)} | {ip['lists']} | {pp['probes']} | {pp['qps'] / vp['qps']:.2f}x | {pp['qps_2_clients'] / vp['qps_2_clients']:.2f}x | "
                    f"{pp['qps_4_clients'] / vp['qps_4_clients']:.2f}x | {pp['latency_ms']['p50'] / vp['latency_ms']['p50']:.2f}x | "
                    f"{pp['recall@10'] - vp['recall@10']:+.3f} | {pp['recall@100'] - vp['recall@100']:+.3f} | "
                    f"{ip['build_s'] / iv['build_s']:.2f}x | {ip['build_parallel2_s'] / iv['build_parallel2_s']:.2f}x | {ip['index_mb'] / iv['index_mb']:.2f}x |"
                )

    lines.append("")
    lines += render_best_at_recall(exts)
    lines.append("")
    lines.append("## Writes and exact scan")
    lines.append("")
    lines.append(
        f"Single-row autocommit INSERTs for {a.get('insert_seconds')} s (fsync on: commit-bound); COPY of {a.get('copy_rows'):,} rows "
        "(payload prepared before the clock starts), binary and text (`%.9g`) format; the rows are deleted and vacuumed after each test."
    )
    lines.append("")
    lines.append("| extension | vector index | INSERT rows/s | COPY binary rows/s | COPY text rows/s | delete + VACUUM s |")
    lines.append("|---|---|---|---|---|---|")
    for er in exts.values():
        w = er.get("writes_no_vector_index")
        if w:
            lines.append(
                f"| {er['display']} | none | {w['insert_rows_per_s']:,.0f} | {w['copy_binary_rows_per_s']:,.0f} | {w['copy_text_rows_per_s']:,.0f} | {w['delete_vacuum_s']:.2f} |"
            )
        for ir in er["indexes"]:
            w = ir.get("writes")
            if w:
                lines.append(
                    f"| {index_label(er, ir)} | lists {ir['lists']} | {w['insert_rows_per_s']:,.0f} | {w['copy_binary_rows_per_s']:,.0f} | "
                    f"{w['copy_text_rows_per_s']:,.0f} | {w['delete_vacuum_s']:.2f} |"
                )
    lines.append("")
    lines.append("| extension | initial load (COPY binary) rows/s | table MB | exact scan QPS | exact scan p50 ms | exact scan recall@10 |")
    lines.append("|---|---|---|---|---|---|")
    for er in exts.values():
        ld, x = er.get("load", {}), er.get("exact", {})
        lines.append(
            f"| {er['display']} | {fmt_num(ld.get('rows_per_s'))} | {fmt_num(ld.get('table_mb'), 1)} | {fmt_num(x.get('qps'), 1)} | "
            f"{fmt_num(x.get('p50_ms'), 2)} | {fmt_num(x.get('recall@10'), 3)} |"
        )
    lines.append("")
    lines.append(f"Total run time {result.get('elapsed_s', 0) / 60:.1f} min. Raw figures: `{result.get('json_name', '')}`.")
    return "\n".join(lines) + "\n"


def render_plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = result["dataset"]
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    colors = {"pgivf": ["#d62728", "#ff7f0e", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f"], "vector": ["#1f77b4", "#17becf", "#2ca02c", "#9467bd"]}
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D"]
    cs = curves(result["extensions"])
    for key, er in result["extensions"].items():
        palette = colors.get(key, ["#7f7f7f"])
        # One variant: a colour per lists value (as before variants). Several: a colour per variant,
        # line style and marker per lists value.
        variants = [label for k, _, label, _ in cs if k == key]
        lists_order = sorted({ir["lists"] for ir in er["indexes"]})
        for ir in er["indexes"]:
            j = lists_order.index(ir["lists"])
            label = index_label(er, ir)
            color = palette[(j if len(variants) == 1 else variants.index(label)) % len(palette)]
            xs = [pr["recall@10"] for pr in ir["probes"]]
            ys = [pr["qps"] for pr in ir["probes"]]
            ax.plot(xs, ys, linestyle=styles[j % 4], marker=markers[j % 4], color=color, label=f"{label} lists={ir['lists']}")
            for pr in ir["probes"]:
                ax.annotate(str(pr["probes"]), (pr["recall@10"], pr["qps"]), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
        if "exact" in er:
            ax.plot([er["exact"]["recall@10"]], [er["exact"]["qps"]], marker="*", markersize=12, linestyle="none", color=palette[0], label=f"{er['display']} exact scan")
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second, one client (log scale)")
    ax.axvline(0.95, color="#999999", linewidth=0.8, linestyle=":")
    title = f"{ds['name']}: {ds['rows']:,} × {ds['dim']}, {ds['metric']}" + (" (quick smoke run)" if result["args"].get("quick") else "")
    ax.set_title(title + "\nlabels: ivfflat.probes")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(result, out_dir, label, stem=None):
    """The markdown and the plot, as `<label>-latest.*` in out_dir, or as `<stem>.*` when given."""
    name = stem or f"{label}-latest"
    md = out_dir / f"{name}.md"
    md.write_text(render_markdown(result))
    png = out_dir / f"{name}.png"
    render_plot(result, png)
    return md, png


HISTORY_FIELDS = ["started", "commit", "harness", "dataset", "extension", "index", "lists",
                  "probes_at_0.95", "qps_at_0.95", "server_us_at_0.95", "ratio", "build_s", "index_mb", "cpu"]


def append_history(out_dir, rows):
    """Appends one line per measured index (or paired round set) to results/history.csv: every run
    is kept there in one small file, and only the latest run of each kind in full."""
    import csv

    path = Path(out_dir) / "history.csv"
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HISTORY_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        for row in rows:
            w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items() if v is not None})


def history_rows(result):
    """bench.py's result as history lines: each index's figures at recall@10 = 0.95."""
    rows = []
    for er in result["extensions"].values():
        for ir in er["indexes"]:
            best = best_at_recall([ir])
            rows.append({
                "started": result["started"], "commit": (result.get("pgivf_build") or {}).get("git_commit"),
                "harness": "curve", "dataset": result["dataset"]["name"], "extension": er["display"],
                "index": index_label(er, ir), "lists": ir["lists"],
                "probes_at_0.95": best[1] if best else None, "qps_at_0.95": qps_at_recall(ir),
                "server_us_at_0.95": qps_at_recall(ir, key="backend_cpu_us"),
                "build_s": ir.get("build_s"), "index_mb": ir.get("index_mb"),
                "cpu": (result.get("machine") or {}).get("cpu_model"),
            })
    return rows


def save_latest(out_dir, label, result):
    """The run's full figures as `<label>-latest.json` (the previous run's are in history.csv)."""
    path = Path(out_dir) / f"{label}-latest.json"
    path.write_text(json.dumps(result, indent=1, default=float))
    return path


def save_partial(result, args):
    path = Path(args.out) / (result["json_name"] + ".tmp")
    path.write_text(json.dumps(result, indent=1, default=float))


# ------------------------------------------------------------------------------------------------


def render_scale(out_dir, threshold=0.95):
    """benches/results/pypi-scale-latest.md: per size and index, the serial and parallel build, the
    index size, the probes reaching the recall and what a query costs there, from the sizes' latest
    results."""
    lines = [f"# How pgivf and pgvector grow with the rows (pypi-minilm-384, recall@10 ≥ {threshold})", ""]
    lines.append(
        "Each size is a subset of pypi-minilm-384 (731,089 rows in all; which rows: under Data), one run of `bash benches/run.sh --scale` per size; "
        "the build is serial (`max_parallel_maintenance_workers = 0`) and with 2 workers; QPS is at the first probes value reaching "
        "the recall: one client, two clients, and the backend's CPU per query (its own work, without the round trip)."
    )
    lines.append("")
    lines.append(
        "| rows | index | lists | build s | build s, 2 workers | build / pgvector | index MB | probes | recall@10 | QPS | QPS 2 clients | server us/query | server CPU pgvector / this | COPY 100k rows/s, indexed / none |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    machine = None
    sources = []
    phase_rows = []
    for name in SCALE_LISTS:
        path = out_dir / f"{name}-latest.json"
        if not path.exists():
            rows = PYPI_SUBSETS[name]
            lines.append(f"| {f'{rows:,}' if rows else 'all 731,089'} | not measured: no set of these rows on the machine of the last run | | | | | | | | | | | | |")
            continue
        result = json.loads(path.read_text())
        machine = machine or result.get("machine", {})
        rows = result["dataset"]["rows"]
        phase_rows += [
            f"| {rows:,} | {index_label(er, ir)} | {ir['build_s']:.2f} | {ph['samples']:,} | {ph['sampling_s']:.2f} | "
            f"{ph['kmeans_s']:.2f} | {ph['assigning_s']:.2f} | {ph['writing_s']:.2f} |"
            for er in result["extensions"].values()
            for ir in er["indexes"]
            if (ph := ir.get("build_phases"))
        ]
        sources.append(f"- {rows:,} rows: {result['dataset'].get('source', '?')}, measured {result['started']}")
        vector = result["extensions"].get("vector")
        vector_ir = vector["indexes"][0] if vector and vector["indexes"] else None
        vector_point = first_at_recall(vector_ir, threshold) if vector_ir else None
        for key, er in result["extensions"].items():
            for ir in er["indexes"]:
                pr = first_at_recall(ir, threshold)
                build_ratio = ratio(ir["build_s"], vector_ir["build_s"]) if vector_ir and key != "vector" else ""
                cpu_ratio = ""
                if pr and vector_point and key != "vector" and pr.get("backend_cpu_us") and vector_point.get("backend_cpu_us"):
                    cpu_ratio = ratio(vector_point["backend_cpu_us"], pr["backend_cpu_us"], 1)
                w, none = ir.get("writes", {}), er.get("writes_no_vector_index", {})
                copy = ratio(w.get("copy_binary_rows_per_s"), none.get("copy_binary_rows_per_s"))
                point = (
                    [str(pr["probes"]), f"{pr['recall@10']:.3f}", fmt_num(pr["qps"]), fmt_num(pr.get("qps_2_clients")), fmt_num(pr.get("backend_cpu_us"))]
                    if pr
                    else ["not reached", "", "", "", ""]
                )
                lines.append(
                    f"| {rows:,} | {index_label(er, ir)} | {ir['lists']} | {ir['build_s']:.1f} | {ir['build_parallel2_s']:.1f} | {build_ratio} | "
                    f"{ir['index_mb']:.0f} | " + " | ".join(point) + f" | {cpu_ratio} | {copy} |"
                )
    if sources:
        lines += ["", "Data:"] + sources
    if phase_rows:
        lines += ["", "Where pgivf's serial build goes (its DEBUG1 report; reading and assigning includes encoding the codes):", ""]
        lines += ["| rows | index | build s | samples | sampling s | k-means s | reading and assigning s | writing s |", "|---|---|---|---|---|---|---|---|"]
        lines += phase_rows
    if machine:
        lines += ["", f"Machine: {machine.get('cpu_model')}, {machine.get('cpus_usable')} cores usable."]
    path = out_dir / "pypi-scale-latest.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def first_at_recall(ir, threshold):
    """The per-probes record of the smallest probes value reaching the recall, or None."""
    for pr in sorted(ir["probes"], key=lambda pr: pr["probes"]):
        if pr["recall@10"] >= threshold:
            return pr
    return None


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--extension", default="pgivf", help="comma-separated: pgivf, vector (pgvector). Default pgivf")
    p.add_argument("--dataset", default="debian", help="debian, pypi (731,089 rows), pypi-100k, pypi-300k (random subsets), synthetic-128, synthetic-768, synthetic-1536, synthetic-3072 (pgvector through a halfvec expression index; pgivf needs --quantizers rabitq:heap) or all (the debian and synthetic sets; comma-separated). Default debian")
    p.add_argument("--lists", default="100,250", help="comma-separated lists values. Default 100,250")
    p.add_argument("--probes", default="1,2,4,8,16,32,64", help="comma-separated ivfflat.probes values. Default 1,2,4,8,16,32,64")
    p.add_argument(
        "--quantizers",
        default="none",
        help="comma-separated pgivf index variants, each measured as its own curve: none (flat float32), sq8, rabitq, "
        "optionally :heap for rerank = 'heap' and :spill / :nospill for spill = 'on' / 'off' (e.g. none,sq8,rabitq,rabitq:nospill,rabitq:heap). "
        "pgvector is unaffected. Default none",
    )
    p.add_argument("--rerank-factor", type=float, help="SET ivfflat.rerank_factor to this for the quantized pgivf variants (default: the server's)")
    p.add_argument("--queries", type=int, default=300, help="query vectors per measurement. Default 300 (50 with --quick)")
    p.add_argument("--dsn", default=os.environ.get("PGIVF_BENCH_DSN"), help="libpq connection string of a server with the extensions installed (databases pgivf_bench_<ext> are created there)")
    p.add_argument("--quick", action="store_true", help="smoke run: 20,000 rows, 50 queries, short time budgets")
    p.add_argument("--out", default=str(BENCHES / "results"), help="output directory. Default benches/results")
    p.add_argument("--budget", type=float, default=10.0, help="seconds per concurrent-clients and exact-scan measurement. Default 10")
    p.add_argument("--max-pass-seconds", type=float, default=60.0, help="time limit of one pass over the queries. Default 60")
    p.add_argument(
        "--min-pass-seconds",
        type=float,
        default=3.0,
        help="the timed single-client pass goes round the queries again until this long (QPS over all of it). Default 3",
    )
    p.add_argument("--insert-seconds", type=float, default=5.0, help="duration of the single-row INSERT test. Default 5")
    p.add_argument("--copy-rows", type=int, default=20_000, help="rows in the COPY test. Default 20000")
    p.add_argument("--exact-queries", type=int, default=100, help="queries in the exact-scan measurement (bounded by --budget too)")
    p.add_argument("--keep", action="store_true", help="keep the benchmark databases afterwards")
    p.add_argument("--report", metavar="JSON", help="only re-render the markdown and PNG of an existing result file")
    p.add_argument(
        "--scale",
        action="store_true",
        help="the scale table: pypi-100k, pypi-300k and pypi (lists 100, 300, 1000), flat and RaBitQ lists and pgvector, "
        "COPY of 100,000 rows into each; then benches/results/pypi-scale-latest.md from the three results",
    )
    args = p.parse_args(argv)
    args.extensions = [e.strip() for e in args.extension.split(",") if e.strip()]
    for e in args.extensions:
        if e not in EXTENSIONS:
            p.error(f"unknown extension {e!r} (pgivf, vector)")
    args.lists = [int(x) for x in args.lists.split(",")]
    args.probes = sorted(int(x) for x in args.probes.split(","))
    try:
        args.variants = parse_variants(args.quantizers)
    except ValueError as e:
        p.error(f"--quantizers: {e}")
    args.datasets = ALL_DATASETS if args.dataset == "all" else [d.strip() for d in args.dataset.split(",")]
    args.lists_by_dataset = {}
    if args.scale:
        given = " ".join(argv)
        args.datasets = list(SCALE_LISTS)
        args.lists_by_dataset = {d: [lists] for d, lists in SCALE_LISTS.items()}
        if "--extension" not in given:
            args.extensions = ["pgivf", "vector"]
        if "--quantizers" not in given:
            args.variants = parse_variants("none,rabitq")
        if "--copy-rows" not in given:
            args.copy_rows = 100_000
        if "--probes" not in given:
            args.probes = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96]
    if args.quick:
        if "--queries" not in " ".join(argv):
            args.queries = 50
        args.budget = min(args.budget, 3.0)
        args.min_pass_seconds = min(args.min_pass_seconds, 0.5)
        args.insert_seconds = min(args.insert_seconds, 1.5)
        args.copy_rows = min(args.copy_rows, 5_000)
        args.exact_queries = min(args.exact_queries, 20)
        args.max_pass_seconds = min(args.max_pass_seconds, 20.0)
    return args


def run_dataset(name, args, admin, bandwidth, machine, build_info):
    import psycopg

    log(f"dataset {name}{' (quick)' if args.quick else ''}")
    if args.scale and name in PYPI_SUBSETS and not args.quick:
        if pypi_data.find(PYPI_SUBSETS[name]) is None:
            log(f"  skipped: no pypi-minilm-384 set of {PYPI_SUBSETS[name] or 'all'} rows here (`python3 benches/pypi_data.py ensure` builds it)")
            return
    ds = load_dataset(name, args.quick, args.queries)
    n_q = min(args.queries, len(ds.queries))
    if n_q < args.queries:
        log(f"  only {n_q} queries available")
    ds.queries = np.asarray(ds.queries[:n_q])
    ds.gt = np.asarray(ds.gt[:n_q])
    log(f"  {ds.n:,} rows × {ds.dim}, {ds.metric}, {n_q} queries")
    qvecs = [BinaryVector(vector_binary(q)) for q in ds.queries]
    copy_n = args.copy_rows
    copy_ids = np.arange(COPY_ID_BASE, COPY_ID_BASE + copy_n, dtype=np.int32)
    copy_vecs = np.asarray(ds.base[np.arange(copy_n) % ds.n])
    copy_payloads = {"binary": list(copy_binary_chunks(copy_ids, copy_vecs)), "text": [copy_text_data(copy_ids, copy_vecs)]}

    label = name + ("-quick" if args.quick else "")
    result = {
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "json_name": f"{label}-latest.json",
        "args": {k: v for k, v in vars(args).items() if k not in ("dsn",)},
        "dataset": ds.describe(),
        "queries": n_q,
        "machine": machine,
        "pgivf_build": build_info,
        "memory_bandwidth_gb_per_s": bandwidth,
        "server": server_info(admin),
        "psycopg": psycopg.__version__,
        "extensions": {},
    }
    t0 = time.monotonic()
    for ext in args.extensions:
        bench_extension(ext, args.dsn, admin, ds, args, qvecs, copy_payloads, result)
    result["elapsed_s"] = time.monotonic() - t0
    result["loadavg_at_end"] = os.getloadavg()
    out_dir = Path(args.out)
    json_path = save_latest(out_dir, label, result)
    append_history(out_dir, history_rows(result))
    tmp = out_dir / (result["json_name"] + ".tmp")
    if tmp.exists():
        tmp.unlink()
    md, png = write_report(result, out_dir, label)
    log(f"wrote {json_path}, {md}, {png}")
    print(md.read_text())


def main(argv):
    args = parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.report:
        # Beside the result file, named after it: re-rendering an older run must not replace the
        # `-latest` report of the newest.
        source = Path(args.report)
        result = json.loads(source.read_text())
        label = result["dataset"]["name"] + ("-quick" if result["args"].get("quick") else "")
        md, png = write_report(result, source.parent, label, stem=source.stem)
        print(f"wrote {md} and {png}")
        return
    if not args.dsn:
        raise SystemExit("--dsn is required (benches/run.sh starts a throwaway cluster and passes it)")
    import psycopg

    admin = psycopg.connect(args.dsn, autocommit=True)
    machine = machine_info()
    build_info = pgivf_build_info()
    log(f"machine: {machine.get('cpu_model')}, {machine.get('cpus_usable')} cores; measuring memory bandwidth")
    bandwidth = memory_bandwidth()
    log(f"single-core memory read bandwidth: {bandwidth:.1f} GB/s")
    for name in args.datasets:
        run_dataset(name, args, admin, bandwidth, machine, build_info)
    admin.close()
    if args.scale:
        path = render_scale(out_dir)
        print(path.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
