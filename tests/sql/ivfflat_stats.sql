-- Sizing lists when the option is omitted, and ivfflat_stats: list sizes, rows inserted since the
-- build, drift of inserted rows from their centroids, and the rebuild recommendation.

-- 5,000 rows in 8 tight groups ("topics"); ANALYZE makes the row estimate exact
CREATE TABLE docs (id int, topic int, embedding vector(16));
INSERT INTO docs SELECT i, i % 8, (SELECT array_agg(sin((i % 8) * 1.7 + d) + 0.05 * cos(i * d * 0.37)) FROM generate_series(1, 16) d)
    FROM generate_series(1, 5000) i;
ANALYZE docs;
-- without lists: rows / 1000 lists, said in a NOTICE
CREATE INDEX docs_idx ON docs USING ivfflat (embedding);
SELECT lists, dimensions, metric, rows, dead_entries, rows_at_build, rows_inserted_since_build, recommendation
    FROM ivfflat_stats('docs_idx');
SELECT min_list_rows <= median_list_rows AND median_list_rows <= max_list_rows AS ordered,
       empty_lists >= 0 AND build_mean_distance > 0 AND insert_mean_distance IS NULL AND drift IS NULL AS build_only,
       pages = pg_relation_size('docs_idx') / 8192 AS pages_match
    FROM ivfflat_stats('docs_idx');
-- an explicit lists is used as given, without a NOTICE; so is the cosine opclass sizing
DROP INDEX docs_idx;
CREATE INDEX docs_idx ON docs USING ivfflat (embedding) WITH (lists = 3);
SELECT lists FROM ivfflat_stats('docs_idx');
CREATE INDEX docs_cos_idx ON docs USING ivfflat (embedding vector_cosine_ops);
SELECT lists, metric FROM ivfflat_stats('docs_cos_idx');
DROP INDEX docs_cos_idx;

-- more rows of the same topics: no drift, no advice
INSERT INTO docs SELECT i, i % 8, (SELECT array_agg(sin((i % 8) * 1.7 + d) + 0.05 * cos(i * d * 0.37)) FROM generate_series(1, 16) d)
    FROM generate_series(5001, 6000) i;
SELECT rows, rows_at_build, rows_inserted_since_build, drift < 1.2 AS no_drift, recommendation FROM ivfflat_stats('docs_idx');
-- rows of new topics, far from every centroid: drift, and the advice to rebuild
INSERT INTO docs SELECT i, 100 + i % 4, (SELECT array_agg(3 * cos((i % 4) * 2.3 + d * 0.7)) FROM generate_series(1, 16) d)
    FROM generate_series(6001, 7000) i;
SELECT rows, rows_inserted_since_build, drift > 1.2 AS drifted, recommendation ~ '^REINDEX INDEX CONCURRENTLY docs_idx: rows inserted after the build are [0-9]+% farther from their centroids than the rows it was built with: the data has drifted$' AS advice
    FROM ivfflat_stats('docs_idx');
-- deleted rows become dead entries at VACUUM; inserts reuse their slots
DELETE FROM docs WHERE id > 5000;
VACUUM docs;
SELECT rows, dead_entries, rows_inserted_since_build, insert_mean_distance IS NULL AS no_inserted_rows, recommendation FROM ivfflat_stats('docs_idx');
-- more inserted rows than the build had
INSERT INTO docs SELECT i, i % 8, (SELECT array_agg(sin((i % 8) * 1.7 + d) + 0.05 * cos(i * d * 0.37)) FROM generate_series(1, 16) d)
    FROM generate_series(7001, 13000) i;
SELECT rows, dead_entries, rows_inserted_since_build, recommendation FROM ivfflat_stats('docs_idx');
-- REINDEX sizes a lists-less index again from the table and starts the count afresh
DROP INDEX docs_idx;
CREATE INDEX docs_idx ON docs USING ivfflat (embedding);
ANALYZE docs;
REINDEX INDEX docs_idx;
SELECT lists, rows, rows_at_build, rows_inserted_since_build, dead_entries, recommendation FROM ivfflat_stats('docs_idx');
DROP TABLE docs;

-- a table of fewer than 100 rows keeps pgvector's default of 100 lists and its "little data" notice
-- (pgvector's own tests expect them)
CREATE TABLE few (embedding vector(3));
INSERT INTO few VALUES ('[1,2,3]'), ('[4,5,6]'), ('[7,8,9]');
ANALYZE few;
CREATE INDEX few_idx ON few USING ivfflat (embedding);
SELECT lists, rows FROM ivfflat_stats('few_idx');
-- never analyzed: the rows are counted, not guessed from the planner's assumption of at least 10 full
-- pages (this table has a few)
CREATE TABLE few_unanalyzed (embedding vector(3));
INSERT INTO few_unanalyzed SELECT ARRAY[i, i + 1, i + 2] FROM generate_series(1, 500) i;
CREATE INDEX few_unanalyzed_idx ON few_unanalyzed USING ivfflat (embedding);
SELECT lists, rows FROM ivfflat_stats('few_unanalyzed_idx');
-- an empty table keeps pgvector's default of 100 lists, and says it has little data
CREATE TABLE nothing (embedding vector(3));
CREATE INDEX nothing_idx ON nothing USING ivfflat (embedding);
SELECT lists, rows, empty_lists, min_list_rows, median_list_rows, max_list_rows, build_mean_distance, recommendation FROM ivfflat_stats('nothing_idx');
INSERT INTO nothing SELECT ARRAY[i, i + 1, i + 2] FROM generate_series(1, 200) i;
SELECT rows, rows_at_build, rows_inserted_since_build, recommendation FROM ivfflat_stats('nothing_idx');
DROP TABLE few, few_unanalyzed, nothing;

-- errors
CREATE TABLE plain (id int PRIMARY KEY, embedding vector(3));
\set VERBOSITY default
SELECT * FROM ivfflat_stats('plain');
SELECT * FROM ivfflat_stats('plain_pkey');
CREATE TABLE parted (id int, embedding vector(3)) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
CREATE INDEX parted_idx ON parted USING ivfflat (embedding) WITH (lists = 1);
SELECT * FROM ivfflat_stats('parted_idx');
SELECT lists FROM ivfflat_stats('parted_1_embedding_idx');
SELECT ivfflat_stats(NULL);
DROP TABLE plain, parted;
