-- Quantized lists (quantizer = 'sq8' | 'rabitq', rerank = 'index' | 'heap'): options and their
-- errors; for every quantizer, re-rank source and operator class, results at probes = lists equal
-- the exact answer (rows and distances), recall at fewer probes no more than 0.01 below the flat
-- index's; inserts, deletes, VACUUM and the verifier; spilling (each row's code in a second list
-- too), which must never return a row twice.
SELECT setseed(0.17);
CREATE TABLE items (id int PRIMARY KEY, category int, embedding vector(40));
-- 30 clusters of 150 points in 40 dimensions, spreads differing per cluster
INSERT INTO items
SELECT c * 150 + i, i % 5,
       (SELECT array_agg(centre[d] + (random() + random() + random() - 1.5) * (0.1 + (c % 4) * 0.1)) FROM generate_series(1, 40) d)::vector
FROM (SELECT c, (SELECT array_agg(random() * 4 - 2) FROM generate_series(1, 40) WHERE c >= 0) AS centre FROM generate_series(0, 29) c) centres,
     generate_series(1, 150) i;
CREATE TABLE queries AS SELECT id, embedding + array_fill(0.02, ARRAY[40])::vector AS embedding FROM items WHERE id % 150 = 11;
ANALYZE items;

-- Options
CREATE INDEX ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 10, quantizer = 'pq');
CREATE INDEX ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 10, rerank = 'disk');
CREATE INDEX ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 10, rerank = 'heap');
CREATE INDEX ON items USING ivfflat (((embedding + embedding)::vector(40)) vector_l2_ops) WITH (lists = 10, quantizer = 'rabitq', rerank = 'heap');
CREATE INDEX ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 10, spill = 'maybe');
CREATE INDEX ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 10, spill = on);
SET ivfflat.rerank_factor = -1;
SHOW ivfflat.rerank_factor;

-- For one index: do ORDER BY results at probes = lists equal the exact ones (ids and distances),
-- and how many of the exact top 10 does probes = 2 find, over all queries.
CREATE FUNCTION check_index(op text, options text, OUT exact_at_all_probes bool, OUT hits_at_2 int)
LANGUAGE plpgsql AS $$
DECLARE
	q record;
	exact_ids int[];
	exact_d float8[];
	got_ids int[];
	got_d float8[];
	hits int;
BEGIN
	EXECUTE format('CREATE INDEX checked ON items USING ivfflat (embedding %s) WITH (lists = 15%s)',
		CASE op WHEN '<->' THEN 'vector_l2_ops' WHEN '<#>' THEN 'vector_ip_ops' ELSE 'vector_cosine_ops' END, options);
	exact_at_all_probes := true;
	hits_at_2 := 0;
	FOR q IN SELECT * FROM queries LOOP
		SET LOCAL enable_indexscan = off;
		SET LOCAL enable_seqscan = on;
		EXECUTE format('SELECT array_agg(id ORDER BY n), array_agg(d ORDER BY n) FROM (SELECT id, embedding %s $1 AS d, row_number() OVER () n FROM (SELECT * FROM items ORDER BY embedding %s $1, id LIMIT 10) s) t', op, op)
			INTO STRICT exact_ids, exact_d USING q.embedding;
		SET LOCAL enable_indexscan = on;
		SET LOCAL enable_seqscan = off;
		SET LOCAL ivfflat.probes = 15;
		-- At the default factor 3, about one estimate in 700 is off by more than its bound
		-- (the error is close to normal), enough to swap two near neighbours now and then among
		-- these 30 x 10 answers; at 6 that takes odds of about one in a billion.
		SET LOCAL ivfflat.rerank_factor = 6;
		EXECUTE format('SELECT array_agg(id ORDER BY n), array_agg(d ORDER BY n) FROM (SELECT id, d, row_number() OVER () n FROM (SELECT id, embedding %s $1 AS d FROM items ORDER BY embedding %s $1 LIMIT 10) s) t', op, op)
			INTO STRICT got_ids, got_d USING q.embedding;
		-- The same rows with the same distances; the index orders by f32 keys, so rows whose
		-- distances are equal or differ by less than their rounding may come in either order.
		IF (SELECT array_agg(x ORDER BY x) FROM unnest(got_d) x) IS DISTINCT FROM (SELECT array_agg(x ORDER BY x) FROM unnest(exact_d) x)
			OR NOT (got_ids @> exact_ids AND exact_ids @> got_ids)
			OR EXISTS (SELECT FROM generate_subscripts(got_d, 1) i WHERE i > 1 AND got_d[i] < got_d[i - 1] - 1e-6 - 1e-6 * abs(got_d[i - 1])) THEN
			RAISE NOTICE '% % query %: % % vs exact % %', op, options, q.id, got_ids, got_d, exact_ids, exact_d;
			exact_at_all_probes := false;
		END IF;
		SET LOCAL ivfflat.probes = 2;
		SET LOCAL ivfflat.rerank_factor = 3;
		EXECUTE format('SELECT count(*) FROM (SELECT id FROM items ORDER BY embedding %s $1 LIMIT 10) s WHERE id = ANY($2)', op)
			INTO STRICT hits USING q.embedding, exact_ids;
		hits_at_2 := hits_at_2 + hits;
	END LOOP;
	DROP INDEX checked;
END;
$$;

CREATE TEMP TABLE results AS
SELECT op, options, (check_index(op, options)).*
FROM unnest(ARRAY['<->', '<#>', '<=>']) op,
     unnest(ARRAY['', ', quantizer = ''sq8''', ', quantizer = ''rabitq''',
                  ', quantizer = ''sq8'', rerank = ''heap''', ', quantizer = ''rabitq'', rerank = ''heap''',
                  ', quantizer = ''rabitq'', spill = off', ', quantizer = ''rabitq'', rerank = ''heap'', spill = on']) options;
-- Exact at probes = lists everywhere; at probes = 2 at most 2 hits (0.01 of 20 x 10) below flat.
SELECT r.op, r.options, r.exact_at_all_probes, r.hits_at_2 >= flat.hits_at_2 - 2 AS recall_as_flat
FROM results r JOIN results flat ON flat.op = r.op AND flat.options = ''
ORDER BY r.op, r.options;

-- Writes on quantized indexes: inserts (to lists and vector chains), deletes, VACUUM, verify.
CREATE INDEX items_rabitq ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 10, quantizer = 'rabitq');
CREATE INDEX items_sq8_heap ON items USING ivfflat (embedding vector_cosine_ops, category) WITH (lists = 10, quantizer = 'sq8', rerank = 'heap');
SELECT pg_relation_size('items_sq8_heap') < pg_relation_size('items_rabitq') AS heap_rerank_is_smaller;
INSERT INTO items SELECT id + 10000, category, embedding + array_fill(0.05, ARRAY[40])::vector FROM items WHERE id <= 600;
DELETE FROM items WHERE id % 3 = 0;
VACUUM items;
INSERT INTO items SELECT id + 20000, category, embedding - array_fill(0.03, ARRAY[40])::vector FROM items WHERE id BETWEEN 601 AND 900;
SELECT ivfflat_verify('items_rabitq', heapallindexed => true) LIKE 'ivfflat index OK:%' AS rabitq_ok,
       ivfflat_verify('items_sq8_heap', heapallindexed => true) LIKE 'ivfflat index OK:%' AS sq8_ok;
SELECT lists, rows FROM ivfflat_stats('items_rabitq');
-- After all that, still the exact answer at probes = lists, with a filter column too (at a
-- re-rank factor where a swap of near neighbours takes odds of one in a billion, as above).
SET enable_seqscan = off;
SET ivfflat.probes = 10;
SET ivfflat.rerank_factor = 6;
SELECT count(*) FILTER (WHERE ok) AS exact_queries, count(*) AS queries FROM (
	SELECT (SELECT array_agg(id) FROM (SELECT id FROM items ORDER BY embedding <-> q.embedding LIMIT 5) s)
	     = (SELECT array_agg(id) FROM (SELECT id FROM items ORDER BY (embedding <-> q.embedding) + 0, id LIMIT 5) s) AS ok
	FROM queries q) x;
-- A scan guesses from the session's last scans how many rows it will hand out, and keeps only
-- that many candidates sorted: after LIMIT 1 queries, queries reading 40 rows still get the exact 40.
SELECT count(nearest) AS limit_1_queries FROM (SELECT (SELECT id FROM items ORDER BY embedding <-> q.embedding LIMIT 1) AS nearest FROM queries q) x;
SELECT count(*) FILTER (WHERE ok) AS exact_after_limit_1, count(*) AS queries FROM (
	SELECT (SELECT array_agg(id) FROM (SELECT id FROM items ORDER BY embedding <-> q.embedding LIMIT 40) s)
	     = (SELECT array_agg(id) FROM (SELECT id FROM items ORDER BY (embedding <-> q.embedding) + 0, id LIMIT 40) s) AS ok
	FROM queries q) x;
DROP INDEX items_rabitq;
SELECT count(*) FILTER (WHERE ok) AS exact_filtered_queries, count(*) AS queries FROM (
	SELECT (SELECT array_agg(id) FROM (SELECT id FROM items WHERE category = 2 ORDER BY embedding <=> q.embedding LIMIT 5) s)
	     = (SELECT array_agg(id) FROM (SELECT id FROM items WHERE category = 2 ORDER BY (embedding <=> q.embedding) + 0, id LIMIT 5) s) AS ok
	FROM queries q) x;
EXPLAIN (COSTS OFF) SELECT id FROM items WHERE category = 2 ORDER BY embedding <=> '[1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10]' LIMIT 5;
-- Iterative scans over quantized lists fill the LIMIT.
RESET ivfflat.rerank_factor;
SET ivfflat.probes = 1;
SET ivfflat.iterative_scan = relaxed_order;
SELECT count(*) FROM (SELECT id FROM items WHERE id % 7 = 1 ORDER BY embedding <=> (SELECT embedding FROM queries LIMIT 1) LIMIT 40) s;
RESET ivfflat.iterative_scan;
-- A NULL query: every row at distance NULL, no re-ranking.
SELECT count(*) FROM (SELECT id FROM items ORDER BY embedding <=> NULL LIMIT 3) s;
DROP INDEX items_sq8_heap;

-- Spilling: by default where the index keeps the vectors (spill = auto), on request with
-- rerank = 'heap'; the extra codes make the index larger but count no extra rows.
CREATE INDEX items_spilled ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 10, quantizer = 'rabitq');
CREATE INDEX items_unspilled ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 10, quantizer = 'rabitq', spill = off);
SELECT pg_relation_size('items_spilled') > pg_relation_size('items_unspilled') AS auto_spills;
SELECT (SELECT rows FROM ivfflat_stats('items_spilled')) = (SELECT count(*) FROM items) AS rows_counted_once;
DROP INDEX items_spilled, items_unspilled;
CREATE INDEX items_spilled ON items USING ivfflat (embedding vector_ip_ops) WITH (lists = 10, quantizer = 'rabitq', rerank = 'heap', spill = on);
-- Writes: a row's two codes are inserted, vacuumed and verified together.
INSERT INTO items SELECT id + 30000, category, embedding - array_fill(0.01, ARRAY[40])::vector FROM items WHERE id BETWEEN 901 AND 1200;
DELETE FROM items WHERE id % 5 = 0;
VACUUM items;
SELECT ivfflat_verify('items_spilled', heapallindexed => true) LIKE 'ivfflat index OK:%' AS spilled_ok;
-- Every row comes out once: all rows of all lists, batch after batch, in both iterative orders, and
-- for a NULL query.
SET ivfflat.probes = 1;
SET ivfflat.max_probes = 10;
SET ivfflat.iterative_scan = relaxed_order;
SELECT count(*) = count(DISTINCT id) AS once, count(*) = (SELECT count(*) FROM items WHERE id % 7 = 1) AS all_rows
FROM (SELECT id FROM items WHERE id % 7 = 1 ORDER BY embedding <#> (SELECT embedding FROM queries LIMIT 1) LIMIT 100000) s;
SET ivfflat.iterative_scan = strict_order;
SELECT count(*) = count(DISTINCT id) AS once, count(*) = (SELECT count(*) FROM items WHERE id % 7 = 1) AS all_rows
FROM (SELECT id FROM items WHERE id % 7 = 1 ORDER BY embedding <#> (SELECT embedding FROM queries LIMIT 1) LIMIT 100000) s;
RESET ivfflat.iterative_scan;
SET ivfflat.probes = 10;
SELECT count(*) = count(DISTINCT id) AS once, count(*) = (SELECT count(*) FROM items) AS all_rows
FROM (SELECT id FROM items ORDER BY embedding <#> (SELECT NULL::vector) LIMIT 100000) s;
RESET ivfflat.max_probes;
-- An ERROR while a rerank = 'heap' scan is open (here from the select list, once the scan has read
-- rows from the table; a cancel or a statement_timeout alike) aborts cleanly: the transaction's
-- abort takes back the table fetch's buffer pin and slot, and the scan must not release them again
-- (that raised "buffer ... is not owned by resource owner" inside the abort, and a WARNING).
SELECT id / (id - id) FROM items ORDER BY embedding <#> (SELECT embedding FROM queries LIMIT 1) LIMIT 5;
-- The same inside a subtransaction that catches the error.
DO $$
BEGIN
    PERFORM id / (id - id) FROM items ORDER BY embedding <#> (SELECT embedding FROM queries LIMIT 1) LIMIT 5;
EXCEPTION WHEN division_by_zero THEN
    RAISE NOTICE 'caught: %', SQLERRM;
END $$;
SELECT count(*) > 0 AS session_fine FROM (SELECT id FROM items ORDER BY embedding <#> (SELECT embedding FROM queries LIMIT 1) LIMIT 5) s;
DROP TABLE items, queries, results;
DROP FUNCTION check_index;
-- Past 2,000 dimensions: lists of codes alone (rerank = 'heap') take up to 16,000 dimensions and
-- answer exactly at probes = lists; lists that keep the vectors say what to use instead, and the
-- plain index keeps pgvector's error.
CREATE TABLE wide (id int PRIMARY KEY, embedding vector(3072));
INSERT INTO wide SELECT i, array(SELECT sin(i * 0.37 + j * 0.011 * (1 + i % 5)) FROM generate_series(1, 3072) j)::vector
FROM generate_series(1, 300) i;
CREATE INDEX ON wide USING ivfflat (embedding vector_cosine_ops) WITH (lists = 4);
CREATE INDEX ON wide USING ivfflat (embedding vector_cosine_ops) WITH (lists = 4, quantizer = 'rabitq');
CREATE INDEX wide_codes ON wide USING ivfflat (embedding vector_cosine_ops) WITH (lists = 4, quantizer = 'rabitq', rerank = 'heap');
SELECT ivfflat_verify('wide_codes', true);
SET ivfflat.probes = 4;
SET enable_seqscan = off;
-- (The plan's text differs between PostgreSQL versions: only which index it scans is shown.)
DO $$
DECLARE
    line text;
    scans text := '';
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) SELECT id FROM wide ORDER BY embedding <=> (SELECT embedding FROM wide WHERE id = 5) LIMIT 10' LOOP
        IF line LIKE '%Index Scan using wide_codes%' THEN
            scans := scans || trim(line);
        END IF;
    END LOOP;
    RAISE NOTICE 'ordered by: %', scans;
END $$;
CREATE TEMP TABLE wide_index AS SELECT q, array_agg(id ORDER BY n) AS ids FROM generate_series(1, 300, 37) q,
    LATERAL (SELECT id, row_number() OVER () AS n FROM (SELECT id FROM wide ORDER BY embedding <=> (SELECT embedding FROM wide WHERE id = q) LIMIT 10) s) t
    GROUP BY q;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT bool_and(e.ids = i.ids) AS codes_exact_at_all_lists
FROM wide_index i, LATERAL (SELECT array_agg(id ORDER BY n) AS ids FROM (SELECT id, row_number() OVER () AS n FROM
    (SELECT id FROM wide ORDER BY embedding <=> (SELECT embedding FROM wide WHERE id = i.q), id LIMIT 10) s) t) e;
RESET enable_indexscan;
RESET ivfflat.probes;
DROP TABLE wide;
