-- pgivf 0.2.0 -> 0.3.0: vector operator classes name their metric (support function 6); ivfflat_verify
-- and ivfflat_stats are for roles granted EXECUTE, on tables they own or may read; the radius operators
-- take a sphere (center, radius) and mean the same under every plan; integer filter columns match
-- integers of every width.
\echo Use "ALTER EXTENSION pgivf UPDATE TO '0.3.0'" to load this file. \quit

CREATE FUNCTION @extschema@.ivfflat_metric_l2(pg_catalog.internal) RETURNS pg_catalog.void
	AS 'MODULE_PATHNAME', 'ivfflat_metric_l2' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ivfflat_metric_ip(pg_catalog.internal) RETURNS pg_catalog.void
	AS 'MODULE_PATHNAME', 'ivfflat_metric_ip' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ivfflat_metric_cosine(pg_catalog.internal) RETURNS pg_catalog.void
	AS 'MODULE_PATHNAME', 'ivfflat_metric_cosine' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

ALTER OPERATOR FAMILY @extschema@.vector_l2_ops USING ivfflat
	ADD FUNCTION 6 (@extschema@.vector, @extschema@.vector) @extschema@.ivfflat_metric_l2(pg_catalog.internal);
ALTER OPERATOR FAMILY @extschema@.vector_ip_ops USING ivfflat
	ADD FUNCTION 6 (@extschema@.vector, @extschema@.vector) @extschema@.ivfflat_metric_ip(pg_catalog.internal);
ALTER OPERATOR FAMILY @extschema@.vector_cosine_ops USING ivfflat
	ADD FUNCTION 6 (@extschema@.vector, @extschema@.vector) @extschema@.ivfflat_metric_cosine(pg_catalog.internal);

REVOKE ALL ON FUNCTION @extschema@.ivfflat_verify(pg_catalog.regclass, pg_catalog.bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.ivfflat_stats(pg_catalog.regclass) FROM PUBLIC;

ALTER OPERATOR FAMILY @extschema@.vector_l2_ops USING ivfflat
	DROP OPERATOR 2 (@extschema@.vector, pg_catalog.float8);
ALTER OPERATOR FAMILY @extschema@.vector_ip_ops USING ivfflat
	DROP OPERATOR 2 (@extschema@.vector, pg_catalog.float8);
ALTER OPERATOR FAMILY @extschema@.vector_cosine_ops USING ivfflat
	DROP OPERATOR 2 (@extschema@.vector, pg_catalog.float8);
DROP OPERATOR @extschema@.<<->> (@extschema@.vector, pg_catalog.float8);
DROP OPERATOR @extschema@.<<#>> (@extschema@.vector, pg_catalog.float8);
DROP OPERATOR @extschema@.<<=>> (@extschema@.vector, pg_catalog.float8);
DROP FUNCTION @extschema@.vector_within_index(@extschema@.vector, pg_catalog.float8);

CREATE TYPE @extschema@.sphere AS (center @extschema@.vector, radius pg_catalog.float8);
COMMENT ON TYPE @extschema@.sphere IS 'a center and a radius, for the <<->>, <<#>> and <<=>> operators';
CREATE FUNCTION @extschema@.sphere(@extschema@.vector, pg_catalog.float8) RETURNS @extschema@.sphere
	AS 'SELECT ROW($1, $2)::@extschema@.sphere' LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_within_l2(@extschema@.vector, @extschema@.sphere) RETURNS pg_catalog.bool
	AS 'MODULE_PATHNAME', 'vector_within_l2' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_within_ip(@extschema@.vector, @extschema@.sphere) RETURNS pg_catalog.bool
	AS 'MODULE_PATHNAME', 'vector_within_ip' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_within_cosine(@extschema@.vector, @extschema@.sphere) RETURNS pg_catalog.bool
	AS 'MODULE_PATHNAME', 'vector_within_cosine' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.vector_within_l2(@extschema@.vector, @extschema@.sphere) IS 'l2 distance to the center at most the radius';
COMMENT ON FUNCTION @extschema@.vector_within_ip(@extschema@.vector, @extschema@.sphere) IS 'negative inner product with the center at most the radius';
COMMENT ON FUNCTION @extschema@.vector_within_cosine(@extschema@.vector, @extschema@.sphere) IS 'cosine distance to the center at most the radius';
CREATE OPERATOR @extschema@.<<->> (LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.sphere,
	FUNCTION = @extschema@.vector_within_l2);
CREATE OPERATOR @extschema@.<<#>> (LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.sphere,
	FUNCTION = @extschema@.vector_within_ip);
CREATE OPERATOR @extschema@.<<=>> (LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.sphere,
	FUNCTION = @extschema@.vector_within_cosine);
ALTER OPERATOR FAMILY @extschema@.vector_l2_ops USING ivfflat
	ADD OPERATOR 2 @extschema@.<<->> (@extschema@.vector, @extschema@.sphere);
ALTER OPERATOR FAMILY @extschema@.vector_ip_ops USING ivfflat
	ADD OPERATOR 2 @extschema@.<<#>> (@extschema@.vector, @extschema@.sphere);
ALTER OPERATOR FAMILY @extschema@.vector_cosine_ops USING ivfflat
	ADD OPERATOR 2 @extschema@.<<=>> (@extschema@.vector, @extschema@.sphere);


ALTER OPERATOR FAMILY @extschema@.int2_filter_ops USING ivfflat ADD
	OPERATOR 3 pg_catalog.= (pg_catalog.int2, pg_catalog.int4),
	OPERATOR 3 pg_catalog.= (pg_catalog.int2, pg_catalog.int8);
ALTER OPERATOR FAMILY @extschema@.int4_filter_ops USING ivfflat ADD
	OPERATOR 3 pg_catalog.= (pg_catalog.int4, pg_catalog.int2),
	OPERATOR 3 pg_catalog.= (pg_catalog.int4, pg_catalog.int8);
ALTER OPERATOR FAMILY @extschema@.int8_filter_ops USING ivfflat ADD
	OPERATOR 3 pg_catalog.= (pg_catalog.int8, pg_catalog.int2),
	OPERATOR 3 pg_catalog.= (pg_catalog.int8, pg_catalog.int4);
