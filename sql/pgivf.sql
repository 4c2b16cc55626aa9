-- pgivf: the vector type, its functions and operators, and the ivfflat access method.
--
-- Every name matches pgvector 0.8 so that existing SQL, dumps and client libraries work unchanged.
-- Every object is created with and refers to schema-qualified names (@extschema@, pg_catalog) so that
-- a hostile search_path at CREATE EXTENSION time cannot redirect anything. No function is SECURITY DEFINER.

CREATE TYPE @extschema@.vector;

CREATE FUNCTION @extschema@.vector_in(pg_catalog.cstring, pg_catalog.oid, pg_catalog.int4) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'vector_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_out(@extschema@.vector) RETURNS pg_catalog.cstring
	AS 'MODULE_PATHNAME', 'vector_out' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_typmod_in(pg_catalog.cstring[]) RETURNS pg_catalog.int4
	AS 'MODULE_PATHNAME', 'vector_typmod_in' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_recv(pg_catalog.internal, pg_catalog.oid, pg_catalog.int4) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'vector_recv' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_send(@extschema@.vector) RETURNS pg_catalog.bytea
	AS 'MODULE_PATHNAME', 'vector_send' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- STORAGE external: floats do not compress, so keep them out of line but uncompressed (no CPU spent
-- on pglz, and a 2000-d row still fits a heap page as a TOAST pointer).
CREATE TYPE @extschema@.vector (
	INPUT     = @extschema@.vector_in,
	OUTPUT    = @extschema@.vector_out,
	TYPMOD_IN = @extschema@.vector_typmod_in,
	RECEIVE   = @extschema@.vector_recv,
	SEND      = @extschema@.vector_send,
	STORAGE   = external
);

COMMENT ON TYPE @extschema@.vector IS 'single-precision vector';

-- distance and other functions

CREATE FUNCTION @extschema@.l2_distance(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.float8
	AS 'MODULE_PATHNAME', 'l2_distance' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.inner_product(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.float8
	AS 'MODULE_PATHNAME', 'inner_product' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.cosine_distance(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.float8
	AS 'MODULE_PATHNAME', 'cosine_distance' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.l1_distance(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.float8
	AS 'MODULE_PATHNAME', 'l1_distance' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_dims(@extschema@.vector) RETURNS pg_catalog.int4
	AS 'MODULE_PATHNAME', 'vector_dims' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_norm(@extschema@.vector) RETURNS pg_catalog.float8
	AS 'MODULE_PATHNAME', 'vector_norm' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.l2_normalize(@extschema@.vector) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'l2_normalize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.binary_quantize(@extschema@.vector) RETURNS pg_catalog.bit
	AS 'MODULE_PATHNAME', 'binary_quantize' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.subvector(@extschema@.vector, pg_catalog.int4, pg_catalog.int4) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'subvector' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.l2_distance(@extschema@.vector, @extschema@.vector) IS 'Euclidean distance';
COMMENT ON FUNCTION @extschema@.inner_product(@extschema@.vector, @extschema@.vector) IS 'inner product';
COMMENT ON FUNCTION @extschema@.cosine_distance(@extschema@.vector, @extschema@.vector) IS 'cosine distance';
COMMENT ON FUNCTION @extschema@.l1_distance(@extschema@.vector, @extschema@.vector) IS 'taxicab distance';
COMMENT ON FUNCTION @extschema@.vector_dims(@extschema@.vector) IS 'number of dimensions';
COMMENT ON FUNCTION @extschema@.vector_norm(@extschema@.vector) IS 'Euclidean norm';
COMMENT ON FUNCTION @extschema@.l2_normalize(@extschema@.vector) IS 'normalize with Euclidean norm';
COMMENT ON FUNCTION @extschema@.binary_quantize(@extschema@.vector) IS 'binary quantize';
COMMENT ON FUNCTION @extschema@.subvector(@extschema@.vector, pg_catalog.int4, pg_catalog.int4) IS 'subvector';

-- private functions behind operators, aggregates and index support

CREATE FUNCTION @extschema@.vector_add(@extschema@.vector, @extschema@.vector) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'vector_add' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_sub(@extschema@.vector, @extschema@.vector) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'vector_sub' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_mul(@extschema@.vector, @extschema@.vector) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'vector_mul' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_concat(@extschema@.vector, @extschema@.vector) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'vector_concat' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_lt(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.bool
	AS 'MODULE_PATHNAME', 'vector_lt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_le(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.bool
	AS 'MODULE_PATHNAME', 'vector_le' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_eq(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.bool
	AS 'MODULE_PATHNAME', 'vector_eq' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_ne(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.bool
	AS 'MODULE_PATHNAME', 'vector_ne' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_ge(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.bool
	AS 'MODULE_PATHNAME', 'vector_ge' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_gt(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.bool
	AS 'MODULE_PATHNAME', 'vector_gt' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_cmp(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.int4
	AS 'MODULE_PATHNAME', 'vector_cmp' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_l2_squared_distance(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.float8
	AS 'MODULE_PATHNAME', 'vector_l2_squared_distance' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_negative_inner_product(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.float8
	AS 'MODULE_PATHNAME', 'vector_negative_inner_product' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_spherical_distance(@extschema@.vector, @extschema@.vector) RETURNS pg_catalog.float8
	AS 'MODULE_PATHNAME', 'vector_spherical_distance' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_accum(pg_catalog.float8[], @extschema@.vector) RETURNS pg_catalog.float8[]
	AS 'MODULE_PATHNAME', 'vector_accum' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_avg(pg_catalog.float8[]) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'vector_avg' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_combine(pg_catalog.float8[], pg_catalog.float8[]) RETURNS pg_catalog.float8[]
	AS 'MODULE_PATHNAME', 'vector_combine' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- aggregates

CREATE AGGREGATE @extschema@.avg(@extschema@.vector) (
	SFUNC = @extschema@.vector_accum,
	STYPE = pg_catalog.float8[],
	FINALFUNC = @extschema@.vector_avg,
	COMBINEFUNC = @extschema@.vector_combine,
	INITCOND = '{0}',
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.avg(@extschema@.vector) IS 'the average (arithmetic mean) as vector of all vector values';

CREATE AGGREGATE @extschema@.sum(@extschema@.vector) (
	SFUNC = @extschema@.vector_add,
	STYPE = @extschema@.vector,
	COMBINEFUNC = @extschema@.vector_add,
	PARALLEL = SAFE
);
COMMENT ON AGGREGATE @extschema@.sum(@extschema@.vector) IS 'sum as vector across all vector input values';

-- casts

CREATE FUNCTION @extschema@.vector(@extschema@.vector, pg_catalog.int4, pg_catalog.bool) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'vector' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.array_to_vector(pg_catalog.int4[], pg_catalog.int4, pg_catalog.bool) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'array_to_vector' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.array_to_vector(pg_catalog.float4[], pg_catalog.int4, pg_catalog.bool) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'array_to_vector' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.array_to_vector(pg_catalog.float8[], pg_catalog.int4, pg_catalog.bool) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'array_to_vector' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.array_to_vector(pg_catalog.numeric[], pg_catalog.int4, pg_catalog.bool) RETURNS @extschema@.vector
	AS 'MODULE_PATHNAME', 'array_to_vector' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.vector_to_float4(@extschema@.vector, pg_catalog.int4, pg_catalog.bool) RETURNS pg_catalog.float4[]
	AS 'MODULE_PATHNAME', 'vector_to_float4' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

COMMENT ON FUNCTION @extschema@.vector(@extschema@.vector, pg_catalog.int4, pg_catalog.bool) IS 'adjust vector to typmod';

CREATE CAST (@extschema@.vector AS @extschema@.vector)
	WITH FUNCTION @extschema@.vector(@extschema@.vector, pg_catalog.int4, pg_catalog.bool) AS IMPLICIT;
CREATE CAST (@extschema@.vector AS pg_catalog.float4[])
	WITH FUNCTION @extschema@.vector_to_float4(@extschema@.vector, pg_catalog.int4, pg_catalog.bool) AS IMPLICIT;
CREATE CAST (pg_catalog.int4[] AS @extschema@.vector)
	WITH FUNCTION @extschema@.array_to_vector(pg_catalog.int4[], pg_catalog.int4, pg_catalog.bool) AS ASSIGNMENT;
CREATE CAST (pg_catalog.float4[] AS @extschema@.vector)
	WITH FUNCTION @extschema@.array_to_vector(pg_catalog.float4[], pg_catalog.int4, pg_catalog.bool) AS ASSIGNMENT;
CREATE CAST (pg_catalog.float8[] AS @extschema@.vector)
	WITH FUNCTION @extschema@.array_to_vector(pg_catalog.float8[], pg_catalog.int4, pg_catalog.bool) AS ASSIGNMENT;
CREATE CAST (pg_catalog.numeric[] AS @extschema@.vector)
	WITH FUNCTION @extschema@.array_to_vector(pg_catalog.numeric[], pg_catalog.int4, pg_catalog.bool) AS ASSIGNMENT;

-- operators

CREATE OPERATOR @extschema@.<-> (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.l2_distance,
	COMMUTATOR = OPERATOR(@extschema@.<->)
);
CREATE OPERATOR @extschema@.<#> (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.vector_negative_inner_product,
	COMMUTATOR = OPERATOR(@extschema@.<#>)
);
CREATE OPERATOR @extschema@.<=> (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.cosine_distance,
	COMMUTATOR = OPERATOR(@extschema@.<=>)
);
CREATE OPERATOR @extschema@.<+> (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.l1_distance,
	COMMUTATOR = OPERATOR(@extschema@.<+>)
);
CREATE OPERATOR @extschema@.+ (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.vector_add,
	COMMUTATOR = OPERATOR(@extschema@.+)
);
CREATE OPERATOR @extschema@.- (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.vector_sub
);
CREATE OPERATOR @extschema@.* (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.vector_mul,
	COMMUTATOR = OPERATOR(@extschema@.*)
);
CREATE OPERATOR @extschema@.|| (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.vector_concat
);
CREATE OPERATOR @extschema@.< (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.vector_lt,
	COMMUTATOR = OPERATOR(@extschema@.>), NEGATOR = OPERATOR(@extschema@.>=),
	RESTRICT = pg_catalog.scalarltsel, JOIN = pg_catalog.scalarltjoinsel
);
CREATE OPERATOR @extschema@.<= (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.vector_le,
	COMMUTATOR = OPERATOR(@extschema@.>=), NEGATOR = OPERATOR(@extschema@.>),
	RESTRICT = pg_catalog.scalarlesel, JOIN = pg_catalog.scalarlejoinsel
);
CREATE OPERATOR @extschema@.= (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.vector_eq,
	COMMUTATOR = OPERATOR(@extschema@.=), NEGATOR = OPERATOR(@extschema@.<>),
	RESTRICT = pg_catalog.eqsel, JOIN = pg_catalog.eqjoinsel
);
CREATE OPERATOR @extschema@.<> (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.vector_ne,
	COMMUTATOR = OPERATOR(@extschema@.<>), NEGATOR = OPERATOR(@extschema@.=),
	RESTRICT = pg_catalog.neqsel, JOIN = pg_catalog.neqjoinsel
);
CREATE OPERATOR @extschema@.>= (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.vector_ge,
	COMMUTATOR = OPERATOR(@extschema@.<=), NEGATOR = OPERATOR(@extschema@.<),
	RESTRICT = pg_catalog.scalargesel, JOIN = pg_catalog.scalargejoinsel
);
CREATE OPERATOR @extschema@.> (
	LEFTARG = @extschema@.vector, RIGHTARG = @extschema@.vector, FUNCTION = @extschema@.vector_gt,
	COMMUTATOR = OPERATOR(@extschema@.<), NEGATOR = OPERATOR(@extschema@.<=),
	RESTRICT = pg_catalog.scalargtsel, JOIN = pg_catalog.scalargtjoinsel
);

COMMENT ON OPERATOR @extschema@.+ (@extschema@.vector, @extschema@.vector) IS 'add';
COMMENT ON OPERATOR @extschema@.- (@extschema@.vector, @extschema@.vector) IS 'subtract';
COMMENT ON OPERATOR @extschema@.* (@extschema@.vector, @extschema@.vector) IS 'multiply';
COMMENT ON OPERATOR @extschema@.|| (@extschema@.vector, @extschema@.vector) IS 'concatenate';

CREATE OPERATOR CLASS @extschema@.vector_ops
	DEFAULT FOR TYPE @extschema@.vector USING btree AS
	OPERATOR 1 @extschema@.< ,
	OPERATOR 2 @extschema@.<= ,
	OPERATOR 3 @extschema@.= ,
	OPERATOR 4 @extschema@.>= ,
	OPERATOR 5 @extschema@.> ,
	FUNCTION 1 @extschema@.vector_cmp(@extschema@.vector, @extschema@.vector);

-- the ivfflat access method

CREATE FUNCTION @extschema@.ivfflathandler(pg_catalog.internal) RETURNS pg_catalog.index_am_handler
	AS 'MODULE_PATHNAME', 'ivfflathandler' LANGUAGE C;
COMMENT ON FUNCTION @extschema@.ivfflathandler(pg_catalog.internal) IS 'ivfflat index access method handler';

CREATE ACCESS METHOD ivfflat TYPE INDEX HANDLER @extschema@.ivfflathandler;
COMMENT ON ACCESS METHOD ivfflat IS 'ivfflat index access method';

-- Support functions follow pgvector's numbering: 1 distance, 2 norm (vectors are normalised: cosine),
-- 3 k-means distance, 4 k-means norm (spherical k-means); and pgivf's 6, which names the metric the
-- index computes with its own kernels (an operator class without it cannot be built on).
CREATE FUNCTION @extschema@.ivfflat_metric_l2(pg_catalog.internal) RETURNS pg_catalog.void
	AS 'MODULE_PATHNAME', 'ivfflat_metric_l2' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ivfflat_metric_ip(pg_catalog.internal) RETURNS pg_catalog.void
	AS 'MODULE_PATHNAME', 'ivfflat_metric_ip' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION @extschema@.ivfflat_metric_cosine(pg_catalog.internal) RETURNS pg_catalog.void
	AS 'MODULE_PATHNAME', 'ivfflat_metric_cosine' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR CLASS @extschema@.vector_l2_ops
	DEFAULT FOR TYPE @extschema@.vector USING ivfflat AS
	OPERATOR 1 @extschema@.<-> (@extschema@.vector, @extschema@.vector) FOR ORDER BY pg_catalog.float_ops,
	FUNCTION 1 @extschema@.vector_l2_squared_distance(@extschema@.vector, @extschema@.vector),
	FUNCTION 3 @extschema@.l2_distance(@extschema@.vector, @extschema@.vector),
	FUNCTION 6 @extschema@.ivfflat_metric_l2(pg_catalog.internal);

CREATE OPERATOR CLASS @extschema@.vector_ip_ops
	FOR TYPE @extschema@.vector USING ivfflat AS
	OPERATOR 1 @extschema@.<#> (@extschema@.vector, @extschema@.vector) FOR ORDER BY pg_catalog.float_ops,
	FUNCTION 1 @extschema@.vector_negative_inner_product(@extschema@.vector, @extschema@.vector),
	FUNCTION 3 @extschema@.vector_spherical_distance(@extschema@.vector, @extschema@.vector),
	FUNCTION 4 @extschema@.vector_norm(@extschema@.vector),
	FUNCTION 6 @extschema@.ivfflat_metric_ip(pg_catalog.internal);

CREATE OPERATOR CLASS @extschema@.vector_cosine_ops
	FOR TYPE @extschema@.vector USING ivfflat AS
	OPERATOR 1 @extschema@.<=> (@extschema@.vector, @extschema@.vector) FOR ORDER BY pg_catalog.float_ops,
	FUNCTION 1 @extschema@.vector_negative_inner_product(@extschema@.vector, @extschema@.vector),
	FUNCTION 2 @extschema@.vector_norm(@extschema@.vector),
	FUNCTION 3 @extschema@.vector_spherical_distance(@extschema@.vector, @extschema@.vector),
	FUNCTION 4 @extschema@.vector_norm(@extschema@.vector),
	FUNCTION 6 @extschema@.ivfflat_metric_cosine(pg_catalog.internal);

-- filter columns (since 0.2.0): key columns after the vector, matched with = (and = ANY, IN) inside
-- the index: CREATE INDEX ... USING ivfflat (embedding vector_cosine_ops, category)

CREATE OPERATOR CLASS @extschema@.int2_filter_ops DEFAULT FOR TYPE pg_catalog.int2 USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.int2, pg_catalog.int2);
CREATE OPERATOR CLASS @extschema@.int4_filter_ops DEFAULT FOR TYPE pg_catalog.int4 USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.int4, pg_catalog.int4);
CREATE OPERATOR CLASS @extschema@.int8_filter_ops DEFAULT FOR TYPE pg_catalog.int8 USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.int8, pg_catalog.int8);
-- An integer column is matched by integers of any width (bigint_col = 42, parameters that drivers send
-- as another width): its family also has = against the other two (since 0.3.0).
ALTER OPERATOR FAMILY @extschema@.int2_filter_ops USING ivfflat ADD
	OPERATOR 3 pg_catalog.= (pg_catalog.int2, pg_catalog.int4),
	OPERATOR 3 pg_catalog.= (pg_catalog.int2, pg_catalog.int8);
ALTER OPERATOR FAMILY @extschema@.int4_filter_ops USING ivfflat ADD
	OPERATOR 3 pg_catalog.= (pg_catalog.int4, pg_catalog.int2),
	OPERATOR 3 pg_catalog.= (pg_catalog.int4, pg_catalog.int8);
ALTER OPERATOR FAMILY @extschema@.int8_filter_ops USING ivfflat ADD
	OPERATOR 3 pg_catalog.= (pg_catalog.int8, pg_catalog.int2),
	OPERATOR 3 pg_catalog.= (pg_catalog.int8, pg_catalog.int4);
CREATE OPERATOR CLASS @extschema@.bool_filter_ops DEFAULT FOR TYPE pg_catalog.bool USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.bool, pg_catalog.bool);
CREATE OPERATOR CLASS @extschema@.text_filter_ops DEFAULT FOR TYPE pg_catalog.text USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.text, pg_catalog.text);
CREATE OPERATOR CLASS @extschema@.uuid_filter_ops DEFAULT FOR TYPE pg_catalog.uuid USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.uuid, pg_catalog.uuid);

-- distance-threshold queries (since 0.2.0): WHERE embedding <-> q < r ORDER BY embedding <-> q LIMIT k.
-- A planner hook adds `embedding <<->> sphere(q, r)` as an index condition (strategy 2) so the scan
-- reads only lists that can hold a row inside the radius; the query's own condition still decides
-- every row. The operators are true when the vector lies within the sphere by their distance, under
-- every plan (since 0.3.0: before, they took a bare radius and were true for every row).
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

-- index verification (amcheck-style)

CREATE FUNCTION @extschema@.ivfflat_verify(index pg_catalog.regclass, heapallindexed pg_catalog.bool DEFAULT false) RETURNS pg_catalog.text
	AS 'MODULE_PATHNAME', 'ivfflat_verify' LANGUAGE C STRICT PARALLEL RESTRICTED;
-- As amcheck's: only roles granted EXECUTE run it, and only on tables they own (it locks them).
REVOKE ALL ON FUNCTION @extschema@.ivfflat_verify(pg_catalog.regclass, pg_catalog.bool) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.ivfflat_verify(pg_catalog.regclass, pg_catalog.bool) IS
	'check an ivfflat index''s structure, and with heapallindexed that every table row is in it; raises index_corrupted on a problem';

-- index health (since 0.2.0)

CREATE FUNCTION @extschema@.ivfflat_stats(index pg_catalog.regclass,
	OUT lists pg_catalog.int4, OUT dimensions pg_catalog.int4, OUT metric pg_catalog.text,
	OUT pages pg_catalog.int8, OUT rows pg_catalog.int8, OUT dead_entries pg_catalog.int8,
	OUT empty_lists pg_catalog.int4, OUT min_list_rows pg_catalog.int8,
	OUT median_list_rows pg_catalog.float8, OUT max_list_rows pg_catalog.int8,
	OUT rows_at_build pg_catalog.int8, OUT rows_inserted_since_build pg_catalog.int8,
	OUT build_mean_distance pg_catalog.float8, OUT insert_mean_distance pg_catalog.float8,
	OUT drift pg_catalog.float8, OUT recommendation pg_catalog.text)
	RETURNS record
	AS 'MODULE_PATHNAME', 'ivfflat_stats' LANGUAGE C STRICT PARALLEL SAFE;
-- Only roles granted EXECUTE run it, and only on tables they may SELECT from.
REVOKE ALL ON FUNCTION @extschema@.ivfflat_stats(pg_catalog.regclass) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.ivfflat_stats(pg_catalog.regclass) IS
	'rows per list, rows inserted since the build, how far inserted rows lie from their centroids compared with the build''s rows, and whether to REINDEX';
