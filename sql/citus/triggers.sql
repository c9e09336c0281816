-- citus/triggers.sql: the store's triggers on a distributed store
--
-- Applied by `embstore distribute` (src/distribute.c), never by migrate on
-- a plain PostgreSQL.  On Citus a write runs on the shards, in the
-- workers, and so do the triggers: a trigger of shard embeddings_102008
-- sees its own rows only.  Its statements must therefore name the
-- colocated shards on the same worker (the chunks, the counters of that
-- hash range), not the distributed tables, which from inside a shard
-- would be distributed queries of their own and cannot read the
-- statement's transition tables.
--
-- embstore_shard(rel, TG_TABLE_NAME) names the shard of rel colocated
-- with the trigger's own shard (or rel itself on a table that is not a
-- shard).  The counters are distributed by bucket, colocated with the
-- documents: each shard's triggers write their deltas into the counter
-- shard beside them, with a bucket (one of the rows' own ids) that hashes
-- into that shard's range, so that the rows are where Citus would route
-- them.  Sums over all shards are the store's counts, exact as before.
-- The notification triggers do nothing here: a NOTIFY sent on a worker
-- reaches nobody, and a distributed store's search cache is off (the
-- library knows the store is distributed).

CREATE OR REPLACE FUNCTION embstore_shard(rel text, tg_table text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    sid bigint := substring(tg_table FROM '_([0-9]+)$')::bigint;
    name text;
BEGIN
    IF tg_table IN ('embeddings', 'chunks') OR sid IS NULL THEN
        RETURN rel;
    END IF;
    SELECT rel || '_' || o.shardid INTO name
    FROM pg_dist_shard me
    JOIN pg_dist_shard o ON o.shardminvalue = me.shardminvalue
                        AND o.logicalrelid = rel::regclass
    WHERE me.shardid = sid;
    IF name IS NULL THEN
        RAISE EXCEPTION 'embstore: no shard of % beside %', rel, tg_table;
    END IF;
    RETURN name;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_docs_ins() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO %I (bucket, source_id, workspace, documents, without_vector) '
        'SELECT min(id), source_id, metadata->>''workspace'', count(*), '
        'count(*) FILTER (WHERE embedding IS NULL) FROM new_rows GROUP BY 2, 3',
        embstore_shard('embstore_counts', TG_TABLE_NAME));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_docs_del() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO %I (bucket, source_id, workspace, documents, without_vector) '
        'SELECT min(id), source_id, metadata->>''workspace'', -count(*), '
        '-count(*) FILTER (WHERE embedding IS NULL) FROM old_rows GROUP BY 2, 3',
        embstore_shard('embstore_counts', TG_TABLE_NAME));
    RETURN NULL;
END $$;

-- Documents cannot move between shards (their id is the distribution
-- column), so old and new rows of an update are on this shard, and so
-- are their chunks.
CREATE OR REPLACE FUNCTION embstore_counts_docs_upd() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO %I (bucket, source_id, workspace, documents, chunks, without_vector) '
        'SELECT min(b), s, w, sum(d), sum(c), sum(v) FROM ('
        '  SELECT id AS b, source_id AS s, metadata->>''workspace'' AS w, -1 AS d, '
        '         0::bigint AS c, -(embedding IS NULL)::int AS v FROM old_rows '
        '  UNION ALL '
        '  SELECT id, source_id, metadata->>''workspace'', 1, 0, (embedding IS NULL)::int '
        '  FROM new_rows '
        '  UNION ALL '
        '  SELECT m.id, x.s, x.w, 0, x.sign * k.n, 0 '
        '  FROM (SELECT o.id, o.source_id AS os, o.metadata->>''workspace'' AS ow, '
        '               n.source_id AS ns, n.metadata->>''workspace'' AS nw '
        '        FROM old_rows o JOIN new_rows n ON n.id = o.id '
        '        WHERE o.source_id IS DISTINCT FROM n.source_id '
        '           OR (o.metadata->>''workspace'') IS DISTINCT FROM (n.metadata->>''workspace'')) m '
        '  CROSS JOIN LATERAL (SELECT count(*) AS n FROM %I WHERE document_id = m.id) k '
        '  CROSS JOIN LATERAL (VALUES (m.os, m.ow, -1), (m.ns, m.nw, 1)) x(s, w, sign)'
        ') t GROUP BY s, w HAVING sum(d) <> 0 OR sum(c) <> 0 OR sum(v) <> 0',
        embstore_shard('embstore_counts', TG_TABLE_NAME),
        embstore_shard('chunks', TG_TABLE_NAME));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_doc_chunks() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %I WHERE document_id = $1',
                   embstore_shard('chunks', TG_TABLE_NAME))
        INTO n USING OLD.id;
    IF n > 0 THEN
        EXECUTE format('INSERT INTO %I (bucket, source_id, workspace, chunks) '
                       'VALUES ($1, $2, $3, $4)',
                       embstore_shard('embstore_counts', TG_TABLE_NAME))
            USING OLD.id, OLD.source_id, OLD.metadata->>'workspace', -n;
    END IF;
    RETURN OLD;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_chunks_ins() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    me xid := embstore_own_xid();
    docs text := embstore_shard('embeddings', TG_TABLE_NAME);
BEGIN
    EXECUTE format('SELECT 1 FROM %I e WHERE e.id IN (SELECT document_id FROM new_rows) '
                   'AND e.xmin <> $1 ORDER BY e.id FOR SHARE OF e', docs) USING me;
    EXECUTE format(
        'INSERT INTO %I (bucket, source_id, workspace, chunks, all_chunks) '
        'SELECT min(n.document_id), e.source_id, e.metadata->>''workspace'', count(e.id), count(*) '
        'FROM new_rows n LEFT JOIN %I e ON e.id = n.document_id GROUP BY 2, 3',
        embstore_shard('embstore_counts', TG_TABLE_NAME), docs);
    IF current_setting('embstore.writer', true) IS DISTINCT FROM 'on' THEN
        EXECUTE format('UPDATE %I SET chunks_hash = NULL WHERE id IN '
                       '(SELECT document_id FROM new_rows) AND chunks_hash IS NOT NULL', docs);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_chunks_del() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    me xid := embstore_own_xid();
    docs text := embstore_shard('embeddings', TG_TABLE_NAME);
BEGIN
    EXECUTE format('SELECT 1 FROM %I e WHERE e.id IN (SELECT document_id FROM old_rows) '
                   'AND e.xmin <> $1 ORDER BY e.id FOR SHARE OF e', docs) USING me;
    EXECUTE format(
        'INSERT INTO %I (bucket, source_id, workspace, chunks, all_chunks) '
        'SELECT min(o.document_id), e.source_id, e.metadata->>''workspace'', -count(e.id), -count(*) '
        'FROM old_rows o LEFT JOIN %I e ON e.id = o.document_id GROUP BY 2, 3',
        embstore_shard('embstore_counts', TG_TABLE_NAME), docs);
    IF current_setting('embstore.writer', true) IS DISTINCT FROM 'on' THEN
        EXECUTE format('UPDATE %I SET chunks_hash = NULL WHERE id IN '
                       '(SELECT document_id FROM old_rows) AND chunks_hash IS NOT NULL', docs);
    END IF;
    RETURN NULL;
END $$;

-- A chunk's document_id is its distribution column: Citus refuses to
-- change it, so an update moves no chunk between documents and changes
-- no count; only the chunk-set hash is cleared as on PostgreSQL.
CREATE OR REPLACE FUNCTION embstore_counts_chunks_upd() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('embstore.writer', true) IS DISTINCT FROM 'on' THEN
        EXECUTE format('UPDATE %I SET chunks_hash = NULL WHERE id IN '
                       '(SELECT document_id FROM old_rows UNION SELECT document_id FROM new_rows) '
                       'AND chunks_hash IS NOT NULL',
                       embstore_shard('embeddings', TG_TABLE_NAME));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_counts_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    counts text := embstore_shard('embstore_counts', TG_TABLE_NAME);
BEGIN
    IF TG_TABLE_NAME LIKE 'embeddings%' THEN
        EXECUTE format('DELETE FROM %I', counts);
        EXECUTE format('INSERT INTO %I (bucket, all_chunks) SELECT min(document_id), count(*) '
                       'FROM %I HAVING count(*) > 0',
                       counts, embstore_shard('chunks', TG_TABLE_NAME));
    ELSE
        EXECUTE format('INSERT INTO %I (bucket, source_id, workspace, chunks, all_chunks) '
                       'SELECT min(bucket), source_id, workspace, -sum(chunks), -sum(all_chunks) '
                       'FROM %I GROUP BY 2, 3 HAVING sum(chunks) <> 0 OR sum(all_chunks) <> 0',
                       counts, counts);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_model_counts_ins() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %I (bucket, kind, model, vectors) '
                   'SELECT min(%s), $1, model, count(*) FROM new_rows '
                   'WHERE embedding IS NOT NULL GROUP BY model',
                   embstore_shard('embstore_model_counts', TG_TABLE_NAME),
                   CASE TG_ARGV[0] WHEN 'd' THEN 'id' ELSE 'document_id' END)
        USING TG_ARGV[0]::"char";
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_model_counts_del() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %I (bucket, kind, model, vectors) '
                   'SELECT min(%s), $1, model, -count(*) FROM old_rows '
                   'WHERE embedding IS NOT NULL GROUP BY model',
                   embstore_shard('embstore_model_counts', TG_TABLE_NAME),
                   CASE TG_ARGV[0] WHEN 'd' THEN 'id' ELSE 'document_id' END)
        USING TG_ARGV[0]::"char";
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_model_counts_upd() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO %I (bucket, kind, model, vectors) '
        'SELECT min(m.b), $1, m.model, sum(m.d) '
        'FROM (SELECT o.%2$s AS b, o.model, -1 AS d FROM old_rows o JOIN new_rows n ON n.id = o.id '
        '      WHERE o.embedding IS NOT NULL '
        '        AND (n.embedding IS NULL OR n.model IS DISTINCT FROM o.model) '
        '      UNION ALL '
        '      SELECT n.%2$s, n.model, 1 FROM new_rows n JOIN old_rows o ON o.id = n.id '
        '      WHERE n.embedding IS NOT NULL '
        '        AND (o.embedding IS NULL OR n.model IS DISTINCT FROM o.model) '
        '      UNION ALL '
        '      SELECT o.%2$s, o.model, -1 FROM old_rows o WHERE o.embedding IS NOT NULL '
        '        AND NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.id = o.id) '
        '      UNION ALL '
        '      SELECT n.%2$s, n.model, 1 FROM new_rows n WHERE n.embedding IS NOT NULL '
        '        AND NOT EXISTS (SELECT 1 FROM old_rows o WHERE o.id = n.id)) m '
        'GROUP BY m.model HAVING sum(m.d) <> 0',
        embstore_shard('embstore_model_counts', TG_TABLE_NAME),
        CASE TG_ARGV[0] WHEN 'd' THEN 'id' ELSE 'document_id' END)
        USING TG_ARGV[0]::"char";
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_model_counts_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM %I WHERE kind = $1',
                   embstore_shard('embstore_model_counts', TG_TABLE_NAME))
        USING TG_ARGV[0]::"char";
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION embstore_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RETURN NULL;
END $$;

-- Folds each counter shard's deltas into one row per key, inside the
-- shard (rows keep a bucket of their own range).
CREATE OR REPLACE FUNCTION embstore_counts_compact() RETURNS void
LANGUAGE sql AS $$
    SELECT count(*) FROM run_command_on_shards('embstore_counts', $c$
        WITH gone AS (DELETE FROM %1$s RETURNING *)
        INSERT INTO %1$s (bucket, source_id, workspace, documents, chunks,
                          without_vector, all_chunks)
        SELECT min(bucket), source_id, workspace, sum(documents), sum(chunks),
               sum(without_vector), sum(all_chunks)
        FROM gone GROUP BY 2, 3
        HAVING sum(documents) <> 0 OR sum(chunks) <> 0 OR sum(without_vector) <> 0
            OR sum(all_chunks) <> 0 $c$);
$$;

CREATE OR REPLACE FUNCTION embstore_model_counts_compact() RETURNS void
LANGUAGE sql AS $$
    SELECT count(*) FROM run_command_on_shards('embstore_model_counts', $c$
        WITH gone AS (DELETE FROM %1$s RETURNING *)
        INSERT INTO %1$s (bucket, kind, model, vectors)
        SELECT min(bucket), kind, model, sum(vectors) FROM gone GROUP BY 2, 3
        HAVING sum(vectors) <> 0 $c$);
$$;

-- Recomputes every counter from the tables (the caller holds writers
-- off, as on PostgreSQL).  Rows are routed by their bucket, one of the
-- group's ids.
CREATE OR REPLACE FUNCTION embstore_counts_recount() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM embstore_counts;
    INSERT INTO embstore_counts (bucket, source_id, workspace, documents, without_vector)
    SELECT min(id), source_id, metadata->>'workspace', count(*),
           count(*) FILTER (WHERE embedding IS NULL)
    FROM embeddings GROUP BY 2, 3;
    INSERT INTO embstore_counts (bucket, source_id, workspace, chunks)
    SELECT min(c.document_id), e.source_id, e.metadata->>'workspace', count(*)
    FROM chunks c JOIN embeddings e ON e.id = c.document_id
    GROUP BY 2, 3;
    INSERT INTO embstore_counts (bucket, all_chunks)
    SELECT min(document_id), count(*) FROM chunks HAVING count(*) > 0;
$$;

CREATE OR REPLACE FUNCTION embstore_model_counts_recount() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM embstore_model_counts;
    INSERT INTO embstore_model_counts (bucket, kind, model, vectors)
    SELECT min(id), 'd', model, count(*) FROM embeddings WHERE embedding IS NOT NULL GROUP BY 3;
    INSERT INTO embstore_model_counts (bucket, kind, model, vectors)
    SELECT min(document_id), 'c', model, count(*) FROM chunks WHERE embedding IS NOT NULL GROUP BY 3;
$$;
