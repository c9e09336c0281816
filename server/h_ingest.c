/* h_ingest.c - POST /v1/documents: documents in the tool's JSON Lines
 * format, streamed (application/x-ndjson: each line parsed as it arrives,
 * a batch written whenever batch_size are ready, so memory stays bounded
 * by one line and one batch whatever the body's length), or whole
 * (application/json {"documents":[...]}, within --max-body-mb).  Answers
 * the tool's ingest summary.  A tenant's token writes only its
 * workspaces: a document naming another is a per-item error, one naming
 * none gets the token's only workspace (or is an error when it has
 * several). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "json_spans.h"
#include "render.h"

#define MAX_LINE ((size_t)64 << 20)

typedef render_item_error item_error;

struct ingest_stream {
  es_store *store;
  es_batch *batch;
  es_batch_options opts;
  const token *tok;         /* the request's (NULL: none); for a tenant,
                               documents of other workspaces are not
                               written over */
  es_status fatal;          /* writing became impossible */
  char fatal_msg[1024];
  char *source, *workspace; /* defaults for documents that name none */
  char *line;               /* the NDJSON line being assembled */
  size_t len, cap;
  bool too_long;
  long lineno;
  es_doc_json **parsed;     /* the batch being filled */
  es_doc *docs;
  size_t *lines;
  size_t n;
  item_error *errors;
  size_t n_errors, cap_errors;
  bool oom;
};

/* Records a failure of one document (id may be NULL). */
static void add_error(ingest_stream *g, const char *id, long line, const char *msg) {
  if (g->n_errors == g->cap_errors) {
    size_t cap = g->cap_errors ? 2 * g->cap_errors : 16;
    item_error *e = realloc(g->errors, cap * sizeof *e);
    if (e == NULL) {
      g->oom = true;
      return;
    }
    g->errors = e;
    g->cap_errors = cap;
  }
  item_error *e = &g->errors[g->n_errors++];
  e->id = id ? strdup(id) : NULL;
  e->line = line;
  e->error = strdup(msg);
}

static int by_string(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Whether id is among the n sorted strings v. */
static bool listed(char **v, size_t n, const char *id) {
  return n > 0 && bsearch(&id, v, n, sizeof *v, by_string) != NULL;
}

/* The ids of the batch that are not stored (scope NULL) or not stored
 * within the tenant's workspaces, sorted; NULL (fatal set) on failure.
 * A dry-run delete counts and lists them, in one read-only snapshot. */
static es_delete_result *missing_ids(ingest_stream *g, const char **ids,
                                     size_t n, const token *scope) {
  es_delete_options o;
  es_delete_options_init(&o);
  o.dry_run = 1;
  if (scope) {
    o.workspaces = (const char *const *)scope->workspaces;
    o.n_workspaces = scope->n_workspaces;
  }
  es_delete_result *r = NULL;
  es_status rc = es_delete_documents(g->store, ids, n, &o, &r);
  if (rc != ES_OK) {
    g->fatal = rc;
    snprintf(g->fatal_msg, sizeof g->fatal_msg, "%s", es_errmsg(g->store));
    return NULL;
  }
  qsort(r->not_found_ids, (size_t)r->not_found, sizeof *r->not_found_ids, by_string);
  return r;
}

/* A tenant's batch loses the documents whose ids are stored in another
 * workspace (each a per-item error): an upsert would write over them,
 * moving another tenant's document into this one's workspace.  Ids are
 * one namespace for the whole store, so the refusal does say that the id
 * is taken; nothing else of that document. */
static void drop_foreign(ingest_stream *g) {
  const char **ids = malloc(g->n * sizeof *ids);
  if (ids == NULL) {
    g->fatal = ES_ENOMEM;
    snprintf(g->fatal_msg, sizeof g->fatal_msg, "out of memory");
    return;
  }
  size_t m = 0;
  for (size_t i = 0; i < g->n; i++)
    if (g->docs[i].id) /* no id: validation refuses it later */
      ids[m++] = g->docs[i].id;
  es_delete_result *nowhere = missing_ids(g, ids, m, NULL);
  es_delete_result *not_ours = nowhere ? missing_ids(g, ids, m, g->tok) : NULL;
  size_t kept = 0;
  for (size_t i = 0; not_ours && i < g->n; i++) {
    const char *id = g->docs[i].id;
    if (id && listed(not_ours->not_found_ids, (size_t)not_ours->not_found, id) &&
        !listed(nowhere->not_found_ids, (size_t)nowhere->not_found, id)) {
      char msg[700];
      snprintf(msg, sizeof msg, "id \"%.512s\" is taken by a document this "
               "token may not write (ids are shared by every workspace)", id);
      add_error(g, id, (long)g->lines[i], msg);
      es_doc_json_free(g->parsed[i]);
      continue;
    }
    g->parsed[kept] = g->parsed[i];
    g->docs[kept] = g->docs[i];
    g->lines[kept++] = g->lines[i];
  }
  if (not_ours)
    g->n = kept;
  es_delete_result_free(nowhere);
  es_delete_result_free(not_ours);
  free(ids);
}

/* Writes the batch filled so far. */
static void flush(ingest_stream *g) {
  if (g->fatal == ES_OK && g->n > 0 && g->tok && !g->tok->all_workspaces)
    drop_foreign(g);
  if (g->n == 0)
    return;
  es_status begun;
  if (g->fatal == ES_OK && g->batch == NULL &&
      (begun = es_batch_begin(g->store, &g->opts, &g->batch)) != ES_OK) {
    g->fatal = begun;
    snprintf(g->fatal_msg, sizeof g->fatal_msg, "%s", es_errmsg(g->store));
  }
  if (g->fatal == ES_OK) {
    es_status rc = es_batch_add(g->batch, g->docs, g->n, g->lines);
    if (rc != ES_OK && rc != ES_EPARTIAL) {
      g->fatal = rc;
      snprintf(g->fatal_msg, sizeof g->fatal_msg, "%s", es_errmsg(g->store));
    }
  } else {
    char msg[1100];
    snprintf(msg, sizeof msg, "not written: %s", g->fatal_msg);
    for (size_t i = 0; i < g->n; i++)
      add_error(g, g->docs[i].id, (long)g->lines[i], msg);
  }
  for (size_t i = 0; i < g->n; i++)
    es_doc_json_free(g->parsed[i]);
  g->n = 0;
}

/* The workspace a parsed document names (malloc'd), or NULL. */
static char *workspace_of(const es_doc *d) {
  if (d->metadata_json == NULL)
    return NULL;
  json_t *m = json_loads(d->metadata_json, 0, NULL);
  json_t *w = json_object_get(m, "workspace");
  char *ws = json_is_string(w) ? strdup(json_string_value(w)) : NULL;
  json_decref(m);
  return ws;
}

/* Whether the token may write document d; else why not into msg. */
static bool tenant_allows(const request *rq, const es_doc *d, char *msg, size_t cap) {
  if (rq->tok == NULL || rq->tok->all_workspaces)
    return true;
  char *ws = workspace_of(d);
  bool ok = ws && token_sees(rq->tok, ws);
  if (ws == NULL)
    snprintf(msg, cap, "metadata.workspace is missing: this token writes "
             "several workspaces, name one (or ?workspace=)");
  else if (!ok)
    snprintf(msg, cap, "metadata.workspace \"%.200s\" is not one this token "
             "may write", ws);
  free(ws);
  return ok;
}

/* Parses one document (len bytes at text, from line) into the batch. */
static void take(request *rq, const char *text, size_t len, long line) {
  ingest_stream *g = rq->stream;
  char msg[1024];
  es_doc_json *d = NULL;
  if (es_doc_json_parse(text, len, &d, msg, sizeof msg) != ES_OK) {
    char id[ES_MAX_ID_BYTES + 1];
    bool known = es_doc_json_find_id(text, len, id, sizeof id) > 0;
    add_error(g, known ? id : NULL, line, msg);
    return;
  }
  if (es_doc_json_set_defaults(d, g->source, g->workspace) != ES_OK) {
    add_error(g, es_doc_json_doc(d)->id, line, "out of memory");
    es_doc_json_free(d);
    return;
  }
  if (!tenant_allows(rq, es_doc_json_doc(d), msg, sizeof msg)) {
    add_error(g, es_doc_json_doc(d)->id, line, msg);
    es_doc_json_free(d);
    return;
  }
  g->parsed[g->n] = d;
  g->docs[g->n] = *es_doc_json_doc(d);
  g->lines[g->n] = (size_t)line;
  if (++g->n == g->opts.batch_size)
    flush(g);
}

/* One complete NDJSON line. */
static void take_line(request *rq) {
  ingest_stream *g = rq->stream;
  g->lineno++;
  if (g->too_long) {
    char msg[200];
    snprintf(msg, sizeof msg, "line is longer than %zu bytes", MAX_LINE);
    add_error(g, NULL, g->lineno, msg);
    g->too_long = false;
    g->len = 0;
    return;
  }
  const char *text = g->line;
  size_t len = g->len;
  if (g->lineno == 1 && len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
    text += 3; /* a byte-order mark is not part of the document */
    len -= 3;
  }
  size_t blank = 0;
  while (blank < len && (text[blank] == ' ' || text[blank] == '\t' || text[blank] == '\r'))
    blank++;
  if (blank < len)
    take(rq, text, len, g->lineno);
  g->len = 0;
}

bool ingest_begin(request *rq) {
  ingest_stream *g = calloc(1, sizeof *g);
  bool bad = false;
  if (g == NULL) {
    reply_error(rq, 500, "ES_ENOMEM", "out of memory");
    return false;
  }
  rq->stream = g;
  g->store = rq->sv->store;
  g->tok = rq->tok;
  es_batch_options_init(&g->opts);
  g->opts.batch_size = rq->sv->cfg->batch_size;
  g->source = query_arg(rq, "source", &bad);
  g->workspace = query_arg(rq, "workspace", &bad);
  g->parsed = calloc(g->opts.batch_size, sizeof *g->parsed);
  g->docs = calloc(g->opts.batch_size, sizeof *g->docs);
  g->lines = calloc(g->opts.batch_size, sizeof *g->lines);
  if (bad) {
    reply_error(rq, 400, "ES_EINVAL", "source and workspace must be valid UTF-8");
    return false;
  }
  if (!g->parsed || !g->docs || !g->lines) {
    reply_error(rq, 500, "ES_ENOMEM", "out of memory");
    return false;
  }
  if (g->workspace && !may_see(rq, g->workspace)) {
    reply_error(rq, 403, "ES_EFORBIDDEN", "this token may not write workspace "
                "\"%s\"", g->workspace);
    return false;
  }
  /* A token of one workspace fills it in; with several, each document
   * must name its own (checked per item). */
  if (g->workspace == NULL && rq->tok && !rq->tok->all_workspaces &&
      rq->tok->n_workspaces == 1 &&
      (g->workspace = strdup(rq->tok->workspaces[0])) == NULL) {
    reply_error(rq, 500, "ES_ENOMEM", "out of memory");
    return false;
  }
  return true;
}

void ingest_feed(request *rq, const char *data, size_t len) {
  ingest_stream *g = rq->stream;
  const char *end = data + len;
  while (data < end) {
    const char *nl = memchr(data, '\n', (size_t)(end - data));
    size_t n = (size_t)((nl ? nl : end) - data);
    if (!g->too_long && g->len + n > MAX_LINE)
      g->too_long = true;
    if (!g->too_long) {
      if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 65536;
        while (cap < g->len + n + 1)
          cap *= 2;
        char *grown = realloc(g->line, cap);
        if (grown == NULL) {
          reply_error(rq, 500, "ES_ENOMEM", "out of memory for a line");
          return;
        }
        g->line = grown;
        g->cap = cap;
      }
      memcpy(g->line + g->len, data, n);
      g->len += n;
    }
    if (nl == NULL)
      return;
    take_line(rq);
    data = nl + 1;
  }
}

/* application/json: {"documents":[...]}, each element read as a line. */
typedef struct each_ctx {
  request *rq;
} each_ctx;

static bool take_element(span el, size_t i, void *user) {
  each_ctx *c = user;
  take(c->rq, el.p, el.len, (long)i + 1);
  return !c->rq->answered;
}

static bool take_json_body(request *rq) {
  static const char *const known[] = {"documents", NULL};
  json_t *j = body_object(rq);
  if (j == NULL)
    return false;
  bool ok = body_only(rq, j, known);
  span sp;
  if (ok && (!json_is_array(json_object_get(j, "documents")) ||
             !json_member_span(rq->body, rq->len, "documents", &sp))) {
    reply_error(rq, 400, "ES_EINVAL", "the body must be {\"documents\":[...]}, "
                "each document as one line of the JSON Lines format");
    ok = false;
  }
  json_decref(j);
  if (ok) {
    each_ctx c = {rq};
    json_each_element(sp, take_element, &c);
  }
  return ok;
}

/* Records a failure es_batch_end() reported.  A tenant is not told which
 * document owns a chunk id it tried to take: that document may be another
 * tenant's, and its id is not the tenant's to learn. */
static void add_failure(ingest_stream *g, const es_batch_failure *f) {
  static const char owner[] = " belongs to document \"";
  const char *msg = f->error ? f->error : "not written";
  const char *cut = strstr(msg, owner);
  if (cut == NULL || g->tok == NULL || g->tok->all_workspaces) {
    add_error(g, f->id, (long)f->position, msg);
    return;
  }
  char redacted[1200];
  snprintf(redacted, sizeof redacted, "%.*s belongs to another document",
           (int)(cut - msg), msg);
  add_error(g, f->id, (long)f->position, redacted);
}

static int by_line(const void *a, const void *b) {
  const item_error *x = a, *y = b;
  return x->line < y->line ? -1 : x->line > y->line;
}

/* The summary, as `embstore ingest --json` prints it. */
static void reply_summary(request *rq, const es_batch_result *r, double secs) {
  ingest_stream *g = rq->stream;
  jout o;
  if (!jout_open(&o))
    return;
  render_ingest(&o.w, r, g->errors, g->n_errors, secs);
  reply_jout(rq, 200, &o);
}

void h_ingest(request *rq) {
  if (rq->stream == NULL && !ingest_begin(rq))
    return;
  ingest_stream *g = rq->stream;
  if (rq->is_ndjson) {
    if (g->len > 0 || g->too_long)
      take_line(rq); /* the last line needs no newline */
  } else if (!take_json_body(rq)) {
    return;
  }
  if (rq->answered)
    return;
  flush(g);
  es_batch_result *r = NULL;
  es_status end = es_batch_end(g->batch, &r);
  g->batch = NULL;
  for (size_t i = 0; r && i < r->n_failures; i++)
    add_failure(g, &r->failures[i]);
  if (g->n_errors > 1)
    qsort(g->errors, g->n_errors, sizeof *g->errors, by_line);
  size_t landed = r ? r->inserted + r->updated + r->unchanged + r->duplicates : 0;
  if (g->oom)
    reply_error(rq, 500, "ES_ENOMEM", "out of memory while recording failures");
  else if (g->fatal != ES_OK && landed == 0)
    reply_error(rq, http_status_of(g->fatal), es_status_name(g->fatal),
                "nothing was written: %s", g->fatal_msg);
  else if (end != ES_OK && landed == 0 && g->n_errors == 0)
    reply_failure(rq, end);
  else
    reply_summary(rq, r, now_s() - rq->t0);
  es_batch_result_free(r);
}

void ingest_free(ingest_stream *g) {
  if (g == NULL)
    return;
  es_batch_end(g->batch, NULL);
  for (size_t i = 0; i < g->n; i++)
    es_doc_json_free(g->parsed[i]);
  free(g->parsed);
  free(g->docs);
  free(g->lines);
  for (size_t i = 0; i < g->n_errors; i++) {
    free(g->errors[i].id);
    free(g->errors[i].error);
  }
  free(g->errors);
  free(g->line);
  free(g->source);
  free(g->workspace);
  free(g);
}
