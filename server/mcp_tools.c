/* mcp_tools.c - the MCP tools as a table (see mcp.h): each row a name, a
 * description, its input and output schemas, its annotations, whether it
 * writes, and its handler.  tools/list is the table; a read-only session
 * lists and calls only the rows that never write.  Handlers call one
 * library function and answer with the JSON the tool's --json prints
 * (render.c), so a result reads the same on every surface. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json_spans.h"
#include "mcp.h"
#include "render.h"

typedef struct call {
  es_store *store;
  const mcp_config *cfg;
  json_t *args;       /* an object (never NULL) */
  const char *raw;    /* the arguments' own bytes (NULL: not found) */
  size_t len;
  mcp_result *out;
} call;

typedef void (*tool_fn)(call *c);

typedef struct tool {
  const char *name, *title, *description;
  const char *input, *output; /* JSON Schemas */
  bool writes, destructive, idempotent;
  tool_fn fn;
  bool admin; /* needs the admin role (as POST /v1/cleanup does) */
} tool;

/* ---- results ---------------------------------------------------------------- */

static void fail(call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(call *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char buf[2048];
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  mcp_utf8_trim(buf); /* jansson takes only whole characters */
  c->out->error = strdup(buf);
}

static void fail_store(call *c, es_status st) {
  fail(c, "%s: %s", es_status_name(st), es_errmsg(c->store));
}

/* A jw document being written into memory, parsed into the result. */
typedef struct mem {
  FILE *f;
  char *buf;
  size_t len;
  jw w;
} mem;

/* Starts the result; false (the call failed) when out of memory. */
static bool mem_open(call *c, mem *m) {
  memset(m, 0, sizeof *m);
  m->f = open_memstream(&m->buf, &m->len);
  if (m->f == NULL) {
    fail(c, "out of memory");
    return false;
  }
  jw_init(&m->w, m->f);
  return true;
}

/* Parses what was written into the structured result (or an error). */
static void mem_result(call *c, mem *m) {
  fclose(m->f);
  json_error_t je;
  json_t *j = m->buf ? json_loadb(m->buf, m->len, 0, &je) : NULL;
  if (j == NULL) {
    free(m->buf);
    fail(c, "out of memory writing the result");
    return;
  }
  c->out->structured = j;
  c->out->text = m->buf;
}

/* ---- arguments ---------------------------------------------------------------- */

/* A string argument (NULL when absent); *bad when it is not a string. */
static const char *arg_str(call *c, const char *key, bool *bad) {
  json_t *v = json_object_get(c->args, key);
  if (v == NULL || json_is_null(v))
    return NULL;
  if (!json_is_string(v)) {
    if (!*bad)
      fail(c, "%s must be a string", key);
    *bad = true;
    return NULL;
  }
  return json_string_value(v);
}

static long arg_int(call *c, const char *key, long min, long max, long dflt,
                    bool *bad) {
  json_t *v = json_object_get(c->args, key);
  if (v == NULL || json_is_null(v))
    return dflt;
  if (!json_is_integer(v) || json_integer_value(v) < min ||
      json_integer_value(v) > max) {
    if (!*bad)
      fail(c, "%s must be an integer %ld..%ld", key, min, max);
    *bad = true;
    return dflt;
  }
  return (long)json_integer_value(v);
}

static bool arg_bool(call *c, const char *key, bool dflt, bool *bad) {
  json_t *v = json_object_get(c->args, key);
  if (v == NULL || json_is_null(v))
    return dflt;
  if (!json_is_boolean(v)) {
    if (!*bad)
      fail(c, "%s must be true or false", key);
    *bad = true;
    return dflt;
  }
  return json_is_true(v);
}

/* An object argument as JSON text (malloc'd; NULL when absent). */
static char *arg_object_text(call *c, const char *key, bool *bad) {
  json_t *v = json_object_get(c->args, key);
  if (v == NULL || json_is_null(v))
    return NULL;
  if (!json_is_object(v)) {
    if (!*bad)
      fail(c, "%s must be a JSON object", key);
    *bad = true;
    return NULL;
  }
  return json_dumps(v, JSON_COMPACT);
}

/* ---- a tenant's scope ---------------------------------------------------------- */

static bool tenant(const call *c) { return c->cfg->workspaces != NULL; }

static bool in_scope(const call *c, const char *ws) {
  if (!tenant(c))
    return true;
  for (size_t i = 0; ws && i < c->cfg->n_workspaces; i++)
    if (strcmp(c->cfg->workspaces[i], ws) == 0)
      return true;
  return false;
}

/* The workspace a call acts in: the one given (which a tenant must be
 * allowed), else a tenant's only one; false after failing the call. */
static bool workspace_of(call *c, const char *given, const char **out) {
  *out = given;
  if (!tenant(c))
    return true;
  if (given) {
    if (in_scope(c, given))
      return true;
    fail(c, "this token may not use workspace \"%s\"", given);
    return false;
  }
  if (c->cfg->n_workspaces == 1) {
    *out = c->cfg->workspaces[0];
    return true;
  }
  fail(c, "this token may use several workspaces: name one with workspace");
  return false;
}

/* The raw bytes of argument key (false when absent). */
static bool arg_span(call *c, const char *key, span *s) {
  return c->raw && json_member_span(c->raw, c->len, key, s);
}

/* ---- the tools ---------------------------------------------------------------- */

typedef struct store_walk {
  call *c;
  es_doc_json **parsed;
  es_doc *docs;
  char (*ids)[40];
  size_t n;
  char err[512];
  size_t bad_at;
  const char *source, *workspace;
} store_walk;

static bool parse_one(span el, size_t i, void *user) {
  store_walk *w = user;
  char err[400];
  if (es_doc_json_parse(el.p, el.len, &w->parsed[i], err, sizeof err) != ES_OK) {
    snprintf(w->err, sizeof w->err, "documents[%zu]: %s", i, err);
    w->bad_at = i;
    return false;
  }
  if (es_doc_json_set_defaults(w->parsed[i], w->source, w->workspace) != ES_OK) {
    snprintf(w->err, sizeof w->err, "documents[%zu]: out of memory", i);
    w->bad_at = i;
    return false;
  }
  w->docs[i] = *es_doc_json_doc(w->parsed[i]);
  w->ids[i][0] = '\0';
  if (w->docs[i].id == NULL) {
    if (!mcp_random_id(w->ids[i])) {
      snprintf(w->err, sizeof w->err, "documents[%zu]: no randomness for a "
               "new id", i);
      w->bad_at = i;
      return false;
    }
    w->docs[i].id = w->ids[i];
  }
  w->n = i + 1;
  return true;
}

/* The workspace in a document's metadata (malloc'd), or NULL. */
static char *doc_workspace(const es_doc *d) {
  json_error_t je;
  json_t *m = d->metadata_json ? json_loads(d->metadata_json, 0, &je) : NULL;
  const char *ws = json_string_value(json_object_get(m, "workspace"));
  char *out = ws ? strdup(ws) : NULL;
  json_decref(m);
  return out;
}

/* A tenant stores only into its workspaces, and never over a document of
 * another workspace (ids are shared by the whole store): both refused for
 * the whole call, naming the document, before anything is written. */
static bool tenant_may_store(call *c, store_walk *w, size_t n) {
  const char **ids = calloc(n, sizeof *ids);
  if (ids == NULL) {
    fail(c, "out of memory");
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    char *ws = doc_workspace(&w->docs[i]);
    bool ok = in_scope(c, ws);
    if (!ok)
      fail(c, "documents[%zu]: this token may not write workspace \"%s\" "
           "(nothing was stored)", i, ws ? ws : "(none)");
    free(ws);
    if (!ok) {
      free(ids);
      return false;
    }
    ids[i] = w->docs[i].id;
  }
  /* Stored ids that are not in the tenant's workspaces belong to another. */
  es_delete_options o;
  es_delete_options_init(&o);
  o.dry_run = 1;
  es_delete_result *all = NULL, *mine = NULL;
  es_status st = es_delete_documents(c->store, ids, n, &o, &all);
  o.workspaces = c->cfg->workspaces;
  o.n_workspaces = c->cfg->n_workspaces;
  if (st == ES_OK)
    st = es_delete_documents(c->store, ids, n, &o, &mine);
  bool ok = st == ES_OK;
  if (!ok)
    fail_store(c, st);
  for (int64_t i = 0; ok && mine && i < mine->not_found; i++) {
    const char *id = mine->not_found_ids[i];
    bool absent = false;
    for (int64_t k = 0; k < all->not_found && !absent; k++)
      absent = strcmp(all->not_found_ids[k], id) == 0;
    if (!absent) {
      fail(c, "document \"%s\" is stored in a workspace this token may not "
           "write (nothing was stored)", id);
      ok = false;
    }
  }
  es_delete_result_free(all);
  es_delete_result_free(mine);
  free(ids);
  return ok;
}

static void t_store(call *c) {
  bool bad = false;
  const char *ws = arg_str(c, "workspace", &bad), *src = arg_str(c, "source_id", &bad);
  json_t *docs = json_object_get(c->args, "documents");
  span ds;
  if (bad || !workspace_of(c, ws, &ws))
    return;
  if (!json_is_array(docs) || json_array_size(docs) == 0 || !arg_span(c, "documents", &ds)) {
    fail(c, "documents must be a non-empty array of documents");
    return;
  }
  size_t n = json_array_size(docs);
  store_walk w = {.c = c, .source = src, .workspace = ws, .bad_at = SIZE_MAX};
  w.parsed = calloc(n, sizeof *w.parsed);
  w.docs = calloc(n, sizeof *w.docs);
  w.ids = calloc(n, sizeof *w.ids);
  if (!w.parsed || !w.docs || !w.ids) {
    fail(c, "out of memory");
    goto done;
  }
  json_each_element(ds, parse_one, &w);
  if (w.bad_at != SIZE_MAX) {
    fail(c, "%s (nothing was stored)", w.err);
    goto done;
  }
  if (tenant(c) && !tenant_may_store(c, &w, n))
    goto done;
  es_batch_options o;
  es_batch_options_init(&o);
  o.batch_size = c->cfg->batch_size;
  es_batch_result *r = NULL;
  es_status st = es_batch_upsert(c->store, w.docs, n, &o, &r);
  if (st != ES_OK && st != ES_EPARTIAL) {
    fail_store(c, st);
    es_batch_result_free(r);
    goto done;
  }
  render_item_error *errs = calloc(r->n_failures ? r->n_failures : 1, sizeof *errs);
  for (size_t i = 0; errs && i < r->n_failures; i++)
    errs[i] = (render_item_error){r->failures[i].id, (long)r->failures[i].position,
                                  r->failures[i].error};
  mem m;
  if (errs == NULL)
    fail(c, "out of memory");
  else if (mem_open(c, &m)) {
    render_ingest(&m.w, r, errs, r->n_failures, 0);
    mem_result(c, &m);
  }
  free(errs);
  es_batch_result_free(r);
  if (c->out->structured) {
    free(c->out->text); /* changed below: dumped instead */
    c->out->text = NULL;
    /* errors[].line is the document's place in the array here */
    json_t *list = json_object_get(c->out->structured, "errors");
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
      json_object_set(e, "index", json_object_get(e, "line"));
      json_object_del(e, "line");
    }
    json_t *gen = json_array();
    for (size_t k = 0; k < n; k++)
      if (w.ids[k][0])
        json_array_append_new(gen, json_string(w.ids[k]));
    json_object_set_new(c->out->structured, "generated_ids", gen);
    json_object_del(c->out->structured, "seconds");
  }
done:
  for (size_t i = 0; w.parsed && i < n; i++)
    es_doc_json_free(w.parsed[i]);
  free(w.parsed);
  free(w.docs);
  free(w.ids);
}

static void t_search(call *c) {
  bool bad = false;
  es_search_params p;
  es_search_params_init(&p);
  p.text = arg_str(c, "query", &bad);
  p.like_id = arg_str(c, "like", &bad);
  p.workspace = arg_str(c, "workspace", &bad);
  if (!bad && !workspace_of(c, p.workspace, &p.workspace))
    bad = true;
  p.source_id = arg_str(c, "source", &bad);
  p.k = (int)arg_int(c, "k", 1, 1000, 10, &bad);
  p.chunks = arg_bool(c, "chunks", false, &bad);
  p.any_model = arg_bool(c, "any_model", false, &bad);
  const char *mode = arg_str(c, "mode", &bad);
  char *filter = arg_object_text(c, "filter", &bad);
  p.filter_json = filter;
  float *vec = NULL;
  span vs;
  if (!bad && json_object_get(c->args, "vector") && arg_span(c, "vector", &vs)) {
    char err[256];
    size_t dim = 0;
    if (es_vector_parse_json(vs.p, vs.len, "vector", &vec, &dim, err, sizeof err) != ES_OK) {
      fail(c, "%s", err);
      bad = true;
    }
    p.vector = vec;
    p.dim = dim;
  }
  if (!bad && mode && es_search_mode_parse(mode, &p.mode) != ES_OK) {
    fail(c, "mode must be vector, text or hybrid, not \"%s\"", mode);
    bad = true;
  }
  es_results *r = NULL;
  es_status st;
  if (!bad && (st = es_search(c->store, &p, &r)) != ES_OK) {
    fail_store(c, st);
  } else if (!bad) {
    mem m;
    if (mem_open(c, &m)) {
      render_results(&m.w, r);
      mem_result(c, &m);
    }
  }
  es_results_free(r);
  es_vector_free(vec);
  free(filter);
}

static void t_get(call *c) {
  bool bad = false;
  const char *id = arg_str(c, "id", &bad);
  if (bad)
    return;
  if (id == NULL) {
    fail(c, "id is required");
    return;
  }
  es_get_options o;
  es_get_options_init(&o);
  o.workspaces = c->cfg->workspaces;
  o.n_workspaces = c->cfg->n_workspaces;
  es_document *d = NULL;
  es_status st = es_get_document(c->store, id, &o, &d);
  if (st != ES_OK) {
    fail_store(c, st);
    return;
  }
  mem m;
  if (mem_open(c, &m)) {
    render_document(&m.w, d, false);
    mem_result(c, &m);
  }
  es_document_free(d);
}

static void t_list(call *c) {
  bool bad = false;
  es_list_params p;
  es_list_params_init(&p);
  p.source_id = arg_str(c, "source", &bad);
  p.workspace = arg_str(c, "workspace", &bad);
  p.after = arg_str(c, "after", &bad);
  p.limit = (int)arg_int(c, "limit", 1, 10000, 100, &bad);
  char *filter = arg_object_text(c, "filter", &bad);
  p.filter_json = filter;
  p.workspaces = c->cfg->workspaces;
  p.n_workspaces = c->cfg->n_workspaces;
  if (!bad && p.workspace && !in_scope(c, p.workspace)) {
    fail(c, "this token may not use workspace \"%s\"", p.workspace);
    bad = true;
  }
  es_document_list *l = NULL;
  es_status st;
  if (!bad && (st = es_list_documents(c->store, &p, &l)) != ES_OK) {
    fail_store(c, st);
  } else if (!bad) {
    mem m;
    if (mem_open(c, &m)) {
      render_document_list(&m.w, l, false, false);
      mem_result(c, &m);
    }
  }
  es_document_list_free(l);
  free(filter);
}

static void t_delete(call *c) {
  bool bad = false;
  json_t *ids = json_object_get(c->args, "ids");
  es_delete_options o;
  es_delete_options_init(&o);
  o.dry_run = arg_bool(c, "dry_run", false, &bad);
  o.workspaces = c->cfg->workspaces;
  o.n_workspaces = c->cfg->n_workspaces;
  if (bad)
    return;
  if (!json_is_array(ids) || json_array_size(ids) == 0) {
    fail(c, "ids must be a non-empty array of document ids");
    return;
  }
  size_t n = json_array_size(ids);
  const char **v = calloc(n, sizeof *v);
  if (v == NULL) {
    fail(c, "out of memory");
    return;
  }
  for (size_t i = 0; i < n; i++)
    if ((v[i] = json_string_value(json_array_get(ids, i))) == NULL) {
      fail(c, "ids[%zu] must be a string", i);
      free(v);
      return;
    }
  es_delete_result *r = NULL;
  es_status st = es_delete_documents(c->store, v, n, &o, &r);
  free(v);
  if (st != ES_OK) {
    fail_store(c, st);
    return;
  }
  mem m;
  if (mem_open(c, &m)) {
    render_delete(&m.w, r, true);
    mem_result(c, &m);
  }
  es_delete_result_free(r);
}

static void t_delete_by_source(call *c) {
  bool bad = false;
  const char *src = arg_str(c, "source_id", &bad);
  es_delete_options o;
  es_delete_options_init(&o);
  o.workspace = arg_str(c, "workspace", &bad);
  o.no_cascade = !arg_bool(c, "cascade", true, &bad);
  o.dry_run = arg_bool(c, "dry_run", false, &bad);
  o.workspaces = c->cfg->workspaces;
  o.n_workspaces = c->cfg->n_workspaces;
  if (bad)
    return;
  if (o.workspace && !in_scope(c, o.workspace)) {
    fail(c, "this token may not use workspace \"%s\"", o.workspace);
    return;
  }
  if (src == NULL) {
    fail(c, "source_id is required");
    return;
  }
  es_delete_result *r = NULL;
  es_status st = es_delete_by_source(c->store, src, &o, &r);
  if (st != ES_OK) {
    fail_store(c, st);
    return;
  }
  mem m;
  if (mem_open(c, &m)) {
    render_delete(&m.w, r, false);
    mem_result(c, &m);
  }
  es_delete_result_free(r);
}

static void t_statistics(call *c) {
  bool bad = false;
  const char *ws = arg_str(c, "workspace", &bad);
  if (bad || !workspace_of(c, ws, &ws))
    return;
  es_stats *st = NULL;
  es_status rc = es_stats_get(c->store, ws, &st);
  if (rc != ES_OK) {
    fail_store(c, rc);
    return;
  }
  mem m;
  if (mem_open(c, &m)) {
    render_stats(&m.w, st, NULL, NULL);
    mem_result(c, &m);
  }
  es_stats_free(st);
}

static void t_cleanup(call *c) {
  if (tenant(c)) {
    fail(c, "a token limited to workspaces cannot clean up the whole store");
    return;
  }
  bool bad = false;
  es_cleanup_options o;
  es_cleanup_options_init(&o);
  o.dry_run = arg_bool(c, "dry_run", true, &bad);
  o.batch_size = (size_t)arg_int(c, "batch_size", 1, 100000, 1000, &bad);
  const char *age = arg_str(c, "min_age", &bad);
  if (bad)
    return;
  if (age) {
    int64_t s; /* as `cleanup --min-age` and POST /v1/cleanup read it */
    if (!cli_parse_duration(age, &s) || s > 2147483647) {
      fail(c, "min_age must be a duration such as 90s, 15m, 2h or 1d, not \"%s\"", age);
      return;
    }
    o.min_age_s = (int)s;
  }
  es_cleanup_result *r = NULL;
  es_status st = es_cleanup_orphaned(c->store, &o, &r);
  if (st != ES_OK) {
    fail_store(c, st);
    es_cleanup_result_free(r);
    return;
  }
  mem m;
  if (mem_open(c, &m)) {
    render_cleanup(&m.w, r);
    mem_result(c, &m);
  }
  es_cleanup_result_free(r);
}

/* ---- the table ------------------------------------------------------------------ */

#define OBJ(props, req) "{\"type\":\"object\",\"properties\":{" props "}" req "}"
#define STR "{\"type\":\"string\"}"
#define NUM "{\"type\":\"number\"}"
#define INT "{\"type\":\"integer\"}"
#define BOOL "{\"type\":\"boolean\"}"
#define OBJECT "{\"type\":\"object\"}"
#define NSTR "{\"type\":[\"string\",\"null\"]}"
#define NNUM "{\"type\":[\"number\",\"null\"]}"
#define NINT "{\"type\":[\"integer\",\"null\"]}"
#define ARR(items) "{\"type\":\"array\",\"items\":" items "}"

#define DOCUMENT_IN                                                            \
  OBJ("\"id\":" STR ",\"text\":" STR ",\"metadata\":" OBJECT                  \
      ",\"source_id\":" STR ",\"model\":" STR ",\"embedding\":" ARR(NUM)      \
      ",\"chunks\":" ARR(OBJ("\"id\":" STR ",\"text\":" STR                   \
                             ",\"metadata\":" OBJECT ",\"embedding\":"        \
                             ARR(NUM), ",\"required\":[\"id\"]")),           \
      ",\"required\":[\"text\"]")

#define DOCUMENT_OUT                                                           \
  OBJ("\"id\":" STR ",\"text\":" STR ",\"metadata\":" OBJECT                  \
      ",\"source_id\":" NSTR ",\"created_at\":" STR ",\"updated_at\":" STR    \
      ",\"chunks\":" ARR(OBJ("\"id\":" STR ",\"chunk_index\":" INT            \
                             ",\"text\":" STR ",\"metadata\":" OBJECT, "")), \
      ",\"required\":[\"id\",\"text\",\"metadata\"]")

#define DELETE_OUT                                                             \
  OBJ("\"deleted\":" INT ",\"chunks_removed\":" INT ",\"dry_run\":" BOOL,     \
      ",\"required\":[\"deleted\",\"chunks_removed\",\"dry_run\"]")

static const tool tools[] = {
    {"store", "Store documents",
     "Inserts or updates documents (with their chunks) by id; a document "
     "without an id gets a new one, returned in generated_ids. Re-storing an "
     "unchanged document rewrites nothing. Without an embedding provider every "
     "document needs its embedding; with one, text is embedded.",
     OBJ("\"documents\":" ARR(DOCUMENT_IN) ",\"workspace\":" STR
         ",\"source_id\":" STR, ",\"required\":[\"documents\"]"),
     OBJ("\"inserted\":" INT ",\"updated\":" INT ",\"unchanged\":" INT
         ",\"failed\":" INT ",\"duplicates\":" INT ",\"chunks_written\":" INT
         ",\"errors\":" ARR(OBJ("\"id\":" NSTR ",\"index\":" INT ",\"error\":" STR, ""))
         ",\"generated_ids\":" ARR(STR),
         ",\"required\":[\"inserted\",\"updated\",\"unchanged\",\"failed\",\"errors\","
         "\"generated_ids\"]"),
     true, false, true, t_store, false},
    {"search", "Search",
     "Finds documents (or chunks) by text (query: words, \"a phrase\", OR, "
     "-word), by vector, or near a stored document (like); hybrid fuses text "
     "and vector ranks. Filters: workspace, source, filter (metadata "
     "containment).",
     OBJ("\"query\":" STR ",\"vector\":" ARR(NUM) ",\"like\":" STR ",\"k\":" INT
         ",\"mode\":{\"type\":\"string\",\"enum\":[\"vector\",\"text\",\"hybrid\"]}"
         ",\"chunks\":" BOOL ",\"workspace\":" STR ",\"source\":" STR
         ",\"filter\":" OBJECT ",\"any_model\":" BOOL, ""),
     OBJ("\"results\":" ARR(OBJ("\"id\":" STR ",\"distance\":" NNUM ",\"text\":" STR
                                ",\"source_id\":" NSTR ",\"metadata\":" OBJECT
                                ",\"score\":" NUM ",\"vector_rank\":" NINT
                                ",\"text_rank\":" NINT ",\"document_id\":" STR
                                ",\"chunk_index\":" INT,
                                ",\"required\":[\"id\",\"text\",\"metadata\"]")),
         ",\"required\":[\"results\"]"),
     false, false, false, t_search, false},
    {"get", "Get a document", "One document with its chunks, in order.",
     OBJ("\"id\":" STR, ",\"required\":[\"id\"]"), DOCUMENT_OUT, false, false,
     false, t_get, false},
    {"list", "List documents",
     "Documents in id order, a page at a time: pass next_after as after for "
     "the next page (null on the last).",
     OBJ("\"source\":" STR ",\"workspace\":" STR ",\"filter\":" OBJECT
         ",\"limit\":" INT ",\"after\":" STR, ""),
     OBJ("\"documents\":" ARR(OBJECT) ",\"next_after\":" NSTR,
         ",\"required\":[\"documents\",\"next_after\"]"),
     false, false, false, t_list, false},
    {"delete", "Delete documents",
     "Deletes documents by id with their chunks, in one transaction; counts "
     "are exact, and ids not stored are listed. dry_run counts only.",
     OBJ("\"ids\":" ARR(STR) ",\"dry_run\":" BOOL, ",\"required\":[\"ids\"]"),
     DELETE_OUT, true, true, false, t_delete, false},
    {"delete_by_source", "Delete a source",
     "Deletes every document of a source (in a workspace when given) with its "
     "chunks, or refuses when cascade is false and chunks exist; exact counts. "
     "dry_run counts only.",
     OBJ("\"source_id\":" STR ",\"workspace\":" STR ",\"cascade\":" BOOL
         ",\"dry_run\":" BOOL, ",\"required\":[\"source_id\"]"),
     DELETE_OUT, true, true, false, t_delete_by_source, false},
    {"get_statistics", "Statistics",
     "Exact counts (documents, chunks, per source), storage, index health "
     "with its reasons, recent performance, vectors per model.",
     OBJ("\"workspace\":" STR, ""),
     OBJ("\"documents\":" INT ",\"chunks\":" INT ",\"index_health\":" STR
         ",\"health_reasons\":" ARR(STR) ",\"sources\":" ARR(OBJECT),
         ",\"required\":[\"documents\",\"chunks\",\"index_health\"]"),
     false, false, false, t_statistics, false},
    {"cleanup_orphaned", "Clean up orphans",
     "Finds (dry_run, the default) or deletes chunks whose document is gone "
     "and documents without a vector older than min_age (default 1h).",
     OBJ("\"dry_run\":" BOOL ",\"min_age\":" STR ",\"batch_size\":" INT, ""),
     OBJ("\"orphaned_chunks\":" INT ",\"orphaned_embeddings\":" INT
         ",\"cleaned\":" INT ",\"dry_run\":" BOOL ",\"details\":" ARR(STR),
         ",\"required\":[\"orphaned_chunks\",\"orphaned_embeddings\",\"cleaned\","
         "\"dry_run\"]"),
     true, true, false, t_cleanup, true},
};
#define N_TOOLS (sizeof tools / sizeof tools[0])

/* Whether a session of config may list and call t. */
static bool allowed(const mcp_config *config, const tool *t) {
  return !(config->read_only && t->writes) && !(t->admin && !config->admin);
}

json_t *mcp_tools_list(const mcp_config *config) {
  json_t *list = json_array();
  for (size_t i = 0; i < N_TOOLS; i++) {
    const tool *t = &tools[i];
    if (!allowed(config, t))
      continue;
    json_error_t je;
    json_t *in = json_loads(t->input, 0, &je), *out = json_loads(t->output, 0, &je);
    json_t *ann = json_pack("{s:s,s:b}", "title", t->title, "readOnlyHint", !t->writes);
    if (t->writes) {
      json_object_set_new(ann, "destructiveHint", json_boolean(t->destructive));
      json_object_set_new(ann, "idempotentHint", json_boolean(t->idempotent));
    }
    json_array_append_new(list, json_pack("{s:s,s:s,s:s,s:o,s:o,s:o}", "name", t->name,
                                          "title", t->title, "description",
                                          t->description, "inputSchema", in,
                                          "outputSchema", out, "annotations", ann));
  }
  return list;
}

bool mcp_tools_call(es_store *store, const mcp_config *config, const char *name,
                    json_t *args, const char *raw, size_t len, mcp_result *out) {
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < N_TOOLS; i++) {
    if (strcmp(tools[i].name, name) != 0 || !allowed(config, &tools[i]))
      continue;
    json_t *empty = NULL;
    if (args == NULL)
      args = empty = json_object();
    call c = {store, config, args, raw, len, out};
    tools[i].fn(&c);
    json_decref(empty);
    if (out->structured == NULL && out->error == NULL)
      out->error = strdup("the tool produced nothing");
    if (out->error) {
      json_decref(out->structured);
      out->structured = NULL;
      free(out->text);
      out->text = NULL;
    }
    return true;
  }
  return false;
}

char *mcp_resource_text(es_store *store, const mcp_config *config,
                        const char *uri, char *err, size_t cap, bool *unknown) {
  *unknown = false;
  const char *ws = NULL;
  if (config->workspaces) { /* a tenant sees its one workspace's, or none */
    if (config->n_workspaces != 1) {
      snprintf(err, cap, "this token may use several workspaces: read "
               "get_statistics with a workspace instead");
      return NULL;
    }
    ws = config->workspaces[0];
  }
  bool sources = strcmp(uri, "embstore://sources") == 0;
  if (!sources && strcmp(uri, "embstore://stats") != 0) {
    *unknown = true;
    return NULL;
  }
  es_stats *st = NULL;
  es_status rc = es_stats_get(store, ws, &st);
  if (rc != ES_OK) {
    snprintf(err, cap, "%s: %s", es_status_name(rc), es_errmsg(store));
    return NULL;
  }
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  if (f == NULL) {
    es_stats_free(st);
    snprintf(err, cap, "out of memory");
    return NULL;
  }
  jw w;
  jw_init(&w, f);
  if (sources) {
    jw_obj(&w);
    jw_key(&w, "sources");
    jw_arr(&w);
    for (size_t i = 0; i < st->sources_total; i++) {
      jw_obj(&w);
      jw_key(&w, "source_id");
      jw_str(&w, st->sources[i].source_id);
      jw_key(&w, "documents");
      jw_int(&w, st->sources[i].documents);
      jw_key(&w, "chunks");
      jw_int(&w, st->sources[i].chunks);
      jw_obj_end(&w);
    }
    jw_arr_end(&w);
    jw_obj_end(&w);
  } else {
    render_stats(&w, st, NULL, NULL);
  }
  fclose(f);
  es_stats_free(st);
  return buf;
}
