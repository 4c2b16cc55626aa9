-- Partitioned tables. An ivfflat index created on the parent cascades to every partition (existing,
-- created later or attached); each partition's index has its own lists, and ivfflat.probes applies to
-- each partition's index scan. ORDER BY distance LIMIT k becomes a Merge Append of the partitions'
-- index scans, and a filter on the partition key prunes the other partitions. At probes >= lists the
-- answers equal the exact ones.

-- deterministic vectors: row x gets v8(x); queries use v8(x + 0.5), which no row has, or a literal
CREATE FUNCTION v8(x float8) RETURNS vector LANGUAGE sql IMMUTABLE AS $$
	SELECT array_agg(sin(x * 0.37 + d * 1.3) + cos(x * 0.11 * d) ORDER BY d)::vector(8) FROM generate_series(1, 8) d
$$;
-- the k nearest rows (id, distance) by one operator: through the indexes (sequential scans off) or
-- exactly (index scans off); same_as_exact compares both, ids and distances, in order
CREATE FUNCTION knn_index(tbl regclass, op text, q vector, k int, filter text DEFAULT 'true')
RETURNS TABLE (id int, distance float8) LANGUAGE plpgsql SET enable_seqscan = off SET enable_bitmapscan = off AS $$
BEGIN
	RETURN QUERY EXECUTE format('SELECT id, embedding %s $1 FROM %s WHERE %s ORDER BY embedding %s $1 LIMIT %s', op, tbl, filter, op, k) USING q;
END $$;
CREATE FUNCTION knn_exact(tbl regclass, op text, q vector, k int, filter text DEFAULT 'true')
RETURNS TABLE (id int, distance float8) LANGUAGE plpgsql SET enable_indexscan = off SET enable_bitmapscan = off AS $$
BEGIN
	RETURN QUERY EXECUTE format('SELECT id, embedding %s $1 FROM %s WHERE %s ORDER BY embedding %s $1 LIMIT %s', op, tbl, filter, op, k) USING q;
END $$;
CREATE FUNCTION same_as_exact(tbl regclass, op text, q vector, k int, filter text DEFAULT 'true') RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
	by_index text[];
	exact text[];
BEGIN
	SELECT array_agg(r.id || ':' || r.distance ORDER BY n) INTO by_index FROM knn_index(tbl, op, q, k, filter) WITH ORDINALITY r(id, distance, n);
	SELECT array_agg(r.id || ':' || r.distance ORDER BY n) INTO exact FROM knn_exact(tbl, op, q, k, filter) WITH ORDINALITY r(id, distance, n);
	RETURN cardinality(exact) = k AND by_index = exact;
END $$;

-- list partitioning on a metadata column; the index is created on the parent
CREATE TABLE items (id int, category text, embedding vector(8)) PARTITION BY LIST (category);
CREATE TABLE items_a PARTITION OF items FOR VALUES IN ('a');
CREATE TABLE items_b PARTITION OF items FOR VALUES IN ('b');
CREATE TABLE items_c PARTITION OF items FOR VALUES IN ('c');
INSERT INTO items SELECT i, (ARRAY['a', 'b', 'c'])[i % 3 + 1], v8(i) FROM generate_series(1, 6000) i;
CREATE INDEX items_embedding_idx ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 10);
ANALYZE items;
SELECT tablename, indexname FROM pg_indexes WHERE tablename LIKE 'items%' ORDER BY tablename;
SELECT inhrelid::regclass AS partition_index, inhparent::regclass AS parent_index FROM pg_inherits
WHERE inhparent = 'items_embedding_idx'::regclass ORDER BY inhrelid::regclass::text;
SELECT c.relname, c.relkind, a.amname, c.reloptions FROM pg_class c JOIN pg_am a ON a.oid = c.relam
WHERE c.relname LIKE 'items%embedding_idx' ORDER BY c.relname;
-- (page counts are the build's business)
SELECT regexp_replace(ivfflat_verify(i, heapallindexed => true), '\d+ pages', 'N pages') AS verified FROM unnest(ARRAY['items_a_embedding_idx', 'items_b_embedding_idx', 'items_c_embedding_idx']::regclass[]) i;
-- the parent's index has no storage of its own: the verifier points at the partitions' indexes
SELECT ivfflat_verify('items_embedding_idx');

-- the planner picks a Merge Append of the partitions' index scans on its own
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY embedding <-> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 5;
-- the nearest rows come from every partition, in exact distance order
SET ivfflat.probes = 10;
SELECT id, category, round((embedding <-> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]')::numeric, 4) AS distance FROM items ORDER BY embedding <-> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 10;
SELECT count(DISTINCT category) AS categories, bool_and(ordered) AS ordered FROM (
	SELECT category, distance >= coalesce(lag(distance) OVER (ORDER BY n), 0) AS ordered
	FROM knn_index('items', '<->', '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]', 50) WITH ORDINALITY r(id, distance, n) JOIN items USING (id)) s;
-- probes = lists: the same ids and distances as an exact scan, for queries all over the data
SELECT bool_and(same_as_exact('items', '<->', v8(q + 0.5), 10)) AS exact_at_all_lists FROM generate_series(0, 6000, 400) q;
SELECT bool_and(same_as_exact('items', '<->', v8(q + 0.5), 100)) AS exact_top_100 FROM generate_series(7, 6000, 1500) q;
-- ivfflat.probes applies to each partition's index: the partitioned query returns what merging
-- each partition's own top 10 at probes = 1 returns
SET ivfflat.probes = 1;
SELECT bool_and(
	(SELECT array_agg(id) FROM knn_index('items', '<->', v8(q + 0.5), 10)) =
	(SELECT array_agg(id ORDER BY distance) FROM (
		SELECT * FROM knn_index('items_a', '<->', v8(q + 0.5), 10) UNION ALL
		SELECT * FROM knn_index('items_b', '<->', v8(q + 0.5), 10) UNION ALL
		SELECT * FROM knn_index('items_c', '<->', v8(q + 0.5), 10) ORDER BY distance LIMIT 10) s)) AS probes_per_partition
FROM generate_series(0, 6000, 400) q;

-- partition pruning: a filter on the partition key keeps only that partition's index scan
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE category = 'b' ORDER BY embedding <-> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE category IN ('a', 'c') ORDER BY embedding <-> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 5;
SET ivfflat.probes = 10;
SELECT id, category, round((embedding <-> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]')::numeric, 4) AS distance FROM items WHERE category = 'b' ORDER BY embedding <-> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 5;
SELECT bool_and(same_as_exact('items', '<->', v8(q + 0.5), 10, format('category = %L', c))) AS pruned_exact
FROM generate_series(0, 6000, 1000) q, unnest(ARRAY['a', 'b', 'c']) c;
SELECT bool_and(same_as_exact('items', '<->', v8(q + 0.5), 10, 'category IN (''a'', ''c'')')) AS two_partitions_exact FROM generate_series(0, 6000, 1000) q;

-- rows inserted after the index exists are routed to their partition and found through its index
SET ivfflat.probes = 1;
INSERT INTO items VALUES (10001, 'a', v8(2222.5)), (10002, 'b', v8(2222.5)), (10003, 'c', v8(2222.5));
SELECT id, category, embedding <-> v8(2222.5) AS distance FROM items ORDER BY embedding <-> v8(2222.5), id LIMIT 3;
SELECT id FROM items WHERE category = 'c' ORDER BY embedding <-> v8(2222.5) LIMIT 1;
SELECT (SELECT count(*) FROM items_a) AS a, (SELECT count(*) FROM items_b) AS b, (SELECT count(*) FROM items_c) AS c;

-- a partition created later gets its own ivfflat index (built empty: rebuild it once loaded)
CREATE TABLE items_d PARTITION OF items FOR VALUES IN ('d');
INSERT INTO items SELECT i, 'd', v8(i) FROM generate_series(6001, 7500) i;
SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'items_d';
SET ivfflat.probes = 10;
SELECT count(*) AS every_row_through_the_index FROM knn_index('items', '<->', v8(0.5), 100000) r JOIN items_d USING (id);
REINDEX INDEX items_d_embedding_idx;
SELECT regexp_replace(ivfflat_verify('items_d_embedding_idx', heapallindexed => true), '\d+ pages', 'N pages') AS verified;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY embedding <-> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 5;
SELECT bool_and(same_as_exact('items', '<->', v8(q + 0.5), 10)) AS exact_with_new_partition FROM generate_series(0, 7500, 500) q;
SELECT bool_and(same_as_exact('items', '<->', v8(q + 0.5), 10, 'category = ''d''')) AS exact_in_new_partition FROM generate_series(6000, 7500, 500) q;

-- ATTACH PARTITION: a table without an index gets one built; a table with a matching ivfflat
-- index keeps it (its own lists) and it becomes a partition of the parent index
CREATE TABLE items_e (id int, category text, embedding vector(8));
INSERT INTO items_e SELECT i, 'e', v8(i) FROM generate_series(7501, 8500) i;
ALTER TABLE items ATTACH PARTITION items_e FOR VALUES IN ('e');
CREATE TABLE items_f (id int, category text, embedding vector(8));
INSERT INTO items_f SELECT i, 'f', v8(i) FROM generate_series(8501, 9000) i;
CREATE INDEX items_f_own_idx ON items_f USING ivfflat (embedding vector_l2_ops) WITH (lists = 4);
ALTER TABLE items ATTACH PARTITION items_f FOR VALUES IN ('f');
SELECT inhrelid::regclass AS partition_index, c.reloptions FROM pg_inherits JOIN pg_class c ON c.oid = inhrelid
WHERE inhparent = 'items_embedding_idx'::regclass ORDER BY inhrelid::regclass::text;
SELECT tablename, count(*) AS indexes FROM pg_indexes WHERE tablename IN ('items_e', 'items_f') GROUP BY tablename ORDER BY tablename;
ANALYZE items;
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE category IN ('e', 'f') ORDER BY embedding <-> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 5;
SELECT bool_and(same_as_exact('items', '<->', v8(q + 0.5), 10)) AS exact_with_attached FROM generate_series(0, 9000, 500) q;
-- a detached partition keeps its index as a standalone index
ALTER TABLE items DETACH PARTITION items_f;
SELECT count(*) AS attached_indexes FROM pg_inherits WHERE inhparent = 'items_embedding_idx'::regclass;
SELECT indexname FROM pg_indexes WHERE tablename = 'items_f';
SELECT bool_and(same_as_exact('items_f', '<->', v8(q + 0.5), 10)) AS detached_exact FROM generate_series(8500, 9000, 100) q;
DROP TABLE items_f;
-- REINDEX of the parent rebuilds every partition's index
REINDEX TABLE items;
SELECT bool_and(same_as_exact('items', '<->', v8(q + 0.5), 10)) AS exact_after_reindex FROM generate_series(0, 9000, 500) q;
CREATE INDEX CONCURRENTLY ON items USING ivfflat (embedding vector_cosine_ops);
RESET ivfflat.probes;
DROP TABLE items;

-- hash partitioning, cosine distance
CREATE TABLE docs (id int, embedding vector(8)) PARTITION BY HASH (id);
CREATE TABLE docs_0 PARTITION OF docs FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE docs_1 PARTITION OF docs FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE docs_2 PARTITION OF docs FOR VALUES WITH (MODULUS 3, REMAINDER 2);
INSERT INTO docs SELECT i, v8(i) FROM generate_series(1, 6000) i;
CREATE INDEX docs_embedding_idx ON docs USING ivfflat (embedding vector_cosine_ops) WITH (lists = 10);
ANALYZE docs;
SELECT tableoid::regclass AS partition, count(*) FROM docs GROUP BY 1 ORDER BY tableoid::regclass::text;
SELECT inhrelid::regclass AS partition_index FROM pg_inherits WHERE inhparent = 'docs_embedding_idx'::regclass ORDER BY inhrelid::regclass::text;
EXPLAIN (COSTS OFF) SELECT id FROM docs ORDER BY embedding <=> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 5;
-- an equality on the hash key prunes to one partition (one row: a sort beats the index)
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE id = 42 ORDER BY embedding <=> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 5;
SET ivfflat.probes = 10;
SELECT id, round((embedding <=> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]')::numeric, 3) AS distance FROM docs ORDER BY embedding <=> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 5;
SELECT bool_and(same_as_exact('docs', '<=>', v8(q + 0.5), 10)) AS cosine_exact_at_all_lists FROM generate_series(0, 6000, 400) q;
SELECT bool_and(same_as_exact('docs', '<=>', v8(q + 0.5), 10, 'id % 2 = 0')) AS cosine_exact_filtered FROM generate_series(0, 6000, 1000) q;
RESET ivfflat.probes;
DROP TABLE docs;

-- range partitioning, inner product: the parent index created ON ONLY the parent (invalid until
-- every partition has an attached index), the partitions' indexes built CONCURRENTLY with their own
-- lists and attached; probes >= the largest lists is exact everywhere
CREATE TABLE events (id int, embedding vector(8)) PARTITION BY RANGE (id);
CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (1) TO (2001);
CREATE TABLE events_2 PARTITION OF events FOR VALUES FROM (2001) TO (6001);
INSERT INTO events SELECT i, v8(i) FROM generate_series(1, 6000) i;
CREATE INDEX events_idx ON ONLY events USING ivfflat (embedding vector_ip_ops) WITH (lists = 10);
SELECT indisvalid FROM pg_index WHERE indexrelid = 'events_idx'::regclass;
CREATE INDEX CONCURRENTLY events_1_idx ON events_1 USING ivfflat (embedding vector_ip_ops) WITH (lists = 5);
CREATE INDEX CONCURRENTLY events_2_idx ON events_2 USING ivfflat (embedding vector_ip_ops) WITH (lists = 20);
ALTER INDEX events_idx ATTACH PARTITION events_1_idx;
SELECT indisvalid FROM pg_index WHERE indexrelid = 'events_idx'::regclass;
ALTER INDEX events_idx ATTACH PARTITION events_2_idx;
SELECT indisvalid FROM pg_index WHERE indexrelid = 'events_idx'::regclass;
SELECT c.relname, c.reloptions FROM pg_class c WHERE c.relname LIKE 'events%idx' ORDER BY c.relname;
ANALYZE events;
EXPLAIN (COSTS OFF) SELECT id FROM events ORDER BY embedding <#> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM events WHERE id > 3000 ORDER BY embedding <#> '[0.8,-0.1,-0.4,0,0,-0.1,0.3,0.4]' LIMIT 5;
SET ivfflat.probes = 20;
SELECT bool_and(same_as_exact('events', '<#>', v8(q + 0.5), 10)) AS ip_exact_at_all_lists FROM generate_series(0, 6000, 400) q;
SELECT bool_and(same_as_exact('events', '<#>', v8(q + 0.5), 10, 'id > 3000')) AS ip_pruned_exact FROM generate_series(0, 6000, 1000) q;
RESET ivfflat.probes;
DROP TABLE events;
DROP FUNCTION same_as_exact, knn_index, knn_exact, v8;
