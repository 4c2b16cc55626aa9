-- pgivf 0.2.0 -> 0.3.0: vector operator classes name their metric (support function 6); ivfflat_verify
-- and ivfflat_stats are for roles granted EXECUTE, on tables they own or may read.
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
