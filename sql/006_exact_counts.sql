-- 006_exact_counts: counters exact under every writer, hashes cleared by plain SQL edits
--
-- Counters that stay exact under every writer, and content hashes that
-- plain SQL cannot make stale.
--
-- 1. Chunks are attributed to their document's source and workspace.  A
--    chunk written while another transaction moves its document to another
--    source was attributed to the old one for good: the chunk triggers now
--    lock the documents they attribute to (FOR SHARE, which waits for a
--    mover and makes a mover wait), except rows this transaction wrote
--    itself, which nobody else can move.
-- 2. all_chunks counts every chunk, attributed or not, so that orphaned
--    chunks (sum(all_chunks) - sum(chunks)) are known exactly even when a
--    writer bypassed the foreign key (session_replication_role = replica
--    skips its cascade and its checks).
-- 3. The triggers fire ALWAYS: also under session_replication_role =
--    replica (pg_restore, logical replication apply).
-- 4. A plain-SQL edit of a document's fields clears its content hash, and
--    one of its chunks clears its chunk-set hash, so that re-ingesting the
--    original rewrites it instead of calling it unchanged.  embstore's own
--    sessions (embstore.writer = on) keep the hashes they write.
--
-- Safe to apply again (`embstore migrate` does after 004 when triggers are
-- missing): the total is corrected, not added.

ALTER TABLE embstore_counts ADD COLUMN IF NOT EXISTS all_chunks bigint NOT NULL DEFAULT 0;

-- The 32-bit id of the current transaction, as xmin shows it.
CREATE OR REPLACE FUNCTION embstore_own_xid() RETURNS xid
LANGUAGE sql VOLATILE AS $$ SELECT (txid_current() % 4294967296)::text::xid $$;

CREATE OR REPLACE FUNCTION embstore_counts_chunks_ins() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    me xid := embstore_own_xid();
BEGIN
    PERFORM 1 FROM embeddings e
    WHERE e.id IN (SELECT document_id FROM new_rows) AND e.xmin <> me
    ORDER BY e.id FOR SHARE OF e;
    INSERT INTO embstore_counts (source_id, workspace, chunks, all_chunks)
    SELECT e.source_id, e.metadata->>'workspace', count(e.id), count(*)
    FROM new_rows n LEFT JOIN embeddings e ON e.id = n.document_id
    GROUP BY 1, 2;
    IF current_setting('embstore.writer', true) IS DISTINCT FROM 'on' THEN
        UPDATE embeddings SET chunks_hash = NULL
        WHERE id IN (SELECT document_id FROM new_rows) AND chunks_hash IS NOT NULL;
    END IF;
    RETURN NULL;
END $$;

-- Chunks of documents deleted in the same statement (ON DELETE CASCADE)
-- were counted out by embstore_counts_doc_chunks; here they only leave
-- the total.
CREATE OR REPLACE FUNCTION embstore_counts_chunks_del() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    me xid := embstore_own_xid();
BEGIN
    PERFORM 1 FROM embeddings e
    WHERE e.id IN (SELECT document_id FROM old_rows) AND e.xmin <> me
    ORDER BY e.id FOR SHARE OF e;
    INSERT INTO embstore_counts (source_id, workspace, chunks, all_chunks)
    SELECT e.source_id, e.metadata->>'workspace', -count(e.id), -count(*)
    FROM old_rows o LEFT JOIN embeddings e ON e.id = o.document_id
    GROUP BY 1, 2;
    IF current_setting('embstore.writer', true) IS DISTINCT FROM 'on' THEN
        UPDATE embeddings SET chunks_hash = NULL
        WHERE id IN (SELECT document_id FROM old_rows) AND chunks_hash IS NOT NULL;
    END IF;
    RETURN NULL;
END $$;

-- Rows are paired by id; a chunk whose id changed counts as one leaving
-- and one arriving.  Only moved chunks change counts (and need locks).
CREATE OR REPLACE FUNCTION embstore_counts_chunks_upd() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    me xid := embstore_own_xid();
BEGIN
    PERFORM 1 FROM embeddings e
    WHERE e.id IN (SELECT o.document_id FROM old_rows o LEFT JOIN new_rows n ON n.id = o.id
                   WHERE n.document_id IS DISTINCT FROM o.document_id
                   UNION
                   SELECT n.document_id FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id
                   WHERE o.document_id IS DISTINCT FROM n.document_id)
      AND e.xmin <> me
    ORDER BY e.id FOR SHARE OF e;
    INSERT INTO embstore_counts (source_id, workspace, chunks)
    SELECT e.source_id, e.metadata->>'workspace', sum(m.d)
    FROM (SELECT o.document_id, -1 AS d FROM old_rows o LEFT JOIN new_rows n ON n.id = o.id
          WHERE n.document_id IS DISTINCT FROM o.document_id
          UNION ALL
          SELECT n.document_id, 1 FROM new_rows n LEFT JOIN old_rows o ON o.id = n.id
          WHERE o.document_id IS DISTINCT FROM n.document_id) m
    JOIN embeddings e ON e.id = m.document_id
    GROUP BY 1, 2 HAVING sum(m.d) <> 0;
    IF current_setting('embstore.writer', true) IS DISTINCT FROM 'on' THEN
        UPDATE embeddings SET chunks_hash = NULL
        WHERE id IN (SELECT document_id FROM old_rows UNION SELECT document_id FROM new_rows)
          AND chunks_hash IS NOT NULL;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'embeddings' THEN
        -- Whatever chunks are left (possible only without the foreign key)
        -- are orphans now.
        DELETE FROM embstore_counts;
        INSERT INTO embstore_counts (all_chunks) SELECT count(*) FROM chunks;
    ELSE
        INSERT INTO embstore_counts (source_id, workspace, chunks, all_chunks)
        SELECT source_id, workspace, -sum(chunks), -sum(all_chunks)
        FROM embstore_counts GROUP BY 1, 2
        HAVING sum(chunks) <> 0 OR sum(all_chunks) <> 0;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_compact() RETURNS void
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM embstore_counts RETURNING *)
    INSERT INTO embstore_counts (source_id, workspace, documents, chunks,
                                 without_vector, all_chunks)
    SELECT source_id, workspace, sum(documents), sum(chunks),
           sum(without_vector), sum(all_chunks)
    FROM gone GROUP BY 1, 2
    HAVING sum(documents) <> 0 OR sum(chunks) <> 0 OR sum(without_vector) <> 0
        OR sum(all_chunks) <> 0
$$;

-- A plain-SQL change to a document's fields (text, vector, metadata,
-- source) that leaves its content hash as it was makes the hash stale.
CREATE OR REPLACE FUNCTION embstore_content_hash_stale() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.content_hash := NULL;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS embstore_content_hash_stale ON embeddings;
CREATE TRIGGER embstore_content_hash_stale BEFORE UPDATE ON embeddings
    FOR EACH ROW
    WHEN (NEW.content_hash IS NOT NULL AND NEW.content_hash = OLD.content_hash
          AND (NEW.text IS DISTINCT FROM OLD.text
               OR NEW.source_id IS DISTINCT FROM OLD.source_id
               OR NEW.metadata IS DISTINCT FROM OLD.metadata
               OR NEW.embedding IS DISTINCT FROM OLD.embedding))
    EXECUTE FUNCTION embstore_content_hash_stale();

ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_counts_docs_ins;
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_counts_docs_del;
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_counts_docs_upd;
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_counts_doc_chunks;
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_counts_truncate;
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_content_hash_stale;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_counts_chunks_ins;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_counts_chunks_del;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_counts_chunks_upd;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_counts_truncate;

-- Recomputes every counter from the tables.  The caller holds writers off
-- (LOCK TABLE embeddings, chunks IN SHARE MODE), as below and as `embstore
-- stats --repair` does.
CREATE OR REPLACE FUNCTION embstore_counts_recount() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM embstore_counts;
    INSERT INTO embstore_counts (source_id, workspace, documents, without_vector)
    SELECT source_id, metadata->>'workspace', count(*),
           count(*) FILTER (WHERE embedding IS NULL)
    FROM embeddings GROUP BY 1, 2;
    INSERT INTO embstore_counts (source_id, workspace, chunks)
    SELECT e.source_id, e.metadata->>'workspace', count(*)
    FROM chunks c JOIN embeddings e ON e.id = c.document_id
    GROUP BY 1, 2;
    INSERT INTO embstore_counts (all_chunks) SELECT count(*) FROM chunks;
$$;

LOCK TABLE embeddings, chunks IN SHARE MODE;
SELECT embstore_counts_recount();
