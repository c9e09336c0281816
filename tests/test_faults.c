/* test_faults.c - faults on purpose: a killed server, dropped connections,
 * locks and timeouts, concurrent writers, many threads on one handle, and
 * secrets that must not leak. */
#define _GNU_SOURCE
#include <math.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

/* ---- helpers ------------------------------------------------------------ */

/* Waits (up to 30 s) until a backend of ours other than not_pid waits on
 * a lock while running a statement that starts with prefix; returns its
 * pid. */
static long waiting_backend_except(PGconn *pg, const char *prefix, long not_pid) {
  char sql[512];
  snprintf(sql, sizeof sql,
           "SELECT pid FROM pg_stat_activity WHERE application_name = 'embstore' "
           "AND wait_event_type = 'Lock' AND query LIKE '%s%%' AND pid <> %ld",
           prefix, not_pid);
  double deadline = th_now() + 30;
  while (th_now() < deadline) {
    PGresult *r = PQexec(pg, sql);
    long pid = PQntuples(r) > 0 ? atol(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    if (pid)
      return pid;
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL); /* polling a condition, not guessing a delay */
  }
  FAIL("no embstore backend came to wait on a lock in \"%s\"", prefix);
}

static long waiting_backend(PGconn *pg, const char *prefix) {
  return waiting_backend_except(pg, prefix, 0);
}

/* The store is consistent: no chunk without its document, and the counts
 * that stats gives equal COUNT(*). */
static void assert_consistent(es_store *s, PGconn *pg) {
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM chunks c WHERE NOT EXISTS "
                          "(SELECT 1 FROM embeddings e WHERE e.id = c.document_id)"),
                0);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->documents, th_pg_int(pg, "SELECT count(*) FROM embeddings"));
  ASSERT_INT_EQ(st->chunks, th_pg_int(pg, "SELECT count(*) FROM chunks"));
  es_stats_free(st);
}

#define DIM 64

/* n documents "d<i>" with k chunks each, vectors included. */
typedef struct corpus {
  es_doc *docs;
  es_chunk *chunks;
  float *v;
  char (*ids)[32];
  size_t n, k;
} corpus;

static corpus make(size_t n, size_t k, const char *source) {
  corpus c = {calloc(n, sizeof(es_doc)), calloc(n * k + 1, sizeof(es_chunk)),
              calloc(n * (k + 1) * DIM, sizeof(float)),
              calloc(n * (k + 1), sizeof *c.ids), n, k};
  for (size_t i = 0; i < n; i++) {
    float *v = c.v + i * (k + 1) * DIM;
    for (size_t d = 0; d < (k + 1) * DIM; d++)
      v[d] = (float)sin((double)(i * 131 + d));
    snprintf(c.ids[i * (k + 1)], 32, "d%05zu", i);
    for (size_t j = 0; j < k; j++) {
      snprintf(c.ids[i * (k + 1) + j + 1], 32, "d%05zu#%zu", i, j);
      c.chunks[i * k + j] = (es_chunk){.id = c.ids[i * (k + 1) + j + 1],
                                       .text = "chunk text",
                                       .embedding = v + (j + 1) * DIM, .dim = DIM};
    }
    c.docs[i] = (es_doc){.id = c.ids[i * (k + 1)], .text = "document text",
                         .embedding = v, .dim = DIM, .source_id = source,
                         .has_chunks = 1, .chunks = c.chunks + i * k, .n_chunks = k};
  }
  return c;
}

static void unmake(corpus *c) {
  free(c->docs);
  free(c->chunks);
  free(c->v);
  free(c->ids);
}

/* ---- a killed server -------------------------------------------------------- */

typedef struct killer {
  const char *conninfo;
  long postmaster;
  volatile int committed; /* batches committed so far (progress) */
  int after;              /* kill during the first COPY after this many */
  volatile int killed;
  pthread_t thread;
} killer;

static void count_batches(size_t processed, size_t total, void *user) {
  (void)processed;
  (void)total;
  killer *k = user;
  __atomic_add_fetch(&k->committed, 1, __ATOMIC_SEQ_CST);
}

/* Kills the postmaster while an ingest batch is in the middle of COPYing
 * its chunks: its documents are written by then, and must not survive. */
static void *kill_during_copy(void *arg) {
  killer *k = arg;
  PGconn *pg = th_connect(k->conninfo);
  double deadline = th_now() + 60;
  while (th_now() < deadline) {
    if (__atomic_load_n(&k->committed, __ATOMIC_SEQ_CST) >= k->after) {
      PGresult *r = PQexec(pg, "SELECT count(*) FROM pg_stat_activity WHERE "
                               "application_name = 'embstore' AND state = "
                               "'active' AND query LIKE 'COPY chunks%'");
      bool copying = PQresultStatus(r) == PGRES_TUPLES_OK &&
                     atoi(PQgetvalue(r, 0, 0)) > 0;
      PQclear(r);
      if (copying) {
        kill((pid_t)k->postmaster, SIGKILL);
        k->killed = 1;
        break;
      }
    }
  }
  PQfinish(pg);
  return NULL;
}

TEST(ingest_survives_a_killed_server_whole_batches_only_and_a_rerun_converges) {
  es_cluster *cl = th_own_cluster();
  const char *ci = es_cluster_conninfo(cl);
  es_options o;
  es_options_init(&o);
  o.conninfo = ci;
  o.max_retries = 2;
  o.retry_backoff_ms = 10;
  es_store *s = NULL;
  ASSERT_OK(s, es_open_opts(&o, &s));
  ASSERT_OK(s, es_init(s, DIM, ES_METRIC_COSINE, NULL));
  const size_t n = 3000, k = 4, per = 250;
  corpus c = make(n, k, "src");

  killer kl = {.conninfo = ci, .postmaster = es_cluster_pid(cl), .after = 3};
  ASSERT_INT_EQ(pthread_create(&kl.thread, NULL, kill_during_copy, &kl), 0);
  es_batch_options bo;
  es_batch_options_init(&bo);
  bo.batch_size = per;
  bo.defer_index = ES_DEFER_NEVER;
  bo.progress = count_batches;
  bo.user = &kl;
  es_batch_result *r = NULL;
  es_status rc = es_batch_upsert(s, c.docs, n, &bo, &r);
  pthread_join(kl.thread, NULL);
  ASSERT(kl.killed);
  ASSERT(rc == ES_ECONNECT);
  ASSERT(r != NULL);
  /* What it reports: landed batches, then every document that did not
   * land, each named. */
  ASSERT_INT_EQ(r->inserted % per, 0);
  ASSERT_INT_GE(r->inserted, per * 3);
  ASSERT_INT_EQ(r->inserted + r->failed, n);
  ASSERT_INT_EQ(r->n_failures, r->failed);
  for (size_t i = 0; i < r->n_failures; i++)
    ASSERT_INT_EQ(r->failures[i].position, r->inserted + i);
  size_t landed = r->inserted;
  es_batch_result_free(r);
  es_close(s);

  th_wait_exit(kl.postmaster);
  ASSERT_INT_EQ(es_cluster_start(cl), ES_OK); /* crash recovery */
  PGconn *pg = th_connect(ci);
  /* Every batch is all there or not there at all. */
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM embeddings"), landed);
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM chunks"), landed * k);
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM (SELECT substr(id, 2)::int / 250 "
                          "AS b, count(*) FROM embeddings GROUP BY 1 "
                          "HAVING count(*) <> 250) t"),
                0);
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM embeddings WHERE substr(id, 2)::int "
                          ">= (SELECT count(*) FROM embeddings)"),
                0);

  /* The same ingest again converges to exactly the input. */
  ASSERT_OK(s, es_open_opts(&o, &s));
  bo.progress = NULL;
  ASSERT_OK(s, es_batch_upsert(s, c.docs, n, &bo, &r));
  ASSERT_INT_EQ(r->inserted, n - landed);
  ASSERT_INT_EQ(r->unchanged, landed);
  ASSERT_INT_EQ(r->failed, 0);
  es_batch_result_free(r);
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM embeddings"), n);
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM chunks"), n * k);
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM (SELECT document_id FROM chunks "
                          "GROUP BY 1 HAVING count(*) <> 4) t"),
                0);
  assert_consistent(s, pg);
  es_close(s);
  PQfinish(pg);
  ASSERT_INT_EQ(es_cluster_stop(cl), ES_OK);
  es_cluster_close(cl);
  unmake(&c);
}

TEST(cli_recovers_an_embedded_cluster_killed_with_sigkill) {
  char home[600];
  setenv("EMBSTORE_PG_OPTIONS", "", 1); /* durable, see th_own_cluster() */
  snprintf(home, sizeof home, "%s/h", th_tmpdir());
  const char *init[] = {"--home", home, "init", "--dim", "2", NULL};
  th_proc p = th_cli(NULL, init);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  es_cluster *c = NULL;
  ASSERT_INT_EQ(es_cluster_open(home, &c), ES_OK);
  es_cluster_state st;
  ASSERT_INT_EQ(es_cluster_status(c, &st), ES_OK);
  ASSERT_INT_EQ(st, ES_CLUSTER_RUNNING);
  long pid = es_cluster_pid(c);
  ASSERT_INT_EQ(kill((pid_t)pid, SIGKILL), 0);
  th_wait_exit(pid);
  const char *stats[] = {"--home", home, "--json", "stats", NULL};
  p = th_cli(NULL, stats);
  if (p.status != 0)
    FAIL("stats after a crash: exit %d: %s", p.status, p.err);
  ASSERT_CONTAINS(p.out, "\"documents\":0");
  th_proc_free(&p);
  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK);
  es_cluster_close(c);
}

/* ---- dropped connections ------------------------------------------------------ */

typedef struct bg_delete {
  es_store *s;
  const char *source;
  es_status rc;
  es_delete_result *r; /* freed by the test */
  char err[1024];
} bg_delete;

static void *run_delete(void *arg) {
  bg_delete *d = arg;
  d->rc = es_delete_by_source(d->s, d->source, NULL, &d->r);
  snprintf(d->err, sizeof d->err, "%s", es_errmsg(d->s));
  return NULL;
}

/* Starts deleting d->source on a thread (*t), lets it reach the row lock
 * that locker takes on chunk chunk_id, and terminates its connection
 * there.  Returns the terminated backend's pid; locker stays in its
 * transaction. */
static long delete_cut_off_at(PGconn *locker, PGconn *watch, const char *chunk_id,
                              bg_delete *d, pthread_t *t) {
  char sql[128];
  th_pg_exec(locker, "BEGIN");
  snprintf(sql, sizeof sql, "SELECT * FROM chunks WHERE id = '%s' FOR UPDATE",
           chunk_id);
  th_pg_exec(locker, sql);
  ASSERT_INT_EQ(pthread_create(t, NULL, run_delete, d), 0);
  long pid = waiting_backend(watch, "DELETE FROM chunks");
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%ld)", pid);
  th_pg_exec(watch, sql);
  return pid;
}

static es_store *open_with_retries(int retries) {
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.max_retries = retries;
  es_store *s = NULL;
  ASSERT_OK(s, es_open_opts(&o, &s));
  ASSERT_OK(s, es_init(s, DIM, ES_METRIC_COSINE, NULL));
  return s;
}

TEST(delete_cut_off_by_a_dropped_connection_changes_nothing) {
  es_store *s = open_with_retries(0);
  corpus a = make(40, 3, "doomed"), b = make(10, 2, "kept");
  for (size_t i = 0; i < 10; i++) /* other ids for the kept source */
    snprintf(b.ids[i * 3], 32, "k%05zu", i), b.docs[i].id = b.ids[i * 3];
  for (size_t i = 0; i < 10; i++)
    for (size_t j = 0; j < 2; j++)
      snprintf(b.ids[i * 3 + j + 1], 32, "k%05zu#%zu", i, j);
  ASSERT_OK(s, es_batch_upsert(s, a.docs, 40, NULL, NULL));
  ASSERT_OK(s, es_batch_upsert(s, b.docs, 10, NULL, NULL));
  PGconn *locker = th_connect(th_conninfo());
  PGconn *watch = th_connect(th_conninfo());
  /* The delete will have removed some chunks when it reaches this one. */
  bg_delete d = {.s = s, .source = "doomed"};
  pthread_t t;
  delete_cut_off_at(locker, watch, "d00039#2", &d, &t);
  pthread_join(t, NULL);
  th_pg_exec(locker, "ROLLBACK");
  ASSERT_INT_EQ(d.rc, ES_ECONNECT);
  ASSERT(d.r == NULL); /* a failed call hands out no result */
  /* Nothing half-done: every document and chunk is still there. */
  ASSERT_INT_EQ(th_pg_int(watch, "SELECT count(*) FROM embeddings WHERE source_id = 'doomed'"), 40);
  ASSERT_INT_EQ(th_pg_int(watch, "SELECT count(*) FROM chunks WHERE document_id LIKE 'd%'"), 120);
  assert_consistent(s, watch);
  es_delete_result *r = NULL;
  ASSERT_OK(s, es_delete_by_source(s, "doomed", NULL, &r));
  ASSERT_INT_EQ(r->deleted, 40);
  ASSERT_INT_EQ(r->chunks_removed, 120);
  assert_consistent(s, watch);
  PQfinish(locker);
  PQfinish(watch);
  es_close(s);
  unmake(&a);
  unmake(&b);
  es_delete_result_free(r);
}

TEST(delete_retries_after_a_dropped_connection_and_counts_exactly) {
  es_store *s = open_with_retries(3);
  corpus a = make(30, 2, "doomed");
  ASSERT_OK(s, es_batch_upsert(s, a.docs, 30, NULL, NULL));
  PGconn *locker = th_connect(th_conninfo());
  PGconn *watch = th_connect(th_conninfo());
  bg_delete d = {.s = s, .source = "doomed"};
  pthread_t t;
  long pid = delete_cut_off_at(locker, watch, "d00029#1", &d, &t);
  /* The retry comes back to the same lock, on a new connection. */
  long again = waiting_backend_except(watch, "DELETE FROM chunks", pid);
  ASSERT(again != pid);
  th_pg_exec(locker, "ROLLBACK");
  pthread_join(t, NULL);
  if (d.rc != ES_OK)
    FAIL("delete after a retry: %s", d.err);
  ASSERT_INT_EQ(d.r->deleted, 30);
  ASSERT_INT_EQ(d.r->chunks_removed, 60);
  es_delete_result_free(d.r);
  assert_consistent(s, watch);
  PQfinish(locker);
  PQfinish(watch);
  es_close(s);
  unmake(&a);
}

typedef struct bg_cleanup {
  es_store *s;
  es_status rc;
  es_cleanup_result *r;
} bg_cleanup;

static void *run_cleanup(void *arg) {
  bg_cleanup *x = arg;
  es_cleanup_options o;
  es_cleanup_options_init(&o);
  x->rc = es_cleanup_orphaned(x->s, &o, &x->r);
  return NULL;
}

TEST(cleanup_cut_off_by_a_dropped_connection_keeps_finished_batches) {
  th_exec("CREATE TABLE embeddings (id text PRIMARY KEY, text text, "
          "embedding vector(64), metadata jsonb, source_id text)");
  th_exec("CREATE TABLE chunks (id text PRIMARY KEY, document_id text, "
          "chunk_index int, text text, embedding vector(64), metadata jsonb)");
  th_exec("INSERT INTO embeddings (id, text) SELECT 'd' || i, '' FROM "
          "generate_series(1, 5) i");
  th_exec("UPDATE embeddings SET embedding = array_fill(1, ARRAY[64])::vector");
  th_exec("INSERT INTO chunks SELECT 'c' || lpad(i::text, 5, '0'), CASE WHEN "
          "i % 500 = 0 THEN 'd' || (i / 500) ELSE 'gone' END, 0, '', NULL, "
          "'{}' FROM generate_series(1, 2500) i");
  es_store *s = open_with_retries(0);
  PGconn *locker = th_connect(th_conninfo());
  PGconn *watch = th_connect(th_conninfo());
  th_pg_exec(locker, "BEGIN");
  th_pg_exec(locker, "SELECT * FROM chunks WHERE id = 'c01501' FOR UPDATE");
  bg_cleanup x = {.s = s};
  pthread_t t;
  ASSERT_INT_EQ(pthread_create(&t, NULL, run_cleanup, &x), 0);
  long pid = waiting_backend(watch, "WITH pick AS");
  char sql[96];
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%ld)", pid);
  th_pg_exec(watch, sql);
  pthread_join(t, NULL);
  th_pg_exec(locker, "ROLLBACK");
  ASSERT_INT_EQ(x.rc, ES_ECONNECT);
  ASSERT_INT_EQ(x.r->orphaned_chunks, 2495);
  ASSERT_INT_EQ(x.r->cleaned, 1000); /* the first batch committed */
  es_cleanup_result_free(x.r);
  ASSERT_INT_EQ(th_pg_int(watch, "SELECT count(*) FROM chunks"), 2500 - 1000);
  ASSERT_INT_EQ(th_pg_int(watch, "SELECT count(*) FROM chunks WHERE document_id <> 'gone'"), 5);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->documents, 5);
  ASSERT_INT_EQ(st->chunks, 5); /* chunks of existing documents */
  ASSERT_INT_EQ(st->orphaned_chunks, 1495);
  es_stats_free(st);
  /* Run again: the rest goes and the key becomes valid. */
  bg_cleanup y = {.s = s};
  run_cleanup(&y);
  ASSERT_OK(s, y.rc);
  ASSERT_INT_EQ(y.r->cleaned, 1495);
  es_cleanup_result_free(y.r);
  assert_consistent(s, watch);
  PQfinish(locker);
  PQfinish(watch);
  es_close(s);
}

/* ---- locks and timeouts ----------------------------------------------------- */

TEST(a_held_lock_gives_a_clear_timeout_error_within_the_configured_time) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  float v[2] = {1, 0};
  es_doc d = {.id = "x", .embedding = v, .dim = 2, .source_id = "s"};
  ASSERT_OK(s, es_upsert(s, &d, NULL));
  es_close(s);
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.statement_timeout_ms = 300;
  ASSERT_OK(s, es_open_opts(&o, &s));

  /* A row lock held by another session. */
  PGconn *other = th_connect(th_conninfo());
  th_pg_exec(other, "BEGIN");
  th_pg_exec(other, "SELECT * FROM embeddings WHERE id = 'x' FOR UPDATE");
  v[0] = 0.5f;
  double t0 = th_now();
  ASSERT_STATUS(s, es_upsert(s, &d, NULL), ES_ETIMEOUT);
  double took = th_now() - t0;
  ASSERT_CONTAINS(es_errmsg(s), "statement timeout");
  ASSERT_CONTAINS(es_errmsg(s), "300 ms");
  ASSERT_CONTAINS(es_errmsg(s), "document \"x\"");
  ASSERT(took >= 0.25 && took < 2.0);
  th_pg_exec(other, "ROLLBACK");

  /* A table lock: searches and statistics time out too. */
  th_pg_exec(other, "BEGIN");
  th_pg_exec(other, "LOCK TABLE embeddings IN ACCESS EXCLUSIVE MODE");
  es_search_params p = {.vector = v, .dim = 2, .k = 1};
  es_results *r = NULL;
  t0 = th_now();
  ASSERT_STATUS(s, es_search(s, &p, &r), ES_ETIMEOUT);
  ASSERT(th_now() - t0 < 2.0);
  ASSERT_CONTAINS(es_errmsg(s), "statement timeout");
  th_pg_exec(other, "ROLLBACK");
  ASSERT_OK(s, es_search(s, &p, &r)); /* and all is well afterwards */
  es_results_free(r);
  PQfinish(other);
  es_close(s);
}

/* ---- concurrency ------------------------------------------------------------------ */

/* Writes a JSONL file of documents lo..hi over sources s0..s3. */
static char *write_jsonl(const char *name, int lo, int hi, int gen) {
  char *path = malloc(700);
  snprintf(path, 700, "%s/%s.jsonl", th_tmpdir(), name);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  for (int i = lo; i < hi; i++) {
    fprintf(f, "{\"id\":\"c%04d\",\"text\":\"gen %d\",\"source_id\":\"s%d\","
               "\"metadata\":{\"workspace\":\"w%d\"},\"embedding\":[%d,1,%d],"
               "\"chunks\":[{\"id\":\"c%04d#0\",\"text\":\"a\"},{\"id\":\"c%04d#1\","
               "\"text\":\"b\",\"embedding\":[1,%d,1]}]}\n",
            i, gen, i % 4, i % 3, i % 7 + 1, gen, i, i, i % 5);
  }
  fclose(f);
  return path;
}

static pid_t spawn(const char *const *argv) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    const char *args[32] = {th_cli_path(), "--db", th_conninfo()};
    size_t n = 3;
    for (size_t i = 0; argv[i] && n < 31; i++)
      args[n++] = argv[i];
    args[n] = NULL;
    execv(args[0], (char *const *)args);
    _exit(127);
  }
  return pid;
}

TEST(concurrent_ingests_deletes_and_cleanups_keep_the_store_exact) {
  es_store *s = th_open_init(3, ES_METRIC_COSINE);
  /* Three writers over overlapping ids and sources, one deleting a source
   * over and over, one cleaning up over and over. */
  char *f1 = write_jsonl("one", 0, 900, 1), *f2 = write_jsonl("two", 600, 1500, 2),
       *f3 = write_jsonl("three", 300, 1200, 3);
  const char *w1[] = {"ingest", f1, "--batch-size", "50", NULL};
  const char *w2[] = {"ingest", f2, "--batch-size", "70", NULL};
  const char *w3[] = {"ingest", f3, "--batch-size", "30", NULL};
  pid_t pids[5];
  pids[0] = spawn(w1);
  pids[1] = spawn(w2);
  pids[2] = spawn(w3);
  pids[3] = fork();
  if (pids[3] == 0) {
    for (int i = 0; i < 15; i++) {
      const char *del[] = {"delete", "--source", "s1", NULL};
      pid_t p = spawn(del);
      int st;
      waitpid(p, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        _exit(10 + i);
    }
    _exit(0);
  }
  pids[4] = fork();
  if (pids[4] == 0) {
    for (int i = 0; i < 10; i++) {
      const char *cl[] = {"cleanup", "--min-age", "0s", "--batch-size", "100", NULL};
      pid_t p = spawn(cl);
      int st;
      waitpid(p, &st, 0);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        _exit(10 + i);
    }
    _exit(0);
  }
  for (int i = 0; i < 5; i++) {
    int st;
    ASSERT_INT_EQ(waitpid(pids[i], &st, 0), pids[i]);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      FAIL("process %d ended with status %d (a deadlock or error surfaced)", i,
           WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
  }
  PGconn *pg = th_connect(th_conninfo());
  assert_consistent(s, pg);
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM (SELECT document_id FROM chunks "
                          "GROUP BY 1 HAVING count(*) <> 2) t"),
                0);
  /* After the dust settles, one more delete leaves no s1 document. */
  es_delete_result *r = NULL;
  ASSERT_OK(s, es_delete_by_source(s, "s1", NULL, &r));
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM embeddings WHERE source_id = 's1'"), 0);
  assert_consistent(s, pg);
  PQfinish(pg);
  free(f1);
  free(f2);
  free(f3);
  es_close(s);
  es_delete_result_free(r);
}

typedef struct worker {
  es_store *s;
  int id;
  int failures;
  char err[512];
} worker;

/* One thread's mix of every kind of operation on the shared handle. */
static void *work(void *arg) {
  worker *w = arg;
  es_store *s = w->s;
  char source[32], id[48];
  snprintf(source, sizeof source, "t%d", w->id);
  for (int round = 0; round < 25; round++) {
    float v[3] = {(float)w->id + 1, (float)round + 1, 1};
    snprintf(id, sizeof id, "t%d-%d", w->id, round % 10);
    es_chunk ch[2] = {{.id = NULL, .text = "x"}, {.id = NULL, .text = "y"}};
    char c0[64], c1[64];
    snprintf(c0, sizeof c0, "%s#0", id);
    snprintf(c1, sizeof c1, "%s#1", id);
    ch[0].id = c0;
    ch[1].id = c1;
    es_doc d = {.id = id, .text = "t", .embedding = v, .dim = 3,
                .source_id = source, .has_chunks = 1, .chunks = ch, .n_chunks = 2};
    es_search_params p = {.vector = v, .dim = 3, .k = 5,
                          .source_id = round % 2 ? source : NULL};
    es_results *r = NULL;
    es_stats *st = NULL;
    es_batch_result *br = NULL;
    es_status rc = es_upsert(s, &d, NULL);
    if (rc == ES_OK)
      rc = es_search(s, &p, &r);
    es_results_free(r);
    if (rc == ES_OK && round % 5 == 0)
      rc = es_stats_get(s, NULL, &st);
    es_stats_free(st);
    if (rc == ES_OK && round % 7 == 0) {
      rc = es_batch_upsert(s, &d, 1, NULL, &br);
      es_batch_result_free(br);
    }
    if (rc == ES_OK && round == 20) {
      es_delete_result *dr = NULL;
      rc = es_delete_by_source(s, source, NULL, &dr);
      es_delete_result_free(dr);
    }
    if (rc == ES_OK && round == 22) {
      /* Batches of one: the next batch is hashed while one is written. */
      es_doc many[3];
      char ids[3][48];
      for (int k = 0; k < 3; k++) {
        snprintf(ids[k], sizeof ids[k], "t%d-b%d", w->id, k);
        many[k] = (es_doc){.id = ids[k], .text = "b", .embedding = v, .dim = 3,
                           .source_id = source};
      }
      es_batch_options bo;
      es_batch_options_init(&bo);
      bo.batch_size = 1;
      rc = es_batch_upsert(s, many, 3, &bo, &br);
      if (rc == ES_OK && br->inserted != 3) {
        w->failures++;
        snprintf(w->err, sizeof w->err, "batch inserted %zu of 3", br->inserted);
      }
      es_batch_result_free(br);
      br = NULL;
    }
    if (rc != ES_OK) {
      w->failures++;
      snprintf(w->err, sizeof w->err, "%s", es_errmsg(s));
    }
  }
  return NULL;
}

TEST(one_store_handle_serves_many_threads_at_once) {
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.pool_size = 3; /* fewer connections than threads: they take turns */
  es_store *s = NULL;
  ASSERT_OK(s, es_open_opts(&o, &s));
  ASSERT_OK(s, es_init(s, 3, ES_METRIC_L2, NULL));
  enum { N = 6 };
  pthread_t t[N];
  worker w[N];
  for (int i = 0; i < N; i++) {
    w[i] = (worker){.s = s, .id = i};
    ASSERT_INT_EQ(pthread_create(&t[i], NULL, work, &w[i]), 0);
  }
  for (int i = 0; i < N; i++) {
    pthread_join(t[i], NULL);
    if (w[i].failures)
      FAIL("thread %d: %d failures, last: %s", i, w[i].failures, w[i].err);
  }
  PGconn *pg = th_connect(th_conninfo());
  assert_consistent(s, pg);
  /* rounds 21..24, and the three of the batch of round 22 */
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM embeddings"), N * (4 + 3));
  PQfinish(pg);
  es_close(s);
  ASSERT_INT_GE(th_int("SELECT count(*) FROM performance_metrics WHERE "
                       "operation = 'search'"),
                N * 25);
}

/* ---- secrets ----------------------------------------------------------------------- */

TEST(no_password_appears_in_errors_or_metrics) {
  es_cluster *cl = th_own_cluster();
  char ci[1200];
  snprintf(ci, sizeof ci, "%s password=hunter2-very-secret", es_cluster_conninfo(cl));
  es_options o;
  es_options_init(&o);
  o.conninfo = ci;
  o.max_retries = 0;
  es_store *s = NULL;
  ASSERT_OK(s, es_open_opts(&o, &s)); /* trust: the password is not needed */
  ASSERT_OK(s, es_init(s, 2, ES_METRIC_COSINE, NULL));
  ASSERT_INT_EQ(es_cluster_stop(cl), ES_OK);
  float v[2] = {1, 2};
  es_search_params p = {.vector = v, .dim = 2, .k = 1};
  es_results *r = NULL;
  ASSERT_STATUS(s, es_search(s, &p, &r), ES_ECONNECT);
  ASSERT_NOT_CONTAINS(es_errmsg(s), "hunter2");
  ASSERT_STATUS(s, es_search(s, &p, &r), ES_ECONNECT); /* now at connect */
  ASSERT_NOT_CONTAINS(es_errmsg(s), "hunter2");
  ASSERT_CONTAINS(es_errmsg(s), "password='***'");
  ASSERT_INT_EQ(es_cluster_start(cl), ES_OK);
  es_close(s); /* the buffered metrics, failures included, are written */
  PGconn *pg = th_connect(es_cluster_conninfo(cl));
  ASSERT_INT_GE(th_pg_int(pg, "SELECT count(*) FROM performance_metrics WHERE NOT success"), 2);
  ASSERT_INT_EQ(th_pg_int(pg, "SELECT count(*) FROM performance_metrics WHERE "
                          "error_message LIKE '%hunter2%' OR metadata::text "
                          "LIKE '%hunter2%'"),
                0);
  PQfinish(pg);

  /* The command-line tool says nothing of it either. */
  const char *argv[] = {"--db", ci, "--json", "stats", NULL};
  ASSERT_INT_EQ(es_cluster_stop(cl), ES_OK);
  th_proc pr = th_cli(NULL, argv);
  ASSERT_INT_EQ(pr.status, 2);
  ASSERT_NOT_CONTAINS(pr.out, "hunter2");
  ASSERT_NOT_CONTAINS(pr.err, "hunter2");
  th_proc_free(&pr);
  es_cluster_close(cl);
}
