-- Index maintenance: space reuse under churn, REINDEX CONCURRENTLY, TRUNCATE, empty builds, filters
-- with iterative scans, and a LATERAL join that rescans the index many times.
CREATE TABLE churn (id int, embedding vector(96));
INSERT INTO churn SELECT i, (SELECT array_agg(sin(i * d)) FROM generate_series(1, 96) d) FROM generate_series(1, 4000) i;
CREATE INDEX churn_idx ON churn USING ivfflat (embedding vector_l2_ops) WITH (lists = 20);
CREATE TABLE sizes (step text, bytes bigint);
INSERT INTO sizes VALUES ('built', pg_relation_size('churn_idx'));
-- delete everything, vacuum, insert the same rows again: freed slots are reused, the index does not grow
CREATE TABLE churn_copy AS SELECT * FROM churn;
DELETE FROM churn;
VACUUM churn;
INSERT INTO churn SELECT * FROM churn_copy;
INSERT INTO sizes VALUES ('after churn', pg_relation_size('churn_idx'));
SELECT (SELECT bytes FROM sizes WHERE step = 'after churn') = (SELECT bytes FROM sizes WHERE step = 'built') AS size_unchanged;
-- half the rows replaced by different ones: growth stays small
DELETE FROM churn WHERE id % 2 = 0;
VACUUM churn;
INSERT INTO churn SELECT i, (SELECT array_agg(cos(i * d)) FROM generate_series(1, 96) d) FROM generate_series(4001, 6000) i;
SELECT pg_relation_size('churn_idx') <= (SELECT bytes FROM sizes WHERE step = 'built') * 1.15 AS size_bounded;
-- (page and dead-entry counts depend on the clustering, so only the verdict and the row count are shown)
SELECT ivfflat_verify('churn_idx', heapallindexed => true) ~ '^ivfflat index OK: .* all 4000 heap rows that need an entry have exactly one$' AS verified;
SET ivfflat.probes = 20;
SELECT count(*) AS rows_found FROM (SELECT id FROM churn ORDER BY embedding <-> (SELECT embedding FROM churn WHERE id = 1)) s;
-- the index is dense: every page but each list's last is full
SELECT pg_relation_size('churn_idx') < 4000 * (8 + 96 * 4) * 1.2 + 20 * 8192 + 8 * 8192 AS dense;

-- REINDEX CONCURRENTLY and TRUNCATE rebuild, and backends notice the new centroids
REINDEX INDEX CONCURRENTLY churn_idx;
SELECT ivfflat_verify('churn_idx', true) ~ '^ivfflat index OK: .* 0 dead entries; all 4000 heap rows' AS verified_after_reindex;
SELECT count(*) AS rows_after_reindex FROM (SELECT id FROM churn ORDER BY embedding <-> (SELECT embedding FROM churn WHERE id = 1)) s;
SELECT id FROM churn ORDER BY embedding <-> (SELECT embedding FROM churn WHERE id = 17) LIMIT 1;
TRUNCATE churn;
INSERT INTO churn SELECT i, (SELECT array_agg(sin(i * d)) FROM generate_series(1, 96) d) FROM generate_series(1, 100) i;
SELECT count(*) AS rows_after_truncate FROM (SELECT id FROM churn ORDER BY embedding <-> (SELECT embedding FROM churn WHERE id = 1)) s;
RESET ivfflat.probes;
DROP TABLE churn, churn_copy, sizes;

-- Work follows what changed: a row whose norm is the largest yet widens the meta page's bound,
-- and the backends keep their centroids (no reload); a VACUUM with nothing to delete reads no page
-- of the index.
CREATE TABLE norms (id int, embedding vector(4));
INSERT INTO norms SELECT i, ARRAY[sin(i), cos(i), 1, 0]::vector FROM generate_series(1, 1000) i;
CREATE INDEX norms_idx ON norms USING ivfflat (embedding vector_ip_ops) WITH (lists = 4);
SELECT count(*) FROM (SELECT id FROM norms ORDER BY embedding <#> '[1,0,0,0]' LIMIT 3) s;
SET client_min_messages = debug1;
INSERT INTO norms VALUES (1001, '[100,0,0,0]');
SELECT id FROM norms ORDER BY embedding <#> '[1,0,0,0]' LIMIT 1;
RESET client_min_messages;
SELECT pg_stat_force_next_flush();
SELECT idx_blks_read + idx_blks_hit AS pages_before FROM pg_statio_user_indexes WHERE indexrelname = 'norms_idx' \gset
VACUUM norms;
SELECT pg_stat_force_next_flush();
SELECT idx_blks_read + idx_blks_hit - :pages_before AS index_pages_read_by_vacuum FROM pg_statio_user_indexes WHERE indexrelname = 'norms_idx';
DROP TABLE norms;

-- an index built on an empty table takes inserts
CREATE TABLE empty_then_full (id int, embedding vector(4));
CREATE INDEX ON empty_then_full USING ivfflat (embedding vector_cosine_ops) WITH (lists = 4);
INSERT INTO empty_then_full SELECT i, ARRAY[i, i % 5, 1, -1] FROM generate_series(1, 500) i;
SET ivfflat.probes = 4;
SELECT count(*) FROM (SELECT id FROM empty_then_full ORDER BY embedding <=> '[1,1,1,1]') s;
RESET ivfflat.probes;
DROP TABLE empty_then_full;

-- a filter the index does not know about: iterative scans still fill the LIMIT
CREATE TABLE filtered (id int, category int, embedding vector(8));
INSERT INTO filtered SELECT i, i % 50, (SELECT array_agg(sin(i + d * 0.7)) FROM generate_series(1, 8) d) FROM generate_series(1, 5000) i;
CREATE INDEX ON filtered USING ivfflat (embedding vector_l2_ops) WITH (lists = 50);
ANALYZE filtered;
SET enable_seqscan = off;
SELECT count(*) AS without_iterative FROM (SELECT id FROM filtered WHERE category = 7 ORDER BY embedding <-> '[1,0,1,0,1,0,1,0]' LIMIT 20) s;
SET ivfflat.iterative_scan = relaxed_order;
SELECT count(*) AS with_iterative FROM (SELECT id FROM filtered WHERE category = 7 ORDER BY embedding <-> '[1,0,1,0,1,0,1,0]' LIMIT 20) s;
SET ivfflat.max_probes = 3;
SELECT count(*) <= 20 AS bounded_by_max_probes FROM (SELECT id FROM filtered WHERE category = 7 ORDER BY embedding <-> '[1,0,1,0,1,0,1,0]' LIMIT 20) s;
RESET ivfflat.iterative_scan;
RESET ivfflat.max_probes;
-- the same index rescanned from a LATERAL join
SELECT count(*) FROM (SELECT id FROM filtered WHERE id <= 300) q
CROSS JOIN LATERAL (SELECT id FROM filtered f ORDER BY f.embedding <-> (SELECT embedding FROM filtered WHERE id = q.id) LIMIT 3) n;
RESET enable_seqscan;
DROP TABLE filtered;

-- the verifier refuses other indexes
CREATE TABLE plain (id int PRIMARY KEY);
SELECT ivfflat_verify('plain_pkey');
SELECT ivfflat_verify('plain');
DROP TABLE plain;
