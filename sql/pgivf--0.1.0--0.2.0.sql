-- pgivf 0.1.0 -> 0.2.0: ivfflat_stats(index).
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
