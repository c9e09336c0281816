/* test_index_build.c - the HNSW index build: its memory and workers sized
 * from the data and applied to the build session (what the server did is
 * observed: pgvector's notice when the graph did not fit, the workers it
 * says it launched), its phases and progress, and the tool's report. */
#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/internal.h"
#include "../src/schema.h"
#include <jansson.h>

#include "test.h"

/* ---- the plan (pure) ------------------------------------------------------- */

TEST(index_build_plan_sizes_memory_from_the_vectors_within_the_cap) {
  es__build_facts local = {.machine_mb = 24576, .cpus = 2, .server_mwm_mb = 64,
                           .max_worker_processes = 8, .max_parallel_workers = 8,
                           .server_workers = 2};
  int mb, w;
  /* 100,000 x 384: ceil(1e5 * (4 * 384 + 780) * 1.1 / 2^20) + 8 MiB, one
   * worker beside the leader on two processors. */
  es__build_plan(100000, 384, 0, &local, &mb, &w);
  ASSERT_INT_EQ(mb, (int)ceil(1e5 * (4 * 384 + 780) * 1.1 / 1048576.0) + 8);
  ASSERT_INT_EQ(mb, 251);
  ASSERT_INT_EQ(w, 1);
  /* A million: capped at 1 GiB, below a quarter of 24 GiB. */
  es__build_plan(1000000, 384, 0, &local, &mb, &w);
  ASSERT_INT_EQ(mb, 1024);
  /* A 2 GiB machine caps at a quarter of it. */
  es__build_facts small = local;
  small.machine_mb = 2048;
  es__build_plan(1000000, 384, 0, &small, &mb, &w);
  ASSERT_INT_EQ(mb, 512);
  /* The server's own larger setting is the cap, and the floor. */
  es__build_facts big = local;
  big.server_mwm_mb = 4096;
  es__build_plan(1000000, 384, 0, &big, &mb, &w);
  ASSERT_INT_EQ(mb, 4096);
  es__build_plan(10, 384, 0, &big, &mb, &w);
  ASSERT_INT_EQ(mb, 4096);
  /* A tiny table still gets 32 MiB per process when parallel. */
  es__build_plan(10, 8, 0, &local, &mb, &w);
  ASSERT_INT_EQ(mb, 64);
  ASSERT_INT_EQ(w, 1);
  /* Override: used as it is; workers lowered until each has 32 MiB. */
  es__build_plan(1000000, 384, 40, &local, &mb, &w);
  ASSERT_INT_EQ(mb, 40);
  ASSERT_INT_EQ(w, 0);
  es__build_facts many = local;
  many.cpus = 16;
  es__build_plan(1000000, 384, 100, &many, &mb, &w);
  ASSERT_INT_EQ(mb, 100);
  ASSERT_INT_EQ(w, 2); /* 100 / 3 >= 32, 100 / 4 < 32 */
  es__build_plan(1000000, 384, 0, &many, &mb, &w);
  ASSERT_INT_EQ(w, 8); /* bounded by the server's worker settings */
  /* A server over TCP: memory and processors unknown; 1 GiB and its own
   * worker setting. */
  es__build_facts remote = local;
  remote.machine_mb = 0;
  remote.cpus = 0;
  remote.server_workers = 3;
  es__build_plan(1000000, 384, 0, &remote, &mb, &w);
  ASSERT_INT_EQ(mb, 1024);
  ASSERT_INT_EQ(w, 3);
  remote.max_worker_processes = 1;
  es__build_plan(1000000, 384, 0, &remote, &mb, &w);
  ASSERT_INT_EQ(w, 1);
}

/* ---- the build, on a real server --------------------------------------------- */

#define IB_DIM 32

/* n documents "<prefix><i>" of IB_DIM dimensions; vectors in *v. */
static es_doc *ib_docs(const char *prefix, size_t n, float **v, char ***ids) {
  es_doc *d = calloc(n, sizeof *d);
  *v = calloc(n * IB_DIM, sizeof **v);
  *ids = calloc(n, sizeof **ids);
  ASSERT(d && *v && *ids);
  for (size_t i = 0; i < n; i++) {
    ASSERT(asprintf(&(*ids)[i], "%s%zu", prefix, i) > 0);
    for (int k = 0; k < IB_DIM; k++)
      (*v)[i * IB_DIM + k] = (float)sin((double)(i * IB_DIM + k + 1));
    d[i] = (es_doc){.id = (*ids)[i], .text = "t", .embedding = *v + i * IB_DIM,
                    .dim = IB_DIM};
  }
  return d;
}

static void ib_free(es_doc *d, float *v, char **ids, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(ids[i]);
  free(ids);
  free(v);
  free(d);
}

/* This test's database gets settings for every new session. */
static void alter_database(const char *settings) {
  char *db = th_text("SELECT current_database()");
  char sql[512];
  snprintf(sql, sizeof sql, "ALTER DATABASE \"%s\" %s", db, settings);
  th_exec(sql);
  free(db);
}

/* A store whose index builds get index_memory_mb (0: sized). */
static es_store *open_with_memory(int index_memory_mb) {
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.index_memory_mb = index_memory_mb;
  es_store *s = NULL;
  ASSERT_INT_EQ(es_open_opts(&o, &s), ES_OK);
  return s;
}

#define IB_N 4000

TEST(a_deferred_load_builds_its_index_with_the_memory_and_workers_it_reports) {
  /* Sessions of this database start with 1 MB and no parallel workers,
   * and any table is worth a worker: what the build gets is what
   * embstore sets. */
  alter_database("SET maintenance_work_mem = '1MB'");
  alter_database("SET max_parallel_maintenance_workers = 0");
  alter_database("SET min_parallel_table_scan_size = 0");
  float *v;
  char **ids;
  es_doc *d = ib_docs("b", IB_N, &v, &ids);
  es_store *s = open_with_memory(0);
  es_init_report *ir = NULL;
  ASSERT_OK(s, es_init(s, IB_DIM, ES_METRIC_COSINE, &ir));
  ASSERT_INT_EQ(ir->index.built, 1); /* the empty store's index */
  ASSERT_INT_EQ(ir->index.vectors, 0);
  es_init_report_free(ir);

  long long text_idx = th_int("SELECT 'embeddings_text_idx'::regclass::oid::int8");
  es_batch_options o;
  es_batch_options_init(&o);
  o.defer_index = ES_DEFER_ALWAYS;
  es_batch_result *r = NULL;
  ASSERT_OK(s, es_batch_upsert(s, d, IB_N, &o, &r));
  ASSERT_INT_EQ(r->inserted, IB_N);
  /* The text search index was deferred too: dropped, then built again. */
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_index WHERE indexrelid = "
                       "'embeddings_text_idx'::regclass AND indisvalid"), 1);
  ASSERT(th_int("SELECT 'embeddings_text_idx'::regclass::oid::int8") != text_idx);
  const es_index_build *x = &r->index;
  ASSERT_INT_EQ(x->built, 1);
  ASSERT_INT_EQ(x->vectors, IB_N); /* counted: the table had no statistics */
  /* 4,000 x 32 dimensions need 4 + 8 MiB; a parallel build 32 per process. */
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int want_workers = cpus > 8 ? 8 : (int)cpus - 1;
  ASSERT_INT_EQ(x->workers, want_workers);
  ASSERT_INT_EQ(x->memory_mb, want_workers > 0 ? 32 * (want_workers + 1) : 12);
  /* The server did as told: the graph fit (in the database's 1 MB it
   * does not, see below), and pgvector launched the workers. */
  ASSERT_INT_EQ(x->graph_fit, 1);
  ASSERT_STR_EQ(x->notice, "");
  ASSERT_INT_EQ(x->workers_launched, want_workers);
  ASSERT_STR_EQ(x->note, "");
  ASSERT(x->seconds > 0);
  es_batch_result_free(r);
  /* The settings were the build's only: the session is back to the
   * database's own. */
  es_close(s);

  /* Told 1 MB, the graph does not fit, and the report says so. */
  th_exec("TRUNCATE chunks, embeddings");
  s = open_with_memory(1);
  ASSERT_OK(s, es_batch_upsert(s, d, IB_N, &o, &r));
  x = &r->index;
  ASSERT_INT_EQ(x->built, 1);
  ASSERT_INT_EQ(x->memory_mb, 1);
  ASSERT_INT_EQ(x->workers, 0); /* 1 MB leaves no worker its 32 */
  ASSERT_INT_EQ(x->graph_fit, 0);
  ASSERT_CONTAINS(x->notice, "hnsw graph no longer fits into maintenance_work_mem");
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_index i JOIN pg_class c ON "
                       "c.oid = i.indexrelid WHERE c.relname = "
                       "'embeddings_embedding_hnsw_idx' AND i.indisvalid"),
                1);
  es_batch_result_free(r);
  es_close(s);
  ib_free(d, v, ids, IB_N);
}

TEST(index_memory_outside_its_bounds_is_refused_at_open) {
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.index_memory_mb = -1;
  es_store *s = NULL;
  ASSERT_INT_EQ(es_open_opts(&o, &s), ES_EINVAL);
  ASSERT_CONTAINS(es_errmsg(s), "index_memory_mb must be 1..2097151");
  es_close(s);
}

/* What a phase callback saw. */
typedef struct seen {
  pthread_mutex_t mu;
  pthread_cond_t cv; /* signalled at every indexing tick */
  es_phase phase[4096];
  double fraction[4096];
  int memory_mb[4096];
  int n, indexing_ticks;
} seen;

static void record(const es_phase_info *p, void *user) {
  seen *w = user;
  pthread_mutex_lock(&w->mu);
  if (w->n < 4096) {
    w->phase[w->n] = p->phase;
    w->fraction[w->n] = p->fraction;
    w->memory_mb[w->n] = p->index ? p->index->memory_mb : -1;
    w->n++;
  }
  if (p->phase == ES_PHASE_INDEXING && p->fraction < 1) {
    w->indexing_ticks++;
    pthread_cond_broadcast(&w->cv);
  }
  pthread_mutex_unlock(&w->mu);
}

typedef struct ender {
  es_batch *b;
  es_batch_result *r;
  es_status rc;
} ender;

static void *end_session(void *arg) {
  ender *e = arg;
  e->rc = es_batch_end(e->b, &e->r);
  return NULL;
}

TEST(a_large_load_tells_its_phases_in_order_and_the_build_progress_while_it_runs) {
  float *v;
  char **ids;
  es_doc *d = ib_docs("p", 3000, &v, &ids);
  es_store *s = th_open_init(IB_DIM, ES_METRIC_COSINE);
  seen w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  es_batch_options o;
  es_batch_options_init(&o);
  o.defer_index = ES_DEFER_ALWAYS;
  o.batch_size = 500;
  o.total = 3000;
  o.phase = record;
  o.user = &w;
  es_batch *b = NULL;
  ASSERT_OK(s, es_batch_begin(s, &o, &b));
  ASSERT_OK(s, es_batch_add(b, d, 3000, NULL));

  /* A writer holds the table, so the build waits for its lock: while it
   * waits, the progress is still read and told, about twice a second. */
  PGconn *holder = th_connect(th_conninfo());
  th_pg_exec(holder, "BEGIN; LOCK TABLE embeddings IN ROW EXCLUSIVE MODE");
  ender e = {b, NULL, ES_OK};
  pthread_t t;
  ASSERT_INT_EQ(pthread_create(&t, NULL, end_session, &e), 0);
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 30;
  pthread_mutex_lock(&w.mu);
  /* The start of the build counts as one (fraction 0), then three polls. */
  while (w.indexing_ticks < 4 &&
         pthread_cond_timedwait(&w.cv, &w.mu, &deadline) == 0)
    ;
  int ticks = w.indexing_ticks;
  pthread_mutex_unlock(&w.mu);
  th_pg_exec(holder, "COMMIT");
  PQfinish(holder);
  pthread_join(t, NULL);
  ASSERT_INT_EQ(ticks >= 4, 1);
  ASSERT_OK(s, e.rc);
  ASSERT_INT_EQ(e.r->index.built, 1);

  /* Loading (batch by batch, to 1), then indexing from 0 to 1 with the
   * build's settings, then analysing from 0 to 1. */
  int i = 0, loads = 0;
  for (; i < w.n && w.phase[i] == ES_PHASE_LOADING; i++, loads++)
    if (i > 0)
      ASSERT(w.fraction[i] >= w.fraction[i - 1]);
  ASSERT_INT_EQ(loads, 6);
  ASSERT_DBL_EQ(w.fraction[i - 1], 1.0, 0);
  ASSERT_INT_EQ(w.phase[i], ES_PHASE_INDEXING);
  ASSERT_DBL_EQ(w.fraction[i], 0.0, 0);
  int first = i;
  for (; i < w.n && w.phase[i] == ES_PHASE_INDEXING; i++) {
    ASSERT_INT_EQ(w.memory_mb[i], e.r->index.memory_mb);
    if (i > first)
      ASSERT(w.fraction[i] >= w.fraction[i - 1]);
  }
  ASSERT(i - first >= 5); /* start, three ticks at least, end */
  ASSERT_DBL_EQ(w.fraction[i - 1], 1.0, 0);
  ASSERT_INT_EQ(w.n - i, 2);
  ASSERT_INT_EQ(w.phase[i], ES_PHASE_ANALYSING);
  ASSERT_DBL_EQ(w.fraction[i], 0.0, 0);
  ASSERT_INT_EQ(w.phase[i + 1], ES_PHASE_ANALYSING);
  ASSERT_DBL_EQ(w.fraction[i + 1], 1.0, 0);
  es_batch_result_free(e.r);
  es_close(s);
  ib_free(d, v, ids, 3000);
}

/* ---- the tool ---------------------------------------------------------------- */

/* A JSONL file of n documents of dim dimensions in the test's directory. */
static char *jsonl_file(size_t n, int dim) {
  char *path;
  ASSERT(asprintf(&path, "%s/docs.jsonl", th_tmpdir()) > 0);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  for (size_t i = 0; i < n; i++) {
    fprintf(f, "{\"id\":\"c%zu\",\"text\":\"t\",\"embedding\":[", i);
    for (int k = 0; k < dim; k++)
      fprintf(f, "%s%.6f", k ? "," : "", sin((double)(i * (size_t)dim + (size_t)k + 1)));
    fputs("]}\n", f);
  }
  ASSERT_INT_EQ(fclose(f), 0);
  return path;
}

/* `embstore init --dim 32` on the test's database. */
static void init_store_with_the_tool(void) {
  const char *init[] = {"--db", th_conninfo(), "init", "--dim", "32", NULL};
  th_proc p = th_cli(NULL, init);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
}

TEST(cli_ingest_reports_the_index_build_and_says_when_the_graph_did_not_fit) {
  char *path = jsonl_file(3000, IB_DIM);
  init_store_with_the_tool();
  const char *ingest[] = {"--db", th_conninfo(), "ingest", path, "--defer-index",
                          "always", "--index-memory", "1", "--json", NULL};
  th_proc p = th_cli(NULL, ingest);
  ASSERT_INT_EQ(p.status, 0);
  json_error_t jerr;
  json_t *j = json_loads(p.out, 0, &jerr);
  ASSERT(j != NULL);
  json_t *x = json_object_get(j, "index");
  ASSERT(json_is_object(x));
  ASSERT(json_is_true(json_object_get(x, "built")));
  ASSERT_INT_EQ(json_integer_value(json_object_get(x, "memory_mb")), 1);
  ASSERT_INT_EQ(json_integer_value(json_object_get(x, "vectors")), 3000);
  ASSERT(json_is_false(json_object_get(x, "graph_fit")));
  ASSERT_CONTAINS(json_string_value(json_object_get(x, "notice")),
                  "no longer fits into maintenance_work_mem");
  ASSERT_CONTAINS(p.err, "note: the HNSW graph did not fit in the build's 1 MB");
  ASSERT_CONTAINS(p.err, "--index-memory");
  json_decref(j);
  th_proc_free(&p);

  const char *bad[] = {"--db", th_conninfo(), "ingest", path, "--index-memory",
                       "0", NULL};
  p = th_cli(NULL, bad);
  ASSERT_INT_EQ(p.status, 1); /* a usage error */
  ASSERT_CONTAINS(p.err, "--index-memory must be 1..2097151");
  th_proc_free(&p);
  free(path);
}

/* Runs the tool with argv on a terminal (a pseudo-terminal for both its
 * output streams); returns all it wrote there. */
static char *run_on_a_terminal(const char *const *argv, int *status) {
  int master;
  pid_t pid = forkpty(&master, NULL, NULL, NULL);
  ASSERT(pid >= 0);
  if (pid == 0) {
    const char *args[32] = {th_cli_path()};
    for (int i = 0; argv[i] && i < 30; i++)
      args[i + 1] = argv[i];
    unsetenv("EMBSTORE_DB");
    execv(th_cli_path(), (char *const *)args);
    _exit(127);
  }
  size_t cap = 1 << 16, len = 0;
  char *out = malloc(cap);
  ASSERT(out != NULL);
  for (;;) {
    if (len + 4096 > cap)
      ASSERT((out = realloc(out, cap *= 2)) != NULL);
    ssize_t n = read(master, out + len, cap - len - 1);
    if (n <= 0)
      break; /* EIO once the tool has exited and closed the terminal */
    len += (size_t)n;
  }
  out[len] = '\0';
  close(master);
  ASSERT_INT_EQ(waitpid(pid, status, 0), pid);
  return out;
}

TEST(cli_progress_line_on_a_terminal_names_loading_building_index_and_analysing) {
  char *path = jsonl_file(2000, IB_DIM);
  init_store_with_the_tool();
  const char *ingest[] = {"--db", th_conninfo(), "ingest", path,
                          "--defer-index", "always", NULL};
  int status;
  char *out = run_on_a_terminal(ingest, &status);
  ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_CONTAINS(out, "loading: ");
  ASSERT_CONTAINS(out, "building index 0%");
  ASSERT_CONTAINS(out, "building index 100%");
  ASSERT_CONTAINS(out, "analysing");
  ASSERT_CONTAINS(out, "2000 inserted");
  /* In that order. */
  ASSERT(strstr(out, "loading:") < strstr(out, "building index"));
  ASSERT(strstr(out, "building index 100%") < strstr(out, "analysing"));
  free(out);
  free(path);
}
