/* text.c - the store's full-text search: its configuration and its index.
 *
 * The configuration lives in embstore_meta.text_config (a regconfig; NULL:
 * the store has no text search).  Statements name it by its OID, a number
 * read from the catalog, never by text that came from input: the index is
 * on to_tsvector('OID'::regconfig, text) (a constant the server prints
 * as 'english'::regconfig) and every text query repeats that
 * expression, so the planner matches it to the index.
 *
 * A store that searches chunks (init --chunk-index) keeps a second one,
 * chunks_text_idx, on the chunks' text, for text and hybrid chunk
 * searches.  The indexes are built with CREATE INDEX CONCURRENTLY, outside any
 * transaction, after init or migrate committed: on a store that already
 * holds documents, writers go on while it builds.  A build that is
 * interrupted leaves an invalid index; the next init or migrate drops it
 * (concurrently too) and builds it again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "schema.h"

/* Reads the configuration (whatever is cached). */
static es_status read_text(es_store *s, es__conn *c, unsigned *oid, char *name,
                           size_t cap) {
  *oid = 0;
  name[0] = '\0';
  /* to_jsonb: a store from before migration 7 has no such column. */
  PGresult *r = PQexec(c->pg,
                       "SELECT t::oid, t::text FROM (SELECT (to_jsonb(m) ->> "
                       "'text_config')::regconfig AS t FROM embstore_meta m) x "
                       "WHERE t IS NOT NULL");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot read the store's text "
                               "search configuration");
    PQclear(r);
    return rc;
  }
  if (PQntuples(r) == 1) {
    *oid = (unsigned)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
    snprintf(name, cap, "%s", PQgetvalue(r, 0, 1));
  }
  PQclear(r);
  return ES_OK;
}

es_status es__load_text(es_store *s, es__conn *c, bool fresh) {
  pthread_mutex_lock(&s->shape_mu);
  bool loaded = s->text_loaded && !fresh;
  pthread_mutex_unlock(&s->shape_mu);
  if (loaded)
    return ES_OK;
  unsigned oid;
  char name[sizeof s->text_config];
  es_status rc = read_text(s, c, &oid, name, sizeof name);
  if (rc != ES_OK)
    return rc;
  pthread_mutex_lock(&s->shape_mu);
  s->text_oid = oid;
  memcpy(s->text_config, name, sizeof name);
  s->text_loaded = true;
  pthread_mutex_unlock(&s->shape_mu);
  return ES_OK;
}

es_status es__text_config_oid(es_store *s, es__conn *c, const char *config,
                              unsigned *oid) {
  const char *v[1] = {config};
  PGresult *r = PQexecParams(c->pg, "SELECT $1::regconfig::oid", 1, NULL, v,
                             NULL, NULL, 0);
  es_status rc = ES_OK;
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  if (!es__res_ok(r) && state && (strcmp(state, "42704") == 0 ||
                                  strcmp(state, "42602") == 0))
    rc = es__fail(s, ES_EINVAL, "no text search configuration \"%s\" on this "
                  "server (psql's \\dF lists them; simple suits any language)",
                  config);
  else if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot look up the text search configuration");
  else
    *oid = (unsigned)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return rc;
}

es_status es__set_text_config(es_store *s, es__conn *c, unsigned oid) {
  char num[16];
  snprintf(num, sizeof num, "%u", oid);
  const char *v[1] = {oid ? num : NULL};
  PGresult *r = PQexecParams(c->pg, "UPDATE embstore_meta SET text_config = "
                             "$1::oid::regconfig::text", 1, NULL, v, NULL, NULL, 0);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot record the text search configuration");
  PQclear(r);
  pthread_mutex_lock(&s->shape_mu);
  s->text_loaded = false; /* read again after the commit */
  pthread_mutex_unlock(&s->shape_mu);
  return rc;
}

/* Whether a CREATE INDEX of the index name is running now. */
static es_status build_running(es_store *s, es__conn *c, const char *name,
                               bool *running) {
  const char *v[1] = {name};
  PGresult *r = PQexecParams(c->pg, "SELECT count(*) FROM "
                             "pg_stat_progress_create_index WHERE index_relid = "
                             "to_regclass(quote_ident($1))",
                             1, NULL, v, NULL, NULL, 0);
  es_status rc = ES_OK;
  if (!es__res_ok(r))
    rc = es__fail_pg(s, c->pg, r, "cannot read the index builds in progress");
  else
    *running = atoi(PQgetvalue(r, 0, 0)) > 0;
  PQclear(r);
  return rc;
}

/* The text indexes: the documents', and the chunks' in a store that
 * searches chunks (es_init_options.chunk_index). */
typedef struct text_target {
  const char *index, *table;
} text_target;
static const text_target targets[] = {{"embeddings_text_idx", "embeddings"},
                                      {"chunks_text_idx", "chunks"}};

/* How many of targets[] the store keeps: 0 without text search. */
static es_status wanted_targets(es_store *s, es__conn *c, size_t *n) {
  unsigned oid;
  char name[ES__TEXT_CONFIG_MAX];
  bool chunks = false;
  *n = 0;
  es_status rc = read_text(s, c, &oid, name, sizeof name);
  if (rc == ES_OK && oid != 0)
    rc = es__chunk_index_wanted(s, c, &chunks);
  if (rc == ES_OK && oid != 0)
    *n = chunks ? 2 : 1;
  return rc;
}

/* Text index t as the catalog holds it: *oid 0 when the store has no
 * text search (then nothing else is set); else its state and the name
 * found (the caller frees it), and the statement that creates it. */
static es_status text_index(es_store *s, es__conn *c, const text_target *t,
                            unsigned *oid, es__index_state *st, char **found,
                            char *create, size_t cap, bool concurrently) {
  char name[ES__TEXT_CONFIG_MAX];
  *found = NULL;
  es_status rc = read_text(s, c, oid, name, sizeof name);
  if (rc != ES_OK || *oid == 0)
    return rc;
  /* The definition as pg_get_indexdef() prints it, its quoting the
   * server's own. */
  const char *v[1] = {name};
  PGresult *r = PQexecParams(c->pg, "SELECT format('USING gin (to_tsvector(%L::"
                             "regconfig, \"left\"(text, " ES__TEXT_CHARS_S
                             ")))', $1::text)", 1, NULL, v, NULL, NULL, 0);
  if (!es__res_ok(r)) {
    rc = es__fail_pg(s, c->pg, r, "cannot name the text index");
    PQclear(r);
    return rc;
  }
  char key[ES__TEXT_CONFIG_MAX + 100];
  snprintf(key, sizeof key, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  /* IF NOT EXISTS: a concurrent init may have started the same build
   * since the lookup; it finishes it. */
  snprintf(create, cap, "CREATE INDEX %sIF NOT EXISTS %s ON %s USING gin "
           "(to_tsvector('%u'::regconfig, left(text, " ES__TEXT_CHARS_S ")))",
           concurrently ? "CONCURRENTLY " : "", t->index, t->table, *oid);
  es__index_def def = {t->index, t->table, key, create, NULL};
  return es__index_lookup(s, c, &def, st, found);
}

/* One index's health: why is "" when it is fine. */
static es_status target_health(es_store *s, es__conn *c, es__conn *primary,
                               const text_target *t, char *why, size_t cap) {
  unsigned oid;
  es__index_state st;
  char *found = NULL, create[ES__TEXT_CONFIG_MAX + 200];
  why[0] = '\0';
  es_status rc = text_index(s, c, t, &oid, &st, &found, create, sizeof create, true);
  bool building = false;
  if (rc == ES_OK && oid != 0 && st == ES__INDEX_INVALID)
    rc = build_running(s, primary, found, &building);
  const char *what = t == &targets[0] ? "document" : "chunk";
  if (rc == ES_OK && oid != 0 && st != ES__INDEX_OK) {
    if (st == ES__INDEX_MISSING && es__deferred_load_running(s, primary))
      snprintf(why, cap, "the text search index %s is being rebuilt by a load "
               "in progress, which builds it when it ends", t->index);
    else if (building)
      snprintf(why, cap, "the text search index %s is being built (CREATE "
               "INDEX CONCURRENTLY); text searches scan every %s until it is "
               "done", found, what);
    else
      snprintf(why, cap, "the text search index %s is %s: text searches scan "
               "every %s; run `embstore migrate` to build it", t->index,
               st == ES__INDEX_MISSING ? "missing" : "invalid (an interrupted "
               "build)", what);
  }
  free(found);
  return rc;
}

es_status es__text_index_health(es_store *s, es__conn *c, es__conn *primary,
                                int *health, char *why, size_t cap) {
  size_t n;
  *health = 0;
  why[0] = '\0';
  es_status rc = wanted_targets(s, c, &n);
  for (size_t i = 0; rc == ES_OK && i < n; i++) {
    char one[400];
    rc = target_health(s, c, primary, &targets[i], one, sizeof one);
    if (rc == ES_OK && one[0]) {
      size_t used = strlen(why);
      snprintf(why + used, cap - used, "%s%s", used ? "; " : "", one);
      *health = 1;
    }
  }
  return rc;
}

/* Builds text index t in the caller's transaction when it is missing or
 * invalid. */
static es_status build_target(es_store *s, es__conn *c, const text_target *t,
                              int *created) {
  unsigned oid;
  es__index_state st;
  char *found = NULL, create[ES__TEXT_CONFIG_MAX + 200];
  es_status rc = text_index(s, c, t, &oid, &st, &found, create, sizeof create,
                            false);
  bool building = false;
  if (rc == ES_OK && oid != 0 && st == ES__INDEX_INVALID)
    rc = build_running(s, c, found, &building);
  if (rc == ES_OK && building) { /* another session's build finishes it */
    free(found);
    return ES_OK;
  }
  if (rc == ES_OK && oid != 0 && st == ES__INDEX_INVALID)
    rc = es__drop_index(s, c, found, false, "cannot drop the invalid text index");
  free(found);
  if (rc == ES_OK && oid != 0 && st != ES__INDEX_OK) {
    rc = es__exec(s, c, create, "cannot build the text search index");
    if (rc == ES_OK && created)
      (*created)++;
  }
  return rc;
}

es_status es__build_text_index(es_store *s, es__conn *c, int *created) {
  size_t n;
  es_status rc = wanted_targets(s, c, &n);
  for (size_t i = 0; rc == ES_OK && i < n; i++)
    rc = build_target(s, c, &targets[i], created);
  return rc;
}

/* Builds text index t concurrently when it is missing or invalid. */
static es_status ensure_target(es_store *s, es__conn *c, const text_target *t,
                               int *created) {
  unsigned oid;
  es__index_state st;
  char *found = NULL, create[ES__TEXT_CONFIG_MAX + 200];
  es_status rc = text_index(s, c, t, &oid, &st, &found, create, sizeof create,
                            true);
  if (rc != ES_OK || oid == 0 || st == ES__INDEX_OK ||
      (st == ES__INDEX_MISSING && es__deferred_load_running(s, c))) {
    free(found); /* a load that deferred it builds it when it ends */
    return rc;
  }
  if (st == ES__INDEX_INVALID) {
    /* Invalid while another session builds it (a concurrent init): that
     * build finishes it.  Only one left by an interrupted build is
     * replaced. */
    bool building = false;
    rc = build_running(s, c, found, &building);
    if (rc != ES_OK || building) {
      free(found);
      return rc;
    }
  }
  /* The build waits for older transactions: lock waits, which must not
   * time out either. */
  rc = es__exec(s, c, "SET statement_timeout = 0; SET lock_timeout = 0",
                "cannot lift the statement timeout");
  if (rc == ES_OK && st == ES__INDEX_INVALID) /* an interrupted build's */
    rc = es__drop_index(s, c, found, true, "cannot drop the invalid text index");
  free(found);
  if (rc == ES_OK)
    rc = es__exec(s, c, create, "cannot build the text search index");
  if (rc == ES_OK && created)
    (*created)++;
  PQclear(PQexec(c->pg, "RESET statement_timeout; RESET lock_timeout"));
  return rc;
}

es_status es__ensure_text_index(es_store *s, es__conn *c, int *created) {
  size_t n;
  es_status rc = wanted_targets(s, c, &n);
  for (size_t i = 0; rc == ES_OK && i < n; i++)
    rc = ensure_target(s, c, &targets[i], created);
  return rc;
}
