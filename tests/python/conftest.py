"""Shared fixtures for the real-client tests of pgivf (psycopg 3, pgvector-python, SQLAlchemy 2).

The database comes from the PGIVF_DSN environment variable, a libpq connection string such as
"host=127.0.0.1 port=5432 user=postgres dbname=pyclients" (tests/integration/python_clients.sh
starts a throwaway cluster and sets it). Every expected result is computed independently with numpy
from the data the test itself wrote, so a wrong answer from the server fails the test.

Run by hand:
    PGIVF_DSN="host=127.0.0.1 port=5432 user=postgres dbname=test" python -m pytest tests/python
"""
import os

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from helpers import pick_queries


def _dsn():
    dsn = os.environ.get("PGIVF_DSN")
    if not dsn:
        pytest.exit("PGIVF_DSN is not set (e.g. PGIVF_DSN='host=127.0.0.1 port=5432 user=postgres dbname=test')",
                    returncode=2)
    return dsn


@pytest.fixture(scope="session")
def dsn():
    dsn = _dsn()
    # pgivf installs under its own extension name. Client code or migrations that run
    # `CREATE EXTENSION vector` (pgvector's name) cannot be used unchanged against pgivf: that statement
    # must become `CREATE EXTENSION pgivf`. Everything after it works as is, because pgivf creates the
    # same SQL objects: the type named `vector` (which pgvector-python's register_vector and
    # SQLAlchemy's reflection look up by name), its operators, functions, aggregates and casts, and the
    # index access method `ivfflat` with the opclasses vector_l2_ops, vector_ip_ops and vector_cosine_ops.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgivf")
        installed = conn.execute("SELECT extname FROM pg_extension WHERE extname IN ('pgivf', 'vector')").fetchall()
        assert installed == [("pgivf",)], f"expected pgivf (and not pgvector) in the database, found {installed}"
    return dsn


@pytest.fixture
def conn(dsn):
    """A psycopg 3 connection set up the way pgvector-python documents it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        yield conn


@pytest.fixture
def plain_conn(dsn):
    """A psycopg 3 connection without pgvector's adapters (raw wire data)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def dataset():
    """600 random 16-dimensional float32 vectors with ids, and 8 query vectors."""
    rng = np.random.default_rng(20240917)
    data = rng.standard_normal((600, 16)).astype(np.float32)
    ids = np.arange(1, 601, dtype=np.int64)
    queries = pick_queries(rng, data, 8, 10)
    return ids, data, queries
