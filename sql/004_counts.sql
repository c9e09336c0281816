-- 004_counts: per-source counters kept by triggers
--
-- Exact counts per (source, workspace), kept by triggers, so that
-- `embstore stats` answers from a few rows instead of scanning millions.
--
-- embstore_counts holds deltas: every statement that writes documents or
-- chunks appends one row per (source, workspace) it touched; nothing is
-- updated in place, so concurrent writers never wait for each other here.
-- embstore_counts_compact() folds the deltas into one row per key.
-- Chunks are attributed to their document's source and workspace.

CREATE TABLE IF NOT EXISTS embstore_counts (
    source_id      text,
    workspace      text,
    documents      bigint NOT NULL DEFAULT 0,
    chunks         bigint NOT NULL DEFAULT 0,
    without_vector bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS embstore_counts_workspace_idx ON embstore_counts (workspace);

-- No planner statistics for columns nothing filters on by value (vectors,
-- free text, unique ids): sorting sampled vectors made ANALYZE of chunks
-- four times slower, and ANALYZE runs after every large load.  Source,
-- workspace (its expression index) and document_id keep theirs.
ALTER TABLE embeddings ALTER COLUMN embedding SET STATISTICS 0;
ALTER TABLE embeddings ALTER COLUMN text SET STATISTICS 0;
ALTER TABLE chunks ALTER COLUMN embedding SET STATISTICS 0;
ALTER TABLE chunks ALTER COLUMN text SET STATISTICS 0;
ALTER TABLE chunks ALTER COLUMN id SET STATISTICS 0;

-- Documents without a vector, for cleanup's grace-period scan.
CREATE INDEX IF NOT EXISTS embeddings_without_vector_idx
    ON embeddings (created_at) WHERE embedding IS NULL;
-- Recent metrics of one operation, for stats and `embstore metrics`.
CREATE INDEX IF NOT EXISTS performance_metrics_operation_created_idx
    ON performance_metrics (operation, created_at DESC);

CREATE OR REPLACE FUNCTION embstore_counts_docs_ins() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embstore_counts (source_id, workspace, documents, without_vector)
    SELECT source_id, metadata->>'workspace', count(*),
           count(*) FILTER (WHERE embedding IS NULL)
    FROM new_rows GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_docs_del() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embstore_counts (source_id, workspace, documents, without_vector)
    SELECT source_id, metadata->>'workspace', -count(*),
           -count(*) FILTER (WHERE embedding IS NULL)
    FROM old_rows GROUP BY 1, 2;
    RETURN NULL;
END $$;

-- An update may move a document (and its chunks) to another source or
-- workspace, or give it or take its vector.
CREATE OR REPLACE FUNCTION embstore_counts_docs_upd() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embstore_counts (source_id, workspace, documents, chunks, without_vector)
    SELECT s, w, sum(d), sum(c), sum(v) FROM (
        SELECT source_id AS s, metadata->>'workspace' AS w, -1 AS d,
               0::bigint AS c, -(embedding IS NULL)::int AS v
        FROM old_rows
        UNION ALL
        SELECT source_id, metadata->>'workspace', 1, 0, (embedding IS NULL)::int
        FROM new_rows
        UNION ALL
        SELECT x.s, x.w, 0, x.sign * k.n, 0
        FROM (SELECT o.id, o.source_id AS os, o.metadata->>'workspace' AS ow,
                     n.source_id AS ns, n.metadata->>'workspace' AS nw
              FROM old_rows o JOIN new_rows n ON n.id = o.id
              WHERE o.source_id IS DISTINCT FROM n.source_id
                 OR (o.metadata->>'workspace') IS DISTINCT FROM (n.metadata->>'workspace')) m
        CROSS JOIN LATERAL (SELECT count(*) AS n FROM chunks WHERE document_id = m.id) k
        CROSS JOIN LATERAL (VALUES (m.os, m.ow, -1), (m.ns, m.nw, 1)) x(s, w, sign)
    ) t
    GROUP BY s, w
    HAVING sum(d) <> 0 OR sum(c) <> 0 OR sum(v) <> 0;
    RETURN NULL;
END $$;

-- A deleted document's chunks are counted out here, while the document is
-- still visible: ON DELETE CASCADE removes them after the row is gone,
-- when the chunks' own trigger can no longer tell whose they were.
CREATE OR REPLACE FUNCTION embstore_counts_doc_chunks() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM chunks WHERE document_id = OLD.id;
    IF n > 0 THEN
        INSERT INTO embstore_counts (source_id, workspace, chunks)
        VALUES (OLD.source_id, OLD.metadata->>'workspace', -n);
    END IF;
    RETURN OLD;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_chunks_ins() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embstore_counts (source_id, workspace, chunks)
    SELECT e.source_id, e.metadata->>'workspace', count(*)
    FROM new_rows n JOIN embeddings e ON e.id = n.document_id
    GROUP BY 1, 2;
    RETURN NULL;
END $$;

-- Chunks of documents that still exist; those of documents deleted in the
-- same statement were counted out by embstore_counts_doc_chunks.
CREATE OR REPLACE FUNCTION embstore_counts_chunks_del() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embstore_counts (source_id, workspace, chunks)
    SELECT e.source_id, e.metadata->>'workspace', -count(*)
    FROM old_rows o JOIN embeddings e ON e.id = o.document_id
    GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_chunks_upd() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embstore_counts (source_id, workspace, chunks)
    SELECT s, w, sum(c) FROM (
        SELECT e.source_id AS s, e.metadata->>'workspace' AS w, -1 AS c
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        JOIN embeddings e ON e.id = o.document_id
        WHERE o.document_id IS DISTINCT FROM n.document_id
        UNION ALL
        SELECT e.source_id, e.metadata->>'workspace', 1
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        JOIN embeddings e ON e.id = n.document_id
        WHERE o.document_id IS DISTINCT FROM n.document_id
    ) t GROUP BY s, w HAVING sum(c) <> 0;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'embeddings' THEN
        DELETE FROM embstore_counts;
    ELSE
        INSERT INTO embstore_counts (source_id, workspace, chunks)
        SELECT source_id, workspace, -sum(chunks) FROM embstore_counts
        GROUP BY 1, 2 HAVING sum(chunks) <> 0;
    END IF;
    RETURN NULL;
END $$;

-- Folds the deltas into one row per (source, workspace).  Safe while
-- others write: rows inserted after this statement's snapshot are left
-- for the next compaction.
CREATE OR REPLACE FUNCTION embstore_counts_compact() RETURNS void
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM embstore_counts RETURNING *)
    INSERT INTO embstore_counts (source_id, workspace, documents, chunks, without_vector)
    SELECT source_id, workspace, sum(documents), sum(chunks), sum(without_vector)
    FROM gone GROUP BY 1, 2
    HAVING sum(documents) <> 0 OR sum(chunks) <> 0 OR sum(without_vector) <> 0
$$;

DROP TRIGGER IF EXISTS embstore_counts_docs_ins ON embeddings;
DROP TRIGGER IF EXISTS embstore_counts_docs_del ON embeddings;
DROP TRIGGER IF EXISTS embstore_counts_docs_upd ON embeddings;
DROP TRIGGER IF EXISTS embstore_counts_doc_chunks ON embeddings;
DROP TRIGGER IF EXISTS embstore_counts_truncate ON embeddings;
DROP TRIGGER IF EXISTS embstore_counts_chunks_ins ON chunks;
DROP TRIGGER IF EXISTS embstore_counts_chunks_del ON chunks;
DROP TRIGGER IF EXISTS embstore_counts_chunks_upd ON chunks;
DROP TRIGGER IF EXISTS embstore_counts_truncate ON chunks;

CREATE TRIGGER embstore_counts_docs_ins AFTER INSERT ON embeddings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_counts_docs_ins();
CREATE TRIGGER embstore_counts_docs_del AFTER DELETE ON embeddings
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_counts_docs_del();
CREATE TRIGGER embstore_counts_docs_upd AFTER UPDATE ON embeddings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_counts_docs_upd();
CREATE TRIGGER embstore_counts_doc_chunks BEFORE DELETE ON embeddings
    FOR EACH ROW EXECUTE FUNCTION embstore_counts_doc_chunks();
CREATE TRIGGER embstore_counts_truncate AFTER TRUNCATE ON embeddings
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_counts_truncate();
CREATE TRIGGER embstore_counts_chunks_ins AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_counts_chunks_ins();
CREATE TRIGGER embstore_counts_chunks_del AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_counts_chunks_del();
CREATE TRIGGER embstore_counts_chunks_upd AFTER UPDATE ON chunks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_counts_chunks_upd();
CREATE TRIGGER embstore_counts_truncate AFTER TRUNCATE ON chunks
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_counts_truncate();

-- Start from the truth, with writers held off while counting.
LOCK TABLE embeddings, chunks IN SHARE MODE;
DELETE FROM embstore_counts;
INSERT INTO embstore_counts (source_id, workspace, documents, without_vector)
SELECT source_id, metadata->>'workspace', count(*),
       count(*) FILTER (WHERE embedding IS NULL)
FROM embeddings GROUP BY 1, 2;
INSERT INTO embstore_counts (source_id, workspace, chunks)
SELECT e.source_id, e.metadata->>'workspace', count(*)
FROM chunks c JOIN embeddings e ON e.id = c.document_id
GROUP BY 1, 2;
