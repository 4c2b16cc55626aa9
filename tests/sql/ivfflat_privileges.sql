-- ivfflat_verify and ivfflat_stats, as amcheck's functions: EXECUTE only for roles granted it, and
-- then only on tables they own (verify, which locks the table) or may read (stats). The check comes
-- before any lock (tests/integration/privileges.sh shows that part).
CREATE ROLE ivfflat_owner;
CREATE ROLE ivfflat_other;
GRANT CREATE, USAGE ON SCHEMA public TO ivfflat_owner;
SET ROLE ivfflat_owner;
CREATE TABLE owned (id int, embedding vector(3));
INSERT INTO owned SELECT i, ARRAY[i % 7, i % 11, 1]::vector FROM generate_series(1, 200) i;
CREATE INDEX owned_idx ON owned USING ivfflat (embedding) WITH (lists = 4);
-- Not even the table's owner runs them without a grant.
SELECT ivfflat_verify('owned_idx');
RESET ROLE;

SET ROLE ivfflat_other;
SELECT ivfflat_verify('owned_idx');
SELECT lists FROM ivfflat_stats('owned_idx');
RESET ROLE;

GRANT EXECUTE ON FUNCTION ivfflat_verify(regclass, boolean), ivfflat_stats(regclass) TO ivfflat_owner, ivfflat_other;
SET ROLE ivfflat_other;
-- Granted, but not the table's owner, nor allowed to read it.
SELECT ivfflat_verify('owned_idx');
SELECT ivfflat_verify('owned_idx', heapallindexed => true);
SELECT lists FROM ivfflat_stats('owned_idx');
RESET ROLE;

GRANT SELECT ON owned TO ivfflat_other;
SET ROLE ivfflat_other;
SELECT lists, rows FROM ivfflat_stats('owned_idx');
SELECT ivfflat_verify('owned_idx');
RESET ROLE;

SET ROLE ivfflat_owner;
SELECT ivfflat_verify('owned_idx', heapallindexed => true) LIKE 'ivfflat index OK%' AS verified;
SELECT lists, rows FROM ivfflat_stats('owned_idx');
RESET ROLE;

DROP TABLE owned;
REVOKE ALL ON FUNCTION ivfflat_verify(regclass, boolean), ivfflat_stats(regclass) FROM ivfflat_owner, ivfflat_other;
REVOKE ALL ON SCHEMA public FROM ivfflat_owner;
DROP ROLE ivfflat_owner;
DROP ROLE ivfflat_other;
