/* test_oom.c - every allocation the public API makes fails in turn
 * (oom.c, SQLite's countdown): the call returns ES_ENOMEM or its normal
 * outcome with the normal result, never crashes, never leaks (the
 * sanitizer and Valgrind stages check at exit), never reports success with
 * a wrong result, and leaves its handle usable.
 *
 * The unit tests need no server; the database tests drive the main
 * operations against the test's database. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"
#include "test.h"

/* ---- describing results as text, to compare them whole ------------------ */

typedef struct text {
  char *s;
  size_t len;
} text;

/* Appends printf-style to t (the test's own allocations are never failed:
 * checks run disarmed). */
__attribute__((format(printf, 2, 3))) static void add(text *t, const char *fmt,
                                                      ...) {
  va_list ap;
  va_start(ap, fmt);
  char *more = NULL;
  int n = vasprintf(&more, fmt, ap);
  va_end(ap);
  ASSERT_INT_GE(n, 0);
  char *s = realloc(t->s, t->len + (size_t)n + 1);
  ASSERT_NOT_NULL(s);
  memcpy(s + t->len, more, (size_t)n + 1);
  t->s = s;
  t->len += (size_t)n;
  free(more);
}

/* A string for messages: "(null)" for NULL. */
static const char *str_or_null(const char *s) { return s ? s : "(null)"; }

/* Every field of doc, chunks included, as text. */
static char *doc_text(const es_doc *d) {
  text t = {0};
  add(&t, "id=%s text=%s source=%s meta=%s dim=%zu [", str_or_null(d->id),
      str_or_null(d->text), str_or_null(d->source_id),
      str_or_null(d->metadata_json), d->dim);
  for (size_t i = 0; d->embedding && i < d->dim; i++)
    add(&t, "%.9g,", (double)d->embedding[i]);
  add(&t, "] has_chunks=%d n=%zu\n", d->has_chunks, d->n_chunks);
  for (size_t c = 0; c < d->n_chunks; c++) {
    const es_chunk *ch = &d->chunks[c];
    add(&t, "  chunk %s text=%s meta=%s dim=%zu [", str_or_null(ch->id),
        str_or_null(ch->text), str_or_null(ch->metadata_json),
        ch->embedding ? ch->dim : 0);
    for (size_t i = 0; ch->embedding && i < ch->dim; i++)
      add(&t, "%.9g,", (double)ch->embedding[i]);
    add(&t, "]\n");
  }
  return t.s;
}

/* ---- parsing documents ----------------------------------------------------- */

/* A document that takes every allocating path of the parser: escapes, a
 * vector longer than the first buffer, nested metadata, more chunks than
 * the first chunk array holds, and no source or workspace yet. */
static char *rich_document(void) {
  text t = {0};
  add(&t, "{\"id\":\"d\\u00e9\",\"text\":\"line\\nnext \\\"q\\\"\",\"embedding\":[");
  for (int i = 0; i < 300; i++)
    add(&t, "%s%d.5", i ? "," : "", i % 7);
  add(&t, "],\"metadata\":{\"a\":[1,{\"b\":null}],\"s\":\"x\"},\"chunks\":[");
  for (int c = 0; c < 10; c++)
    add(&t, "%s{\"id\":\"d#%d\",\"text\":\"c%d\",\"embedding\":%s,"
        "\"metadata\":{\"n\":%d}}", c ? "," : "", c, c,
        c % 2 ? "null" : "[1,2,3]", c);
  add(&t, "]}");
  return t.s;
}

typedef struct parse_ctx {
  char *json;
  char *want;    /* doc_text of the parsed document with its defaults */
  es_status parse_rc, defaults_rc;
  es_doc_json *doc;
  char err[256];
} parse_ctx;

/* Parses the document and fills its defaults (armed). */
static void parse_run(void *arg) {
  parse_ctx *x = arg;
  x->doc = NULL;
  x->defaults_rc = ES_OK;
  x->parse_rc = es_doc_json_parse(x->json, strlen(x->json), &x->doc, x->err,
                                  sizeof x->err);
  if (x->parse_rc == ES_OK)
    x->defaults_rc = es_doc_json_set_defaults(x->doc, "src", "ws");
}

/* Each call failed with ES_ENOMEM or gave the document of a good run. */
static void parse_check(void *arg, bool hit) {
  parse_ctx *x = arg;
  ASSERT_OOM_STATUS("es_doc_json_parse", x->parse_rc, ES_OK, hit);
  if (x->parse_rc != ES_OK) {
    ASSERT_NULL(x->doc);
    ASSERT_CONTAINS(x->err, "out of memory");
    return;
  }
  ASSERT_OOM_STATUS("es_doc_json_set_defaults", x->defaults_rc, ES_OK, hit);
  /* A failed es_doc_json_set_defaults leaves a document that takes the
   * same call again. */
  if (x->defaults_rc != ES_OK)
    ASSERT_INT_EQ(es_doc_json_set_defaults(x->doc, "src", "ws"), ES_OK);
  char *got = doc_text(es_doc_json_doc(x->doc));
  ASSERT_STR_EQ(got, x->want);
  free(got);
}

/* Frees the parsed document. */
static void parse_teardown(void *arg) {
  parse_ctx *x = arg;
  es_doc_json_free(x->doc);
  x->doc = NULL;
}

TEST(allocation_failures_in_document_parsing_return_enomem_and_leak_nothing) {
  parse_ctx x = {.json = rich_document()};
  parse_run(&x);
  ASSERT_INT_EQ(x.parse_rc, ES_OK);
  ASSERT_INT_EQ(x.defaults_rc, ES_OK);
  x.want = doc_text(es_doc_json_doc(x.doc));
  ASSERT_CONTAINS(x.want, "source=src meta={\"workspace\":\"ws\",\"a\"");
  parse_teardown(&x);
  th_oom_case c = {.name = "es_doc_json_parse + es_doc_json_set_defaults",
                   .ctx = &x, .run = parse_run, .check = parse_check,
                   .teardown = parse_teardown, .min_allocations = 20};
  th_oom_run(&c);
  free(x.want);
  free(x.json);
}

/* ---- the embedded cluster's handle --------------------------------------- */

typedef struct cluster_ctx {
  char home[600]; /* "": NULL, the default home */
  char *want; /* conninfo, url, home and state of a good run */
  es_status open_rc, status_rc;
  es_cluster_state state;
  es_cluster *c;
} cluster_ctx;

/* What a cluster handle says about itself, as text. */
static char *cluster_text(es_cluster *c, es_cluster_state state) {
  text t = {0};
  add(&t, "conninfo=%s\nurl=%s\nhome=%s\nstate=%d\npid=%ld\n",
      es_cluster_conninfo(c), es_cluster_url(c), es_cluster_home(c),
      (int)state, es_cluster_pid(c));
  return t.s;
}

/* Opens the handle and asks for its state (armed). */
static void cluster_run(void *arg) {
  cluster_ctx *x = arg;
  x->c = NULL;
  x->status_rc = ES_OK;
  x->open_rc = es_cluster_open(x->home[0] ? x->home : NULL, &x->c);
  if (x->open_rc == ES_OK)
    x->status_rc = es_cluster_status(x->c, &x->state);
}

/* Each call failed with ES_ENOMEM or answered as in a good run. */
static void cluster_check(void *arg, bool hit) {
  cluster_ctx *x = arg;
  ASSERT_OOM_STATUS("es_cluster_open", x->open_rc, ES_OK, hit);
  if (x->open_rc != ES_OK) {
    ASSERT_CONTAINS(es_cluster_errmsg(x->c), "out of memory");
    return;
  }
  ASSERT_OOM_STATUS("es_cluster_status", x->status_rc, ES_OK, hit);
  if (x->status_rc != ES_OK)
    return;
  char *got = cluster_text(x->c, x->state);
  ASSERT_STR_EQ(got, x->want);
  free(got);
}

/* Closes the handle. */
static void cluster_teardown(void *arg) {
  cluster_ctx *x = arg;
  es_cluster_close(x->c);
  x->c = NULL;
}

/* The countdown over es_cluster_open(home) + es_cluster_status. */
static void cluster_case(const char *home) {
  cluster_ctx x;
  memset(&x, 0, sizeof x);
  snprintf(x.home, sizeof x.home, "%s", home ? home : "");
  cluster_run(&x);
  ASSERT_INT_EQ(x.open_rc, ES_OK);
  ASSERT_INT_EQ(x.status_rc, ES_OK);
  ASSERT_INT_EQ(x.state, ES_CLUSTER_ABSENT);
  x.want = cluster_text(x.c, x.state);
  cluster_teardown(&x);
  th_oom_case c = {.name = "es_cluster_open + es_cluster_status", .ctx = &x,
                   .run = cluster_run, .check = cluster_check,
                   .teardown = cluster_teardown, .min_allocations = 5};
  th_oom_run(&c);
  free(x.want);
}

TEST(allocation_failures_in_cluster_open_return_enomem_and_leak_nothing) {
  char home[600];
  snprintf(home, sizeof home, "%s/home with space", th_tmpdir());
  cluster_case(home);
  /* The default home, from the environment. */
  snprintf(home, sizeof home, "%s/from-env", th_tmpdir());
  setenv("EMBSTORE_HOME", home, 1);
  cluster_case(NULL);
}

/* ---- opening a store that cannot be reached or parsed ---------------------- */

#define SECRET "pw-oom-s3cret"

typedef struct open_ctx {
  const char *conninfo;
  int pool_size;
  es_status want_rc;
  const char *want_msg; /* in the message of a normal failure */
  es_status rc;
  es_store *s;
  char msg[1100];
  es_status metric_rc;
  es_metric metric;
} open_ctx;

/* Opens the store (armed) and keeps its message. */
static void open_run(void *arg) {
  open_ctx *x = arg;
  es_options o;
  es_options_init(&o);
  o.conninfo = x->conninfo;
  o.max_retries = 0; /* one attempt per run: fast, and the same each time */
  o.pool_size = x->pool_size;
  x->s = NULL;
  x->rc = es_open_opts(&o, &x->s);
  snprintf(x->msg, sizeof x->msg, "%s", es_errmsg(x->s));
  x->metric_rc = es_metric_parse("ip", &x->metric);
}

/* The open failed as it should, or with ES_ENOMEM; never a password. */
static void open_check(void *arg, bool hit) {
  open_ctx *x = arg;
  ASSERT_OOM_STATUS("es_open_opts", x->rc, x->want_rc, hit);
  ASSERT_NOT_CONTAINS(x->msg, SECRET);
  ASSERT_NOT_CONTAINS(x->msg, "s3cret");
  if (x->rc == x->want_rc)
    ASSERT_CONTAINS(x->msg, x->want_msg);
  else if (x->s != NULL) /* without a store there is no message to keep */
    ASSERT_CONTAINS(x->msg, "out of memory");
  ASSERT_INT_EQ(x->metric_rc, ES_OK);
  ASSERT_INT_EQ(x->metric, ES_METRIC_IP);
}

/* Closes what the open left. */
static void open_teardown(void *arg) {
  open_ctx *x = arg;
  es_close(x->s);
  x->s = NULL;
}

TEST(allocation_failures_in_open_without_a_server_return_enomem_and_leak_nothing) {
  static const open_ctx cases[] = {
      {.conninfo = "host=/nonexistent-oom port=1 user=u password=" SECRET
                   " dbname=x",
       .pool_size = 20, .want_rc = ES_ECONNECT, .want_msg = "cannot connect to"},
      {.conninfo = "postgresql://u:" SECRET "@/x?host=/nonexistent-oom&port=1",
       .pool_size = 20, .want_rc = ES_ECONNECT, .want_msg = "cannot connect to"},
      {.conninfo = "host=x password " SECRET, .pool_size = 20,
       .want_rc = ES_EINVAL, .want_msg = "invalid connection string"},
      {.conninfo = "host=x password=" SECRET, .pool_size = 0,
       .want_rc = ES_EINVAL, .want_msg = "pool_size"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    open_ctx x = cases[i];
    char name[64];
    snprintf(name, sizeof name, "es_open_opts, case %zu", i);
    th_oom_case c = {.name = name, .ctx = &x, .run = open_run,
                     .check = open_check, .teardown = open_teardown,
                     .min_allocations = 1};
    th_oom_run(&c);
  }
}

/* ---- with a server: the shared pieces --------------------------------------- */

#define ODIM 3

/* Opens a store on the test's database that tries once (a failed run is
 * never repeated behind the countdown's back) and caches searches. */
static es_status open_store(es_store **s) {
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.max_retries = 0;
  return es_open_opts(&o, s);
}

/* open_store(), failing the test on error. */
static es_store *must_open(void) {
  es_store *s = NULL;
  ASSERT_OK(s, open_store(&s));
  return s;
}

/* A document's row and chunks as text; "(none)" when it is not stored. */
static char *doc_state(const char *id) {
  char sql[1200];
  snprintf(sql, sizeof sql,
           "SELECT coalesce((SELECT format('%%s|%%s|%%s|%%s|%%s', id, text, "
           "source_id, metadata::text, embedding::text) FROM embeddings WHERE "
           "id = '%s'), '(none)') || ' chunks:' || coalesce((SELECT "
           "string_agg(format('%%s/%%s/%%s/%%s/%%s', id, chunk_index, text, "
           "metadata::text, embedding::text), ',' ORDER BY id) FROM chunks "
           "WHERE document_id = '%s'), '')",
           id, id);
  return th_text(sql);
}

/* The counters must agree with the tables to the row. */
static void assert_counts_exact(es_store *s) {
  es_count_check *c = NULL;
  ASSERT_OK(s, es_check_counts(s, 0, &c));
  if (c->n_drift > 0)
    FAIL("the counters drifted for source %s, workspace %s: %lld documents "
         "counted, %lld stored", str_or_null(c->drift[0].source_id),
         str_or_null(c->drift[0].workspace),
         (long long)c->drift[0].documents_counted,
         (long long)c->drift[0].documents_actual);
  ASSERT_INT_EQ(c->documents, th_int("SELECT count(*) FROM embeddings"));
  ASSERT_INT_EQ(c->chunks, th_int("SELECT count(*) FROM chunks"));
  es_count_check_free(c);
}

/* ---- upsert, batch upsert and a batch session --------------------------------- */

static const float v100[ODIM] = {1, 0, 0}, v150[ODIM] = {1, 0.5f, 0},
                   v010[ODIM] = {0, 1, 0}, v001[ODIM] = {0, 0, 1},
                   v111[ODIM] = {1, 1, 1}, v2[2] = {1, 2};
static const es_chunk u1_chunks[] = {
    {.id = "u1#0", .text = "first", .embedding = v010, .dim = ODIM},
    {.id = "u1#1", .text = "second", .metadata_json = "{\"k\": 1}"}};
static const es_chunk u1_new_chunks[] = {
    {.id = "u1#0", .text = "first again", .embedding = v001, .dim = ODIM}};
static const es_chunk u2_chunks[] = {
    {.id = "u2#0", .text = "a", .embedding = v111, .dim = ODIM},
    {.id = "u2#1", .text = "b", .embedding = v100, .dim = ODIM},
    {.id = "u2#2", .text = "c", .metadata_json = "{\"deep\": {\"x\": [1, 2]}}"}};

#define U1 {.id = "u1", .text = "one", .embedding = v100, .dim = ODIM,          \
            .source_id = "s1", .metadata_json = "{\"workspace\": \"w1\"}",       \
            .has_chunks = 1, .chunks = u1_chunks, .n_chunks = 2}
#define U1_NEW {.id = "u1", .text = "one, changed", .embedding = v150,          \
                .dim = ODIM, .source_id = "s1",                                 \
                .metadata_json = "{\"workspace\": \"w1\", \"v\": 2}",           \
                .has_chunks = 1, .chunks = u1_new_chunks, .n_chunks = 1}
#define U2 {.id = "u2", .text = "two", .embedding = v010, .dim = ODIM,          \
            .source_id = "s2", .has_chunks = 1, .chunks = u2_chunks,            \
            .n_chunks = 3}
#define U3 {.id = "u3", .text = "three", .embedding = v001, .dim = ODIM}
#define BAD {.id = "bad", .embedding = v2, .dim = 2}
#define U4A {.id = "u4", .text = "four a", .embedding = v111, .dim = ODIM}
#define U4B {.id = "u4", .text = "four b", .embedding = v111, .dim = ODIM,     \
             .metadata_json = "{\"workspace\": \"w4\"}"}

static const es_doc stored[] = {U1, U3};
static const es_doc batch_docs[] = {U1_NEW, U2, U3, BAD, U4A, U4B};
#define N_BATCH (sizeof batch_docs / sizeof batch_docs[0])
static const char *const ids[] = {"u1", "u2", "u3", "u4", "bad"};
#define N_IDS (sizeof ids / sizeof ids[0])

typedef struct write_ctx {
  es_store *s;
  char *before[N_IDS], *after[N_IDS]; /* doc_state of each id */
  /* single upserts */
  es_status up_rc[3];
  es_upsert_outcome up_out[3];
  char up_msg[3][200];
  es_status validate_rc;
  /* batch upsert, and a session */
  es_batch_options opts;
  es_status rc, begin_rc, add_rc, end_rc;
  es_batch_result *res;
  es_batch *b;
  char *want; /* result_text of a good run */
} write_ctx;

/* The store holds U1 and U3 only. */
static void write_setup(void *arg) {
  write_ctx *x = arg;
  th_exec("TRUNCATE embeddings, chunks");
  for (size_t i = 0; i < 2; i++)
    ASSERT_OK(x->s, es_upsert(x->s, &stored[i], NULL));
}

/* Each document is as it was or as the run makes it, never in between;
 * the counters are exact. */
static void assert_each_doc_before_or_after(write_ctx *x) {
  for (size_t i = 0; i < N_IDS; i++) {
    char *got = doc_state(ids[i]);
    if (strcmp(got, x->before[i]) != 0 && strcmp(got, x->after[i]) != 0)
      FAIL("%s is half-written:\n  %s\nwant\n  %s\nor\n  %s", ids[i], got,
           x->before[i], x->after[i]);
    free(got);
  }
  assert_counts_exact(x->s);
}

/* Each document is as the run makes it; the counters are exact. */
static void assert_each_doc_after(write_ctx *x) {
  for (size_t i = 0; i < N_IDS; i++) {
    char *got = doc_state(ids[i]);
    ASSERT_STR_EQ(got, x->after[i]);
    free(got);
  }
  assert_counts_exact(x->s);
}

/* doc_state of every id into states. */
static void record_states(char **states) {
  for (size_t i = 0; i < N_IDS; i++)
    states[i] = doc_state(ids[i]);
}

/* Frees what record_states made. */
static void free_states(char **states) {
  for (size_t i = 0; i < N_IDS; i++)
    free(states[i]);
}

static const es_doc upserted[] = {U1_NEW, U2, U3};
static const es_upsert_outcome upsert_want[] = {
    ES_UPSERT_UPDATED, ES_UPSERT_INSERTED, ES_UPSERT_UNCHANGED};

/* Validates one document and upserts three (armed). */
static void upsert_run(void *arg) {
  write_ctx *x = arg;
  x->validate_rc = es_doc_validate(x->s, &upserted[1]);
  for (int i = 0; i < 3; i++) {
    x->up_rc[i] = es_upsert(x->s, &upserted[i], &x->up_out[i]);
    snprintf(x->up_msg[i], sizeof x->up_msg[i], "%s", es_errmsg(x->s));
  }
}

/* Each call succeeded with its outcome or failed with ES_ENOMEM and
 * wrote nothing of its document; a repeat lands them. */
static void upsert_check(void *arg, bool hit) {
  write_ctx *x = arg;
  ASSERT_OOM_STATUS("es_doc_validate", x->validate_rc, ES_OK, hit);
  for (int i = 0; i < 3; i++) {
    ASSERT_OOM_STATUS(upserted[i].id, x->up_rc[i], ES_OK, hit);
    if (x->up_rc[i] == ES_OK)
      ASSERT_INT_EQ(x->up_out[i], upsert_want[i]);
    else
      ASSERT_CONTAINS(x->up_msg[i], "out of memory");
  }
  assert_each_doc_before_or_after(x);
  /* What failed, done again, lands. */
  for (int i = 0; i < 3; i++)
    ASSERT_OK(x->s, es_upsert(x->s, &upserted[i], NULL));
  for (int i = 0; i < 2; i++) { /* the batch's u4 and bad are not upserted */
    char *got = doc_state(ids[i]);
    ASSERT_STR_EQ(got, x->after[i]);
    free(got);
  }
  assert_counts_exact(x->s);
}

/* A batch result as text: counts and every failure. */
static char *result_text(const es_batch_result *r) {
  text t = {0};
  add(&t, "inserted=%zu updated=%zu unchanged=%zu failed=%zu duplicates=%zu "
      "chunks=%zu\n", r->inserted, r->updated, r->unchanged, r->failed,
      r->duplicates, r->chunks_written);
  for (size_t i = 0; i < r->n_failures; i++)
    add(&t, "  %zu %s %s %s\n", r->failures[i].position,
        str_or_null(r->failures[i].id), es_status_name(r->failures[i].status),
        str_or_null(r->failures[i].error));
  return t.s;
}

/* A result that stopped early still accounts for every document (the
 * details of a failure may be missing when memory ran out). */
static void assert_accounted(const es_batch_result *r, size_t n) {
  if (r == NULL)
    return;
  ASSERT_INT_EQ(r->inserted + r->updated + r->unchanged + r->failed +
                    r->duplicates, n);
  ASSERT_INT_LE(r->n_failures, r->failed);
}

/* Upserts the batch (armed). */
static void batch_run(void *arg) {
  write_ctx *x = arg;
  x->res = NULL;
  x->rc = es_batch_upsert(x->s, batch_docs, N_BATCH, &x->opts, &x->res);
}

/* The batch gave the good run's result, or ES_ENOMEM with every
 * document whole; a rerun converges. */
static void batch_check(void *arg, bool hit) {
  write_ctx *x = arg;
  ASSERT_OOM_STATUS("es_batch_upsert", x->rc, ES_EPARTIAL, hit);
  if (x->rc == ES_EPARTIAL) {
    ASSERT_NOT_NULL(x->res);
    char *got = result_text(x->res);
    ASSERT_STR_EQ(got, x->want);
    free(got);
    assert_each_doc_after(x);
    return;
  }
  ASSERT_CONTAINS(es_errmsg(x->s), "out of memory");
  assert_accounted(x->res, N_BATCH);
  assert_each_doc_before_or_after(x);
  /* Run again, it converges. */
  es_batch_result_free(x->res);
  x->res = NULL;
  ASSERT_STATUS(x->s, es_batch_upsert(x->s, batch_docs, N_BATCH, &x->opts,
                                      &x->res), ES_EPARTIAL);
  assert_each_doc_after(x);
}

/* Frees the batch result. */
static void batch_teardown(void *arg) {
  write_ctx *x = arg;
  es_batch_result_free(x->res);
  x->res = NULL;
}

/* A batch session over the same documents (armed). */
static void session_run(void *arg) {
  write_ctx *x = arg;
  x->b = NULL;
  x->res = NULL;
  x->add_rc = x->end_rc = ES_OK;
  x->begin_rc = es_batch_begin(x->s, &x->opts, &x->b);
  if (x->begin_rc != ES_OK)
    return;
  x->add_rc = es_batch_add(x->b, batch_docs, N_BATCH, NULL);
  x->end_rc = es_batch_end(x->b, &x->res);
  x->b = NULL;
}

/* Whether the HNSW index exists and is valid. */
static bool hnsw_index_valid(void) {
  return th_int("SELECT count(*) FROM pg_index WHERE indisvalid AND "
                "indexrelid = to_regclass('embeddings_embedding_hnsw_idx')") == 1;
}

/* Like batch_check, and the HNSW index is built by the session or,
 * after a failure, by the next one. */
static void session_check(void *arg, bool hit) {
  write_ctx *x = arg;
  ASSERT_OOM_STATUS("es_batch_begin", x->begin_rc, ES_OK, hit);
  if (x->begin_rc == ES_OK) {
    ASSERT_OOM_STATUS("es_batch_add", x->add_rc, ES_EPARTIAL, hit);
    ASSERT_OOM_STATUS("es_batch_end", x->end_rc, ES_OK, hit);
  }
  if (x->begin_rc == ES_OK && x->add_rc == ES_EPARTIAL && x->end_rc == ES_OK) {
    ASSERT_NOT_NULL(x->res);
    char *got = result_text(x->res);
    ASSERT_STR_EQ(got, x->want);
    free(got);
    ASSERT(hnsw_index_valid());
    assert_each_doc_after(x);
    return;
  }
  if (x->begin_rc == ES_OK)
    assert_accounted(x->res, N_BATCH);
  /* No session holds the deferred-index lock now (a closed connection's
   * backend may take a moment to go), so the next session builds a
   * deferred index that is missing. */
  th_wait_for("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
              "classid = " ES__DEFER_LOCK_HI " AND objid = " ES__DEFER_LOCK_LO,
              0);
  assert_each_doc_before_or_after(x);
  es_batch_result_free(x->res);
  x->res = NULL;
  ASSERT_STATUS(x->s, es_batch_upsert(x->s, batch_docs, N_BATCH, &x->opts,
                                      &x->res), ES_EPARTIAL);
  ASSERT(hnsw_index_valid());
  assert_each_doc_after(x);
}

TEST(allocation_failures_in_upsert_and_batch_upsert_return_enomem_and_write_whole_documents) {
  write_ctx x;
  memset(&x, 0, sizeof x);
  es_close(th_open_init(ODIM, ES_METRIC_COSINE));
  x.s = must_open();
  es_batch_options_init(&x.opts);
  x.opts.batch_size = 2; /* several transactions: a new-ids COPY, merges */

  /* The good runs, whose outcomes every other run must match. */
  write_setup(&x);
  record_states(x.before);
  batch_run(&x);
  ASSERT_STATUS(x.s, x.rc, ES_EPARTIAL);
  x.want = result_text(x.res);
  batch_teardown(&x);
  record_states(x.after);
  printf("batch result:\n%s", x.want);

  th_oom_case up = {.name = "es_doc_validate + es_upsert", .ctx = &x, .setup = write_setup,
                    .run = upsert_run, .check = upsert_check,
                    .min_allocations = 10};
  th_oom_run(&up);
  th_oom_case batch = {.name = "es_batch_upsert", .ctx = &x,
                       .setup = write_setup, .run = batch_run,
                       .check = batch_check, .teardown = batch_teardown,
                       .min_allocations = 10};
  th_oom_run(&batch);
  x.opts.defer_index = ES_DEFER_ALWAYS; /* drop and rebuild the index too */
  th_oom_case session = {.name = "es_batch_begin/add/end", .ctx = &x,
                         .setup = write_setup, .run = session_run,
                         .check = session_check, .teardown = batch_teardown,
                         .min_allocations = 10};
  th_oom_run(&session);
  free(x.want);
  free_states(x.before);
  free_states(x.after);
  es_close(x.s);
}

/* ---- search --------------------------------------------------------------------- */

#define N_SEARCHES 5

static const float q1[ODIM] = {1, 0.2f, 0.1f};

static const es_search_params searches[N_SEARCHES] = {
    {.vector = q1, .dim = ODIM, .k = 3},
    {.vector = q1, .dim = ODIM, .k = 3}, /* again: from the cache */
    {.like_id = "d0", .k = 2, .workspace = "w1"},
    {.vector = q1, .dim = ODIM, .k = 4, .source_id = "s2", .exact = 1},
    {.like_id = "missing", .k = 1},
};
static const es_status search_want[N_SEARCHES] = {ES_OK, ES_OK, ES_OK, ES_OK,
                                                  ES_ENOTFOUND};

typedef struct search_ctx {
  es_store *s;
  es_status rc[N_SEARCHES];
  es_results *res[N_SEARCHES];
  char msg[N_SEARCHES][200];
  char *want[N_SEARCHES];
} search_ctx;

/* Every field of every hit, as text. */
static char *results_text(const es_results *r) {
  text t = {0};
  add(&t, "%zu hits\n", r->n);
  for (size_t i = 0; i < r->n; i++)
    add(&t, "  %s %.6f %s %s %s\n", str_or_null(r->hits[i].id),
        r->hits[i].distance, str_or_null(r->hits[i].text),
        str_or_null(r->hits[i].source_id), str_or_null(r->hits[i].metadata_json));
  return t.s;
}

/* A fresh handle for each run: its cache is empty, so the first search
 * is stored in it and the second answered from it. */
static void search_setup(void *arg) {
  search_ctx *x = arg;
  x->s = must_open();
}

/* Runs every search (armed), keeping statuses and messages. */
static void search_run(void *arg) {
  search_ctx *x = arg;
  for (int i = 0; i < N_SEARCHES; i++) {
    x->res[i] = NULL;
    x->rc[i] = es_search(x->s, &searches[i], &x->res[i]);
    snprintf(x->msg[i], sizeof x->msg[i], "%s", es_errmsg(x->s));
  }
}

/* Each search failed with ES_ENOMEM (no results) or gave the good run's
 * hits; the handle still answers. */
static void search_check(void *arg, bool hit) {
  search_ctx *x = arg;
  for (int i = 0; i < N_SEARCHES; i++) {
    char what[32];
    snprintf(what, sizeof what, "search %d", i);
    ASSERT_OOM_STATUS(what, x->rc[i], search_want[i], hit);
    if (x->rc[i] == ES_ENOMEM)
      ASSERT_CONTAINS(x->msg[i], "out of memory");
    if (x->rc[i] != ES_OK) {
      ASSERT_NULL(x->res[i]);
      continue;
    }
    char *got = results_text(x->res[i]);
    ASSERT_STR_EQ(got, x->want[i]);
    free(got);
  }
  /* The handle still answers. */
  es_results *r = NULL;
  ASSERT_OK(x->s, es_search(x->s, &searches[0], &r));
  char *got = results_text(r);
  ASSERT_STR_EQ(got, x->want[0]);
  free(got);
  es_results_free(r);
}

/* Frees the results and closes the handle. */
static void search_teardown(void *arg) {
  search_ctx *x = arg;
  for (int i = 0; i < N_SEARCHES; i++) {
    es_results_free(x->res[i]);
    x->res[i] = NULL;
  }
  es_close(x->s);
  x->s = NULL;
}

TEST(allocation_failures_in_search_return_enomem_and_never_a_wrong_hit) {
  search_ctx x;
  memset(&x, 0, sizeof x);
  es_close(th_open_init(ODIM, ES_METRIC_COSINE));
  th_exec("INSERT INTO embeddings (id, text, source_id, metadata, embedding) "
          "SELECT 'd' || i, 'text ' || i, 's' || (i % 3), "
          "jsonb_build_object('workspace', 'w' || (i % 2), 'i', i), "
          "format('[%s,%s,1]', i % 5 + 1, i % 7)::vector "
          "FROM generate_series(0, 29) i");
  search_setup(&x);
  search_run(&x);
  for (int i = 0; i < N_SEARCHES; i++) {
    ASSERT_STATUS(x.s, x.rc[i], search_want[i]);
    if (x.rc[i] == ES_OK)
      x.want[i] = results_text(x.res[i]);
  }
  printf("first search:\n%s", x.want[0]);
  search_teardown(&x);
  th_oom_case c = {.name = "es_search", .ctx = &x, .setup = search_setup,
                   .run = search_run, .check = search_check,
                   .teardown = search_teardown, .min_allocations = 20};
  th_oom_run(&c);
  /* A metric is recorded whole or dropped: a failed search's row has its
   * error.  (Every handle wrote its rows at es_close.) */
  ASSERT_INT_GT(th_int("SELECT count(*) FROM performance_metrics WHERE "
                       "NOT success"), 0);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM performance_metrics WHERE "
                       "NOT success AND error_message IS NULL"), 0);
  for (int i = 0; i < N_SEARCHES; i++)
    free(x.want[i]);
}

/* ---- open, init, migrations ------------------------------------------------------ */

/* Everything init makes, as text: relations, indexes and their validity,
 * constraints, triggers, functions, the shape and applied migrations. */
static char *schema_text(void) {
  return th_text(
      "SELECT string_agg(x, E'\\n' ORDER BY x) FROM ("
      "SELECT 'rel ' || relname || ' ' || relkind::text AS x FROM pg_class "
      "WHERE relnamespace = 'public'::regnamespace AND relname NOT LIKE 'pg_%' "
      "UNION ALL SELECT 'index ' || c.relname || ' ' || i.indisvalid || ' ' || "
      "pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON "
      "c.oid = i.indexrelid WHERE c.relnamespace = 'public'::regnamespace "
      "UNION ALL SELECT 'constraint ' || conname || ' ' || convalidated || ' ' "
      "|| pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = "
      "'public'::regnamespace "
      "UNION ALL SELECT 'trigger ' || tgname || ' ' || tgenabled::text FROM "
      "pg_trigger WHERE NOT tgisinternal "
      "UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE pronamespace "
      "= 'public'::regnamespace AND proname LIKE 'embstore%' "
      "UNION ALL SELECT 'shape ' || dim || ' ' || metric FROM embstore_meta "
      "UNION ALL SELECT 'migration ' || version FROM embstore_migrations) s");
}

/* An init or migrate report as text. */
static char *report_text(const es_init_report *r) {
  if (r == NULL)
    return strdup("(no report)");
  text t = {0};
  add(&t, "created=%d adopted=%d applied=%d indexes=%d dim=%d metric=%d "
      "orphans=%lld fk_valid=%d fk_validated=%d rebuilt=%d", r->created,
      r->adopted, r->migrations_applied, r->indexes_created, r->dim,
      (int)r->metric, (long long)r->orphaned_chunks, r->fk_valid,
      r->fk_validated, r->counters_rebuilt);
  return t.s;
}

/* A migration list as text. */
static char *migrations_text(const es_migration_list *l) {
  text t = {0};
  for (size_t i = 0; i < l->n; i++)
    add(&t, "%d %s %d\n", l->items[i].version, str_or_null(l->items[i].name),
        l->items[i].applied);
  return t.s;
}

typedef struct init_ctx {
  bool fresh;   /* each run starts from an empty database */
  char *schema; /* schema_text of a good run */
  char *want_init, *want_list, *want_migrate;
  es_store *s;
  es_status open_rc, init_rc, list_rc, migrate_rc, shape_rc;
  es_init_report *init, *migrate;
  es_migration_list *list;
  int dim;
  es_metric metric;
} init_ctx;

/* Drops everything of the store: the database as the runner made it. */
static void reset_database(void) {
  th_exec("DROP SCHEMA public CASCADE; CREATE SCHEMA public; "
          "CREATE EXTENSION vector");
}

/* An empty database for the runs that create the store. */
static void init_setup(void *arg) {
  init_ctx *x = arg;
  if (x->fresh)
    reset_database();
}

/* Opens, initialises and (on an existing store) lists and migrates (armed). */
static void init_run(void *arg) {
  init_ctx *x = arg;
  x->s = NULL;
  x->list = NULL;
  x->init = x->migrate = NULL;
  x->init_rc = x->list_rc = x->migrate_rc = x->shape_rc = ES_OK;
  x->open_rc = open_store(&x->s);
  if (x->open_rc != ES_OK)
    return;
  x->init_rc = es_init(x->s, ODIM, ES_METRIC_L2, &x->init);
  if (x->init_rc != ES_OK || x->fresh)
    return;
  x->list_rc = es_migration_list_get(x->s, &x->list);
  x->migrate_rc = es_migrate_report(x->s, &x->migrate);
  x->shape_rc = es_store_shape(x->s, &x->dim, &x->metric);
}

/* Checks a status and, when it is ES_OK, the text of its result. */
static void assert_outcome(const char *what, es_status rc, bool hit,
                           char *got, const char *want) {
  ASSERT_OOM_STATUS(what, rc, ES_OK, hit);
  if (rc == ES_OK)
    ASSERT_STR_EQ(got, want);
  free(got);
}

/* Each call failed with ES_ENOMEM or gave the good run's report; init
 * then finishes the same schema. */
static void init_check(void *arg, bool hit) {
  init_ctx *x = arg;
  ASSERT_OOM_STATUS("es_open", x->open_rc, ES_OK, hit);
  if (x->open_rc == ES_OK) {
    assert_outcome("es_init", x->init_rc, hit, report_text(x->init),
                   x->want_init);
    if (x->init_rc == ES_OK && !x->fresh) {
      assert_outcome("es_migrations", x->list_rc, hit,
                     x->list ? migrations_text(x->list) : NULL, x->want_list);
      assert_outcome("es_migrate_report", x->migrate_rc, hit,
                     report_text(x->migrate), x->want_migrate);
      ASSERT_OOM_STATUS("es_store_shape", x->shape_rc, ES_OK, hit);
      if (x->shape_rc == ES_OK) {
        ASSERT_INT_EQ(x->dim, ODIM);
        ASSERT_INT_EQ(x->metric, ES_METRIC_L2);
      }
    }
  }
  /* Whatever failed, init on a fresh handle finishes the same store. */
  es_store *s = must_open();
  ASSERT_OK(s, es_init(s, ODIM, ES_METRIC_L2, NULL));
  es_close(s);
  char *got = schema_text();
  ASSERT_STR_EQ(got, x->schema);
  free(got);
}

/* Frees the reports and the list, closes the store. */
static void init_teardown(void *arg) {
  init_ctx *x = arg;
  es_migration_list_free(x->list);
  x->list = NULL;
  es_init_report_free(x->init);
  es_init_report_free(x->migrate);
  x->init = x->migrate = NULL;
  es_close(x->s);
  x->s = NULL;
}

TEST(allocation_failures_in_open_init_and_migrate_return_enomem_and_leave_a_whole_store) {
  init_ctx x;
  memset(&x, 0, sizeof x);
  /* The good runs: a fresh store, then init on it again. */
  x.fresh = true;
  init_setup(&x);
  init_run(&x);
  ASSERT_OK(x.s, x.init_rc);
  x.want_init = report_text(x.init);
  init_teardown(&x);
  x.schema = schema_text();
  x.fresh = false;
  init_run(&x);
  ASSERT_OK(x.s, x.init_rc);
  ASSERT_OK(x.s, x.list_rc);
  ASSERT_OK(x.s, x.migrate_rc);
  char *again = report_text(x.init);
  x.want_list = migrations_text(x.list);
  x.want_migrate = report_text(x.migrate);
  init_teardown(&x);
  printf("fresh init: %s\ninit again: %s\nmigrate: %s\n", x.want_init, again,
         x.want_migrate);

  x.fresh = true;
  th_oom_case fresh = {.name = "es_open + es_init of a new store", .ctx = &x,
                       .setup = init_setup, .run = init_run,
                       .check = init_check, .teardown = init_teardown,
                       .min_allocations = 20};
  th_oom_run(&fresh);
  x.fresh = false;
  free(x.want_init);
  x.want_init = again;
  th_oom_case existing = {.name = "es_open + es_init + es_migrations + "
                                  "es_migrate + es_store_shape of a store",
                          .ctx = &x, .run = init_run, .check = init_check,
                          .teardown = init_teardown, .min_allocations = 20};
  th_oom_run(&existing);
  free(x.want_init);
  free(x.want_list);
  free(x.want_migrate);
  free(x.schema);
}

/* ---- statistics, metrics, delete, cleanup, count checks ---------------------------- */

/* Source s1 (3 documents, 2 chunks), s2 and one without a source; two
 * documents of s3 without a vector, two days old; two orphaned chunks
 * written past the foreign key; and 100 metrics of known durations. */
static void manage_fixture(void) {
  th_exec("TRUNCATE embeddings, chunks");
  th_exec("INSERT INTO embeddings (id, text, source_id, metadata, embedding) "
          "VALUES ('a1', 't', 's1', '{\"workspace\": \"w1\"}', '[1,0,0]'), "
          "('a2', 't', 's1', '{\"workspace\": \"w1\"}', '[0,1,0]'), "
          "('a3', 't', 's1', '{}', '[0,0,1]'), "
          "('b1', 't', 's2', '{\"workspace\": \"w2\"}', '[1,1,0]'), "
          "('c1', 't', NULL, '{}', '[1,1,1]')");
  th_exec("INSERT INTO chunks (id, document_id, chunk_index) VALUES "
          "('a1#0', 'a1', 0), ('a1#1', 'a1', 1), ('b1#0', 'b1', 0)");
  th_exec("INSERT INTO embeddings (id, source_id, created_at) VALUES "
          "('v1', 's3', now() - interval '2 days'), "
          "('v2', 's3', now() - interval '2 days')");
  PGconn *r = th_connect(th_conninfo());
  th_pg_exec(r, "SET session_replication_role = replica");
  th_pg_exec(r, "INSERT INTO chunks (id, document_id) VALUES ('o#0', 'gone'), "
                "('o#1', 'gone')");
  PQfinish(r);
  /* Statistics' health reasons do not depend on what ran before. */
  th_exec("ANALYZE embeddings, chunks");
}

/* Statistics as text, without what varies (sizes, timings). */
static char *stats_text(const es_stats *st) {
  text t = {0};
  add(&t, "workspace=%s documents=%lld chunks=%lld without_vector=%lld "
      "orphaned=%lld health=%s sources=%zu\n", str_or_null(st->workspace),
      (long long)st->documents, (long long)st->chunks,
      (long long)st->without_vector, (long long)st->orphaned_chunks,
      es_health_name(st->index_health), st->sources_total);
  for (size_t i = 0; i < st->sources_total; i++)
    add(&t, "  source %s %lld %lld\n", str_or_null(st->sources[i].source_id),
        (long long)st->sources[i].documents, (long long)st->sources[i].chunks);
  for (size_t i = 0; i < st->n_health_reasons; i++)
    add(&t, "  reason %s\n", str_or_null(st->health_reasons[i]));
  return t.s;
}

/* The operation "zz-known" (last by name: a report cut short loses it). */
static char *metrics_text(const es_metrics_report *m) {
  text t = {0};
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->ops[i].operation, "zz-known") == 0)
      add(&t, "%s %lld %.4f %.4f %.4f %.4f\n", m->ops[i].operation,
          (long long)m->ops[i].count, m->ops[i].p50_ms, m->ops[i].p95_ms,
          m->ops[i].p99_ms, m->ops[i].error_rate);
  return t.s ? t.s : strdup("zz-known missing");
}

/* A count check as text. */
static char *check_text(const es_count_check *c) {
  text t = {0};
  add(&t, "documents=%lld chunks=%lld orphaned=%lld counted=%lld repaired=%d\n",
      (long long)c->documents, (long long)c->chunks,
      (long long)c->orphaned_chunks, (long long)c->orphaned_counted,
      c->repaired);
  for (size_t i = 0; i < c->n_drift; i++)
    add(&t, "  drift %s %s %lld/%lld %lld/%lld %lld/%lld\n",
        str_or_null(c->drift[i].source_id), str_or_null(c->drift[i].workspace),
        (long long)c->drift[i].documents_counted,
        (long long)c->drift[i].documents_actual,
        (long long)c->drift[i].chunks_counted,
        (long long)c->drift[i].chunks_actual,
        (long long)c->drift[i].without_vector_counted,
        (long long)c->drift[i].without_vector_actual);
  return t.s;
}

/* A cleanup result as text. */
static char *cleanup_text(const es_cleanup_result *r) {
  text t = {0};
  add(&t, "chunks=%lld embeddings=%lld cleaned=%lld dry_run=%d\n",
      (long long)r->orphaned_chunks, (long long)r->orphaned_embeddings,
      (long long)r->cleaned, r->dry_run);
  for (size_t i = 0; i < r->n_details; i++)
    add(&t, "  %s\n", str_or_null(r->details[i]));
  return t.s;
}

/* A delete result as text. */
static char *delete_text(const es_delete_result *r) {
  if (r == NULL)
    return strdup("(no result)");
  text t = {0};
  add(&t, "deleted=%lld chunks=%lld dry_run=%d", (long long)r->deleted,
      (long long)r->chunks_removed, r->dry_run);
  return t.s;
}

/* The calls, each of which reads or writes a part of the fixture no
 * other one depends on. */
enum { M_STATS, M_STATS_W1, M_METRICS, M_CHECK, M_CLEANUP_DRY, M_DELETE_DRY,
       M_DELETE, M_CLEANUP, M_REPAIR, M_CALLS };
static const char *const m_names[M_CALLS] = {
    "es_stats_get", "es_stats_get(w1)", "es_metrics",
    "es_check_counts", "es_cleanup_orphaned(dry run)",
    "es_delete_by_source(dry run)", "es_delete_by_source",
    "es_cleanup_orphaned", "es_check_counts(repair)"};

typedef struct manage_ctx {
  es_store *s;
  int only; /* the call to run, or -1 for the read-only ones */
  es_status rc[M_CALLS];
  char msg[M_CALLS][200];
  es_stats *st[M_CALLS];
  es_metrics_report *m;
  es_count_check *c[M_CALLS];
  es_cleanup_result *cr[M_CALLS];
  es_delete_result *dr[M_CALLS];
  char *want[M_CALLS]; /* the text of each result of a good run */
} manage_ctx;

/* Runs call i, recording its status, message and result. */
static void manage_call(manage_ctx *x, int i) {
  es_store *s = x->s;
  es_cleanup_options co;
  es_cleanup_options_init(&co);
  es_delete_options dopt = {.dry_run = i == M_DELETE_DRY};
  es_status rc = ES_OK;
  switch (i) {
  case M_STATS: rc = es_stats_get(s, NULL, &x->st[i]); break;
  case M_STATS_W1: rc = es_stats_get(s, "w1", &x->st[i]); break;
  case M_METRICS: rc = es_metrics_report_get(s, 3600, &x->m); break;
  case M_CHECK: rc = es_check_counts(s, 0, &x->c[i]); break;
  case M_REPAIR: rc = es_check_counts(s, 1, &x->c[i]); break;
  case M_CLEANUP_DRY: co.dry_run = 1; /* fall through */
  case M_CLEANUP: rc = es_cleanup_orphaned(s, &co, &x->cr[i]); break;
  case M_DELETE_DRY: /* fall through */
  case M_DELETE: rc = es_delete_by_source(s, "s1", &dopt, &x->dr[i]); break;
  }
  x->rc[i] = rc;
  snprintf(x->msg[i], sizeof x->msg[i], "%s", es_errmsg(s));
}

/* The text of call i's result (after an ES_OK). */
static char *manage_text(const manage_ctx *x, int i) {
  if (x->st[i])
    return stats_text(x->st[i]);
  if (i == M_METRICS)
    return metrics_text(x->m);
  if (x->c[i])
    return check_text(x->c[i]);
  if (x->cr[i])
    return cleanup_text(x->cr[i]);
  return delete_text(x->dr[i]);
}

/* Frees every result of the calls. */
static void manage_free(manage_ctx *x) {
  for (int i = 0; i < M_CALLS; i++) {
    es_stats_free(x->st[i]);
    es_count_check_free(x->c[i]);
    es_cleanup_result_free(x->cr[i]);
    es_delete_result_free(x->dr[i]);
    x->dr[i] = NULL;
    x->st[i] = NULL;
    x->c[i] = NULL;
    x->cr[i] = NULL;
  }
  es_metrics_report_free(x->m);
  x->m = NULL;
}

/* Whether call i changes nothing. */
static bool read_only(int i) { return i < M_DELETE; }

/* A fresh fixture for a writer (and drifted counters for the repair). */
static void manage_setup(void *arg) {
  manage_ctx *x = arg;
  if (x->only < 0)
    return; /* the read-only calls share one fixture */
  manage_fixture();
  if (x->only == M_REPAIR) /* counters that say s2/w2 has 5 more */
    th_exec("INSERT INTO embstore_counts (source_id, workspace, documents) "
            "VALUES ('s2', 'w2', 5)");
}

/* Runs the writer, or every read-only call (armed). */
static void manage_run(void *arg) {
  manage_ctx *x = arg;
  for (int i = 0; i < M_CALLS; i++)
    if (x->only == i || (x->only < 0 && read_only(i)))
      manage_call(x, i);
}

/* What a failed writer must leave, and its rerun must give. */
static void assert_written_whole(manage_ctx *x, int i) {
  if (i == M_DELETE) { /* all of s1 with its chunks, or nothing */
    long long docs = th_int("SELECT count(*) FROM embeddings WHERE source_id = 's1'");
    long long kids = th_int("SELECT count(*) FROM chunks WHERE document_id LIKE 'a%'");
    if (!(docs == 3 && kids == 2) && !(docs == 0 && kids == 0))
      FAIL("a delete left %lld documents and %lld chunks of s1", docs, kids);
  }
  /* Done again, it finishes the job. */
  x->rc[i] = ES_ENOMEM;
  manage_call(x, i);
  ASSERT_OK(x->s, x->rc[i]);
  if (i == M_CLEANUP)
    ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks WHERE document_id = 'gone'") +
                      th_int("SELECT count(*) FROM embeddings WHERE embedding IS NULL"),
                  0);
  if (i == M_DELETE)
    ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings WHERE source_id = 's1'"), 0);
}

/* Each call failed with ES_ENOMEM or gave the good run's result; a
 * failed writer left its work whole and a rerun finishes it. */
static void manage_check(void *arg, bool hit) {
  manage_ctx *x = arg;
  for (int i = 0; i < M_CALLS; i++) {
    if (!(x->only == i || (x->only < 0 && read_only(i))))
      continue;
    ASSERT_OOM_STATUS(m_names[i], x->rc[i], ES_OK, hit);
    if (x->rc[i] == ES_OK) {
      char *got = manage_text(x, i);
      ASSERT_STR_EQ(got, x->want[i]);
      free(got);
    } else {
      ASSERT_CONTAINS(x->msg[i], "out of memory");
      if (!read_only(i)) {
        manage_free(x);
        assert_written_whole(x, i);
      }
    }
  }
  assert_counts_exact(x->s);
}

/* Frees the results. */
static void manage_teardown(void *arg) { manage_free(arg); }

TEST(allocation_failures_in_stats_metrics_delete_cleanup_and_count_checks_return_enomem) {
  manage_ctx x;
  memset(&x, 0, sizeof x);
  es_close(th_open_init(ODIM, ES_METRIC_COSINE));
  th_exec("INSERT INTO performance_metrics (operation, duration_ms, success) "
          "SELECT 'zz-known', d, d % 10 <> 0 FROM generate_series(1, 100) d");
  x.s = must_open();
  /* The good runs: every call on its own fixture. */
  for (int i = 0; i < M_CALLS; i++) {
    x.only = i;
    manage_setup(&x);
    manage_run(&x);
    ASSERT_OK(x.s, x.rc[i]);
    x.want[i] = manage_text(&x, i);
    printf("%s:\n%s\n", m_names[i], x.want[i]);
    manage_free(&x);
  }
  x.only = -1;
  manage_fixture();
  th_oom_case ro = {.name = "statistics, metrics, count check, dry runs",
                    .ctx = &x, .setup = manage_setup, .run = manage_run,
                    .check = manage_check, .teardown = manage_teardown,
                    .min_allocations = 20};
  th_oom_run(&ro);
  for (int i = M_DELETE; i < M_CALLS; i++) {
    x.only = i;
    th_oom_case w = {.name = m_names[i], .ctx = &x, .setup = manage_setup,
                     .run = manage_run, .check = manage_check,
                     .teardown = manage_teardown, .min_allocations = 1};
    th_oom_run(&w);
  }
  for (int i = 0; i < M_CALLS; i++)
    free(x.want[i]);
  es_close(x.s);
}
