/* bench_ingest.c - ingest throughput, measured in one run on one
 * PostgreSQL and one table layout:
 *
 *   ceiling   raw COPY ... FROM STDIN (FORMAT binary) of the same rows,
 *             no validation, no accounting, encoded by the benchmark's
 *             own encoder (pgcopy.c), not the library's
 *   naive     multi-row INSERT ... ON CONFLICT DO UPDATE, 100 rows per
 *             statement, vectors as text literals, a transaction per batch
 *   library   es_batch_upsert()
 *   cli       embstore ingest FILE (JSON Lines, parsing included)
 *
 * for a first load into an empty store and for a re-ingest where 10% of
 * the documents changed, with the HNSW index absent during the load, and
 * again with it present.  Writes a Markdown report.
 *
 *   bench/ingest [--docs N] [--dim D] [--chunks C] [--out FILE] [--quick]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "corpus.h"
#include "pgcopy.h"
#include "report.h"

typedef struct result {
  const char *layout, *scenario, *method;
  double seconds;
  size_t rows;
  char note[160];
} result;

static result results[64];
static size_t n_results;
static es_cluster *cluster;
static PGconn *admin;
static char root[256], admin_ci[1024];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bench: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (cluster)
    es_cluster_stop(cluster);
  exit(1);
}

static void admin_exec(const char *sql) {
  PGresult *r = PQexec(admin, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    die("%s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
}

/* Databases whose vector index was dropped on purpose, each with a session
 * that says a deferred load is building it: a load mends a missing index
 * that nobody builds, and the btree layout must stay without one. */
#define MAX_KEEPERS 8
static struct keeper {
  char name[64];
  PGconn *pg;
} keepers[MAX_KEEPERS];

/* Ends the keeper session of database name, if any (before DROP DATABASE). */
static void release_keeper(const char *name) {
  for (int i = 0; i < MAX_KEEPERS; i++)
    if (keepers[i].pg && strcmp(keepers[i].name, name) == 0) {
      PQfinish(keepers[i].pg);
      keepers[i].pg = NULL;
    }
}

/* Holds the library's deferred-index lock (its ES__DEFER_LOCK) in
 * database name for as long as the benchmark uses it. */
static void keep_without_index(const char *name, const char *ci) {
  for (int i = 0; i < MAX_KEEPERS; i++)
    if (keepers[i].pg == NULL) {
      snprintf(keepers[i].name, sizeof keepers[i].name, "%s", name);
      keepers[i].pg = PQconnectdb(ci);
      PGresult *r = PQexec(keepers[i].pg, "SELECT pg_advisory_lock_shared(7013640520592)");
      if (PQresultStatus(r) != PGRES_TUPLES_OK)
        die("keeper of %s: %s", name, PQresultErrorMessage(r));
      PQclear(r);
      return;
    }
  die("more than %d databases without a vector index", MAX_KEEPERS);
}

/* A fresh database with an initialised store; with_hnsw false drops the
 * vector index (the layout for comparing the write paths alone). */
static void fresh_db(const char *name, size_t dim, bool with_hnsw, char *ci,
                     size_t cap) {
  char sql[256];
  release_keeper(name);
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
  admin_exec(sql);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
  admin_exec(sql);
  snprintf(ci, cap, "%s dbname=%s", admin_ci, name);
  es_store *s = NULL;
  if (es_open(ci, &s) != ES_OK || es_init(s, (int)dim, ES_METRIC_COSINE, NULL) != ES_OK)
    die("init %s: %s", name, es_errmsg(s));
  es_close(s);
  PGconn *pg = PQconnectdb(ci);
  if (!with_hnsw) {
    PQclear(PQexec(pg, "DROP INDEX embeddings_embedding_hnsw_idx"));
    keep_without_index(name, ci);
  }
  /* Every method starts from the same state: earlier runs' dirty pages
   * written out, by PostgreSQL and by the kernel. */
  PQclear(PQexec(pg, "CHECKPOINT"));
  PQfinish(pg);
  sync();
}

static long long count_rows(const char *ci, const char *sql) {
  PGconn *pg = PQconnectdb(ci);
  PGresult *r = PQexec(pg, sql);
  long long n = PQresultStatus(r) == PGRES_TUPLES_OK ? atoll(PQgetvalue(r, 0, 0)) : -1;
  PQclear(r);
  PQfinish(pg);
  return n;
}

/* Every load must leave exactly the corpus behind. */
static void check_loaded(const char *ci, const corpus *c) {
  long long d = count_rows(ci, "SELECT count(*) FROM embeddings");
  long long k = count_rows(ci, "SELECT count(*) FROM chunks");
  if (d != (long long)c->n_docs || k != (long long)(c->n_docs * c->chunks_per_doc))
    die("%s holds %lld documents and %lld chunks, expected %zu and %zu", ci, d,
        k, c->n_docs, c->n_docs * c->chunks_per_doc);
}

static void record(const char *layout, const char *scenario, const char *method,
                   double secs, size_t rows, const char *note) {
  result *r = &results[n_results++];
  *r = (result){layout, scenario, method, secs, rows, ""};
  snprintf(r->note, sizeof r->note, "%s", note ? note : "");
  printf("%-10s %-22s %-8s %8.2f s %10.0f rows/s %s\n", layout, scenario, method,
         secs, (double)rows / secs, r->note);
  fflush(stdout);
}

/* ---- the ceiling: raw binary COPY ------------------------------------------- */

static double run_ceiling(const char *ci, const corpus *c) {
  PGconn *pg = PQconnectdb(ci);
  pgbuf cp = {0};
  double t0 = now_s();
  PQclear(PQexec(pg, "BEGIN"));
  /* Two streams, each sent as it is encoded, a few MiB at a time. */
  for (int table = 0; table < 2; table++) {
    PGresult *r = PQexec(pg, table == 0
                                 ? "COPY embeddings (id, text, embedding, "
                                   "metadata, source_id) FROM STDIN (FORMAT binary)"
                                 : "COPY chunks (id, document_id, chunk_index, "
                                   "text, embedding, metadata) FROM STDIN "
                                   "(FORMAT binary)");
    if (PQresultStatus(r) != PGRES_COPY_IN)
      die("COPY: %s", PQerrorMessage(pg));
    PQclear(r);
    pgcopy_header(&cp);
    for (size_t i = 0; i < c->n_docs; i++) {
      const es_doc *d = &c->docs[i];
      if (table == 0) {
        pgcopy_row(&cp, 5);
        pgcopy_text(&cp, d->id);
        pgcopy_text(&cp, d->text);
        pgcopy_vector(&cp, d->embedding, d->dim);
        pgcopy_jsonb(&cp, d->metadata_json);
        pgcopy_text(&cp, d->source_id);
      } else {
        for (size_t k = 0; k < d->n_chunks; k++) {
          pgcopy_row(&cp, 6);
          pgcopy_text(&cp, d->chunks[k].id);
          pgcopy_text(&cp, d->id);
          pgcopy_int4(&cp, (int32_t)k);
          pgcopy_text(&cp, d->chunks[k].text);
          pgcopy_vector(&cp, d->chunks[k].embedding, d->chunks[k].dim);
          pgcopy_jsonb(&cp, d->chunks[k].metadata_json);
        }
      }
      if (cp.len > (4u << 20) || i + 1 == c->n_docs) {
        if (i + 1 == c->n_docs)
          pgcopy_trailer(&cp);
        PQputCopyData(pg, cp.data, (int)cp.len);
        cp.len = 0;
      }
    }
    PQputCopyEnd(pg, NULL);
    while ((r = PQgetResult(pg)) != NULL) {
      if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("COPY: %s", PQresultErrorMessage(r));
      PQclear(r);
    }
  }
  PQclear(PQexec(pg, "COMMIT"));
  double secs = now_s() - t0;
  pgbuf_free(&cp);
  PQfinish(pg);
  return secs;
}

/* ---- the naive baseline: multi-row INSERT ... ON CONFLICT ------------------- */

/* Appends a SQL string literal (E'' escaping not needed: standard strings). */
static void lit(pgbuf *b, const char *s) {
  pgbuf_add(b, "'", 1);
  for (const char *p = s; *p; p++) {
    if (*p == '\'')
      pgbuf_add(b, "'", 1);
    pgbuf_add(b, p, 1);
  }
  pgbuf_add(b, "'", 1);
}


static void vec_lit(pgbuf *b, const float *v, size_t dim) {
  char num[32];
  pgbuf_add(b, "'[", 2);
  for (size_t i = 0; i < dim; i++) {
    int n = snprintf(num, sizeof num, "%s%.9g", i ? "," : "", (double)v[i]);
    pgbuf_add(b, num, (size_t)n);
  }
  pgbuf_add(b, "]'", 2);
}

static void exec_or_die(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    die("naive: %s", PQresultErrorMessage(r));
  PQclear(r);
}

static double run_naive(const char *ci, const corpus *c) {
  PGconn *pg = PQconnectdb(ci);
  pgbuf b = {0};
  const size_t per = 100;
  double t0 = now_s();
  for (size_t lo = 0; lo < c->n_docs; lo += per) {
    size_t hi = lo + per < c->n_docs ? lo + per : c->n_docs;
    exec_or_die(pg, "BEGIN");
    b.len = 0;
    pgbuf_str(&b, "INSERT INTO embeddings (id, text, embedding, metadata, "
            "source_id) VALUES ");
    for (size_t i = lo; i < hi; i++) {
      const es_doc *d = &c->docs[i];
      pgbuf_add(&b, i > lo ? ",(" : "(", i > lo ? 2 : 1);
      lit(&b, d->id);
      pgbuf_add(&b, ",", 1);
      lit(&b, d->text);
      pgbuf_add(&b, ",", 1);
      vec_lit(&b, d->embedding, d->dim);
      pgbuf_add(&b, ",", 1);
      lit(&b, d->metadata_json);
      pgbuf_add(&b, ",", 1);
      lit(&b, d->source_id);
      pgbuf_add(&b, ")", 1);
    }
    const char *up = " ON CONFLICT (id) DO UPDATE SET text = EXCLUDED.text, "
                     "embedding = EXCLUDED.embedding, metadata = "
                     "EXCLUDED.metadata, source_id = EXCLUDED.source_id, "
                     "updated_at = now()";
    pgbuf_add(&b, up, strlen(up));
    exec_or_die(pg, b.data);
    /* chunks, 100 rows per statement */
    size_t rows = 0;
    b.len = 0;
    for (size_t i = lo; i < hi; i++) {
      const es_doc *d = &c->docs[i];
      for (size_t k = 0; k < d->n_chunks; k++) {
        if (rows == 0)
          pgbuf_str(&b, "INSERT INTO chunks (id, document_id, chunk_index, "
                  "text, embedding, metadata) VALUES (");
        else
          pgbuf_add(&b, ",(", 2);
        char idx[16];
        lit(&b, d->chunks[k].id);
        pgbuf_add(&b, ",", 1);
        lit(&b, d->id);
        snprintf(idx, sizeof idx, ",%zu,", k);
        pgbuf_add(&b, idx, strlen(idx));
        lit(&b, d->chunks[k].text);
        pgbuf_add(&b, ",", 1);
        vec_lit(&b, d->chunks[k].embedding, d->chunks[k].dim);
        pgbuf_add(&b, ",'{}')", 6);
        if (++rows == per || (i + 1 == hi && k + 1 == d->n_chunks)) {
          const char *cu = " ON CONFLICT (id) DO UPDATE SET document_id = "
                           "EXCLUDED.document_id, chunk_index = "
                           "EXCLUDED.chunk_index, text = EXCLUDED.text, "
                           "embedding = EXCLUDED.embedding, metadata = "
                           "EXCLUDED.metadata";
          pgbuf_add(&b, cu, strlen(cu));
          exec_or_die(pg, b.data);
          rows = 0;
          b.len = 0;
        }
      }
    }
    exec_or_die(pg, "COMMIT");
  }
  double secs = now_s() - t0;
  pgbuf_free(&b);
  PQfinish(pg);
  return secs;
}

/* ---- embstore ------------------------------------------------------------- */

static double cpu_self(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double last_cpu; /* client CPU seconds of the last library run */

static double run_library(const char *ci, const corpus *c, es_defer_index defer,
                          es_batch_result **out) {
  es_store *s = NULL;
  if (es_open(ci, &s) != ES_OK)
    die("open: %s", es_errmsg(s));
  es_batch_options o;
  es_batch_options_init(&o);
  o.defer_index = defer;
  double t0 = now_s(), cpu0 = cpu_self();
  es_status rc = es_batch_upsert(s, c->docs, c->n_docs, &o, out);
  double secs = now_s() - t0;
  last_cpu = cpu_self() - cpu0;
  if (rc != ES_OK)
    die("es_batch_upsert: %s", es_errmsg(s));
  es_close(s);
  return secs;
}

static double run_cli(const char *bin, const char *ci, const char *jsonl) {
  double t0 = now_s();
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    dup2(fd, 1);
    execl(bin, bin, "--db", ci, "ingest", jsonl, (char *)NULL);
    _exit(127);
  }
  int st;
  waitpid(pid, &st, 0);
  double secs = now_s() - t0;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    die("embstore ingest %s exited with %d", jsonl, WEXITSTATUS(st));
  return secs;
}

/* Median of v[0..n); range receives "median of n (min–max s)". */
static double median(double *v, int n, char *range, size_t cap) {
  double sorted[9];
  memcpy(sorted, v, (size_t)n * sizeof *v);
  for (int i = 1; i < n; i++)
    for (int k = i; k > 0 && sorted[k - 1] > sorted[k]; k--) {
      double t = sorted[k];
      sorted[k] = sorted[k - 1];
      sorted[k - 1] = t;
    }
  if (range && cap) {
    if (n > 1)
      snprintf(range, cap, "median of %d runs (%.2f–%.2f s)", n, sorted[0],
               sorted[n - 1]);
    else
      range[0] = '\0';
  }
  return sorted[n / 2];
}

static void write_jsonl(const corpus *c, const char *path) {
  FILE *f = fopen(path, "w");
  if (f == NULL || corpus_write_jsonl(c, f) != 0 || fclose(f) != 0)
    die("cannot write %s", path);
}

/* ---- the report ------------------------------------------------------------- */

static const result *find(const char *layout, const char *scenario,
                          const char *method) {
  for (size_t i = 0; i < n_results; i++)
    if (!strcmp(results[i].layout, layout) && !strcmp(results[i].scenario, scenario) &&
        !strcmp(results[i].method, method))
      return &results[i];
  return NULL;
}

static void write_report(const char *path, const char *cmd, const corpus *c,
                         const char *versions) {
  report rep;
  if (report_open(&rep) != 0)
    die("out of memory");
  FILE *f = rep.f;
  fprintf(f, "## Ingest\n\n"
             "Produced by `%s` on %s (%ld cores; %s).\n"
             "Corpus: %zu documents of %zu dimensions with %zu chunks each "
             "(every chunk with a vector), %zu sources, %zu workspaces: %zu rows "
             "a load.  All figures come from this one run on one machine; "
             "compare ratios, not absolute numbers (these machines are shared).\n\n",
          cmd, rep.when, sysconf(_SC_NPROCESSORS_ONLN), versions, c->n_docs, c->dim,
          c->chunks_per_doc, c->n_sources, c->n_workspaces, corpus_rows(c));
  fprintf(f, "| index during load | scenario | method | seconds | rows/s | "
             "vs ceiling | vs naive | note |\n|---|---|---|---:|---:|---:|---:|---|\n");
  for (size_t i = 0; i < n_results; i++) {
    const result *r = &results[i];
    const result *ceil = find(r->layout, "first load", "ceiling");
    const result *naive = find(r->layout, r->scenario, "naive");
    char vc[32] = "", vn[32] = "";
    if (ceil)
      snprintf(vc, sizeof vc, "%.2f×", ceil->seconds / r->seconds);
    if (naive)
      snprintf(vn, sizeof vn, "%.2f×", naive->seconds / r->seconds);
    fprintf(f, "| %s | %s | %s | %.2f | %.0f | %s | %s | %s |\n", r->layout,
            r->scenario, r->method, r->seconds, (double)r->rows / r->seconds, vc,
            vn, r->note);
  }
  fprintf(f, "\n*vs ceiling* is the ceiling's first-load time divided by this "
             "row's time (for a re-ingest: how it compares with rewriting "
             "everything at COPY speed); *vs naive* compares with the naive "
             "baseline in the same scenario.  Rows are documents plus chunks.  "
             "The ceiling's COPY stream is encoded by the benchmark's own "
             "encoder (bench/pgcopy.c), not by the library's.\n");
  if (report_close(&rep, path, "Ingest") != 0)
    die("cannot write %s: %s", path, strerror(errno));
}

int main(int argc, char **argv) {
  size_t docs = 100000, dim = 384, chunks = 4;
  int n_rounds = 3;
  const char *out = "BENCHMARKS.md", *bin = NULL, *only_layout = "both";
  char cmd[512] = "bench/run ingest";
  for (int i = 1; i < argc; i++) {
    size_t len = strlen(cmd);
    snprintf(cmd + len, sizeof cmd - len, " %s", argv[i]);
    if (!strcmp(argv[i], "--docs") && i + 1 < argc)
      docs = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--dim") && i + 1 < argc)
      dim = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--chunks") && i + 1 < argc)
      chunks = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else if (!strcmp(argv[i], "--cli") && i + 1 < argc)
      bin = argv[++i];
    else if (!strcmp(argv[i], "--layout") && i + 1 < argc)
      only_layout = argv[++i];
    else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
      n_rounds = atoi(argv[++i]) < 1 ? 1 : atoi(argv[i]) > 9 ? 9 : atoi(argv[i]);
    else
      die("usage: bench/ingest [--docs N] [--dim D] [--chunks C] [--out FILE] "
          "[--cli PATH] [--layout btree|hnsw|both] [--rounds N]");
    if (i < argc && argv[i][0] != '-' && strcmp(argv[i - 1], "--cli") != 0) {
      len = strlen(cmd);
      snprintf(cmd + len, sizeof cmd - len, " %s", argv[i]);
    }
  }
  if (bin == NULL)
    bin = EMBSTORE_BIN;

  snprintf(root, sizeof root, "/tmp/es-bench-XXXXXX");
  if (mkdtemp(root) == NULL)
    die("mkdtemp: %s", strerror(errno));
  chmod(root, 0711);
  char home[300];
  snprintf(home, sizeof home, "%s/pg", root);
  /* The same server settings for every method: room for the data set in
   * memory, few checkpoints during a load. */
  setenv("EMBSTORE_PG_OPTIONS",
         "-c shared_buffers=2GB -c max_wal_size=8GB -c maintenance_work_mem=2GB "
         "-c checkpoint_timeout=30min",
         0);
  if (es_cluster_open(home, &cluster) != ES_OK || es_cluster_start(cluster) != ES_OK)
    die("cluster: %s", es_cluster_errmsg(cluster));
  snprintf(admin_ci, sizeof admin_ci, "%s", es_cluster_conninfo(cluster));
  char *dbpos = strstr(admin_ci, " dbname=");
  if (dbpos)
    *dbpos = '\0';
  char ci0[1100];
  snprintf(ci0, sizeof ci0, "%s dbname=embstore", admin_ci);
  admin = PQconnectdb(ci0);
  if (PQstatus(admin) != CONNECTION_OK)
    die("connect: %s", PQerrorMessage(admin));
  PQclear(PQexec(admin, "SET client_min_messages = warning"));
  char versions[200];
  PGresult *vr = PQexec(admin, "SELECT current_setting('server_version'), "
                               "(SELECT default_version FROM pg_available_extensions "
                               "WHERE name = 'vector')");
  snprintf(versions, sizeof versions, "PostgreSQL %s, pgvector %s",
           PQgetvalue(vr, 0, 0), PQgetvalue(vr, 0, 1));
  PQclear(vr);

  printf("generating %zu documents x %zu dims x %zu chunks...\n", docs, dim, chunks);
  corpus c;
  if (corpus_make(&c, docs, dim, chunks, 8, 4) != 0)
    die("out of memory generating the corpus");
  char first_jsonl[400], again_jsonl[400];
  snprintf(first_jsonl, sizeof first_jsonl, "%s/first.jsonl", root);
  snprintf(again_jsonl, sizeof again_jsonl, "%s/again.jsonl", root);
  write_jsonl(&c, first_jsonl);

  const size_t rows = corpus_rows(&c);
  char ci[1200];
  for (int layout = 0; layout < 2; layout++) {
    bool hnsw = layout == 1;
    if ((hnsw && !strcmp(only_layout, "btree")) || (!hnsw && !strcmp(only_layout, "hnsw")))
      continue;
    const char *lname = hnsw ? "HNSW" : "btree only";
    char db_ceiling[32], db_naive[32], db_lib[32], db_cli[32];
    snprintf(db_ceiling, sizeof db_ceiling, "b%d_ceiling", layout);
    snprintf(db_naive, sizeof db_naive, "b%d_naive", layout);
    snprintf(db_lib, sizeof db_lib, "b%d_lib", layout);
    snprintf(db_cli, sizeof db_cli, "b%d_cli", layout);

    /* The fast methods several times, in rotating order, each from a
     * fresh database; the median is reported with the range.  The naive
     * baseline, several times slower, runs once. */
    double t_ceil[9], t_lib[9], t_cli[9], cpu_lib[9];
    int rounds = hnsw ? 1 : n_rounds;
    es_batch_result *r = NULL;
    double secs;
    char note[160] = "";
    for (int round = 0; round < rounds; round++) {
      for (int k = 0; k < 3; k++) {
        int which = (k + round) % 3;
        bool last = round == rounds - 1;
        if (which == 0) {
          fresh_db(db_ceiling, dim, hnsw, ci, sizeof ci);
          t_ceil[round] = run_ceiling(ci, &c);
          check_loaded(ci, &c);
        } else if (which == 1) {
          fresh_db(db_lib, dim, hnsw, ci, sizeof ci);
          t_lib[round] = run_library(ci, &c, ES_DEFER_AUTO, &r);
          cpu_lib[round] = last_cpu;
          if (r->inserted != c.n_docs)
            die("library load inserted %zu", r->inserted);
          es_batch_result_free(r);
          check_loaded(ci, &c);
        } else {
          fresh_db(db_cli, dim, hnsw, ci, sizeof ci);
          t_cli[round] = run_cli(bin, ci, first_jsonl);
          check_loaded(ci, &c);
        }
        (void)last;
      }
      printf("  round %d: ceiling %.2f s, library %.2f s, cli %.2f s\n", round + 1,
             t_ceil[round], t_lib[round], t_cli[round]);
    }
    char range[3][96];
    double *ts[3] = {t_ceil, t_lib, t_cli};
    double med[3];
    for (int m = 0; m < 3; m++)
      med[m] = median(ts[m], rounds, range[m], sizeof range[m]);
    record(lname, "first load", "ceiling", med[0], rows,
           hnsw ? "HNSW maintained row by row" : range[0]);
    size_t nl = (size_t)snprintf(note, sizeof note, "%s%sclient CPU %.2f s",
                                 range[1], rounds > 1 ? "; " : "",
                                 median(cpu_lib, rounds, NULL, 0));
    if (hnsw && c.n_docs >= 10000)
      snprintf(note + nl, sizeof note - nl, "; index deferred: dropped, "
               "loaded, rebuilt (time included)");
    record(lname, "first load", "library", med[1], rows, note);
    snprintf(note, sizeof note, "%s%sJSON parsing included%s", range[2],
             rounds > 1 ? "; " : "",
             hnsw && c.n_docs >= 10000 ? "; index deferred (auto)" : "");
    record(lname, "first load", "cli", med[2], rows, note);

    fresh_db(db_naive, dim, hnsw, ci, sizeof ci);
    record(lname, "first load", "naive", run_naive(ci, &c), rows, "one run");
    check_loaded(ci, &c);

    /* Re-ingest with 10% changed, on top of each first load. */
    corpus_change(&c);
    write_jsonl(&c, again_jsonl);
    snprintf(ci, sizeof ci, "%s dbname=%s", admin_ci, db_naive);
    record(lname, "re-ingest, 10% changed", "naive", run_naive(ci, &c), rows,
           "rewrites everything");
    snprintf(ci, sizeof ci, "%s dbname=%s", admin_ci, db_lib);
    secs = run_library(ci, &c, ES_DEFER_AUTO, &r);
    snprintf(note, sizeof note, "%zu updated, %zu unchanged; client CPU %.2f s",
             r->updated, r->unchanged, last_cpu);
    if (r->updated != (c.n_docs + 9) / 10)
      die("re-ingest updated %zu", r->updated);
    es_batch_result_free(r);
    record(lname, "re-ingest, 10% changed", "library", secs, rows, note);
    snprintf(ci, sizeof ci, "%s dbname=%s", admin_ci, db_cli);
    record(lname, "re-ingest, 10% changed", "cli", run_cli(bin, ci, again_jsonl),
           rows, "JSON parsing included");
    corpus_free(&c);
    if (corpus_make(&c, docs, dim, chunks, 8, 4) != 0) /* back to the original */
      die("out of memory");
    const char *dbs[] = {db_ceiling, db_naive, db_lib, db_cli};
    for (int k = 0; k < 4; k++) { /* free the disk for the next layout */
      char sql[96];
      release_keeper(dbs[k]);
      snprintf(sql, sizeof sql, "DROP DATABASE %s", dbs[k]);
      admin_exec(sql);
    }
  }
  write_report(out, cmd, &c, versions);
  printf("wrote %s\n", out);
  corpus_free(&c);
  PQfinish(admin);
  es_cluster_stop(cluster);
  es_cluster_close(cluster);
  char rm[300];
  snprintf(rm, sizeof rm, "rm -rf %s", root);
  if (system(rm) != 0)
    fprintf(stderr, "bench: could not remove %s\n", root);
  return 0;
}
