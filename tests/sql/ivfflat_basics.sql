-- The ivfflat access method: the three operator classes, NULLs and zero vectors, inserts after the
-- build, NULL queries, iterative scans, unlogged tables, options and settings.
SET enable_seqscan = off;

-- L2
CREATE TABLE t (val vector(3));
INSERT INTO t (val) VALUES ('[0,0,0]'), ('[1,2,3]'), ('[1,1,1]'), (NULL);
CREATE INDEX t_l2 ON t USING ivfflat (val vector_l2_ops) WITH (lists = 1);
INSERT INTO t (val) VALUES ('[1,2,4]');
EXPLAIN (COSTS OFF) SELECT * FROM t ORDER BY val <-> '[3,3,3]';
SELECT * FROM t ORDER BY val <-> '[3,3,3]';
SELECT count(*) FROM (SELECT * FROM t ORDER BY val <-> (SELECT NULL::vector)) t2;
SELECT count(*) FROM t;
TRUNCATE t;
SELECT * FROM t ORDER BY val <-> '[3,3,3]';
DROP TABLE t;

-- inner product
CREATE TABLE t (val vector(3));
INSERT INTO t (val) VALUES ('[0,0,0]'), ('[1,2,3]'), ('[1,1,1]'), (NULL);
CREATE INDEX ON t USING ivfflat (val vector_ip_ops) WITH (lists = 1);
INSERT INTO t (val) VALUES ('[1,2,4]');
SELECT * FROM t ORDER BY val <#> '[3,3,3]';
SELECT count(*) FROM (SELECT * FROM t ORDER BY val <#> (SELECT NULL::vector)) t2;
DROP TABLE t;

-- cosine: zero vectors have no direction and are not indexed
CREATE TABLE t (val vector(3));
INSERT INTO t (val) VALUES ('[0,0,0]'), ('[1,2,3]'), ('[1,1,1]'), (NULL);
CREATE INDEX ON t USING ivfflat (val vector_cosine_ops) WITH (lists = 1);
INSERT INTO t (val) VALUES ('[1,2,4]');
SELECT * FROM t ORDER BY val <=> '[3,3,3]';
SELECT count(*) FROM (SELECT * FROM t ORDER BY val <=> '[0,0,0]') t2;
SELECT count(*) FROM (SELECT * FROM t ORDER BY val <=> (SELECT NULL::vector)) t2;
SELECT * FROM t CROSS JOIN LATERAL (SELECT * FROM t t2 ORDER BY val <=> t.val LIMIT 1) t2 WHERE t.val != '[0,0,0]' ORDER BY t.val;
DROP TABLE t;

-- the query must have the column's dimensions
CREATE TABLE t (val vector(3));
INSERT INTO t (val) VALUES ('[1,2,3]');
CREATE INDEX ON t USING ivfflat (val) WITH (lists = 1);
SELECT * FROM t ORDER BY val <-> '[1,2]';
DROP TABLE t;

-- iterative scans keep probing lists until the executor has enough rows
CREATE TABLE t (val vector(3));
INSERT INTO t (val) VALUES ('[0,0,0]'), ('[1,2,3]'), ('[1,1,1]'), (NULL);
CREATE INDEX ON t USING ivfflat (val vector_l2_ops) WITH (lists = 3);
SET ivfflat.iterative_scan = relaxed_order;
SELECT * FROM t ORDER BY val <-> '[3,3,3]';
SET ivfflat.max_probes = 1;
SELECT * FROM t ORDER BY val <-> '[3,3,3]';
SET ivfflat.max_probes = 2;
SELECT * FROM t ORDER BY val <-> '[3,3,3]';
RESET ivfflat.iterative_scan;
RESET ivfflat.max_probes;
SELECT * FROM t ORDER BY val <-> '[3,3,3]';
DROP TABLE t;

-- unlogged tables (the empty index goes to the init fork)
CREATE UNLOGGED TABLE t (val vector(3));
INSERT INTO t (val) VALUES ('[0,0,0]'), ('[1,2,3]'), ('[1,1,1]'), (NULL);
CREATE INDEX ON t USING ivfflat (val vector_l2_ops) WITH (lists = 1);
SELECT * FROM t ORDER BY val <-> '[3,3,3]';
DROP TABLE t;
CREATE UNLOGGED TABLE t (val vector(3));
CREATE INDEX ON t USING ivfflat (val vector_l2_ops) WITH (lists = 2);
INSERT INTO t (val) VALUES ('[0,0,0]'), ('[1,2,3]'), ('[1,1,1]');
SET ivfflat.probes = 2;
SELECT * FROM t ORDER BY val <-> '[3,3,3]';
RESET ivfflat.probes;
DROP TABLE t;

-- options and settings: pgvector's ranges and messages
CREATE TABLE t (val vector(3));
CREATE INDEX ON t USING ivfflat (val vector_l2_ops) WITH (lists = 0);
CREATE INDEX ON t USING ivfflat (val vector_l2_ops) WITH (lists = 32769);
CREATE INDEX ON t USING ivfflat (val vector_l2_ops) WITH (probes = 3);
DROP TABLE t;
SHOW ivfflat.probes;
SET ivfflat.probes = 0;
SET ivfflat.probes = 32769;
SHOW ivfflat.iterative_scan;
SET ivfflat.iterative_scan = on;
SHOW ivfflat.max_probes;
SET ivfflat.max_probes = 0;
SET ivfflat.max_probes = 32769;
SET ivfflat.no_such_setting = 1;

-- dimensions
CREATE TABLE t (val vector);
CREATE INDEX ON t USING ivfflat (val vector_l2_ops);
DROP TABLE t;
CREATE TABLE t (val vector(2000));
CREATE INDEX ON t USING ivfflat (val vector_l2_ops);
INSERT INTO t SELECT array_fill(i, ARRAY[2000])::vector FROM generate_series(1, 3) i;
SELECT vector_dims(val), val <-> array_fill(2, ARRAY[2000])::vector AS distance FROM t ORDER BY val <-> array_fill(2, ARRAY[2000])::vector LIMIT 2;
DROP TABLE t;
CREATE TABLE t (val vector(2001));
CREATE INDEX ON t USING ivfflat (val vector_l2_ops);
DROP TABLE t;
CREATE TABLE t (val vector(1));
CREATE INDEX ON t USING ivfflat (val vector_cosine_ops);
DROP TABLE t;

-- memory: the build checks maintenance_work_mem before allocating
SET maintenance_work_mem = '1MB';
CREATE TABLE t (val vector(2000));
CREATE INDEX ON t USING ivfflat (val vector_l2_ops);
DROP TABLE t;
CREATE TABLE t (val vector(64));
INSERT INTO t SELECT array_fill(i % 97, ARRAY[64])::vector FROM generate_series(1, 20000) i;
CREATE INDEX ON t USING ivfflat (val vector_l2_ops) WITH (lists = 1000);
RESET maintenance_work_mem;
DROP TABLE t;

-- the planner uses the index only for ORDER BY distance with a LIMIT-able order
CREATE TABLE t (id int, val vector(3));
INSERT INTO t SELECT i, ARRAY[i % 10, i % 7, i % 3] FROM generate_series(1, 1000) i;
CREATE INDEX ON t USING ivfflat (val vector_l2_ops) WITH (lists = 5);
ANALYZE t;
RESET enable_seqscan;
EXPLAIN (COSTS OFF) SELECT id FROM t ORDER BY val <-> '[1,1,1]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM t WHERE val <-> '[1,1,1]' < 1;
EXPLAIN (COSTS OFF) SELECT id FROM t WHERE val = '[1,1,1]';
SET ivfflat.probes = 5;
EXPLAIN (COSTS OFF) SELECT id FROM t ORDER BY val <-> '[1,1,1]' LIMIT 5;
RESET ivfflat.probes;
-- a partial index is used when the query implies its predicate
CREATE INDEX t_partial ON t USING ivfflat (val vector_cosine_ops) WITH (lists = 2) WHERE id < 100;
EXPLAIN (COSTS OFF) SELECT id FROM t WHERE id < 50 ORDER BY val <=> '[1,1,1]' LIMIT 5;
SELECT count(*) FROM (SELECT id FROM t WHERE id < 50 ORDER BY val <=> '[1,1,1]' LIMIT 100) s;
DROP TABLE t;

-- operator classes are validated
SELECT opcname, amvalidate(oid) FROM pg_opclass WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'ivfflat') ORDER BY opcname;
CREATE OPERATOR CLASS bad_ops FOR TYPE vector USING ivfflat AS
	OPERATOR 1 <-> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 2 vector_norm(vector);
SELECT amvalidate(oid) FROM pg_opclass WHERE opcname = 'bad_ops';
DROP OPERATOR CLASS bad_ops USING ivfflat;
DROP OPERATOR FAMILY bad_ops USING ivfflat;
