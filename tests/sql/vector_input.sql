-- Text input and output of vector: pgvector's format, whitespace rules, strtof semantics and errors.
SELECT '[1,2,3]'::vector;
SELECT '[-1.5,2.25,-3e-3]'::vector;
SELECT '[1.,2.,.5]'::vector;
SELECT E' \t[ 1 ,\n2,  3\r] \f'::vector;
SELECT '[+1,-0,0x10,1e2]'::vector;
SELECT '[1e+06,123456,0.0001,1e-05,1.234567e+06,3.4028235e+38,-0,0.3]'::vector;
SELECT '[1.23456789]'::vector;
SELECT '[1.5e38,-1.5e38,1.5e-38,-1.5e-38]'::vector;
SELECT '[1e-46,-1e-46,1.4e-45]'::vector;
SELECT '[0.1,0.2,0.30000001,100000,999999,1000000,0.00001234]'::vector;
-- malformed text
SELECT '1,2,3'::vector;
SELECT ''::vector;
SELECT '   '::vector;
SELECT '[1,2,3'::vector;
SELECT '[1,2,3]x'::vector;
SELECT '[1,2,3] ]'::vector;
SELECT '['::vector;
SELECT '[ '::vector;
SELECT '[,'::vector;
SELECT '[,]'::vector;
SELECT '[1,]'::vector;
SELECT '[1,,2]'::vector;
SELECT '[1, ,2]'::vector;
SELECT '[1a]'::vector;
SELECT '[1e]'::vector;
SELECT '[abc,1]'::vector;
SELECT '[1 2]'::vector;
SELECT '[]'::vector;
SELECT '[  ]'::vector;
-- non-finite and out-of-range elements
SELECT '[NaN,1]'::vector;
SELECT '[1,nan]'::vector;
SELECT '[Infinity,1]'::vector;
SELECT '[1,-inf]'::vector;
SELECT '[4e38,1]'::vector;
SELECT '[1,-4e38]'::vector;
SELECT '[1e39]'::vector;
-- dimension limits and typmod
SELECT vector_dims(array_fill(1, ARRAY[16000])::vector);
SELECT array_fill(1, ARRAY[16001])::vector;
SELECT ('[' || repeat('1,', 16000) || '1]')::vector;
SELECT '[1,2,3]'::vector(3);
SELECT '[1,2,3]'::vector(2);
SELECT '[1,2]'::vector(3);
SELECT '[1,2,3]'::vector(3, 2);
SELECT '[1,2,3]'::vector('x');
SELECT '[1,2,3]'::vector(0);
SELECT '[1,2,3]'::vector(-1);
SELECT '[1,2,3]'::vector(16001);
SELECT '[1,2,3]'::vector::vector(2);
SELECT '[1,2,3]'::vector::vector(3);
CREATE TABLE typmod_check (v vector(3));
INSERT INTO typmod_check VALUES ('[1,2,3]');
INSERT INTO typmod_check VALUES ('[1,2]');
INSERT INTO typmod_check SELECT '[1,2,3,4]'::vector;
INSERT INTO typmod_check VALUES (ARRAY[1,2,3,4]);
SELECT * FROM typmod_check;
SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'typmod_check'::regclass AND attname = 'v';
DROP TABLE typmod_check;
-- arrays of vectors
SELECT unnest('{"[1,2,3]","[4,5,6]"}'::vector[]);
SELECT '{"[1,2,3]"}'::vector(2)[];
-- the session keeps working after all those errors
SELECT '[1,2,3]'::vector <-> '[3,2,1]';
