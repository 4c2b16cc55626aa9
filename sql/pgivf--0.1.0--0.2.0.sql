-- pgivf 0.1.0 -> 0.2.0: ivfflat_stats(index); filter operator classes for the key columns after the vector; radius operators.
\echo Use "ALTER EXTENSION pgivf UPDATE TO '0.2.0'" to load this file. \quit

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
COMMENT ON FUNCTION @extschema@.ivfflat_stats(pg_catalog.regclass) IS
	'rows per list, rows inserted since the build, how far inserted rows lie from their centroids compared with the build''s rows, and whether to REINDEX';

-- filter columns (since 0.2.0): key columns after the vector, matched with = (and = ANY, IN) inside
-- the index: CREATE INDEX ... USING ivfflat (embedding vector_cosine_ops, category)

CREATE OPERATOR CLASS @extschema@.int2_filter_ops DEFAULT FOR TYPE pg_catalog.int2 USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.int2, pg_catalog.int2);
CREATE OPERATOR CLASS @extschema@.int4_filter_ops DEFAULT FOR TYPE pg_catalog.int4 USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.int4, pg_catalog.int4);
CREATE OPERATOR CLASS @extschema@.int8_filter_ops DEFAULT FOR TYPE pg_catalog.int8 USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.int8, pg_catalog.int8);
CREATE OPERATOR CLASS @extschema@.bool_filter_ops DEFAULT FOR TYPE pg_catalog.bool USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.bool, pg_catalog.bool);
CREATE OPERATOR CLASS @extschema@.text_filter_ops DEFAULT FOR TYPE pg_catalog.text USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.text, pg_catalog.text);
CREATE OPERATOR CLASS @extschema@.uuid_filter_ops DEFAULT FOR TYPE pg_catalog.uuid USING ivfflat AS
	OPERATOR 3 pg_catalog.= (pg_catalog.uuid, pg_catalog.uuid);

-- distance-threshold queries (since 0.2.0): WHERE embedding <-> q < r ORDER BY embedding <-> q LIMIT k.
-- A planner hook adds `embedding <<->> r` as an index condition (strategy 2) so the scan reads only
-- lists that can hold a row inside the radius; the query's own condition still decides every row.
CREATE FUNCTION @extschema@.vector_within_index(@extschema@.vector, pg_catalog.float8) RETURNS pg_catalog.bool
	AS 'MODULE_PATHNAME', 'vector_within_index' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.vector_within_index(@extschema@.vector, pg_catalog.float8) IS
	'carries a radius to an ivfflat scan (true on its own); see ivfflat distance-threshold queries';
CREATE OPERATOR @extschema@.<<->> (LEFTARG = @extschema@.vector, RIGHTARG = pg_catalog.float8,
	FUNCTION = @extschema@.vector_within_index);
CREATE OPERATOR @extschema@.<<#>> (LEFTARG = @extschema@.vector, RIGHTARG = pg_catalog.float8,
	FUNCTION = @extschema@.vector_within_index);
CREATE OPERATOR @extschema@.<<=>> (LEFTARG = @extschema@.vector, RIGHTARG = pg_catalog.float8,
	FUNCTION = @extschema@.vector_within_index);
ALTER OPERATOR FAMILY @extschema@.vector_l2_ops USING ivfflat
	ADD OPERATOR 2 @extschema@.<<->> (@extschema@.vector, pg_catalog.float8);
ALTER OPERATOR FAMILY @extschema@.vector_ip_ops USING ivfflat
	ADD OPERATOR 2 @extschema@.<<#>> (@extschema@.vector, pg_catalog.float8);
ALTER OPERATOR FAMILY @extschema@.vector_cosine_ops USING ivfflat
	ADD OPERATOR 2 @extschema@.<<=>> (@extschema@.vector, pg_catalog.float8);
