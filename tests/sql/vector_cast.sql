-- Casts between vector and arrays.
SELECT ARRAY[1,2,3]::vector, ARRAY[1.5,2.5]::real[]::vector, ARRAY[1.5,2.5]::double precision[]::vector, ARRAY[1.5,2.5]::numeric[]::vector;
SELECT '{1,2,3}'::int[]::vector(3);
SELECT '{1,2,3}'::int[]::vector(2);
SELECT '[1,2,3]'::vector::real[];
SELECT ARRAY[[1,2],[3,4]]::vector;
SELECT ARRAY[1,NULL,3]::vector;
SELECT '{}'::real[]::vector;
SELECT ARRAY['NaN']::real[]::vector;
SELECT ARRAY['Infinity']::real[]::vector;
SELECT ARRAY['-Infinity']::double precision[]::vector;
SELECT ARRAY[1e39]::double precision[]::vector;
SELECT ARRAY[4e38]::numeric[]::vector;
SELECT ARRAY[1,2,3]::bigint[]::vector;
SELECT array_fill(1, ARRAY[16001])::real[]::vector;
SELECT array_to_vector('{1,2}'::int[], -1, false), vector_to_float4('[1,2]', -1, false);
-- assignment casts in INSERT
CREATE TABLE cast_target (v vector(2));
INSERT INTO cast_target VALUES (ARRAY[1,2]), (ARRAY[1.5,2.5]::real[]), (ARRAY[3,4]::double precision[]), (ARRAY[5.5,6.5]::numeric[]);
SELECT v, v::real[] FROM cast_target;
DROP TABLE cast_target;
