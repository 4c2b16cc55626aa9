-- Filter columns inside the index: CREATE INDEX ... USING ivfflat (embedding opclass, col, ...).
-- Conditions col = const, col = ANY(array) and col IN (...) are index conditions, applied by the scan
-- before distances; lists without matching rows are skipped; the LIMIT fills whenever enough
-- matching rows exist.

-- 6,000 rows in 30 clusters. "topic" follows the clusters (correlated with the vectors); "shard"
-- cycles through 7 values independently of them; "rare" is set on 12 rows spread over the clusters.
CREATE TABLE docs (id int PRIMARY KEY, topic text, shard int, rare bool, owner uuid, label varchar(10), embedding vector(8));
INSERT INTO docs
SELECT i, 'topic' || (i % 30), i % 7, i % 500 = 0,
       ('00000000-0000-0000-0000-' || lpad((i % 3)::text, 12, '0'))::uuid,
       CASE WHEN i % 11 = 0 THEN NULL ELSE 'l' || (i % 4) END,
       (SELECT array_agg(sin((i % 30) * 1.3 + d) * 3 + 0.1 * cos(i * d * 0.7)) FROM generate_series(1, 8) d)
FROM generate_series(1, 6000) i;
ANALYZE docs;
CREATE INDEX docs_filtered ON docs USING ivfflat (embedding vector_l2_ops, topic, shard, rare, owner, label) WITH (lists = 30);
SELECT ivfflat_verify('docs_filtered', heapallindexed => true) ~ '^ivfflat index OK: 30 lists, .* all 6000 heap rows' AS verified;

-- the conditions show as Index Cond, ORDER BY stays on the index
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE topic = 'topic3' ORDER BY embedding <-> '[1,1,1,1,1,1,1,1]' LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE shard = 1 AND owner = '00000000-0000-0000-0000-000000000001' AND label = 'l1' ORDER BY embedding <-> '[1,1,1,1,1,1,1,1]' LIMIT 10;
-- PostgreSQL 15's planner keeps an index's ORDER BY only when = ANY / IN is on its first column, so
-- with the vector first these stay filters (the scan still goes on until the LIMIT fills, since
-- label = 'l1' is an index condition); see the (topic, embedding) index below. From PostgreSQL 17
-- on they are index conditions on any column (ivfflat_filters_1.out).
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE topic = ANY('{topic1,topic2}') AND label = 'l1' ORDER BY embedding <-> '[1,1,1,1,1,1,1,1]' LIMIT 10;
-- PostgreSQL rewrites rare = true into rare, which only btree matches: booleans are index conditions
-- as rare = $1 in a generic plan
PREPARE rare_docs(bool) AS SELECT id FROM docs WHERE rare = $1 ORDER BY embedding <-> '[0.5,2,-1,0.3,1.5,-2,0.7,1]' LIMIT 10;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE rare_docs(true);
EXECUTE rare_docs(true);
RESET plan_cache_mode;
DEALLOCATE rare_docs;
SET enable_indexscan = off;
SELECT id AS exact_rare FROM docs WHERE rare ORDER BY embedding <-> '[0.5,2,-1,0.3,1.5,-2,0.7,1]' LIMIT 10;
RESET enable_indexscan;

-- compare the index's answer (probes = 1) with the exact filtered answer
CREATE FUNCTION check_filtered(condition text, k int, probes int) RETURNS TABLE (found bigint, exact bigint, same_top bool, in_order bool)
LANGUAGE plpgsql AS $$
DECLARE
    q vector := '[0.5,2,-1,0.3,1.5,-2,0.7,1]';
    got int[];
    want int[];
    distances float8[];
BEGIN
    EXECUTE format('SET LOCAL ivfflat.probes = %s', probes);
    SET LOCAL enable_seqscan = off;
    EXECUTE format('SELECT array_agg(id ORDER BY n), array_agg(d ORDER BY n) FROM (SELECT id, embedding <-> $1 AS d, row_number() OVER () AS n FROM (SELECT id, embedding FROM docs WHERE %s ORDER BY embedding <-> $1 LIMIT %s) s) t', condition, k)
        INTO got, distances USING q;
    SET LOCAL enable_indexscan = off;
    SET LOCAL enable_seqscan = on;
    EXECUTE format('SELECT array_agg(id ORDER BY d, id) FROM (SELECT id, embedding <-> $1 AS d FROM docs WHERE %s ORDER BY d, id LIMIT %s) s', condition, k)
        INTO want USING q;
    RETURN QUERY SELECT coalesce(cardinality(got), 0)::bigint, coalesce(cardinality(want), 0)::bigint,
        got[1:3] = want[1:3],
        coalesce((SELECT bool_and(distances[i] <= distances[i + 1]) FROM generate_series(1, cardinality(distances) - 1) i), true);
END $$;
-- correlated (one cluster), independent (1 in 7), rare (12 rows), several conditions: the LIMIT fills
-- from the nearest matching lists even at probes = 1
SELECT 'topic = topic3' AS condition, * FROM check_filtered($$topic = 'topic3'$$, 10, 1)
UNION ALL SELECT 'shard = 4', * FROM check_filtered('shard = 4', 10, 1)
UNION ALL SELECT 'shard and owner', * FROM check_filtered($$shard = 5 AND owner = '00000000-0000-0000-0000-000000000002'$$, 10, 2)
UNION ALL SELECT 'shard = ANY (filter) and owner', * FROM check_filtered($$shard = ANY('{1,5}') AND owner = '00000000-0000-0000-0000-000000000002'$$, 10, 1)
UNION ALL SELECT 'label (varchar)', * FROM check_filtered($$label = 'l2'$$, 10, 1)
UNION ALL SELECT 'topic and rare', * FROM check_filtered($$topic = 'topic0' AND rare$$, 10, 1)
UNION ALL SELECT 'no such topic', * FROM check_filtered($$topic = 'nothing'$$, 10, 1)
UNION ALL SELECT 'contradiction', * FROM check_filtered($$shard = 1 AND shard = 2$$, 10, 1);
-- at probes = lists every filtered answer is exact
SELECT count(*) AS conditions, bool_and(found = exact) AS all_full, bool_and(same_top) AS all_exact
FROM (SELECT (check_filtered(c, 25, 30)).* FROM unnest(ARRAY[$$topic = 'topic3'$$, 'shard = 4', $$label = 'l0'$$, $$topic = ANY('{topic5,topic6,topic7}') AND shard = 3$$]) c) s;

-- NULL filter values are indexed (found without the condition), never matched by =
SET ivfflat.probes = 30;
SELECT count(*) AS null_labels FROM (SELECT id FROM docs ORDER BY embedding <-> '[0,0,0,0,0,0,0,0]' LIMIT 6000) s JOIN docs USING (id) WHERE docs.label IS NULL;
SELECT count(*) AS none_for_null FROM (SELECT id FROM docs WHERE label = NULL ORDER BY embedding <-> '[0,0,0,0,0,0,0,0]' LIMIT 10) s;

-- inserts of a new value update the list summaries; VACUUM and slot reuse keep the index right
INSERT INTO docs SELECT i, 'fresh', 99, false, NULL, NULL, (SELECT array_agg(sin((i % 30) * 1.3 + d) * 3) FROM generate_series(1, 8) d)
FROM generate_series(6001, 6040) i;
RESET ivfflat.probes;
SELECT count(*) AS fresh_found FROM (SELECT id FROM docs WHERE topic = 'fresh' ORDER BY embedding <-> '[1,1,1,1,1,1,1,1]' LIMIT 100) s;
SELECT count(*) AS fresh_shard_found FROM (SELECT id FROM docs WHERE shard = 99 AND topic = 'fresh' ORDER BY embedding <-> '[1,1,1,1,1,1,1,1]' LIMIT 100) s;
DELETE FROM docs WHERE id % 2 = 0;
VACUUM docs;
INSERT INTO docs SELECT i, 'topic3', 4, true, NULL, 'l9', (SELECT array_agg(cos(i + d)) FROM generate_series(1, 8) d)
FROM generate_series(7001, 7500) i;
-- (rows another test's snapshot still sees count too: no fixed number)
SELECT ivfflat_verify('docs_filtered', heapallindexed => true) ~ '^ivfflat index OK: .* all [0-9]+ heap rows' AS verified_after_churn;
SELECT * FROM check_filtered($$label = 'l9'$$, 10, 1);
SELECT * FROM check_filtered($$topic = 'topic3' AND shard = 4$$, 30, 1);

-- a cosine index with one filter column, and REINDEX
CREATE INDEX docs_cosine ON docs USING ivfflat (embedding vector_cosine_ops, shard) WITH (lists = 10);
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE shard = 3 ORDER BY embedding <=> '[1,1,1,1,1,1,1,1]' LIMIT 5;
SET enable_seqscan = off;
SELECT count(*) AS cosine_found, bool_and(shard = 3) AS all_match FROM (SELECT id, shard FROM docs WHERE shard = 3 ORDER BY embedding <=> '[1,1,1,1,1,1,1,1]' LIMIT 40) s;
RESET enable_seqscan;
REINDEX INDEX docs_cosine;
SELECT ivfflat_verify('docs_cosine', true) ~ '^ivfflat index OK' AS verified_cosine;
DROP INDEX docs_cosine;

-- = ANY / IN on the first column of an index whose vector comes second
DROP INDEX docs_filtered;
CREATE INDEX docs_topic_first ON docs USING ivfflat (topic, embedding vector_l2_ops, shard) WITH (lists = 30);
-- (3,520 rows and a condition matching 1 in 100: sorting the table is cheaper, see ivfflat_plans)
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE topic IN ('topic3', 'topic17') AND shard = 4 ORDER BY embedding <-> '[1,1,1,1,1,1,1,1]' LIMIT 10;
RESET enable_seqscan;
SELECT 'topic IN (...)' AS condition, * FROM check_filtered($$topic IN ('topic3', 'topic17')$$, 20, 1)
UNION ALL SELECT 'topic = ANY, shard', * FROM check_filtered($$topic = ANY('{topic3,topic17,fresh}') AND shard = 4$$, 20, 1)
UNION ALL SELECT 'ANY with NULL', * FROM check_filtered($$topic = ANY(ARRAY['topic3', NULL])$$, 10, 1)
UNION ALL SELECT 'empty ANY', * FROM check_filtered($$topic = ANY('{}')$$, 10, 1);
SELECT ivfflat_verify('docs_topic_first', true) ~ '^ivfflat index OK' AS verified_topic_first;
CREATE INDEX ON docs USING ivfflat (topic, shard);
CREATE INDEX ON docs USING ivfflat (embedding, shard, embedding);

-- without ORDER BY the index is not used, even with matching conditions
EXPLAIN (COSTS OFF) SELECT id FROM docs WHERE topic = 'topic3';

-- what cannot be a filter column
CREATE INDEX ON docs USING ivfflat (embedding, id, (id::float8));
CREATE COLLATION case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE INDEX ON docs USING ivfflat (embedding, topic COLLATE case_insensitive);
DROP COLLATION case_insensitive;
CREATE INDEX ON docs USING ivfflat (embedding) INCLUDE (topic);
-- an equality under which different bytes are equal cannot be an ivfflat filter (the index compares
-- hashes of the bytes): amvalidate refuses the operator class, CREATE INDEX refuses to use it
CREATE FUNCTION ci_eq(text, text) RETURNS bool LANGUAGE sql IMMUTABLE AS 'SELECT lower($1) = lower($2)';
CREATE OPERATOR === (LEFTARG = text, RIGHTARG = text, FUNCTION = ci_eq);
CREATE OPERATOR CLASS ci_filter_ops FOR TYPE text USING ivfflat AS OPERATOR 3 === (text, text);
SELECT amvalidate(oid) FROM pg_opclass WHERE opcname = 'ci_filter_ops';
CREATE INDEX ON docs USING ivfflat (embedding, topic ci_filter_ops);
DROP OPERATOR CLASS ci_filter_ops USING ivfflat;
DROP OPERATOR === (text, text);
DROP FUNCTION ci_eq;
-- an entry must fit a page: 2,000 dimensions leave room for 18 filter columns, not 19
CREATE TABLE wide (v vector(2000), c1 int, c2 int, c3 int, c4 int, c5 int, c6 int, c7 int, c8 int, c9 int, c10 int,
    c11 int, c12 int, c13 int, c14 int, c15 int, c16 int, c17 int, c18 int, c19 int);
CREATE INDEX ON wide USING ivfflat (v, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18) WITH (lists = 1);
CREATE INDEX ON wide USING ivfflat (v, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19) WITH (lists = 1);
DROP TABLE wide;

-- integer filter columns match integers of every width: bigint_col = 42, and parameters that drivers
-- send as another width, are index conditions and find the same rows
CREATE TABLE widths (id int PRIMARY KEY, small int2, mid int4, big int8, embedding vector(8));
INSERT INTO widths SELECT i, i % 9, i % 9, i % 9, (SELECT array_agg(sin(i * 0.7 + d)) FROM generate_series(1, 8) d) FROM generate_series(1, 3000) i;
CREATE INDEX widths_idx ON widths USING ivfflat (embedding, small, mid, big) WITH (lists = 10);
ANALYZE widths;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM widths WHERE big = 4 AND mid = 4::int8 AND small = 4 ORDER BY embedding <-> '[1,0,1,0,1,0,1,0]' LIMIT 5;
PREPARE by_width(int8, int2, int4) AS SELECT id FROM widths WHERE small = $1 AND mid = $2 AND big = $3 ORDER BY embedding <-> '[1,0,1,0,1,0,1,0]' LIMIT 5;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE by_width(4, 4, 4);
RESET plan_cache_mode;
SET ivfflat.probes = 10;
SELECT (SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM widths WHERE small = 4::int8 AND mid = 4::int2 AND big = 4::int4 ORDER BY embedding <-> '[1,0,1,0,1,0,1,0]' LIMIT 5) s)
     = (SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM widths WHERE id % 9 = 4 ORDER BY embedding <-> '[1,0,1,0,1,0,1,0]', id LIMIT 5) s) AS same_rows,
       (SELECT count(*) FROM (SELECT id FROM widths WHERE big = ANY('{4,5}'::int4[]) AND mid = ANY(ARRAY[4, 5]::int8[]) ORDER BY embedding <-> '[1,0,1,0,1,0,1,0]' LIMIT 1000) s) AS any_rows;
EXECUTE by_width(4, 4, 4);
DEALLOCATE by_width;
RESET ivfflat.probes;
RESET enable_seqscan;
DROP TABLE widths;

-- every ivfflat operator class validates
SELECT opcname, amvalidate(oid) FROM pg_opclass WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'ivfflat') ORDER BY opcname;
DROP FUNCTION check_filtered;
DROP TABLE docs;
