-- 007_text_search: the store's text search configuration
--
-- Full-text search over document text uses PostgreSQL's own text search
-- with a GIN index on to_tsvector(config, text).  The configuration is
-- the store's, chosen at init (`init --text-config CONFIG`, default
-- english; NULL here: the store was initialised with --no-text-search).
-- A store that existed before this migration gets english.  The index
-- itself is built by the library after the migration's transaction
-- commits, with CREATE INDEX CONCURRENTLY, so that writers are never held
-- for the build on a large store; an interrupted build leaves an invalid
-- index that the next init or migrate replaces (src/text.c).
ALTER TABLE embstore_meta ADD COLUMN IF NOT EXISTS text_config regconfig;
UPDATE embstore_meta SET text_config = 'english' WHERE text_config IS NULL;
