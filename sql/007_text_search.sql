-- 007_text_search: the store's text search configuration
--
-- Full-text search over document text uses PostgreSQL's own text search
-- with a GIN index on to_tsvector(config, text).  The configuration is
-- the store's, chosen at init (`init --text-config CONFIG`, default
-- english; NULL here: the store was initialised with --no-text-search).
-- Documents are indexed by their first 200,000 characters (a tsvector
-- holds at most 1 MB).
-- A store that existed before this migration gets english.  The index
-- itself is built by the library after the migration's transaction
-- commits, with CREATE INDEX CONCURRENTLY, so that writers are never held
-- for the build on a large store; an interrupted build leaves an invalid
-- index that the next init or migrate replaces (src/text.c).
-- The name, as text: a column of a reg* type would make pg_upgrade refuse
-- the whole cluster.
ALTER TABLE embstore_meta ADD COLUMN IF NOT EXISTS text_config text;
UPDATE embstore_meta SET text_config = 'english' WHERE text_config IS NULL;
