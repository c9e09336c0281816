-- 001_base: base tables
--
-- The store's tables, written to adopt existing tables of the same shape:
-- nothing here drops or rewrites user data.  Tables are created only when
-- missing, and columns that an adopted table lacks are added with defaults
-- (PostgreSQL 11+ adds such columns without rewriting the table).  @DIM@
-- is the store's dimension, checked by the library before this runs.  The
-- library then records the store's shape in embstore_meta (migrate.c).

CREATE TABLE IF NOT EXISTS embstore_meta (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    dim        integer NOT NULL CHECK (dim > 0),
    metric     text NOT NULL CHECK (metric IN ('cosine', 'l2', 'ip')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS embeddings (
    id         text PRIMARY KEY,
    text       text NOT NULL DEFAULT '',
    embedding  vector(@DIM@),
    metadata   jsonb NOT NULL DEFAULT '{}',
    source_id  text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS text text NOT NULL DEFAULT '';
ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS embedding vector(@DIM@);
ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS metadata jsonb NOT NULL DEFAULT '{}';
ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS source_id text;
ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
-- BLAKE2b-128 of the document's own fields and of its chunk set: a
-- re-ingest compares 16 bytes instead of rewriting an unchanged document.
ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS content_hash bytea;
ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS chunks_hash bytea;
-- The embedding model that produced the vector, when the pipeline says.
ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS model text;

CREATE TABLE IF NOT EXISTS chunks (
    id          text PRIMARY KEY,
    document_id text NOT NULL,
    chunk_index integer NOT NULL DEFAULT 0,
    text        text NOT NULL DEFAULT '',
    embedding   vector(@DIM@),
    metadata    jsonb NOT NULL DEFAULT '{}'
);
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS chunk_index integer NOT NULL DEFAULT 0;
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS text text NOT NULL DEFAULT '';
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS embedding vector(@DIM@);
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS metadata jsonb NOT NULL DEFAULT '{}';
ALTER TABLE chunks ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();

CREATE TABLE IF NOT EXISTS performance_metrics (
    id            bigserial PRIMARY KEY,
    operation     text NOT NULL,
    duration_ms   double precision NOT NULL,
    success       boolean NOT NULL,
    error_message text,
    metadata      jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);
