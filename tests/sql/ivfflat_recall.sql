-- Recall on clustered synthetic data, against exact answers computed with a sequential scan.
-- probes = lists must be exact; fewer probes must clear stated floors.
SELECT setseed(0.42);
CREATE TABLE items (id int PRIMARY KEY, embedding vector(16));
-- 40 well-separated clusters of 250 points in 16 dimensions (the WHERE makes each centre its own draw)
INSERT INTO items
SELECT c * 250 + i, (SELECT array_agg(centre[d] + (random() + random() + random() - 1.5) * 0.15) FROM generate_series(1, 16) d)::vector
FROM (SELECT c, (SELECT array_agg(random() * 4 - 2) FROM generate_series(1, 16) WHERE c >= 0) AS centre FROM generate_series(0, 39) c) centres,
     generate_series(1, 250) i;
CREATE TABLE queries AS SELECT id, embedding FROM items WHERE id % 250 = 7;
UPDATE queries SET embedding = embedding + array_fill(0.01, ARRAY[16])::vector;
ANALYZE items;

-- recall@10 of the index for one operator, averaged over the queries
CREATE FUNCTION recall(op text, probes int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
	q record;
	exact int[];
	hits int;
	total int := 0;
BEGIN
	EXECUTE format('SET LOCAL ivfflat.probes = %s', probes);
	FOR q IN SELECT * FROM queries LOOP
		SET LOCAL enable_indexscan = off;
		EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM items ORDER BY embedding %s $1 LIMIT 10) s', op)
			INTO STRICT exact USING q.embedding;
		SET LOCAL enable_indexscan = on;
		SET LOCAL enable_seqscan = off;
		EXECUTE format('SELECT count(*) FROM (SELECT id FROM items ORDER BY embedding %s $1 LIMIT 10) s WHERE id = ANY($2)', op)
			INTO STRICT hits USING q.embedding, exact;
		SET LOCAL enable_seqscan = on;
		total := total + hits;
	END LOOP;
	RETURN total::float8 / (10 * (SELECT count(*) FROM queries));
END $$;

CREATE INDEX items_l2 ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 40);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY embedding <-> '[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]' LIMIT 10;
RESET enable_seqscan;
SELECT recall('<->', 40) = 1 AS l2_exact_at_all_lists, recall('<->', 10) >= 0.99 AS l2_probes_10, recall('<->', 1) >= 0.9 AS l2_probes_1;
DROP INDEX items_l2;

CREATE INDEX items_ip ON items USING ivfflat (embedding vector_ip_ops) WITH (lists = 40);
SELECT recall('<#>', 40) = 1 AS ip_exact_at_all_lists, recall('<#>', 10) >= 0.99 AS ip_probes_10, recall('<#>', 1) >= 0.9 AS ip_probes_1;
DROP INDEX items_ip;

CREATE INDEX items_cosine ON items USING ivfflat (embedding vector_cosine_ops) WITH (lists = 40);
SELECT recall('<=>', 40) = 1 AS cosine_exact_at_all_lists, recall('<=>', 10) >= 0.99 AS cosine_probes_10, recall('<=>', 1) >= 0.9 AS cosine_probes_1;

-- rows inserted after the build are found, deleted rows never come back
INSERT INTO items SELECT 100000 + id, embedding FROM queries;
SET ivfflat.probes = 40;
SELECT count(*) FILTER (WHERE id >= 100000) AS new_rows_first FROM (SELECT id FROM items ORDER BY embedding <=> (SELECT embedding FROM queries LIMIT 1) LIMIT 1) s;
DELETE FROM items WHERE id >= 100000 OR id % 3 = 0;
SELECT count(*) AS deleted_rows_returned FROM (SELECT id FROM items ORDER BY embedding <=> (SELECT embedding FROM queries LIMIT 1)) s WHERE id >= 100000 OR id % 3 = 0;
VACUUM items;
SELECT count(*) AS deleted_rows_after_vacuum FROM (SELECT id FROM items ORDER BY embedding <=> (SELECT embedding FROM queries LIMIT 1)) s WHERE id >= 100000 OR id % 3 = 0;
SELECT ivfflat_verify('items_cosine', heapallindexed => true) ~ '^ivfflat index OK: 40 lists, 16 dimensions, Cosine, .* all 6667 heap rows that need an entry have exactly one$' AS verified;
SELECT count(*) = (SELECT count(*) FROM items) AS every_row_reachable FROM (SELECT id FROM items ORDER BY embedding <=> (SELECT embedding FROM queries LIMIT 1)) s;
RESET ivfflat.probes;
DROP TABLE items, queries;
DROP FUNCTION recall;
