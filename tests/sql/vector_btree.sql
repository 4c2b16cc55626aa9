-- The default btree operator class: ordering, equality lookups, DISTINCT and unique indexes.
CREATE TABLE btree_items (v vector(3));
INSERT INTO btree_items VALUES ('[1,2,3]'), ('[0,5,1]'), ('[1,2,3]'), ('[1,2,4]'), ('[-1,0,0]'), (NULL);
CREATE INDEX ON btree_items (v);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM btree_items WHERE v = '[1,2,3]';
SELECT * FROM btree_items WHERE v = '[1,2,3]';
SELECT * FROM btree_items ORDER BY v;
SELECT * FROM btree_items WHERE v > '[0,9,9]' ORDER BY v DESC;
RESET enable_seqscan;
SELECT DISTINCT v FROM btree_items ORDER BY v;
SELECT v, count(*) FROM btree_items GROUP BY v ORDER BY v;
CREATE UNIQUE INDEX ON btree_items (v);
DROP TABLE btree_items;
