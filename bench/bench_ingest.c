/* bench_ingest.c - ingest throughput, measured in one run on one
 * PostgreSQL and one table layout:
 *
 *   ceiling      raw COPY ... FROM STDIN (FORMAT binary) of the same rows,
 *                no validation, no accounting, encoded by the benchmark's
 *                own encoder (pgcopy.c), not the library's; with the HNSW
 *                layout the same COPY into the table without its HNSW
 *                index, then CREATE INDEX with the best of a few settings
 *                (maintenance_work_mem, max_parallel_maintenance_workers:
 *                --index-settings), each measured from a fresh database
 *   row by row   (HNSW layout) the same COPY with the index maintained
 *                row by row, as a load that does not defer it would
 *   naive        multi-row INSERT ... ON CONFLICT DO UPDATE, 100 rows per
 *                statement, vectors as text literals, a transaction per batch
 *   library      es_batch_upsert()
 *   cli          embstore --db CONNINFO ingest FILE (JSON Lines, parsing
 *                included, the whole process)
 *
 * for a first load into an empty store and for a re-ingest where 10% of
 * the documents changed, with the HNSW index absent during the load, and
 * again with it present; on two servers, each its own section of the
 * report: a second private cluster as initdb leaves it (plainpg.c: a
 * user's `--db` to an untuned server) and the embedded cluster as embstore
 * configures it (es_cluster; EMBSTORE_PG_OPTIONS only if the caller set
 * it).  Writes Markdown.
 *
 *   bench/run ingest [--docs N] [--dim D] [--chunks C] [--out FILE]
 *                    [--server default|embedded|both] [--layout btree|hnsw|both]
 *                    [--rounds N] [--index-settings MEM:WORKERS,...]
 *                    [--no-naive] [--no-row-by-row] [--no-text-search]
 *                    [--log-ms N] [--keep]
 *
 * --no-text-search: every store made without its text search index
 * (`init --no-text-search`), its sections so titled: what keeping text
 * search costs a load is the difference with a run without it.
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
#include "plainpg.h"
#include "report.h"
#include "util.h"

typedef struct result {
  const char *layout, *scenario, *method;
  double seconds;
  size_t rows;
  char note[256];
} result;

/* One setting of the ceiling's CREATE INDEX. */
typedef struct index_setting {
  char mem[16]; /* maintenance_work_mem, as PostgreSQL reads it: "1GB" */
  int workers;  /* max_parallel_maintenance_workers */
} index_setting;

#define MAX_SETTINGS 8

static result results[64];
static size_t n_results;
static es_cluster *cluster; /* the embedded server, while it runs */
static plainpg plain;       /* the default-settings server, while it runs */
static PGconn *admin;
static char root[256], admin_ci[1024];

/* What giving up stops first. */
static void stop_all(void) {
  if (cluster)
    es_cluster_stop(cluster);
  plainpg_stop(&plain);
}

static void admin_exec(const char *sql) {
  PGresult *r = PQexec(admin, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    bench_die("%s: %s", sql, PQresultErrorMessage(r));
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
        bench_die("keeper of %s: %s", name, PQresultErrorMessage(r));
      PQclear(r);
      return;
    }
  bench_die("more than %d databases without a vector index", MAX_KEEPERS);
}

/* A fresh database with an initialised store; with_hnsw false drops the
 * vector index (the layout for comparing the write paths alone). */
/* --no-text-search: stores without the text search index. */
static bool no_text_search;

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
  es_init_options io;
  es_init_options_init(&io);
  io.dim = (int)dim;
  io.no_text_search = no_text_search;
  if (es_open(ci, &s) != ES_OK || es_init_with(s, &io, NULL) != ES_OK)
    bench_die("init %s: %s", name, es_errmsg(s));
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

/* Every load must leave exactly the corpus behind, and a load into the
 * HNSW layout its index. */
static void check_loaded(const char *ci, const corpus *c, bool hnsw) {
  long long d = count_rows(ci, "SELECT count(*) FROM embeddings");
  long long k = count_rows(ci, "SELECT count(*) FROM chunks");
  if (d != (long long)c->n_docs || k != (long long)(c->n_docs * c->chunks_per_doc))
    bench_die("%s holds %lld documents and %lld chunks, expected %zu and %zu", ci, d,
        k, c->n_docs, c->n_docs * c->chunks_per_doc);
  long long idx = count_rows(ci, "SELECT count(*) FROM pg_index i JOIN pg_class c "
                             "ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = "
                             "c.relam WHERE a.amname = 'hnsw' AND i.indisvalid");
  if (idx != (hnsw ? 1 : 0))
    bench_die("%s has %lld valid HNSW indexes after the load, expected %d", ci, idx,
        hnsw ? 1 : 0);
}

static void record(const char *layout, const char *scenario, const char *method,
                   double secs, size_t rows, const char *note) {
  if (n_results == sizeof results / sizeof results[0])
    bench_die("too many results");
  result *r = &results[n_results++];
  *r = (result){layout, scenario, method, secs, rows, ""};
  snprintf(r->note, sizeof r->note, "%s", note ? note : "");
  printf("%-10s %-22s %-12s %8.2f s %10.0f rows/s %s\n", layout, scenario,
         method, secs, (double)rows / secs, r->note);
  fflush(stdout);
}

/* ---- the ceiling: raw binary COPY ------------------------------------------- */

static double run_copy(const char *ci, const corpus *c) {
  PGconn *pg = PQconnectdb(ci);
  pgbuf cp = {0};
  double t0 = bench_now_s();
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
      bench_die("COPY: %s", PQerrorMessage(pg));
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
        bench_die("COPY: %s", PQresultErrorMessage(r));
      PQclear(r);
    }
  }
  PQclear(PQexec(pg, "COMMIT"));
  double secs = bench_now_s() - t0;
  pgbuf_free(&cp);
  PQfinish(pg);
  return secs;
}

/* Keeps what the server says about an index build's memory and workers
 * (pgvector's notice when the graph does not fit, its DEBUG1 line naming
 * the parallel workers), "; "-separated, in the buffer at arg. */
static void keep_build_notice(void *arg, const char *msg) {
  char *notes = arg;
  if (strstr(msg, "maintenance_work_mem") == NULL && strstr(msg, "parallel") == NULL)
    return;
  const char *colon = strstr(msg, ":  "); /* past "NOTICE:  " */
  const char *text = colon ? colon + 3 : msg;
  size_t len = strlen(notes), n = strcspn(text, "\n");
  snprintf(notes + len, 200 - len, "%s%.*s", len ? "; " : "", (int)n, text);
}

static void exec_on(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    bench_die("%s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
}

/* The HNSW ceiling for one setting: into the store at ci (with its empty
 * HNSW index), the index dropped, COPY of the corpus, then the store's
 * own CREATE INDEX statement with that setting.  Returns the seconds of
 * both; copy_s receives the COPY's, notes (200 bytes) what the build
 * said about memory and workers. */
static double run_copy_then_index(const char *ci, const corpus *c,
                                  const index_setting *set, double *copy_s,
                                  char *notes) {
  PGconn *pg = PQconnectdb(ci);
  PGresult *r = PQexec(pg, "SELECT pg_get_indexdef('embeddings_embedding_hnsw_idx'"
                           "::regclass)");
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    bench_die("the store's HNSW index: %s", PQresultErrorMessage(r));
  char def[512];
  snprintf(def, sizeof def, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
  exec_on(pg, "DROP INDEX embeddings_embedding_hnsw_idx");
  PQfinish(pg);
  *copy_s = run_copy(ci, c);
  pg = PQconnectdb(ci);
  notes[0] = '\0';
  PQsetNoticeProcessor(pg, keep_build_notice, notes);
  char sql[160];
  snprintf(sql, sizeof sql, "SET maintenance_work_mem = '%s'", set->mem);
  exec_on(pg, sql);
  snprintf(sql, sizeof sql, "SET max_parallel_maintenance_workers = %d",
           set->workers);
  exec_on(pg, sql);
  exec_on(pg, "SET client_min_messages = debug1");
  double t0 = bench_now_s();
  exec_on(pg, def);
  double index_s = bench_now_s() - t0;
  PQfinish(pg);
  return *copy_s + index_s;
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
    bench_die("naive: %s", PQresultErrorMessage(r));
  PQclear(r);
}

static double run_naive(const char *ci, const corpus *c) {
  PGconn *pg = PQconnectdb(ci);
  pgbuf b = {0};
  const size_t per = 100;
  double t0 = bench_now_s();
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
  double secs = bench_now_s() - t0;
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

static double last_cpu; /* client CPU seconds of the last library or CLI run */
static long last_rss_kib; /* the last CLI run's peak resident set */

static double run_library(const char *ci, const corpus *c, es_defer_index defer,
                          es_batch_result **out) {
  es_store *s = NULL;
  if (es_open(ci, &s) != ES_OK)
    bench_die("open: %s", es_errmsg(s));
  es_batch_options o;
  es_batch_options_init(&o);
  o.defer_index = defer;
  double t0 = bench_now_s(), cpu0 = cpu_self();
  es_status rc = es_batch_upsert(s, c->docs, c->n_docs, &o, out);
  double secs = bench_now_s() - t0;
  last_cpu = cpu_self() - cpu0;
  if (rc != ES_OK)
    bench_die("es_batch_upsert: %s", es_errmsg(s));
  es_close(s);
  return secs;
}

/* Prints the last line of what the CLI said (its summary). */
static void show_cli_output(const char *path) {
  FILE *f = fopen(path, "r");
  char line[1024], last[1024] = "";
  while (f && fgets(line, sizeof line, f))
    if (line[0] != '\n')
      snprintf(last, sizeof last, "%s", line);
  if (f)
    fclose(f);
  printf("    cli: %s", last[0] ? last : "(nothing)\n");
}

/* The high-water mark of pid's resident set (VmHWM, KiB) once it runs
 * the program called comm, else 0.  Not wait4's ru_maxrss: a forked
 * child counts the parent's pages it shared until exec, and this parent
 * holds the whole corpus. */
static long exec_hwm_kib(pid_t pid, const char *comm) {
  char path[64], line[256];
  long kib = 0;
  bool ours = false;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "Name:", 5) == 0)
      ours = strncmp(line + 5 + strspn(line + 5, " \t"), comm, strlen(comm)) == 0;
    else if (strncmp(line, "VmHWM:", 6) == 0)
      kib = atol(line + 6);
  }
  if (f)
    fclose(f);
  return ours ? kib : 0;
}

/* `embstore --db ci ingest jsonl`, the whole process, its output into a
 * file in the benchmark's directory; last_cpu receives its CPU time
 * (wait4), last_rss_kib its peak resident set after exec (polled every
 * 10 ms; a high-water mark, so the last poll is the peak within 10 ms). */
static double run_cli(const char *bin, const char *ci, const char *jsonl) {
  char out[300];
  snprintf(out, sizeof out, "%s/cli.out", root);
  double t0 = bench_now_s();
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(bin, bin, "--db", ci, "ingest", jsonl, (char *)NULL);
    _exit(127);
  }
  int st;
  struct rusage ru;
  const char *base = strrchr(bin, '/') ? strrchr(bin, '/') + 1 : bin;
  last_rss_kib = 0;
  for (;;) { /* a benchmark, not a test: sleeping between polls is right */
    pid_t w = wait4(pid, &st, WNOHANG, &ru);
    if (w == pid)
      break;
    if (w < 0 && errno != EINTR)
      bench_die("wait4: %s", strerror(errno));
    long kib = exec_hwm_kib(pid, base);
    if (kib > last_rss_kib)
      last_rss_kib = kib;
    usleep(10000);
  }
  double secs = bench_now_s() - t0;
  last_cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
             (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
  show_cli_output(out);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    bench_die("embstore ingest %s exited with %d (see %s)", jsonl, WEXITSTATUS(st), out);
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
    bench_die("cannot write %s", path);
}

/* ---- the servers ------------------------------------------------------------ */

/* What the report says about a server. */
typedef struct server_info {
  const char *section; /* its section of the report */
  char versions[200];
  char settings[512]; /* the settings that matter for a load, as it runs */
} server_info;

/* Starts the server (0: default settings, 1: embedded) and points admin,
 * admin_ci at it. */
static void start_server(int which, server_info *info) {
  char home[300], err[512];
  if (which == 0) {
    info->section = "Ingest: server with default settings (--db)";
    snprintf(home, sizeof home, "%s/plain", root);
    if (plainpg_start(&plain, home, err, sizeof err) != 0)
      bench_die("default-settings server: %s", err);
    snprintf(admin_ci, sizeof admin_ci, "%s", plain.conninfo);
  } else {
    info->section = "Ingest: embedded cluster";
    snprintf(home, sizeof home, "%s/pg", root);
    if (es_cluster_open(home, &cluster) != ES_OK || es_cluster_start(cluster) != ES_OK)
      bench_die("cluster: %s", es_cluster_errmsg(cluster));
    snprintf(admin_ci, sizeof admin_ci, "%s", es_cluster_conninfo(cluster));
  }
  char *dbpos = strstr(admin_ci, " dbname=");
  if (dbpos)
    *dbpos = '\0';
  char ci0[1100];
  snprintf(ci0, sizeof ci0, "%s dbname=%s", admin_ci, which == 0 ? "postgres" : "embstore");
  admin = PQconnectdb(ci0);
  if (PQstatus(admin) != CONNECTION_OK)
    bench_die("connect: %s", PQerrorMessage(admin));
  PQclear(PQexec(admin, "SET client_min_messages = warning"));
  PGresult *vr = PQexec(admin, "SELECT current_setting('server_version'), "
                               "(SELECT default_version FROM pg_available_extensions "
                               "WHERE name = 'vector')");
  snprintf(info->versions, sizeof info->versions, "PostgreSQL %s, pgvector %s",
           PQgetvalue(vr, 0, 0), PQgetvalue(vr, 0, 1));
  PQclear(vr);
  vr = PQexec(admin, "SELECT string_agg(name || ' ' || current_setting(name), ', ' "
                     "ORDER BY name) FROM pg_settings WHERE name IN "
                     "('shared_buffers', 'maintenance_work_mem', 'max_wal_size', "
                     "'max_parallel_maintenance_workers', 'max_parallel_workers', "
                     "'max_worker_processes', 'work_mem', 'checkpoint_timeout')");
  snprintf(info->settings, sizeof info->settings, "%s", PQgetvalue(vr, 0, 0));
  PQclear(vr);
  printf("== %s: %s; %s\n", info->section, info->versions, info->settings);
}

static void stop_server(void) {
  PQfinish(admin);
  admin = NULL;
  if (cluster) {
    es_cluster_stop(cluster);
    es_cluster_close(cluster);
    cluster = NULL;
  }
  plainpg_stop(&plain);
}

/* Makes the server log every statement of ms or more (log_min_duration_statement),
 * to see what dominates a load. */
static void log_slow_statements(int ms) {
  char sql[96];
  snprintf(sql, sizeof sql, "ALTER SYSTEM SET log_min_duration_statement = %d", ms);
  admin_exec(sql);
  admin_exec("SELECT pg_reload_conf()");
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

/* Writes the results of one layout on one server as its own section of
 * the report ("Ingest: SERVER, btree layout"), so that running one layout
 * leaves the other's figures in place. */
static void write_report(const char *path, const char *cmd, const corpus *c,
                         int which, const server_info *info, bool hnsw) {
  report rep;
  if (report_open(&rep) != 0)
    bench_die("out of memory");
  FILE *f = rep.f;
  const char *opts = getenv("EMBSTORE_PG_OPTIONS");
  char section[160];
  snprintf(section, sizeof section, "%s, %s layout%s", info->section,
           hnsw ? "HNSW" : "btree", no_text_search ? ", without text search" : "");
  fprintf(f, "## %s\n\n"
             "Produced by `%s` on %s (%ld cores; %s).\n",
          section, cmd, rep.when, sysconf(_SC_NPROCESSORS_ONLN), info->versions);
  if (which == 0)
    fprintf(f, "Server: a second private cluster whose postgresql.conf is "
               "initdb's (nothing tuned; only where it listens is given on its "
               "command line), reached through a conninfo as a user's `--db` "
               "would be");
  else
    fprintf(f, "Server: the embedded cluster as embstore configures it "
               "(its postgresql.conf lines, maintenance_work_mem 256MB among "
               "them%s%s%s)",
            opts && opts[0] ? "; EMBSTORE_PG_OPTIONS `" : "; no EMBSTORE_PG_OPTIONS",
            opts && opts[0] ? opts : "", opts && opts[0] ? "`" : "");
  fprintf(f, ": %s.\n"
             "Corpus: %zu documents of %zu dimensions with %zu chunks each "
             "(every chunk with a vector), %zu sources, %zu workspaces: %zu rows "
             "a load.  All figures come from this one run on one machine; "
             "compare ratios, not absolute numbers (these machines are shared).\n\n",
          info->settings, c->n_docs, c->dim, c->chunks_per_doc, c->n_sources,
          c->n_workspaces, corpus_rows(c));
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
             "encoder (bench/pgcopy.c), not by the library's.  With the HNSW "
             "index the ceiling is that COPY into the table without the index, "
             "then the store's own CREATE INDEX statement with the fastest of "
             "the settings tried (each *copy + index* row: its own fresh "
             "database; the best is the *ceiling* row); *row by row* is the "
             "same COPY with the index in place.  The library's and the CLI's "
             "times include their ANALYZE of both tables, which the ceiling "
             "does not run.\n");
  if (report_close(&rep, path, section) != 0)
    bench_die("cannot write %s: %s", path, strerror(errno));
  printf("wrote %s to %s\n", section, path);
}

/* ---- one layout on one server ---------------------------------------------- */

/* What to run, from the command line. */
typedef struct plan {
  const char *bin, *first_jsonl, *again_jsonl;
  size_t docs, dim, chunks;
  int rounds;
  bool naive, row_by_row;
  index_setting settings[MAX_SETTINGS];
  int n_settings;
} plan;

/* The btree layout's first loads: the fast methods several times, in
 * rotating order, each from a fresh database; the median is reported with
 * the range. */
static void first_loads_btree(const plan *p, const corpus *c, const char *lname,
                              char (*db)[32]) {
  double t[3][9], cpu_lib[9], cpu_cli[9];
  long rss_cli[9];
  char ci[1200], note[256], range[3][96];
  for (int round = 0; round < p->rounds; round++) {
    for (int k = 0; k < 3; k++) {
      int which = (k + round) % 3;
      fresh_db(db[which], p->dim, false, ci, sizeof ci);
      if (which == 0) {
        t[0][round] = run_copy(ci, c);
      } else if (which == 1) {
        es_batch_result *r = NULL;
        t[1][round] = run_library(ci, c, ES_DEFER_AUTO, &r);
        cpu_lib[round] = last_cpu;
        if (r->inserted != c->n_docs)
          bench_die("library load inserted %zu", r->inserted);
        es_batch_result_free(r);
      } else {
        t[2][round] = run_cli(p->bin, ci, p->first_jsonl);
        cpu_cli[round] = last_cpu;
        rss_cli[round] = last_rss_kib;
      }
      check_loaded(ci, c, false);
    }
    printf("  round %d: ceiling %.2f s, library %.2f s, cli %.2f s\n", round + 1,
           t[0][round], t[1][round], t[2][round]);
  }
  double med[3];
  for (int m = 0; m < 3; m++)
    med[m] = median(t[m], p->rounds, range[m], sizeof range[m]);
  const char *sep = p->rounds > 1 ? "; " : "";
  record(lname, "first load", "ceiling", med[0], corpus_rows(c), range[0]);
  snprintf(note, sizeof note, "%s%sclient CPU %.2f s", range[1], sep,
           median(cpu_lib, p->rounds, NULL, 0));
  record(lname, "first load", "library", med[1], corpus_rows(c), note);
  snprintf(note, sizeof note, "%s%sJSON parsing included; CLI CPU %.2f s, peak "
           "RSS %ld MiB", range[2], sep, median(cpu_cli, p->rounds, NULL, 0),
           rss_cli[p->rounds - 1] / 1024);
  record(lname, "first load", "cli", med[2], corpus_rows(c), note);
}

/* The HNSW layout's first loads, once each: the ceiling for every index
 * setting (the fastest is the ceiling), the library, the CLI, and the
 * row-by-row COPY. */
static void first_loads_hnsw(const plan *p, const corpus *c, const char *lname,
                             char (*db)[32]) {
  char ci[1200], note[256], notes[MAX_SETTINGS][200];
  double total[MAX_SETTINGS], copy_s[MAX_SETTINGS];
  int best = 0;
  for (int k = 0; k < p->n_settings; k++) {
    fresh_db(db[0], p->dim, true, ci, sizeof ci);
    total[k] = run_copy_then_index(ci, c, &p->settings[k], &copy_s[k], notes[k]);
    check_loaded(ci, c, true);
    printf("  copy + index, maintenance_work_mem %s, %d workers: %.2f s (COPY "
           "%.2f s) %s\n", p->settings[k].mem, p->settings[k].workers, total[k],
           copy_s[k], notes[k]);
    if (total[k] < total[best])
      best = k;
  }
  es_batch_result *r = NULL;
  fresh_db(db[1], p->dim, true, ci, sizeof ci);
  double lib_s = run_library(ci, c, ES_DEFER_AUTO, &r);
  double lib_cpu = last_cpu;
  if (r->inserted != c->n_docs)
    bench_die("library load inserted %zu", r->inserted);
  es_batch_result_free(r);
  check_loaded(ci, c, true);
  fresh_db(db[2], p->dim, true, ci, sizeof ci);
  double cli_s = run_cli(p->bin, ci, p->first_jsonl);
  check_loaded(ci, c, true);

  for (int pass = 0; pass < 2; pass++) /* the ceiling first, then the others */
    for (int k = 0; k < p->n_settings; k++) {
      if ((k == best) != (pass == 0))
        continue;
      snprintf(note, sizeof note, "maintenance_work_mem %s, %d parallel "
               "workers: COPY %.2f s + CREATE INDEX %.2f s%s%s",
               p->settings[k].mem, p->settings[k].workers, copy_s[k],
               total[k] - copy_s[k], notes[k][0] ? "; server: " : "", notes[k]);
      record(lname, "first load", pass == 0 ? "ceiling" : "copy + index",
             total[k], corpus_rows(c), note);
    }
  /* auto defers from 10,000 documents: below that the index is kept */
  const char *how = c->n_docs >= 10000 ? "deferred (auto): dropped, loaded, "
                    "rebuilt (time included)" : "kept (auto: under 10,000 documents)";
  snprintf(note, sizeof note, "client CPU %.2f s; index %s", lib_cpu, how);
  record(lname, "first load", "library", lib_s, corpus_rows(c), note);
  snprintf(note, sizeof note, "JSON parsing included; index %s; CLI CPU %.2f s, "
           "peak RSS %ld MiB", c->n_docs >= 10000 ? "deferred (auto)" : "kept "
           "(auto)", last_cpu, last_rss_kib / 1024);
  record(lname, "first load", "cli", cli_s, corpus_rows(c), note);
  if (p->row_by_row) {
    fresh_db(db[4], p->dim, true, ci, sizeof ci);
    double rbr = run_copy(ci, c);
    check_loaded(ci, c, true);
    record(lname, "first load", "row by row", rbr, corpus_rows(c),
           "the same COPY, HNSW index maintained row by row");
  }
}

/* One layout: the first loads, the naive baseline, then a re-ingest with
 * 10% changed on top of each first load.  c is the original corpus again
 * when it returns. */
static void run_layout(const plan *p, corpus *c, bool hnsw) {
  const char *lname = hnsw ? "HNSW" : "btree only";
  char db[5][32], ci[1200], note[256];
  const char *what[5] = {"ceiling", "lib", "cli", "naive", "rbr"};
  for (int k = 0; k < 5; k++)
    snprintf(db[k], sizeof db[k], "b%d_%s", hnsw, what[k]);
  if (hnsw)
    first_loads_hnsw(p, c, lname, db);
  else
    first_loads_btree(p, c, lname, db);
  const size_t rows = corpus_rows(c);
  if (p->naive) {
    fresh_db(db[3], p->dim, hnsw, ci, sizeof ci);
    record(lname, "first load", "naive", run_naive(ci, c), rows, "one run");
    check_loaded(ci, c, hnsw);
  }

  corpus_change(c);
  if (p->naive) {
    snprintf(ci, sizeof ci, "%s dbname=%s", admin_ci, db[3]);
    record(lname, "re-ingest, 10% changed", "naive", run_naive(ci, c), rows,
           "rewrites everything");
  }
  snprintf(ci, sizeof ci, "%s dbname=%s", admin_ci, db[1]);
  es_batch_result *r = NULL;
  double secs = run_library(ci, c, ES_DEFER_AUTO, &r);
  snprintf(note, sizeof note, "%zu updated, %zu unchanged; client CPU %.2f s",
           r->updated, r->unchanged, last_cpu);
  if (r->updated != (c->n_docs + 9) / 10)
    bench_die("re-ingest updated %zu", r->updated);
  es_batch_result_free(r);
  record(lname, "re-ingest, 10% changed", "library", secs, rows, note);
  snprintf(ci, sizeof ci, "%s dbname=%s", admin_ci, db[2]);
  secs = run_cli(p->bin, ci, p->again_jsonl);
  snprintf(note, sizeof note, "JSON parsing included; CLI CPU %.2f s", last_cpu);
  record(lname, "re-ingest, 10% changed", "cli", secs, rows, note);
  corpus_free(c);
  if (corpus_make(c, p->docs, p->dim, p->chunks, 8, 4) != 0) /* the original */
    bench_die("out of memory");
  for (int k = 0; k < 5; k++) { /* free the disk for the next layout */
    char sql[96];
    release_keeper(db[k]);
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", db[k]);
    admin_exec(sql);
  }
}

/* Reads "MEM:WORKERS,..." into p's settings. */
static void parse_settings(plan *p, const char *list) {
  p->n_settings = 0;
  for (const char *s = list; *s;) {
    size_t n = strcspn(s, ",");
    const char *colon = memchr(s, ':', n);
    if (colon == NULL || p->n_settings == MAX_SETTINGS ||
        (size_t)(colon - s) >= sizeof p->settings[0].mem)
      bench_die("--index-settings takes MEM:WORKERS,... (up to %d), not '%s'",
          MAX_SETTINGS, list);
    index_setting *set = &p->settings[p->n_settings++];
    snprintf(set->mem, sizeof set->mem, "%.*s", (int)(colon - s), s);
    set->workers = atoi(colon + 1);
    s += n + (s[n] == ',');
  }
  if (p->n_settings == 0)
    bench_die("--index-settings is empty");
}

int main(int argc, char **argv) {
  bench_on_die(stop_all);
  plan p = {.bin = EMBSTORE_BIN, .docs = 100000, .dim = 384, .chunks = 4,
            .rounds = 3, .naive = true, .row_by_row = true};
  parse_settings(&p, "1GB:0,1GB:1,1GB:2");
  const char *out = "BENCHMARKS.md", *only_layout = "both", *only_server = "both";
  int log_ms = -1;
  bool keep = false;
  char cmd[512] = "bench/run ingest";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has = i + 1 < argc;
    int first = i;
    if (!strcmp(a, "--docs") && has)
      p.docs = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--dim") && has)
      p.dim = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--chunks") && has)
      p.chunks = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(a, "--out") && has)
      out = argv[++i];
    else if (!strcmp(a, "--cli") && has)
      p.bin = argv[++i];
    else if (!strcmp(a, "--layout") && has)
      only_layout = argv[++i];
    else if (!strcmp(a, "--server") && has)
      only_server = argv[++i];
    else if (!strcmp(a, "--rounds") && has)
      p.rounds = atoi(argv[++i]) < 1 ? 1 : atoi(argv[i]) > 9 ? 9 : atoi(argv[i]);
    else if (!strcmp(a, "--index-settings") && has)
      parse_settings(&p, argv[++i]);
    else if (!strcmp(a, "--log-ms") && has)
      log_ms = atoi(argv[++i]);
    else if (!strcmp(a, "--no-naive"))
      p.naive = false;
    else if (!strcmp(a, "--no-row-by-row"))
      p.row_by_row = false;
    else if (!strcmp(a, "--no-text-search"))
      no_text_search = true;
    else if (!strcmp(a, "--keep"))
      keep = true;
    else
      bench_die("usage: bench/ingest [--docs N] [--dim D] [--chunks C] [--out FILE] "
          "[--cli PATH] [--server default|embedded|both] [--layout "
          "btree|hnsw|both] [--rounds N] [--index-settings MEM:WORKERS,...] "
          "[--no-naive] [--no-row-by-row] [--no-text-search] [--log-ms N] "
          "[--keep]");
    for (int k = first; k <= i && strcmp(a, "--cli") != 0; k++) {
      size_t len = strlen(cmd); /* --cli names a path of this machine: left out */
      snprintf(cmd + len, sizeof cmd - len, " %s", argv[k]);
    }
  }

  snprintf(root, sizeof root, "/tmp/es-bench-XXXXXX");
  if (mkdtemp(root) == NULL)
    bench_die("mkdtemp: %s", strerror(errno));
  chmod(root, 0711);
  printf("generating %zu documents x %zu dims x %zu chunks in %s...\n", p.docs,
         p.dim, p.chunks, root);
  fflush(stdout);
  corpus c;
  if (corpus_make(&c, p.docs, p.dim, p.chunks, 8, 4) != 0)
    bench_die("out of memory generating the corpus");
  char first_jsonl[400], again_jsonl[400];
  snprintf(first_jsonl, sizeof first_jsonl, "%s/first.jsonl", root);
  snprintf(again_jsonl, sizeof again_jsonl, "%s/again.jsonl", root);
  p.first_jsonl = first_jsonl;
  p.again_jsonl = again_jsonl;
  write_jsonl(&c, first_jsonl);
  corpus_change(&c);
  write_jsonl(&c, again_jsonl);
  corpus_free(&c);
  if (corpus_make(&c, p.docs, p.dim, p.chunks, 8, 4) != 0)
    bench_die("out of memory generating the corpus");

  for (int which = 0; which < 2; which++) {
    if ((which == 0 && !strcmp(only_server, "embedded")) ||
        (which == 1 && !strcmp(only_server, "default")))
      continue;
    server_info info;
    start_server(which, &info);
    if (log_ms >= 0)
      log_slow_statements(log_ms);
    for (int layout = 0; layout < 2; layout++) {
      bool hnsw = layout == 1;
      if ((hnsw && !strcmp(only_layout, "btree")) || (!hnsw && !strcmp(only_layout, "hnsw")))
        continue;
      n_results = 0;
      run_layout(&p, &c, hnsw);
      write_report(out, cmd, &c, which, &info, hnsw);
    }
    stop_server();
  }
  corpus_free(&c);
  if (keep) {
    printf("kept %s (server logs: plain/postgresql.log, pg/postgresql.log)\n", root);
    return 0;
  }
  char rm[300];
  snprintf(rm, sizeof rm, "rm -rf %s", root);
  if (system(rm) != 0)
    fprintf(stderr, "bench: could not remove %s\n", root);
  return 0;
}
