-- Distance-threshold queries: WHERE embedding <op> q < r ORDER BY embedding <op> q LIMIT k. A planner
-- hook gives the scan the radius as an index condition (<<->>, <<#>>, <<=>>), so it reads only lists
-- that can hold a row inside it; the query's own condition stays as the filter.
CREATE TABLE pts (id int PRIMARY KEY, cat int, v vector(8));
INSERT INTO pts SELECT i, i % 5, (SELECT array_agg(sin((i % 40) * 1.3 + d) * 3 + 0.2 * cos(i * d * 0.7)) FROM generate_series(1, 8) d)
FROM generate_series(1, 8000) i;
ANALYZE pts;
CREATE INDEX pts_l2 ON pts USING ivfflat (v vector_l2_ops) WITH (lists = 40);
CREATE INDEX pts_ip ON pts USING ivfflat (v vector_ip_ops) WITH (lists = 40);
CREATE INDEX pts_cos ON pts USING ivfflat (v vector_cosine_ops, cat) WITH (lists = 40);
SELECT quote_literal(v) || '::vector' AS q FROM pts WHERE id = 7 \gset
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM pts WHERE v <-> :q < 1.5 ORDER BY v <-> :q LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM pts WHERE 0.02 >= v <=> :q AND cat = 2 ORDER BY v <=> :q LIMIT 10;
EXPLAIN (COSTS OFF) SELECT id FROM pts WHERE v <#> :q <= -30 ORDER BY v <#> :q LIMIT 10;
-- a radius on another expression than the ORDER BY's is not passed on
EXPLAIN (COSTS OFF) SELECT id FROM pts WHERE v <-> '[0,0,0,0,0,0,0,0]' < 1.5 ORDER BY v <-> :q LIMIT 10;

-- every row inside the radius comes back, at probes = 1 and without iterative scans, and no other
CREATE FUNCTION radius_check(op text, cond text, lim int) RETURNS TABLE (found bigint, exact bigint, same bool) LANGUAGE plpgsql AS $$
DECLARE got int[]; want int[]; q vector := (SELECT v FROM pts WHERE id = 7);
BEGIN
    SET LOCAL enable_seqscan = off;
    EXECUTE format('SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM pts WHERE %s ORDER BY v %s $1 LIMIT %s) s', replace(cond, 'DIST', format('v %s $1', op)), op, lim) INTO got USING q;
    SET LOCAL enable_indexscan = off;
    SET LOCAL enable_seqscan = on;
    EXECUTE format('SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM pts WHERE %s ORDER BY v %s $1, id LIMIT %s) s', replace(cond, 'DIST', format('v %s $1', op)), op, lim) INTO want USING q;
    RETURN QUERY SELECT coalesce(cardinality(got), 0)::bigint, coalesce(cardinality(want), 0)::bigint, coalesce(got = want, got IS NULL AND want IS NULL);
END $$;
SELECT 'l2 < 1.5' AS query, * FROM radius_check('<->', 'DIST < 1.5', 100000)
UNION ALL SELECT 'l2 <= 0.5', * FROM radius_check('<->', 'DIST <= 0.5', 100000)
UNION ALL SELECT 'l2 < 0', * FROM radius_check('<->', 'DIST < 0', 100)
UNION ALL SELECT 'l2 <= 0', * FROM radius_check('<->', 'DIST <= 0', 100)
UNION ALL SELECT 'l2 < NULL', * FROM radius_check('<->', 'DIST < NULL', 100)
UNION ALL SELECT 'l2 < NaN (every row)', * FROM radius_check('<->', 'DIST < ''NaN''::float8', 100000)
UNION ALL SELECT 'cosine <= 0.02', * FROM radius_check('<=>', '0.02 >= DIST', 100000)
UNION ALL SELECT 'cosine <= 0.02 and cat', * FROM radius_check('<=>', '0.02 >= DIST AND cat = 2', 100000)
UNION ALL SELECT 'ip <= -30', * FROM radius_check('<#>', 'DIST <= -30', 100000);
-- a prepared statement: the same parameter in the condition and the ORDER BY
PREPARE near(vector, float8) AS SELECT count(*) FROM (SELECT id FROM pts WHERE v <-> $1 < $2 ORDER BY v <-> $1 LIMIT 100000) s;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE near('[1,1,1,1,1,1,1,1]', 1.5);
EXECUTE near(:q, 1.5);
RESET plan_cache_mode;
DEALLOCATE near;
-- with strict_order the rows inside the radius come in exact distance order, and a LIMIT below the
-- rows inside it gives the exact nearest ones
SET ivfflat.iterative_scan = strict_order;
SELECT * FROM radius_check('<->', 'DIST < 4', 50);
SELECT bool_and(d >= lag_d) AS in_order, count(*) AS rows FROM (
    SELECT d, lag(d, 1, 0.0::float8) OVER () AS lag_d FROM (SELECT v <-> :q AS d FROM pts WHERE v <-> :q < 2.5 ORDER BY v <-> :q LIMIT 100000) s) t;
RESET ivfflat.iterative_scan;
RESET enable_seqscan;

-- The radius operators mean the same under every plan: v <<op>> sphere(c, r) holds when v's distance
-- to c by op is at most r, written by hand, around the ORDER BY vector or another one.
CREATE FUNCTION sphere_check(cond text) RETURNS TABLE (by_index bigint, by_seqscan bigint, same bool) LANGUAGE plpgsql AS $$
DECLARE got int[]; want int[]; q vector := (SELECT v FROM pts WHERE id = 7);
BEGIN
    SET LOCAL enable_seqscan = off;
    SET LOCAL ivfflat.probes = 40;
    EXECUTE format('SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM pts WHERE %s ORDER BY v <-> $1 LIMIT 10) s', cond) INTO got USING q;
    SET LOCAL enable_indexscan = off;
    SET LOCAL enable_seqscan = on;
    EXECUTE format('SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM pts WHERE %s ORDER BY v <-> $1, id LIMIT 10) s', cond) INTO want USING q;
    RETURN QUERY SELECT coalesce(cardinality(got), 0)::bigint, coalesce(cardinality(want), 0)::bigint, coalesce(got = want, got IS NULL AND want IS NULL);
END $$;
SELECT 'around q, 0.01' AS cond, * FROM sphere_check('v <<->> sphere($1, 0.01)')
UNION ALL SELECT 'around q, 1.5', * FROM sphere_check('v <<->> sphere($1, 1.5)')
UNION ALL SELECT 'around another vector', * FROM sphere_check('v <<->> sphere((SELECT v FROM pts WHERE id = 8), 1.0)')
UNION ALL SELECT 'NULL radius', * FROM sphere_check('v <<->> sphere($1, NULL)')
UNION ALL SELECT 'NaN radius', * FROM sphere_check('v <<->> sphere($1, ''NaN'')');
SELECT '[3,4]'::vector <<->> sphere('[0,0]', 5) AS l2_on_the_boundary, '[3,4]'::vector <<->> sphere('[0,0]', 4.99) AS l2_outside,
       '[1,0]'::vector <<=>> sphere('[0,1]', 1) AS cosine_right_angle, '[0,0]'::vector <<=>> sphere('[0,1]', 2) AS cosine_of_zero,
       '[1,2]'::vector <<#>> sphere('[3,4]', -11) AS ip_equal, '[1,2]'::vector <<->> ROW('[1,2]', NULL)::sphere AS null_radius;
SELECT '[1,2,3]'::vector <<->> sphere('[1,2]', 1);
DROP FUNCTION sphere_check;
DROP FUNCTION radius_check;
DROP TABLE pts;
