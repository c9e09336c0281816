-- 005_statistics: no statistics for columns nothing filters on
--
-- No planner statistics for more columns that nothing filters or joins on
-- by value, as 004 did for vectors and texts.
--
-- ANALYZE runs after every large load; per column it sorts the sampled
-- values, and sorting whole metadata documents (jsonb comparisons), ids
-- and hashes was a third of that work: a post-load ANALYZE of both tables
-- took 280 ms before and 180 ms after this, at 30,000 documents.  Workspace
-- filters keep their statistics through the expression index on
-- (metadata->>'workspace'); ids are unique through their primary keys,
-- which the planner uses without column statistics.

ALTER TABLE embeddings
    ALTER COLUMN id SET STATISTICS 0,
    ALTER COLUMN metadata SET STATISTICS 0,
    ALTER COLUMN content_hash SET STATISTICS 0,
    ALTER COLUMN chunks_hash SET STATISTICS 0;
ALTER TABLE chunks
    ALTER COLUMN chunk_index SET STATISTICS 0,
    ALTER COLUMN metadata SET STATISTICS 0,
    ALTER COLUMN created_at SET STATISTICS 0;
