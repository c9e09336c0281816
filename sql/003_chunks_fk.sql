-- 003_chunks_fk: chunks.document_id foreign key
--
-- Every chunk belongs to a document, and deleting a document deletes its
-- chunks.  The key is added NOT VALID, which checks new rows only: an
-- adopted database may hold orphaned chunks, which are reported, never
-- deleted here (that is `embstore cleanup`'s job).  The library validates
-- the key once no orphan is left, after every init and migrate, and runs
-- this file again when the key has gone.  A key of another name that
-- already links chunks to embeddings is kept.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE contype = 'f'
                     AND conrelid = 'chunks'::regclass
                     AND confrelid = 'embeddings'::regclass) THEN
        ALTER TABLE chunks ADD CONSTRAINT chunks_document_id_fkey
            FOREIGN KEY (document_id) REFERENCES embeddings (id)
            ON DELETE CASCADE NOT VALID;
    END IF;
END
$$;
