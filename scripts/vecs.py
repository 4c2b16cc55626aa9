#!/usr/bin/env python3
"""Read fvecs/ivecs files (optionally gzipped) and write COPY-ready text, standard library only.

    vecs.py copy BASE.fvecs.gz [META.tsv.gz] [--limit N]   ->  id<TAB>[vector][<TAB>package<TAB>summary]
    vecs.py literals QUERY.fvecs.gz [--limit N]            ->  one '[...]' literal per line
"""
import gzip
import struct
import sys


def open_any(path):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def read_vecs(path, kind="f"):
    with open_any(path) as f:
        raw = f.read()
    offset = 0
    while offset < len(raw):
        (dim,) = struct.unpack_from("<i", raw, offset)
        offset += 4
        yield struct.unpack_from("<%d%s" % (dim, kind), raw, offset)
        offset += 4 * dim


def literal(values):
    # repr() of a float32 widened to double is exact; PostgreSQL rounds it back to the same float32.
    return "[" + ",".join(repr(v) for v in values) + "]"


def copy_escape(text):
    return text.replace("\\", "\\\\").replace("\t", " ").replace("\n", " ").replace("\r", " ")


def main(argv):
    limit = None
    if "--limit" in argv:
        i = argv.index("--limit")
        limit = int(argv[i + 1])
        del argv[i : i + 2]
    mode, path = argv[1], argv[2]
    out = sys.stdout
    if mode == "copy":
        meta = None
        if len(argv) > 3:
            with open_any(argv[3]) as f:
                meta = f.read().decode("utf-8").splitlines()
        for i, vec in enumerate(read_vecs(path)):
            if limit is not None and i >= limit:
                break
            row = [str(i), literal(vec)]
            if meta is not None:
                package, _, summary = meta[i].partition("\t")
                row += [copy_escape(package), copy_escape(summary)]
            out.write("\t".join(row) + "\n")
    elif mode == "literals":
        for i, vec in enumerate(read_vecs(path)):
            if limit is not None and i >= limit:
                break
            out.write(literal(vec) + "\n")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
