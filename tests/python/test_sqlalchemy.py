"""SQLAlchemy 2 (postgresql+psycopg driver) with pgvector-python's Vector type against pgivf: a
declarative model, ivfflat indexes declared in the ORM, create_all, session inserts and the distance
methods of pgvector.sqlalchemy, checked against numpy. Every test runs twice: with the plain engine
(vectors travel as text through Vector's bind/result processors) and with register_vector installed
on each DBAPI connection, as pgvector-python's README shows for psycopg 3."""
import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector
from pgvector.sqlalchemy import Vector
from pgvector.sqlalchemy import avg as vector_avg
from pgvector.sqlalchemy import sum as vector_sum
from sqlalchemy import (BigInteger, Index, String, URL, create_engine, event, func, inspect, select,
                        text)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from helpers import as_np, brute_force, distances, pick_queries, same_bits

LISTS = 10
N = 400
CATEGORIES = ["red", "green", "blue"]


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "sa_items"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    category: Mapped[str] = mapped_column(String(20))
    embedding = mapped_column(Vector(3))


Index("sa_items_embedding_l2", Item.embedding, postgresql_using="ivfflat",
      postgresql_with={"lists": LISTS}, postgresql_ops={"embedding": "vector_l2_ops"})
Index("sa_items_embedding_cosine", Item.embedding, postgresql_using="ivfflat",
      postgresql_with={"lists": LISTS}, postgresql_ops={"embedding": "vector_cosine_ops"})
Index("sa_items_embedding_ip", Item.embedding, postgresql_using="ivfflat",
      postgresql_with={"lists": LISTS}, postgresql_ops={"embedding": "vector_ip_ops"})

METHODS = {"<->": "l2_distance", "<=>": "cosine_distance", "<#>": "max_inner_product", "<+>": "l1_distance"}
INDEXES = {"<->": "sa_items_embedding_l2", "<=>": "sa_items_embedding_cosine", "<#>": "sa_items_embedding_ip"}


def engine_url(dsn):
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    return URL.create("postgresql+psycopg", username=params.get("user"), password=params.get("password"),
                      host=params.get("host"), port=int(params["port"]) if "port" in params else None,
                      database=params.get("dbname"))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(4242)
    embeddings = rng.standard_normal((N, 3)).astype(np.float32)
    ids = np.arange(1, N + 1, dtype=np.int64)
    categories = [CATEGORIES[i % 3] for i in range(N)]
    queries = pick_queries(rng, embeddings, 6, 8)
    return ids, embeddings, categories, queries


@pytest.fixture(scope="module", params=["plain", "register_vector"])
def engine(request, dsn, data):
    engine = create_engine(engine_url(dsn))
    assert engine.dialect.driver == "psycopg"
    if request.param == "register_vector":
        @event.listens_for(engine, "connect")
        def connect(dbapi_connection, connection_record):
            register_vector(dbapi_connection)

    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    ids, embeddings, categories, _ = data
    with Session(engine) as session:
        # Half the rows as numpy arrays, half as plain lists of floats.
        session.add_all(
            Item(id=int(i), category=c, embedding=(v if i % 2 else v.tolist()))
            for i, v, c in zip(ids, embeddings, categories))
        session.commit()
    with engine.begin() as conn:
        conn.execute(text("ANALYZE sa_items"))
    yield engine
    engine.dispose()


def test_schema_created_by_create_all(engine):
    insp = inspect(engine)
    column = {c["name"]: c for c in insp.get_columns("sa_items")}["embedding"]
    assert isinstance(column["type"], Vector)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                 "WHERE attrelid = 'sa_items'::regclass AND attname = 'embedding'")).scalar() \
            == "vector(3)"
        defs = dict(conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sa_items'")).all())
        opclasses = dict(conn.execute(text(
            "SELECT i.indexrelid::regclass::text, o.opcname FROM pg_index i JOIN pg_opclass o ON o.oid = i.indclass[0]"
            " WHERE i.indrelid = 'sa_items'::regclass AND NOT i.indisprimary")).all())
    assert opclasses == {"sa_items_embedding_l2": "vector_l2_ops", "sa_items_embedding_cosine": "vector_cosine_ops",
                         "sa_items_embedding_ip": "vector_ip_ops"}
    for name in opclasses:
        # vector_l2_ops is the default opclass, which pg_get_indexdef leaves out, as with pgvector.
        assert "USING ivfflat (embedding" in defs[name] and defs[name].endswith("WITH (lists='10')"), defs[name]


def test_values_round_trip(engine, data):
    ids, embeddings, _, _ = data
    with Session(engine) as session:
        items = session.scalars(select(Item).order_by(Item.id)).all()
    assert [item.id for item in items] == [int(i) for i in ids]
    for item, v in zip(items, embeddings):
        assert same_bits(as_np(item.embedding), v), f"item {item.id}"


@pytest.mark.parametrize("op", list(METHODS))
def test_order_by_distance_method(engine, data, op):
    ids, embeddings, _, queries = data
    method = METHODS[op]
    with Session(engine) as session:
        session.execute(text(f"SET ivfflat.probes = {LISTS}"))
        for q in queries:
            distance = getattr(Item.embedding, method)(q)
            got = session.scalars(select(Item.id).order_by(distance).limit(5)).all()
            assert got == brute_force(ids, embeddings, q, op, 5)
            # The same query with the query vector as a list.
            got = session.scalars(select(Item.id).order_by(getattr(Item.embedding, method)(q.tolist())).limit(5)).all()
            assert got == brute_force(ids, embeddings, q, op, 5)


@pytest.mark.parametrize("op", list(INDEXES))
def test_index_scan_is_exact_at_full_probes(engine, data, op):
    ids, embeddings, _, queries = data
    method = METHODS[op]
    with Session(engine) as session:
        session.execute(text(f"SET ivfflat.probes = {LISTS}"))
        session.execute(text("SET enable_seqscan = off"))
        stmt = select(Item.id).order_by(getattr(Item.embedding, method)(queries[0])).limit(5)
        compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
        plan = "\n".join(session.execute(text("EXPLAIN " + str(compiled))).scalars())
        assert f"Index Scan using {INDEXES[op]} on sa_items" in plan, plan
        for q in queries:
            got = session.scalars(select(Item.id).order_by(getattr(Item.embedding, method)(q)).limit(5)).all()
            assert got == brute_force(ids, embeddings, q, op, 5)


def test_distance_as_column_and_filter(engine, data):
    ids, embeddings, categories, queries = data
    q = queries[1]
    d_l2 = distances(embeddings, q, "<->")
    d_ip = distances(embeddings, q, "<#>")
    with Session(engine) as session:
        rows = session.execute(
            select(Item.id, Item.embedding.l2_distance(q).label("distance"),
                   Item.embedding.max_inner_product(q).label("neg_ip"))
            .order_by(Item.embedding.l2_distance(q)).limit(8)).all()
        assert [r.id for r in rows] == brute_force(ids, embeddings, q, "<->", 8)
        np.testing.assert_allclose([r.distance for r in rows], d_l2[[r.id - 1 for r in rows]], rtol=1e-5)
        np.testing.assert_allclose([r.neg_ip for r in rows], d_ip[[r.id - 1 for r in rows]], rtol=1e-5, atol=1e-5)

        # WHERE on the distance and on the metadata column.
        radius = float(np.sort(d_l2)[30]) + 1e-3
        within = session.scalars(
            select(Item.id).where(Item.embedding.l2_distance(q) < radius).where(Item.category == "green")
            .order_by(Item.id)).all()
        expected = [int(i) for i, d, c in zip(ids, d_l2, categories) if d < radius and c == "green"]
        assert within == expected and len(expected) > 3

        nearest_blue = session.scalars(
            select(Item).where(Item.category == "blue").order_by(Item.embedding.cosine_distance(q)).limit(3)).all()
        blue = [i for i, c in enumerate(categories) if c == "blue"]
        assert [item.id for item in nearest_blue] == brute_force(ids[blue], embeddings[blue], q, "<=>", 3)


def test_aggregates(engine, data):
    _, embeddings, categories, _ = data
    expected_avg = embeddings.astype(np.float64).mean(axis=0)
    expected_sum = embeddings.astype(np.float64).sum(axis=0)
    with Session(engine) as session:
        # pgvector.sqlalchemy's avg/sum keep the Vector type of the column.
        avg = session.scalars(select(vector_avg(Item.embedding))).one()
        total = session.scalars(select(vector_sum(Item.embedding))).one()
        np.testing.assert_allclose(as_np(avg), expected_avg, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(as_np(total), expected_sum, rtol=1e-5, atol=1e-5)
        # sqlalchemy.func.sum returns its argument's type; func.avg has no type, so what comes back is
        # whatever the driver makes of a vector: Vector with register_vector, its text otherwise.
        total = session.scalars(select(func.sum(Item.embedding))).one()
        np.testing.assert_allclose(as_np(total), expected_sum, rtol=1e-5, atol=1e-5)
        avg = session.scalars(select(func.avg(Item.embedding))).one()
        if isinstance(avg, str):
            avg = np.array([float(x) for x in avg[1:-1].split(",")], dtype=np.float32)
        np.testing.assert_allclose(as_np(avg), expected_avg, rtol=1e-5, atol=1e-6)
        # Grouped by the metadata column.
        rows = session.execute(select(Item.category, vector_avg(Item.embedding)).group_by(Item.category)).all()
        assert sorted(r[0] for r in rows) == sorted(CATEGORIES)
        for category, value in rows:
            mask = np.array([c == category for c in categories])
            np.testing.assert_allclose(as_np(value), embeddings[mask].astype(np.float64).mean(axis=0),
                                       rtol=1e-5, atol=1e-6)


def test_session_insert_update_delete_with_index(engine, data):
    ids, embeddings, _, queries = data
    new = np.array([[10.0, 10.0, 10.0], [-10.0, 0.5, 0.25]], dtype=np.float32)
    with Session(engine) as session:
        session.add(Item(id=N + 1, category="red", embedding=new[0]))
        session.add(Item(id=N + 2, category="red", embedding=new[1].tolist()))
        session.flush()
        session.execute(text(f"SET LOCAL ivfflat.probes = {LISTS}"))
        session.execute(text("SET LOCAL enable_seqscan = off"))
        got = session.scalars(select(Item.id).order_by(Item.embedding.l2_distance([9.0, 9.0, 9.0])).limit(1)).one()
        assert got == N + 1
        item = session.get(Item, N + 2)
        assert same_bits(as_np(item.embedding), new[1])
        item.embedding = np.array([1e-3, 2e-3, 3e-3], dtype=np.float32)
        session.flush()
        session.expire_all()
        assert same_bits(as_np(session.get(Item, N + 2).embedding), np.array([1e-3, 2e-3, 3e-3], np.float32))
        session.rollback()
    with Session(engine) as session:
        assert session.get(Item, N + 1) is None
        assert session.scalar(select(func.count()).select_from(Item)) == N


def test_wrong_dimensions_raise_data_error(engine):
    from sqlalchemy.exc import DataError
    with Session(engine) as session:
        session.add(Item(id=N + 10, category="red", embedding=[1.0, 2.0]))
        with pytest.raises(DataError) as info:
            session.flush()
        assert info.value.orig.sqlstate == "22000"
        assert info.value.orig.diag.message_primary == "expected 3 dimensions, not 2"
        session.rollback()
        session.add(Item(id=N + 11, category="red", embedding=np.array([1.0, np.nan, 3.0], dtype=np.float32)))
        with pytest.raises(DataError) as info:
            session.flush()
        assert info.value.orig.sqlstate == "22000"
        assert info.value.orig.diag.message_primary == "NaN not allowed in vector"
