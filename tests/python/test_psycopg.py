"""psycopg 3 with pgvector-python's adapters (pgvector.psycopg.register_vector) against pgivf: what a
pgvector user's code does, unchanged. Expected answers come from numpy, never from the server."""
import asyncio
import struct

import numpy as np
import psycopg
import pytest
from pgvector import Vector
from pgvector.psycopg import register_vector, register_vector_async
from psycopg import errors, sql
from psycopg.types import TypeInfo

from helpers import SPECIAL_VALUES, as_np, brute_force, distances, same_bits

OPS = ["<->", "<#>", "<=>", "<+>"]
OPCLASSES = [("vector_l2_ops", "<->"), ("vector_ip_ops", "<#>"), ("vector_cosine_ops", "<=>")]
LISTS = 10


def recreate(conn, table, columns):
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    conn.execute(sql.SQL("CREATE TABLE {} (" + columns + ")").format(sql.Identifier(table)))


def wide_range_rows(n, dim, seed):
    """Random float32 vectors over most of the exponent range, plus the special values."""
    rng = np.random.default_rng(seed)
    mant = rng.standard_normal((n, dim))
    expo = rng.uniform(-36, 36, (n, dim))
    rows = (mant * 10.0 ** expo).astype(np.float32)
    rows[0, : min(dim, len(SPECIAL_VALUES))] = SPECIAL_VALUES[:dim]
    assert np.isfinite(rows).all()
    return rows


@pytest.fixture(scope="module")
def knn_table(dsn, dataset):
    """ps_knn (id int8, embedding vector(16)) loaded with the dataset through binary parameters."""
    ids, data, _ = dataset
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        recreate(conn, "ps_knn", "id int8 PRIMARY KEY, embedding vector(16)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO ps_knn (id, embedding) VALUES (%b, %b)",
                            [(int(i), v) for i, v in zip(ids, data)])
        conn.execute("ANALYZE ps_knn")
    return "ps_knn"


def test_register_vector_finds_the_vector_type(conn):
    info = TypeInfo.fetch(conn, "vector")
    assert info is not None
    oid, array_oid = conn.execute("SELECT 'vector'::regtype::oid, 'vector[]'::regtype::oid").fetchone()
    assert info.oid == oid
    assert info.array_oid == array_oid
    # The value comes back through the loader register_vector installed.
    value = conn.execute("SELECT '[1,2,3]'::vector").fetchone()[0]
    assert isinstance(value, (Vector, np.ndarray))
    assert same_bits(as_np(value), [1, 2, 3])


@pytest.mark.parametrize("placeholder", ["%t", "%b"], ids=["text-params", "binary-params"])
@pytest.mark.parametrize("binary_results", [False, True], ids=["text-results", "binary-results"])
def test_numpy_round_trip(conn, placeholder, binary_results):
    table = f"ps_rt_{placeholder[1]}_{int(binary_results)}"
    rows = wide_range_rows(40, 18, seed=7)
    recreate(conn, table, "id int8 PRIMARY KEY, embedding vector(18)")
    with conn.cursor() as cur:
        for i, v in enumerate(rows):
            cur.execute(sql.SQL("INSERT INTO {} (id, embedding) VALUES (%s, " + placeholder + ")")
                        .format(sql.Identifier(table)), (i, v))
        # pgvector.Vector objects and float64 arrays go through the same dumpers.
        cur.execute(sql.SQL("INSERT INTO {} VALUES (1000, " + placeholder + "), (1001, " + placeholder + ")")
                    .format(sql.Identifier(table)), (Vector(rows[1].tolist()), rows[2].astype(np.float64)))
        cur.execute(sql.SQL("SELECT id, embedding FROM {} ORDER BY id").format(sql.Identifier(table)),
                    binary=binary_results)
        assert cur.pgresult.fformat(1) == (1 if binary_results else 0)
        got = cur.fetchall()
    expected = list(enumerate(rows)) + [(1000, rows[1]), (1001, rows[2])]
    assert [r[0] for r in got] == [e[0] for e in expected]
    for (_, value), (i, v) in zip(got, expected):
        assert same_bits(as_np(value), v), f"row {i}: wrote {v!r}, read {as_np(value)!r}"


def test_text_output_is_float4_shortest(conn):
    """vector_out writes each element as float4out does (shortest round-trip digits)."""
    rows = wide_range_rows(20, 18, seed=11)
    for v in rows:
        text, reals = conn.execute("SELECT %b::vector::text, %b::vector::real[]::text", (v, v)).fetchone()
        assert text == "[" + reals[1:-1] + "]"
        assert same_bits(np.array([float(x) for x in text[1:-1].split(",")], dtype=np.float32), v)


def test_binary_wire_format(plain_conn):
    """Without any adapter, the binary result is pgvector's vector_send layout: int16 dim, int16 unused
    (0), then dim big-endian float4."""
    raw = plain_conn.execute("SELECT '[1,-2.5,0.003,-0]'::vector", binary=True).fetchone()[0]
    assert bytes(raw) == struct.pack(">HH4f", 4, 0, 1.0, -2.5, np.float32(0.003), -0.0)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_order_by_distance_matches_numpy(conn, knn_table, dataset, op, binary):
    ids, data, queries = dataset
    query = f"SELECT id, embedding {op} %s AS d FROM ps_knn ORDER BY embedding {op} %s LIMIT 10"
    for q in queries:
        rows = conn.execute(query, (q, q), binary=binary).fetchall()
        assert [r[0] for r in rows] == brute_force(ids, data, q, op, 10)
        expected = distances(data, q, op)[np.array([r[0] for r in rows]) - 1]
        np.testing.assert_allclose([r[1] for r in rows], expected, rtol=1e-5, atol=1e-5)


def test_distance_functions_match_numpy(conn, dataset):
    _, data, queries = dataset
    a, b = data[0], queries[0]
    row = conn.execute(
        "SELECT l2_distance(%s, %s), inner_product(%s, %s), cosine_distance(%s, %s), l1_distance(%s, %s),"
        " vector_dims(%s), vector_norm(%s), l2_normalize(%s), %s + %s, %s - %s, %s * %s, %s::real[]",
        (a, b, a, b, a, b, a, b, a, a, a, a, b, a, b, a, b, a)).fetchone()
    np.testing.assert_allclose(row[0], distances([a], b, "<->")[0], rtol=1e-6)
    np.testing.assert_allclose(row[1], -distances([a], b, "<#>")[0], rtol=1e-6)
    np.testing.assert_allclose(row[2], distances([a], b, "<=>")[0], rtol=1e-6)
    np.testing.assert_allclose(row[3], distances([a], b, "<+>")[0], rtol=1e-6)
    assert row[4] == 16
    np.testing.assert_allclose(row[5], np.linalg.norm(a.astype(np.float64)), rtol=1e-6)
    np.testing.assert_allclose(as_np(row[6]), a / np.linalg.norm(a), rtol=1e-6)
    assert same_bits(as_np(row[7]), a + b)
    assert same_bits(as_np(row[8]), a - b)
    assert same_bits(as_np(row[9]), a * b)
    assert same_bits(np.array(row[10], dtype=np.float32), a)

    row = conn.execute("SELECT binary_quantize(%s)::text, subvector(%s, 3, 5), %s || %s, %s < %s, %s = %s",
                       (a, a, a, b, a, b, a, a.copy())).fetchone()
    assert row[0] == "".join("1" if x > 0 else "0" for x in a)
    assert same_bits(as_np(row[1]), a[2:7])
    assert same_bits(as_np(row[2]), np.concatenate([a, b]))
    assert row[3] == (a.tolist() < b.tolist())  # pgvector compares element by element
    assert row[4] is True


def test_aggregates_match_numpy(conn, knn_table, dataset):
    _, data, _ = dataset
    avg, total, n = conn.execute("SELECT avg(embedding), sum(embedding), count(*) FROM ps_knn").fetchone()
    assert n == len(data)
    np.testing.assert_allclose(as_np(avg), data.astype(np.float64).mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(as_np(total), data.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("opclass,op", OPCLASSES)
def test_ivfflat_index_exact_at_full_probes(conn, dsn, dataset, opclass, op):
    ids, data, queries = dataset
    table, index = f"ps_idx_{opclass}", f"ps_idx_{opclass}_embedding"
    recreate(conn, table, "id int8 PRIMARY KEY, embedding vector(16)")
    with conn.cursor() as cur:
        # Build on the first 500 rows, then insert the rest through the index (aminsert).
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(sql.Identifier(table)),
                        [(int(i), v) for i, v in zip(ids[:500], data[:500])])
        cur.execute(sql.SQL("CREATE INDEX {} ON {} USING ivfflat (embedding {}) WITH (lists = {})").format(
            sql.Identifier(index), sql.Identifier(table), sql.Identifier(opclass), sql.Literal(LISTS)))
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%b, %b)").format(sql.Identifier(table)),
                        [(int(i), v) for i, v in zip(ids[500:], data[500:])])
        cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))

    # A new session whose first statement is the SET, before anything has loaded the extension's
    # library (ivfflat.probes is then a placeholder that the library takes over when it loads).
    with psycopg.connect(dsn, autocommit=True) as qconn:
        qconn.execute(f"SET ivfflat.probes = {LISTS}")
        register_vector(qconn)
        cur = qconn.cursor()  # after register_vector: a cursor takes the connection's adapters when made
        cur.execute("SET enable_seqscan = off")

        query = sql.SQL("SELECT id, embedding {op} %s FROM {t} ORDER BY embedding {op} %s LIMIT 10").format(
            op=sql.SQL(op), t=sql.Identifier(table))
        plan = "\n".join(r[0] for r in cur.execute(sql.SQL("EXPLAIN ") + query, (queries[0], queries[0])))
        assert f"Index Scan using {index} on {table}" in plan, plan
        assert cur.execute("SHOW ivfflat.probes").fetchone()[0] == str(LISTS)

        for binary in (False, True):
            for q in queries:
                rows = cur.execute(query, (q, q), binary=binary).fetchall()
                assert [r[0] for r in rows] == brute_force(ids, data, q, op, 10)
                expected = distances(data, q, op)[np.array([r[0] for r in rows]) - 1]
                np.testing.assert_allclose([r[1] for r in rows], expected, rtol=1e-5, atol=1e-5)

        # Without LIMIT, probes = lists visits every row exactly once.
        every = cur.execute(sql.SQL("SELECT id FROM {t} ORDER BY embedding {op} %s").format(
            op=sql.SQL(op), t=sql.Identifier(table)), (queries[1],)).fetchall()
        assert sorted(r[0] for r in every) == [int(i) for i in ids]

        # With one probe the answer is approximate, but what comes back is in distance order.
        cur.execute("SET ivfflat.probes = 1")
        rows = cur.execute(query, (queries[2], queries[2])).fetchall()
        assert 0 < len(rows) <= 10
        d = [r[1] for r in rows]
        assert d == sorted(d)


def test_copy_binary_round_trip(conn):
    for dim in (3, 1000):  # 1000 dimensions = 4 kB rows, TOASTed
        table = f"ps_copy_bin_{dim}"
        rows = wide_range_rows(60, dim, seed=dim)
        recreate(conn, table, f"id int8 PRIMARY KEY, embedding vector({dim})")
        with conn.cursor() as cur:
            with cur.copy(sql.SQL("COPY {} (id, embedding) FROM STDIN WITH (FORMAT BINARY)")
                          .format(sql.Identifier(table))) as copy:
                copy.set_types(["int8", "vector"])
                for i, v in enumerate(rows):
                    copy.write_row((i, v))
                copy.write_row((len(rows), None))
            assert cur.execute(sql.SQL("SELECT count(*), count(embedding) FROM {}")
                               .format(sql.Identifier(table))).fetchone() == (len(rows) + 1, len(rows))

            with cur.copy(sql.SQL("COPY (SELECT id, embedding FROM {} ORDER BY id) TO STDOUT WITH (FORMAT BINARY)")
                          .format(sql.Identifier(table))) as copy:
                copy.set_types(["int8", "vector"])
                out = list(copy.rows())
        assert [r[0] for r in out] == list(range(len(rows) + 1))
        assert out[-1][1] is None
        for (i, value), v in zip(out, rows):
            assert same_bits(as_np(value), v), f"dim {dim} row {i}"
        # And what a plain SELECT sees is the same.
        selected = conn.execute(sql.SQL("SELECT embedding FROM {} WHERE id = 5").format(sql.Identifier(table)),
                                binary=True).fetchone()[0]
        assert same_bits(as_np(selected), rows[5])


def test_copy_text_round_trip(conn):
    rows = wide_range_rows(50, 18, seed=3)
    recreate(conn, "ps_copy_text", "id int8 PRIMARY KEY, embedding vector(18)")
    with conn.cursor() as cur:
        with cur.copy("COPY ps_copy_text (id, embedding) FROM STDIN") as copy:
            for i, v in enumerate(rows[:-1]):
                copy.write_row((i, v))
        # Raw COPY text, as psql's \copy or a CSV pipeline would send it.
        with cur.copy("COPY ps_copy_text (id, embedding) FROM STDIN") as copy:
            copy.write(f"{len(rows) - 1}\t[{','.join(repr(float(x)) for x in rows[-1])}]\n")

        with cur.copy("COPY (SELECT id, embedding FROM ps_copy_text ORDER BY id) TO STDOUT") as copy:
            copy.set_types(["int8", "vector"])
            typed = list(copy.rows())
        with cur.copy("COPY (SELECT id, embedding FROM ps_copy_text ORDER BY id) TO STDOUT") as copy:
            untyped = list(copy.rows())
    assert [r[0] for r in typed] == list(range(len(rows)))
    for (i, value), (_, text), v in zip(typed, untyped, rows):
        assert same_bits(as_np(value), v), f"row {i}"
        assert same_bits(np.array([float(x) for x in text[1:-1].split(",")], dtype=np.float32), v)


def expect_error(conn, exc_class, sqlstate, message, query, params=None, binary=False):
    with pytest.raises(exc_class) as info:
        conn.execute(query, params, binary=binary)
    assert info.value.sqlstate == sqlstate
    assert info.value.diag.message_primary == message
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on


@pytest.mark.parametrize("placeholder", ["%t", "%b"], ids=["text", "binary"])
def test_errors_have_pgvector_sqlstates(conn, placeholder):
    p = placeholder
    recreate(conn, f"ps_err_{p[1]}", "id int8, embedding vector(3)")
    insert = f"INSERT INTO ps_err_{p[1]} VALUES (1, {p})"
    f32 = np.float32
    expect_error(conn, errors.DataException, "22000", "expected 3 dimensions, not 2",
                 insert, (np.array([1, 2], f32),))
    expect_error(conn, errors.DataException, "22000", "expected 3 dimensions, not 4",
                 insert, (np.array([1, 2, 3, 4], f32),))
    expect_error(conn, errors.DataException, "22000", "NaN not allowed in vector",
                 insert, (np.array([1, np.nan, 3], f32),))
    expect_error(conn, errors.DataException, "22000", "infinite value not allowed in vector",
                 insert, (np.array([1, 2, -np.inf], f32),))
    expect_error(conn, errors.DataException, "22000", "NaN not allowed in vector",
                 f"SELECT {p}::vector", (np.array([np.nan], f32),))
    expect_error(conn, errors.DataException, "22000", "vector must have at least 1 dimension",
                 f"SELECT {p}::vector", (np.array([], f32),))
    expect_error(conn, errors.ProgramLimitExceeded, "54000", "vector cannot have more than 16000 dimensions",
                 f"SELECT {p}::vector", (np.ones(16001, f32),))
    expect_error(conn, errors.DataException, "22000", "different vector dimensions 3 and 2",
                 f"SELECT {p}::vector <-> {p}::vector", (np.ones(3, f32), np.ones(2, f32)))
    expect_error(conn, errors.DataException, "22000", "different vector dimensions 2 and 3",
                 f"SELECT cosine_distance({p}, {p})", (np.ones(2, f32), np.ones(3, f32)))
    assert conn.execute(f"SELECT count(*) FROM ps_err_{p[1]}").fetchone() == (0,)
    # The largest vector is accepted.
    big = np.arange(16000, dtype=f32)
    assert same_bits(as_np(conn.execute(f"SELECT {p}::vector", (big,), binary=True).fetchone()[0]), big)


def test_copy_binary_wrong_dimensions_fails_with_22000(conn):
    recreate(conn, "ps_copy_err", "id int8, embedding vector(3)")
    with pytest.raises(errors.DataException) as info:
        with conn.cursor() as cur:
            with cur.copy("COPY ps_copy_err (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "vector"])
                copy.write_row((1, np.ones(3, np.float32)))
                copy.write_row((2, np.ones(5, np.float32)))
    assert info.value.sqlstate == "22000"
    assert info.value.diag.message_primary == "expected 3 dimensions, not 5"
    assert conn.execute("SELECT count(*) FROM ps_copy_err").fetchone() == (0,)


def test_async_connection(dsn, dataset):
    ids, data, queries = dataset

    async def run():
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
            await register_vector_async(aconn)
            await aconn.execute("DROP TABLE IF EXISTS ps_async")
            await aconn.execute("CREATE TABLE ps_async (id int8, embedding vector(16))")
            async with aconn.cursor() as cur:
                await cur.executemany("INSERT INTO ps_async VALUES (%s, %s)",
                                      [(int(i), v) for i, v in zip(ids[:100], data[:100])])
                await cur.execute("SELECT id FROM ps_async ORDER BY embedding <=> %s LIMIT 5", (queries[3],))
                nearest = [r[0] for r in await cur.fetchall()]
                await cur.execute("SELECT embedding FROM ps_async WHERE id = 42", binary=True)
                value = (await cur.fetchone())[0]
            return nearest, value

    nearest, value = asyncio.run(run())
    assert nearest == brute_force(ids[:100], data[:100], queries[3], "<=>", 5)
    assert same_bits(as_np(value), data[41])
