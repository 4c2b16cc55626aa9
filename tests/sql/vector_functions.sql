-- Operators and functions on vector.
SELECT '[1,2,3]'::vector <-> '[3,2,1]';
SELECT l2_distance('[0,0]'::vector, '[3,4]'::vector), l2_distance('[1,1,1,1,1,1,1,1,1]'::vector, '[1,1,1,1,1,1,1,4,5]'::vector);
SELECT l2_distance('[1,2]'::vector, '[3]'::vector);
SELECT l2_distance('[3e38]'::vector, '[-3e38]'::vector);
SELECT vector_l2_squared_distance('[0,0]'::vector, '[3,4]'::vector);
SELECT '[1,2]'::vector <#> '[3,4]', inner_product('[1,2]'::vector, '[3,4]'::vector), vector_negative_inner_product('[1,2]'::vector, '[3,4]'::vector);
SELECT inner_product('[1,2]'::vector, '[3]'::vector);
SELECT inner_product('[3e38]'::vector, '[3e38]'::vector);
SELECT '[1,2]'::vector <=> '[2,4]', cosine_distance('[1,1]'::vector, '[-1,-1]'::vector), cosine_distance('[1,0]'::vector, '[0,2]'::vector);
SELECT cosine_distance('[1,2]'::vector, '[0,0]'::vector);
SELECT cosine_distance('[1,1]'::vector, '[1.1,1.1]'::vector), cosine_distance('[1,1]'::vector, '[-1.1,-1.1]'::vector);
SELECT cosine_distance('[3e38]'::vector, '[3e38]'::vector);
SELECT cosine_distance('[1,2]'::vector, '[3]'::vector);
SELECT '[0,0]'::vector <+> '[3,4]', l1_distance('[1,2,3,4,5,6,7,8,9]'::vector, '[0,3,2,5,4,7,6,9,8]'::vector);
SELECT l1_distance('[3e38]'::vector, '[-3e38]'::vector);
SELECT l1_distance('[1,2]'::vector, '[3]'::vector);
SELECT vector_spherical_distance('[1,0]'::vector, '[0,1]'::vector), vector_spherical_distance('[1,0]'::vector, '[1,0]'::vector), vector_spherical_distance('[1,0]'::vector, '[-1,0]'::vector);
-- a long vector exercises the SIMD kernels' main loops and tails
-- (small integers keep every float sum exact, so the result does not depend on the summation order)
SELECT a <-> b AS l2, a <#> b AS neg_ip, round((a <=> b)::numeric, 9) AS cosine, a <+> b AS l1
FROM (SELECT array_agg(i % 17)::vector AS a, array_agg((1000 - i) % 13)::vector AS b FROM generate_series(1, 1000) i) t;
-- norms and normalisation
SELECT vector_dims('[1,2,3]'::vector), vector_norm('[3,4]'::vector), vector_norm('[0,0]'::vector), vector_norm('[2]'::vector);
SELECT vector_norm('[3e37,4e37]'::vector)::real;
SELECT l2_normalize('[3,4]'::vector), l2_normalize('[3,0]'::vector), l2_normalize('[0,0.1]'::vector), l2_normalize('[0,0]'::vector);
SELECT l2_normalize('[3e38]'::vector);
SELECT binary_quantize('[1,0,-1]'::vector), binary_quantize('[0,0.1,-0.2,-0.3,0.4,0.5,0.6,-0.7,0.8,-0.9,1]'::vector);
-- subvector (1-based, clamped like substring)
SELECT subvector('[1,2,3,4,5]'::vector, 1, 3), subvector('[1,2,3,4,5]'::vector, 3, 2), subvector('[1,2,3,4,5]'::vector, -1, 3), subvector('[1,2,3,4,5]'::vector, 3, 9);
SELECT subvector('[1,2,3,4,5]'::vector, 1, 0);
SELECT subvector('[1,2,3,4,5]'::vector, -1, 2);
SELECT subvector('[1,2,3,4,5]'::vector, 6, 1);
SELECT subvector('[1,2,3,4,5]'::vector, 2147483647, 10);
SELECT subvector('[1,2,3,4,5]'::vector, 3, 2147483647);
SELECT subvector('[1,2,3,4,5]'::vector, -2147483644, 2147483647);
-- arithmetic
SELECT '[1,2,3]'::vector + '[4,5,6]', '[1,2,3]'::vector - '[4,5,6]', '[1,2,3]'::vector * '[4,5,6]';
SELECT '[3e38]'::vector + '[3e38]';
SELECT '[-3e38]'::vector - '[3e38]';
SELECT '[1e37]'::vector * '[1e37]';
SELECT '[1e-37]'::vector * '[1e-37]';
SELECT '[1,2]'::vector + '[3]';
SELECT '[1,2,3]'::vector || '[4,5]';
SELECT array_fill(0, ARRAY[16000])::vector || '[1]';
-- comparison: element by element, then the shorter first
SELECT '[1,2,3]'::vector < '[1,2,3]', '[1,2,3]'::vector <= '[1,2,3]', '[1,2,3]'::vector = '[1,2,3]', '[1,2,3]'::vector <> '[1,2,3]', '[1,2,3]'::vector >= '[1,2,3]', '[1,2,3]'::vector > '[1,2,3]';
SELECT '[1,2,3]'::vector < '[1,2]', '[1,2]'::vector < '[1,2,3]', '[1,2]'::vector = '[1,2,3]', '[2]'::vector > '[1,9,9]';
SELECT vector_cmp('[1,2,3]', '[1,2,3]'), vector_cmp('[1,2,3]', '[0,0,0]'), vector_cmp('[0,0,0]', '[1,2,3]'), vector_cmp('[1,2]', '[1,2,3]'), vector_cmp('[2,3]', '[1,2,3]');
-- aggregates
SELECT avg(v), sum(v) FROM unnest(ARRAY['[1,2,3]'::vector, '[3,5,7]']) v;
SELECT avg(v), sum(v) FROM unnest(ARRAY['[1,2,3]'::vector, '[3,5,7]', NULL]) v;
SELECT avg(v), sum(v) FROM unnest(ARRAY[]::vector[]) v;
SELECT avg(v) FROM unnest(ARRAY['[1,2]'::vector, '[3]']) v;
SELECT sum(v) FROM unnest(ARRAY['[1,2]'::vector, '[3]']) v;
SELECT avg(v) FROM unnest(ARRAY['[3e38]'::vector, '[3e38]']) v;
SELECT sum(v) FROM unnest(ARRAY['[3e38]'::vector, '[3e38]']) v;
SELECT vector_avg('{2,2,4,6}'), vector_avg('{0}'), vector_avg('{1}');
SELECT vector_avg('{{2,2,4,6}}');
SELECT vector_avg('{NULL,2,4,6}');
SELECT vector_avg('{}');
SELECT vector_avg(array_agg(n)) FROM generate_series(1, 16002) n;
SELECT vector_accum('{0}', '[1,2,3]'), vector_accum('{1,1,2,3}', '[1,2,3]');
SELECT vector_accum('{0,0,0,0}', '[1,2]');
SELECT vector_accum('{NULL}', '[1,2,3]');
SELECT vector_combine('{1,2}', '{3,4}'), vector_combine('{0}', '{2,4}'), vector_combine('{2,4}', '{0}');
SELECT vector_combine('{0}', '{0}');
SELECT vector_combine('{1,2}', '{3,4,5}');
SELECT vector_combine('{}', '{0}');
-- avg runs in parallel through its combine function
CREATE TABLE agg_parallel AS SELECT ARRAY[i % 7, i % 11, 1]::vector(3) AS v FROM generate_series(1, 100000) i;
ALTER TABLE agg_parallel SET (parallel_workers = 2);
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
EXPLAIN (COSTS OFF) SELECT avg(v) FROM agg_parallel;
SELECT avg(v), sum(v) FROM agg_parallel;
RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;
DROP TABLE agg_parallel;
-- volatility, strictness and parallel safety are pgvector's for every function
SELECT count(*) AS functions, bool_and(provolatile = 'i') AS all_immutable, bool_and(proparallel = 's') AS all_parallel_safe,
       bool_and(proisstrict) FILTER (WHERE prokind = 'f') AS all_strict, bool_or(prosecdef) AS any_security_definer
FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
JOIN pg_extension e ON e.oid = d.refobjid WHERE e.extname = 'pgivf' AND p.prokind = 'f' AND p.proname NOT IN ('ivfflathandler', 'ivfflat_verify', 'ivfflat_stats');
