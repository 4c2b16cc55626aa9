-- The extension's objects refer to each other by schema-qualified names, so a hostile search_path
-- cannot redirect them, and none of its functions is SECURITY DEFINER.
CREATE SCHEMA hostile;
CREATE FUNCTION hostile.l2_distance(vector, vector) RETURNS float8 AS 'SELECT -1::float8' LANGUAGE sql;
CREATE FUNCTION hostile.vector_add(vector, vector) RETURNS vector AS 'SELECT ''[0]''::vector' LANGUAGE sql;
SET search_path = hostile, public;
SELECT '[1,2,3]'::vector <-> '[3,2,1]' AS distance, '[1,2]'::vector + '[3,4]' AS sum;
SELECT sum(v) FROM unnest(ARRAY['[1,2]'::vector, '[3,4]']) v;
RESET search_path;
DROP SCHEMA hostile CASCADE;
SELECT count(*) AS security_definer_functions FROM pg_proc WHERE prosecdef AND pronamespace = 'public'::regnamespace;
-- creation itself: with functions named like ours earlier on the search_path, CREATE EXTENSION still
-- binds every operator, cast and aggregate to its own functions
DROP EXTENSION pgivf CASCADE;
CREATE SCHEMA hostile;
CREATE TYPE hostile.vector AS (x int);
CREATE FUNCTION hostile.vector_add(int, int) RETURNS int AS 'SELECT 0' LANGUAGE sql;
SET search_path = hostile, public;
CREATE EXTENSION pgivf SCHEMA public;
SELECT '[1,2,3]'::public.vector OPERATOR(public.<->) '[3,2,1]' AS distance;
SELECT public.sum(v) FROM unnest(ARRAY['[1,2]'::public.vector, '[3,4]']) v;
RESET search_path;
DROP SCHEMA hostile CASCADE;
SELECT '[1,2]'::vector + '[3,4]' AS sum;
