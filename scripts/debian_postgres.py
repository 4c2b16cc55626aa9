#!/usr/bin/env python3
"""Installs a newer PostgreSQL from Debian's binary packages into a directory of its own, runnable
on this bookworm machine: for a major version whose source package the registry does not serve.

  debian_postgres.py MAJOR SUITE ROOT

Downloads postgresql-MAJOR and postgresql-server-dev-MAJOR of SUITE (e.g. trixie) with the shared
libraries they need (resolved from the suite's package index), unpacks them under ROOT, and points
every PostgreSQL program at the suite's own dynamic loader and libraries (patchelf): the programs
then run with the C library they were built for, beside the system's. PostgreSQL finds its share
and library directories relative to its programs, so the tree works where it lies. Prints the path
of the unpacked pg_config.
"""
import gzip
import lzma
import os
import re
import subprocess
import sys
import urllib.request

# Packages the programs never load: maintainer scripts' helpers, data, compilers and development
# files of other packages, documentation.
SKIP = re.compile(r"^(postgresql-common|postgresql-client-common|tzdata|locales|ssl-cert|debconf|adduser|"
                  r"sensible-utils|perl.*|libperl.*|lsb-base|logrotate|init-system-helpers|dpkg|.*-dev|clang.*|"
                  r"llvm.*|libllvm.*|gcc.*|cpp.*|libclang.*|make|.*-doc|readline-common|netbase|ucf|"
                  r"libjson-perl|libipc-run-perl|postgresql-client-\d+|libc-dev-bin|linux-libc-dev|.*-common)$")


def mirror():
    try:
        for line in open("/etc/apt/sources.list.d/debian.sources"):
            if line.startswith("URIs:"):
                return line.split()[1].rstrip("/")
    except OSError:
        pass
    return "http://deb.debian.org/debian"


def fetch(url):
    with urllib.request.urlopen(url, timeout=120) as response:
        return response.read()


def packages(base, suite):
    index = lzma.decompress(fetch(f"{base}/dists/{suite}/main/binary-amd64/Packages.xz")).decode()
    found = {}
    for stanza in index.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Package" in fields:
            found.setdefault(fields["Package"], fields)
            for provided in fields.get("Provides", "").split(","):
                name = provided.strip().split(" ")[0]
                if name:
                    found.setdefault(name, fields)
    return found


def needed(index, roots):
    chosen, todo = {}, list(roots)
    while todo:
        name = todo.pop()
        fields = index.get(name)
        if fields is None or fields["Package"] in chosen:
            continue
        chosen[fields["Package"]] = fields
        for dep in (fields.get("Pre-Depends", "") + "," + fields.get("Depends", "")).split(","):
            alternatives = [a.strip().split(" ")[0].split(":")[0] for a in dep.split("|") if a.strip()]
            for alt in alternatives:
                if alt in index and not SKIP.match(alt):
                    todo.append(alt)
                    break
    return chosen


def main():
    major, suite, root = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
    base = mirror()
    index = packages(base, suite)
    chosen = needed(index, [f"postgresql-{major}", f"postgresql-client-{major}", f"postgresql-server-dev-{major}", "libc6", "libgcc-s1"])
    os.makedirs(root, exist_ok=True)
    debs = os.path.join(root, ".debs")
    os.makedirs(debs, exist_ok=True)
    for name, fields in sorted(chosen.items()):
        path = os.path.join(debs, os.path.basename(fields["Filename"]))
        if not os.path.exists(path):
            data = fetch(f"{base}/{fields['Filename']}")
            with open(path + ".part", "wb") as f:
                f.write(data)
            os.rename(path + ".part", path)
        subprocess.run(["dpkg-deb", "-x", path, root], check=True)
    print(f"unpacked {len(chosen)} packages of {suite} into {root}", file=sys.stderr)

    loader = os.path.join(root, "lib64/ld-linux-x86-64.so.2")
    if not os.path.exists(loader):
        loader = os.path.join(root, "usr/lib64/ld-linux-x86-64.so.2")
    pgdir = os.path.join(root, f"usr/lib/postgresql/{major}")
    libs = ":".join(os.path.join(root, d) for d in (
        "usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", f"usr/lib/postgresql/{major}/lib"))
    programs = [os.path.join(pgdir, "bin", p) for p in os.listdir(os.path.join(pgdir, "bin"))]
    programs.append(os.path.join(pgdir, "lib/pgxs/src/test/regress/pg_regress"))
    for program in programs:
        if not os.path.isfile(program) or open(program, "rb").read(4) != b"\x7fELF":
            continue
        subprocess.run(["patchelf", "--set-interpreter", loader, "--force-rpath", "--set-rpath", libs, program],
                       check=True)
    print(os.path.join(pgdir, "bin/pg_config"))


if __name__ == "__main__":
    main()
