-- 010_notify: every committed write tells the store's other processes
--
-- A process caches search results (src/cache.c).  Its own writes
-- invalidate them; these statement triggers make everyone else's do too,
-- plain SQL included: each statement that changes documents or chunks
-- sends NOTIFY embstore_changes with the sources it touched, a JSON array
-- of source ids (null for documents without one).  PostgreSQL delivers a
-- notification only when its transaction commits, and once per distinct
-- payload per transaction.  When the array would not fit in a payload
-- (7,900 bytes here; the limit is 8,000), or for TRUNCATE, the payload is
-- "*": everything.  Chunks name their documents' sources; the chunks of
-- a document deleted in the same statement are covered by the document's
-- own notification.  Every store handle with a cache listens (src/listen.c).

CREATE OR REPLACE FUNCTION embstore_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sources text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        sources := '*';
    ELSIF TG_ARGV[0] = 'd' THEN
        IF TG_OP = 'INSERT' THEN
            SELECT json_agg(DISTINCT source_id)::text INTO sources FROM new_rows;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT json_agg(DISTINCT source_id)::text INTO sources FROM old_rows;
        ELSE
            SELECT json_agg(DISTINCT s)::text INTO sources
            FROM (SELECT source_id FROM old_rows UNION SELECT source_id FROM new_rows) AS t(s);
        END IF;
    ELSE
        IF TG_OP = 'INSERT' THEN
            SELECT json_agg(DISTINCT e.source_id)::text INTO sources
            FROM (SELECT DISTINCT document_id FROM new_rows) n
            JOIN embeddings e ON e.id = n.document_id;
        ELSIF TG_OP = 'DELETE' THEN
            SELECT json_agg(DISTINCT e.source_id)::text INTO sources
            FROM (SELECT DISTINCT document_id FROM old_rows) o
            JOIN embeddings e ON e.id = o.document_id;
        ELSE
            SELECT json_agg(DISTINCT e.source_id)::text INTO sources
            FROM (SELECT document_id FROM old_rows UNION SELECT document_id FROM new_rows) c
            JOIN embeddings e ON e.id = c.document_id;
        END IF;
    END IF;
    IF sources IS NULL THEN -- no row, or chunks whose documents are gone
        RETURN NULL;
    END IF;
    IF octet_length(sources) > 7900 THEN
        sources := '*';
    END IF;
    PERFORM pg_notify('embstore_changes', sources);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS embstore_notify_ins ON embeddings;
DROP TRIGGER IF EXISTS embstore_notify_del ON embeddings;
DROP TRIGGER IF EXISTS embstore_notify_upd ON embeddings;
DROP TRIGGER IF EXISTS embstore_notify_truncate ON embeddings;
DROP TRIGGER IF EXISTS embstore_notify_ins ON chunks;
DROP TRIGGER IF EXISTS embstore_notify_del ON chunks;
DROP TRIGGER IF EXISTS embstore_notify_upd ON chunks;
DROP TRIGGER IF EXISTS embstore_notify_truncate ON chunks;
CREATE TRIGGER embstore_notify_ins AFTER INSERT ON embeddings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_notify('d');
CREATE TRIGGER embstore_notify_del AFTER DELETE ON embeddings
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_notify('d');
CREATE TRIGGER embstore_notify_upd AFTER UPDATE ON embeddings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_notify('d');
CREATE TRIGGER embstore_notify_truncate AFTER TRUNCATE ON embeddings
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_notify('d');
CREATE TRIGGER embstore_notify_ins AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_notify('c');
CREATE TRIGGER embstore_notify_del AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_notify('c');
CREATE TRIGGER embstore_notify_upd AFTER UPDATE ON chunks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_notify('c');
CREATE TRIGGER embstore_notify_truncate AFTER TRUNCATE ON chunks
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_notify('c');
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_notify_ins;
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_notify_del;
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_notify_upd;
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_notify_truncate;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_notify_ins;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_notify_del;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_notify_upd;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_notify_truncate;
