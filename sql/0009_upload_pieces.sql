-- 0009: uploaded files stored in pieces of at most 1 MiB (upload_pieces), so that neither the server storing a
-- file nor the worker reading it back holds the whole file as one value. uploads.data stays for rows written
-- before this migration (and by `bitbd ingest FILE`); uploads.bytes is the file's size, checked on read.
ALTER TABLE uploads ALTER COLUMN data DROP NOT NULL;
ALTER TABLE uploads ADD COLUMN bytes bigint;

CREATE TABLE upload_pieces (
    upload_id  uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    seq        int NOT NULL,
    data       bytea NOT NULL,
    PRIMARY KEY (upload_id, seq)
);
