-- Binary send/receive: COPY in binary format round-trips every value bit for bit, and the bytes are
-- pgvector's (network order int16 dim, int16 unused, float4[dim]).
SELECT vector_send('[1,2]');
SELECT vector_send('[-0,1e-45,3.4028235e+38]');
CREATE TABLE copy_src (id int, v vector(3));
INSERT INTO copy_src VALUES (1, '[1,2,3]'), (2, '[-0,1.4e-45,3.4028235e+38]'), (3, '[0.1,0.2,0.3]'), (4, NULL);
COPY copy_src TO '/tmp/pgivf_regress_copy.bin' WITH (FORMAT binary);
CREATE TABLE copy_dst (id int, v vector(3));
COPY copy_dst FROM '/tmp/pgivf_regress_copy.bin' WITH (FORMAT binary);
SELECT s.id, s.v, d.v, s.v = d.v AS equal, vector_send(s.v) = vector_send(d.v) AS same_bytes
FROM copy_src s JOIN copy_dst d USING (id) ORDER BY id;
-- the typmod is checked on binary input too
CREATE TABLE copy_narrow (id int, v vector(2));
COPY copy_narrow FROM '/tmp/pgivf_regress_copy.bin' WITH (FORMAT binary);
DROP TABLE copy_src, copy_dst, copy_narrow;
