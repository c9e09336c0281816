-- 008_chunk_index: whether the store searches chunks by their vectors
--
-- `init --chunk-index` sets it; then the library keeps an HNSW index on
-- the chunks that have a vector (chunks_embedding_hnsw_idx, partial: WHERE
-- embedding IS NOT NULL), built like the documents' one and deferred with
-- it on large loads (src/schema.c, src/batch_index.c).
ALTER TABLE embstore_meta ADD COLUMN IF NOT EXISTS chunk_index boolean NOT NULL DEFAULT false;
