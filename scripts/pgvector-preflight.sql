-- What a pgvector database uses that pgivf does not provide: run it in the database to migrate,
-- before dumping it (psql -d app -f scripts/pgvector-preflight.sql). No rows: everything it uses
-- moves to pgivf. Each row names an object that would fail to restore, and why.
-- pgivf provides vector, its operators and functions, and ivfflat on vector (docs/migrating.md).
WITH ext AS (
    SELECT oid FROM pg_extension WHERE extname = 'vector'
), members AS (
    -- pgvector's own objects that pgivf lacks: the halfvec and sparsevec types and everything on
    -- them, the bit distance operators and functions, and the hnsw access method.
    SELECT d.classid, d.objid, pg_describe_object(d.classid, d.objid, 0) AS name
    FROM pg_depend d, ext
    WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
      AND pg_describe_object(d.classid, d.objid, 0) ~ '(halfvec|sparsevec|hnsw|hamming|jaccard|bit_)'
)
SELECT 'column' AS kind,
       format('%I.%I.%I', n.nspname, c.relname, a.attname) AS object,
       format_type(a.atttypid, a.atttypmod) AS uses
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'm', 'f', 'v')
  AND (t.typname IN ('halfvec', 'sparsevec')
       OR t.typelem IN (SELECT oid FROM pg_type WHERE typname IN ('halfvec', 'sparsevec')))
UNION ALL
SELECT 'index', format('%I.%I', n.nspname, c.relname), pg_get_indexdef(c.oid)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam
WHERE c.relkind = 'i'
  AND (am.amname = 'hnsw'
       OR (am.amname = 'ivfflat' AND pg_get_indexdef(c.oid) ~ '(halfvec|sparsevec|bit)_[a-z0-9]+_ops'))
UNION ALL
-- Views, functions, defaults, constraints and expression indexes that call what pgivf lacks.
SELECT DISTINCT 'depends', pg_describe_object(d.classid, d.objid, d.objsubid), m.name
FROM pg_depend d
JOIN members m ON d.refclassid = m.classid AND d.refobjid = m.objid
WHERE d.deptype = 'n'
  -- pgvector's own operator classes and array types; columns and indexes are listed above.
  AND d.classid NOT IN ('pg_amop'::regclass, 'pg_amproc'::regclass, 'pg_type'::regclass)
  AND NOT (d.classid = 'pg_class'::regclass AND (d.objsubid <> 0
           OR EXISTS (SELECT FROM pg_class i WHERE i.oid = d.objid AND i.relkind = 'i')))
  AND NOT EXISTS (SELECT FROM pg_depend e, ext
                  WHERE e.classid = d.classid AND e.objid = d.objid AND e.deptype = 'e' AND e.refobjid = ext.oid)
ORDER BY 1, 2;
