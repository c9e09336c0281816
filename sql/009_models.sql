-- 009_models: the model that made each vector, counted per model
--
-- Documents have recorded their model since 001 (embeddings.model); chunks
-- get the column here.  The provider (src/embed.c) fills both; a pipeline
-- that brings its own vectors may say its model ("model" in the ingest
-- format).
--
-- embstore_model_counts counts the vectors of each model, documents
-- (kind 'd') and chunks (kind 'c') apart, as embstore_counts counts
-- documents: deltas appended by statement triggers, folded by
-- embstore_model_counts_compact().  Only rows that have a vector count.
-- `stats` lists them and calls an index holding vectors of several models
-- degraded: distances between two models' vectors mean nothing.  A search
-- whose query vector names its model is checked against them.

ALTER TABLE chunks ADD COLUMN IF NOT EXISTS model text;

CREATE TABLE IF NOT EXISTS embstore_model_counts (
    kind    "char" NOT NULL CHECK (kind IN ('d', 'c')),
    model   text,
    vectors bigint NOT NULL DEFAULT 0
);

CREATE OR REPLACE FUNCTION embstore_model_counts_ins() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embstore_model_counts (kind, model, vectors)
    SELECT TG_ARGV[0]::"char", model, count(*) FROM new_rows
    WHERE embedding IS NOT NULL GROUP BY model;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_model_counts_del() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embstore_model_counts (kind, model, vectors)
    SELECT TG_ARGV[0]::"char", model, -count(*) FROM old_rows
    WHERE embedding IS NOT NULL GROUP BY model;
    RETURN NULL;
END $$;

-- Only rows whose model or vector's presence changed move a count.
CREATE OR REPLACE FUNCTION embstore_model_counts_upd() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO embstore_model_counts (kind, model, vectors)
    SELECT TG_ARGV[0]::"char", m.model, sum(m.d)
    FROM (SELECT o.model, -1 AS d FROM old_rows o JOIN new_rows n ON n.id = o.id
          WHERE o.embedding IS NOT NULL
            AND (n.embedding IS NULL OR n.model IS DISTINCT FROM o.model)
          UNION ALL
          SELECT n.model, 1 FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE n.embedding IS NOT NULL
            AND (o.embedding IS NULL OR n.model IS DISTINCT FROM o.model)
          UNION ALL -- an id changed: one row left, another arrived
          SELECT o.model, -1 FROM old_rows o
          WHERE o.embedding IS NOT NULL AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.id = o.id)
          UNION ALL
          SELECT n.model, 1 FROM new_rows n
          WHERE n.embedding IS NOT NULL AND NOT EXISTS (SELECT 1 FROM old_rows o WHERE o.id = n.id)) m
    GROUP BY m.model HAVING sum(m.d) <> 0;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_model_counts_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM embstore_model_counts WHERE kind = TG_ARGV[0]::"char";
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_model_counts_compact() RETURNS void
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM embstore_model_counts RETURNING *)
    INSERT INTO embstore_model_counts (kind, model, vectors)
    SELECT kind, model, sum(vectors) FROM gone GROUP BY 1, 2
    HAVING sum(vectors) <> 0
$$;

CREATE OR REPLACE FUNCTION embstore_model_counts_recount() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM embstore_model_counts;
    INSERT INTO embstore_model_counts (kind, model, vectors)
    SELECT 'd', model, count(*) FROM embeddings WHERE embedding IS NOT NULL GROUP BY 2;
    INSERT INTO embstore_model_counts (kind, model, vectors)
    SELECT 'c', model, count(*) FROM chunks WHERE embedding IS NOT NULL GROUP BY 2;
$$;

DROP TRIGGER IF EXISTS embstore_model_counts_ins ON embeddings;
DROP TRIGGER IF EXISTS embstore_model_counts_del ON embeddings;
DROP TRIGGER IF EXISTS embstore_model_counts_upd ON embeddings;
DROP TRIGGER IF EXISTS embstore_model_counts_truncate ON embeddings;
DROP TRIGGER IF EXISTS embstore_model_counts_ins ON chunks;
DROP TRIGGER IF EXISTS embstore_model_counts_del ON chunks;
DROP TRIGGER IF EXISTS embstore_model_counts_upd ON chunks;
DROP TRIGGER IF EXISTS embstore_model_counts_truncate ON chunks;
CREATE TRIGGER embstore_model_counts_ins AFTER INSERT ON embeddings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_model_counts_ins('d');
CREATE TRIGGER embstore_model_counts_del AFTER DELETE ON embeddings
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_model_counts_del('d');
CREATE TRIGGER embstore_model_counts_upd AFTER UPDATE ON embeddings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_model_counts_upd('d');
CREATE TRIGGER embstore_model_counts_truncate AFTER TRUNCATE ON embeddings
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_model_counts_truncate('d');
CREATE TRIGGER embstore_model_counts_ins AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_model_counts_ins('c');
CREATE TRIGGER embstore_model_counts_del AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_model_counts_del('c');
CREATE TRIGGER embstore_model_counts_upd AFTER UPDATE ON chunks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_model_counts_upd('c');
CREATE TRIGGER embstore_model_counts_truncate AFTER TRUNCATE ON chunks
    FOR EACH STATEMENT EXECUTE FUNCTION embstore_model_counts_truncate('c');
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_model_counts_ins;
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_model_counts_del;
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_model_counts_upd;
ALTER TABLE embeddings ENABLE ALWAYS TRIGGER embstore_model_counts_truncate;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_model_counts_ins;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_model_counts_del;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_model_counts_upd;
ALTER TABLE chunks ENABLE ALWAYS TRIGGER embstore_model_counts_truncate;

LOCK TABLE embeddings, chunks IN SHARE MODE;
SELECT embstore_model_counts_recount();
