/* bench_million.c - a load of a million documents through the CLI, the
 * whole process, and what the store's manage operations cost afterwards:
 *
 *   bench/run million [--docs N] [--sample N] [--dim D] [--chunks C]
 *                     [--server embedded|default] [--index-memory MB]
 *                     [--out FILE] [--keep]
 *
 * Loads --sample documents (default 100,000) and then --docs (default
 * 1,000,000), each into a fresh store, through `embstore --db CONNINFO
 * ingest - --defer-index always`, its input streamed through a pipe by a
 * generator process (corpus_stream_jsonl: 1,000,000 documents with 4
 * chunks are about 22 GB of JSON, not written to disk); --index-memory
 * is passed to the CLI as it is.  A pipe has no
 * size to estimate the load from, so --defer-index always says what
 * `auto` says for a file of that size.  Measures the wall time, the CLI's
 * CPU time and peak resident set (wait4, as tests/harness.c does): the
 * same for both sizes when the client streams.  The phases (loading,
 * building the index, ANALYZE) come from polling
 * pg_stat_progress_create_index and pg_stat_progress_analyze.  Then on
 * each store (the sample's before it is dropped to free its disk):
 * es_stats_get, es_search and es_cleanup_orphaned (dry run), and the
 * CLI's `stats`, `search` and `cleanup --dry-run`, set against the
 * Statistics section's figures when the report has them.  Writes the
 * section "A million documents".
 *
 * At full size on 2 cores: the loads are bound by the CLI's parsing and
 * the generator sharing the cores (minutes), the HNSW build of a million
 * 384-dimension vectors by maintenance_work_mem (the graph is about 2-3 GB,
 * larger than the embedded cluster's 256 MB: most of an hour); some 15 GB
 * of disk under /tmp while it runs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "corpus.h"
#include "plainpg.h"
#include "report.h"
#include "util.h"

#define N_SOURCES 100 /* as bench/stats */
#define N_WORKSPACES 10
#define REPEAT 15     /* library calls */
#define CLI_REPEAT 5  /* CLI processes */

static es_cluster *cluster;
static plainpg plain;
static char root[64], admin_ci[1024];
static const char *index_memory; /* --index-memory MB for the CLI, or NULL */
static PGconn *admin;

/* What giving up stops first. */
static void stop_all(void) {
  if (cluster)
    es_cluster_stop(cluster);
  plainpg_stop(&plain);
}

static PGresult *admin_query(const char *sql, int n, const char *const *params) {
  PGresult *r = PQexecParams(admin, sql, n, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    bench_die("%s: %s", sql, PQresultErrorMessage(r));
  return r;
}

static void admin_exec(const char *sql) { PQclear(admin_query(sql, 0, NULL)); }

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[n / 2];
}

static double tv_s(struct timeval tv) {
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ---- one load ------------------------------------------------------------- */

typedef struct load {
  size_t docs;
  double seconds, cli_cpu, gen_cpu;
  long rss_kib;
  /* seconds from the start at which each phase was first and last seen */
  double index_from, index_to, analyze_from, analyze_to;
  char summary[512]; /* the CLI's last line */
} load;

/* A fresh database with an initialised store; its conninfo into ci. */
static void fresh_db(const char *name, size_t dim, char *ci, size_t cap) {
  char sql[128];
  snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
  admin_exec(sql);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
  admin_exec(sql);
  snprintf(ci, cap, "%s dbname=%s", admin_ci, name);
  es_store *s = NULL;
  if (es_open(ci, &s) != ES_OK || es_init(s, (int)dim, ES_METRIC_COSINE, NULL) != ES_OK)
    bench_die("init %s: %s", name, es_errmsg(s));
  es_close(s);
  admin_exec("CHECKPOINT");
  sync();
}

/* Which phases a client session of database db is in right now. */
static void poll_phases(const char *db, double t, load *l) {
  const char *v[1] = {db};
  PGresult *r = admin_query(
      "SELECT (SELECT count(*) FROM pg_stat_progress_create_index p JOIN "
      "pg_stat_activity a USING (pid) WHERE p.datname = $1 AND a.backend_type "
      "= 'client backend'), (SELECT count(*) FROM pg_stat_progress_analyze p "
      "JOIN pg_stat_activity a USING (pid) WHERE p.datname = $1 AND "
      "a.backend_type = 'client backend')", 1, v);
  if (atoi(PQgetvalue(r, 0, 0)) > 0) {
    if (l->index_from == 0)
      l->index_from = t;
    l->index_to = t;
  }
  if (atoi(PQgetvalue(r, 0, 1)) > 0) {
    if (l->analyze_from == 0)
      l->analyze_from = t;
    l->analyze_to = t;
  }
  PQclear(r);
}

static void read_last_line(const char *path, char *out, size_t cap) {
  FILE *f = fopen(path, "r");
  char line[1024];
  out[0] = '\0';
  while (f && fgets(line, sizeof line, f))
    if (line[0] != '\n') {
      line[strcspn(line, "\n")] = '\0';
      snprintf(out, cap, "%s", line);
    }
  if (f)
    fclose(f);
}

/* Waits for pid, polling the phases of database db meanwhile (a
 * benchmark, not a test: sleeping between polls is what it should do). */
static int wait_polling(pid_t pid, const char *db, double t0, load *l,
                        struct rusage *ru) {
  int st;
  for (;;) {
    pid_t w = wait4(pid, &st, WNOHANG, ru);
    if (w == pid)
      return st;
    if (w < 0 && errno != EINTR)
      bench_die("wait4: %s", strerror(errno));
    poll_phases(db, bench_now_s() - t0, l);
    usleep(250000);
  }
}

/* Streams docs documents into db through the CLI. */
static void run_load(const char *bin, const char *db, size_t docs, size_t dim,
                     size_t chunks, load *l) {
  char ci[1200], out[128];
  fresh_db(db, dim, ci, sizeof ci);
  snprintf(out, sizeof out, "%s/%s.out", root, db);
  *l = (load){.docs = docs};
  int fds[2];
  if (pipe(fds) != 0)
    bench_die("pipe: %s", strerror(errno));
  double t0 = bench_now_s();
  pid_t gen = fork();
  if (gen == 0) { /* the generator: nothing of the parent's is touched */
    close(fds[0]);
    _exit(corpus_stream_jsonl(fds[1], docs, dim, chunks, N_SOURCES,
                              N_WORKSPACES) == 0 ? 0 : 1);
  }
  pid_t cli = fork();
  if (cli == 0) {
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fds[0], 0);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fds[0]);
    close(fds[1]);
    if (index_memory)
      execl(bin, bin, "--db", ci, "ingest", "-", "--defer-index", "always",
            "--index-memory", index_memory, (char *)NULL);
    else
      execl(bin, bin, "--db", ci, "ingest", "-", "--defer-index", "always",
            (char *)NULL);
    _exit(127);
  }
  close(fds[0]);
  close(fds[1]);
  struct rusage ru;
  int st = wait_polling(cli, db, t0, l, &ru);
  l->seconds = bench_now_s() - t0;
  l->cli_cpu = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
  l->rss_kib = ru.ru_maxrss;
  int gst;
  if (wait4(gen, &gst, 0, &ru) < 0)
    bench_die("wait4: %s", strerror(errno));
  l->gen_cpu = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
  read_last_line(out, l->summary, sizeof l->summary);
  printf("  %zu documents: %.1f s, CLI CPU %.1f s, peak RSS %ld MiB, generator "
         "CPU %.1f s; index build seen %.1f-%.1f s, ANALYZE %.1f-%.1f s\n  cli: %s\n",
         docs, l->seconds, l->cli_cpu, l->rss_kib / 1024, l->gen_cpu,
         l->index_from, l->index_to, l->analyze_from, l->analyze_to, l->summary);
  fflush(stdout);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    bench_die("embstore ingest exited with %d (see %s)", WEXITSTATUS(st), out);
  if (!WIFEXITED(gst) || WEXITSTATUS(gst) != 0)
    bench_die("the generator failed");
  PGconn *pg = PQconnectdb(ci);
  PGresult *r = PQexec(pg, "SELECT (SELECT count(*) FROM embeddings), (SELECT "
                           "count(*) FROM chunks), (SELECT count(*) FROM pg_index "
                           "i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am "
                           "a ON a.oid = c.relam WHERE a.amname = 'hnsw' AND "
                           "i.indisvalid)");
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    bench_die("counting: %s", PQresultErrorMessage(r));
  long long d = atoll(PQgetvalue(r, 0, 0)), k = atoll(PQgetvalue(r, 0, 1));
  int idx = atoi(PQgetvalue(r, 0, 2));
  PQclear(r);
  PQfinish(pg);
  if (d != (long long)docs || k != (long long)(docs * chunks) || idx != 1)
    bench_die("%s holds %lld documents, %lld chunks, %d valid HNSW indexes; expected "
        "%zu, %zu, 1", db, d, k, idx, docs, docs * chunks);
}

/* ---- the manage operations ------------------------------------------------ */

typedef struct op_times {
  double stats, stats_ws, search, search_ws, cleanup; /* library, ms */
  double cli_stats, cli_search, cli_cleanup;          /* CLI, ms */
  long long orphans;
} op_times;

static double now_ms(void) { return bench_now_s() * 1e3; }

/* Runs the CLI with args (NULL-terminated, after --db ci) to /dev/null;
 * returns its wall milliseconds. */
static double time_cli(const char *bin, const char *ci, const char *const *args) {
  const char *argv[16] = {bin, "--db", ci};
  int n = 3;
  for (int i = 0; args[i] && n < 15; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  double t0 = now_ms();
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    dup2(fd, 1);
    dup2(fd, 2);
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      bench_die("waitpid: %s", strerror(errno));
  double ms = now_ms() - t0;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    bench_die("embstore %s exited with %d", args[0], WEXITSTATUS(st));
  return ms;
}

static void manage_ops(const char *bin, const char *db, size_t dim, op_times *o) {
  char ci[1200];
  snprintf(ci, sizeof ci, "%s dbname=%s", admin_ci, db);
  es_store *s = NULL;
  if (es_open(ci, &s) != ES_OK)
    bench_die("open: %s", es_errmsg(s));
  double t[REPEAT];
  float *q = malloc(dim * sizeof *q);
  size_t jcap = dim * 34 + 8;
  char *qjson = malloc(jcap);
  if (q == NULL || qjson == NULL)
    bench_die("out of memory");
  for (int pass = 0; pass < 2; pass++) { /* stats: the whole store, one workspace */
    for (int i = 0; i < REPEAT; i++) {
      es_stats *st = NULL;
      double t0 = now_ms();
      if (es_stats_get(s, pass ? "ws-3" : NULL, &st) != ES_OK)
        bench_die("stats: %s", es_errmsg(s));
      t[i] = now_ms() - t0;
      es_stats_free(st);
    }
    *(pass ? &o->stats_ws : &o->stats) = median(t, REPEAT);
  }
  for (int pass = 0; pass < 2; pass++) { /* search: everywhere, one workspace */
    for (int i = 0; i < REPEAT; i++) {
      corpus_query_vector(q, dim, (unsigned)(pass * REPEAT + i));
      es_search_params p;
      es_search_params_init(&p);
      p.vector = q;
      p.dim = dim;
      p.k = 10;
      p.workspace = pass ? "ws-3" : NULL;
      es_results *r = NULL;
      double t0 = now_ms();
      if (es_search(s, &p, &r) != ES_OK)
        bench_die("search: %s", es_errmsg(s));
      t[i] = now_ms() - t0;
      if (r->n != 10)
        bench_die("search found %zu, not 10", r->n);
      es_results_free(r);
    }
    *(pass ? &o->search_ws : &o->search) = median(t, REPEAT);
  }
  for (int i = 0; i < 3; i++) {
    es_cleanup_options co;
    es_cleanup_options_init(&co);
    co.dry_run = 1;
    es_cleanup_result *cr = NULL;
    double t0 = now_ms();
    if (es_cleanup_orphaned(s, &co, &cr) != ES_OK)
      bench_die("cleanup: %s", es_errmsg(s));
    t[i] = now_ms() - t0;
    o->orphans = cr->orphaned_chunks + cr->orphaned_embeddings;
    es_cleanup_result_free(cr);
  }
  o->cleanup = median(t, 3);
  es_close(s);

  const char *stats[] = {"stats", NULL}, *cleanup[] = {"cleanup", "--dry-run", NULL};
  corpus_query_vector(q, dim, 1000);
  corpus_vector_json(qjson, jcap, q, dim);
  const char *search[] = {"search", "--vector", qjson, "-k", "10", NULL};
  for (int i = 0; i < CLI_REPEAT; i++)
    t[i] = time_cli(bin, ci, stats);
  o->cli_stats = median(t, CLI_REPEAT);
  for (int i = 0; i < CLI_REPEAT; i++)
    t[i] = time_cli(bin, ci, search);
  o->cli_search = median(t, CLI_REPEAT);
  for (int i = 0; i < 3; i++)
    t[i] = time_cli(bin, ci, cleanup);
  o->cli_cleanup = median(t, 3);
  free(q);
  free(qjson);
  printf("  stats %.1f ms (workspace %.1f), search %.1f ms (workspace %.1f), "
         "cleanup --dry-run %.1f ms; CLI: stats %.0f ms, search %.0f ms, "
         "cleanup --dry-run %.0f ms\n", o->stats, o->stats_ws, o->search,
         o->search_ws, o->cleanup, o->cli_stats, o->cli_search, o->cli_cleanup);
}

/* ---- the report ------------------------------------------------------------- */

/* The figure in the row "| label | X ms |" of the report's Statistics
 * section, as text ("4.9 ms"), or "" when there is none. */
static void statistics_figure(const char *path, const char *label, char *out,
                              size_t cap) {
  out[0] = '\0';
  FILE *f = fopen(path, "r");
  char line[1024], want[128];
  bool in = false;
  snprintf(want, sizeof want, "| %s | ", label);
  while (f && fgets(line, sizeof line, f)) {
    if (strncmp(line, "## ", 3) == 0)
      in = strncmp(line, "## Statistics", 13) == 0;
    else if (in && strncmp(line, want, strlen(want)) == 0) {
      const char *v = line + strlen(want);
      snprintf(out, cap, "%.*s", (int)strcspn(v, "|"), v);
      size_t n = strlen(out);
      while (n > 0 && out[n - 1] == ' ')
        out[--n] = '\0';
    }
  }
  if (f)
    fclose(f);
}

/* One row of the operations table: a figure per store size ("%.1f ms"
 * of the library, "%.0f ms" of the CLI, blank when cli and none was
 * measured), then the Statistics section's figure (fig, may be NULL). */
static void ops_row(FILE *f, const char *what, int n, const op_times *o,
                    size_t field, bool cli, const char *fig) {
  fprintf(f, "| %s |", what);
  for (int i = 0; i < n; i++) {
    double v = *(const double *)((const char *)&o[i] + field);
    fprintf(f, cli ? " %.0f ms |" : " %.1f ms |", v);
  }
  fprintf(f, " %s |\n", fig ? fig : "");
}

/* The manage operations on each store: library calls, then the CLI's
 * whole process. */
static void write_ops_table(FILE *f, const load *l, int n, const op_times *o,
                            const char *fig_all, const char *fig_ws) {
  fprintf(f, "Afterwards, on each store (library: median of %d calls, "
             "cleanup of 3; CLI: the whole process, median of %d runs, cleanup "
             "of 3; searches through the HNSW index, k 10, a different random "
             "query each call); the last column is the Statistics section "
             "above (1M documents, 16 dimensions, bench/run stats):\n\n"
             "| operation |", REPEAT, CLI_REPEAT);
  for (int i = 0; i < n; i++)
    fprintf(f, " %zu documents |", l[i].docs);
  fprintf(f, " Statistics section |\n|---|");
  for (int i = 0; i < n; i++)
    fprintf(f, "---:|");
  fprintf(f, "---:|\n");
  ops_row(f, "library: stats, whole store", n, o, offsetof(op_times, stats),
          false, fig_all[0] ? fig_all : "–");
  ops_row(f, "library: stats, one workspace", n, o,
          offsetof(op_times, stats_ws), false, fig_ws[0] ? fig_ws : "–");
  ops_row(f, "library: search", n, o, offsetof(op_times, search), false, NULL);
  ops_row(f, "library: search, one workspace", n, o,
          offsetof(op_times, search_ws), false, NULL);
  ops_row(f, "library: cleanup, dry run", n, o, offsetof(op_times, cleanup),
          false, NULL);
  ops_row(f, "CLI: `stats`", n, o, offsetof(op_times, cli_stats), true, NULL);
  ops_row(f, "CLI: `search --vector V -k 10`", n, o,
          offsetof(op_times, cli_search), true, NULL);
  ops_row(f, "CLI: `cleanup --dry-run`", n, o,
          offsetof(op_times, cli_cleanup), true, NULL);
  fprintf(f, "\nOrphans found by the dry run: %lld (none expected).\n",
          o[n - 1].orphans);
}

/* "a-b s" for a phase seen from a to b, or "not seen". */
static void phase(char *buf, size_t cap, double from, double to) {
  if (from == 0)
    snprintf(buf, cap, "not seen");
  else
    snprintf(buf, cap, "%.1f s (%.1f–%.1f s)", to - from, from, to);
}

static void write_report(const char *path, const char *cmd, const char *server,
                         const char *versions, const load *l, int n, size_t dim,
                         size_t chunks, const op_times *o) {
  char fig_all[64], fig_ws[64];
  statistics_figure(path, "whole store", fig_all, sizeof fig_all);
  statistics_figure(path, "one workspace", fig_ws, sizeof fig_ws);
  report rep;
  if (report_open(&rep) != 0)
    bench_die("out of memory");
  FILE *f = rep.f;
  fprintf(f, "## A million documents\n\n"
             "Produced by `%s` on %s (%ld cores; %s; %s).  Documents of %zu "
             "dimensions with %zu chunks each (every chunk with a vector), %d "
             "sources, %d workspaces, streamed by a generator process through "
             "a pipe into `embstore --db CONNINFO ingest - --defer-index "
             "always` (the whole process; `always` because a pipe has no size "
             "to decide from), each load into a fresh store.  One run; the "
             "machine is shared.\n\n",
          cmd, rep.when, sysconf(_SC_NPROCESSORS_ONLN), versions, server, dim,
          chunks, N_SOURCES, N_WORKSPACES);
  fprintf(f, "| documents | rows | seconds | rows/s | CLI CPU | CLI peak RSS | "
             "index build | ANALYZE | generator CPU |\n"
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int i = 0; i < n; i++) {
    char ib[64], ab[64];
    phase(ib, sizeof ib, l[i].index_from, l[i].index_to);
    phase(ab, sizeof ab, l[i].analyze_from, l[i].analyze_to);
    size_t rows = l[i].docs * (1 + chunks);
    fprintf(f, "| %zu | %zu | %.1f | %.0f | %.1f s | %.1f MiB | %s | %s | %.1f s |\n",
            l[i].docs, rows, l[i].seconds, (double)rows / l[i].seconds,
            l[i].cli_cpu, (double)l[i].rss_kib / 1024, ib, ab, l[i].gen_cpu);
  }
  fprintf(f, "\n*CLI peak RSS* is the ingest process's ru_maxrss from wait4");
  if (n == 2)
    fprintf(f, " (the %zu-document load's is %.2f× the %zu-document one's)",
            l[1].docs, (double)l[1].rss_kib / (double)l[0].rss_kib, l[0].docs);
  fprintf(f, "; *index build* and *ANALYZE* are how long the session was "
             "seen in pg_stat_progress_create_index / pg_stat_progress_analyze "
             "(polled every 0.25 s; in brackets seconds from the start), the "
             "load before them.  The CLI's summary of the last load: `%s`.\n\n",
          l[n - 1].summary);
  write_ops_table(f, l, n, o, fig_all, fig_ws);
  if (report_close(&rep, path, "A million documents") != 0)
    bench_die("cannot write %s: %s", path, strerror(errno));
}

int main(int argc, char **argv) {
  bench_on_die(stop_all);
  size_t docs = 1000000, sample = 100000, dim = 384, chunks = 4;
  const char *out = "BENCHMARKS.md", *server = "embedded";
  bool keep = false;
  char cmd[256];
  bench_command_line(cmd, sizeof cmd, "million", argc, argv);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--docs") && i + 1 < argc)
      docs = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--sample") && i + 1 < argc)
      sample = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--dim") && i + 1 < argc)
      dim = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--chunks") && i + 1 < argc)
      chunks = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--server") && i + 1 < argc)
      server = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else if (!strcmp(argv[i], "--keep"))
      keep = true;
    else if (!strcmp(argv[i], "--index-memory") && i + 1 < argc)
      index_memory = argv[++i];
    else
      bench_die("usage: bench/million [--docs N] [--sample N] [--dim D] [--chunks C] "
          "[--server embedded|default] [--index-memory MB] [--out FILE] [--keep]");
  }
  if (docs == 0 || docs > 9999999 || sample > docs)
    bench_die("--docs must be 1..9999999 and --sample at most --docs");
  signal(SIGPIPE, SIG_IGN);
  snprintf(root, sizeof root, "/tmp/es-bench-XXXXXX");
  if (mkdtemp(root) == NULL)
    bench_die("mkdtemp: %s", strerror(errno));
  chmod(root, 0711);
  char home[128], err[512], where[200];
  bool embedded = strcmp(server, "default") != 0;
  if (embedded) {
    snprintf(home, sizeof home, "%s/pg", root);
    if (es_cluster_open(home, &cluster) != ES_OK || es_cluster_start(cluster) != ES_OK)
      bench_die("cluster: %s", es_cluster_errmsg(cluster));
    snprintf(admin_ci, sizeof admin_ci, "%s", es_cluster_conninfo(cluster));
    const char *opts = getenv("EMBSTORE_PG_OPTIONS");
    snprintf(where, sizeof where, "the embedded cluster as embstore configures "
             "it%s%s%s", opts && opts[0] ? ", EMBSTORE_PG_OPTIONS `" : "",
             opts && opts[0] ? opts : "", opts && opts[0] ? "`" : "");
  } else {
    snprintf(home, sizeof home, "%s/plain", root);
    if (plainpg_start(&plain, home, err, sizeof err) != 0)
      bench_die("default-settings server: %s", err);
    snprintf(admin_ci, sizeof admin_ci, "%s", plain.conninfo);
    snprintf(where, sizeof where, "a server with initdb's settings, as `--db`");
  }
  char *dbpos = strstr(admin_ci, " dbname=");
  if (dbpos)
    *dbpos = '\0';
  char ci0[1100];
  snprintf(ci0, sizeof ci0, "%s dbname=postgres", admin_ci);
  admin = PQconnectdb(ci0);
  if (PQstatus(admin) != CONNECTION_OK)
    bench_die("connect: %s", PQerrorMessage(admin));
  PQclear(PQexec(admin, "SET client_min_messages = warning"));
  PGresult *vr = admin_query("SELECT current_setting('server_version'), (SELECT "
                             "default_version FROM pg_available_extensions WHERE "
                             "name = 'vector'), current_setting('maintenance_work_mem'), "
                             "current_setting('shared_buffers')", 0, NULL);
  char versions[256];
  snprintf(versions, sizeof versions, "PostgreSQL %s, pgvector %s; server "
           "maintenance_work_mem %s, shared_buffers %s", PQgetvalue(vr, 0, 0),
           PQgetvalue(vr, 0, 1), PQgetvalue(vr, 0, 2), PQgetvalue(vr, 0, 3));
  PQclear(vr);
  printf("%s; %s\n", versions, where);
  fflush(stdout);

  load l[2];
  int n = 0;
  op_times o[2] = {0};
  if (sample > 0 && sample < docs) {
    run_load(EMBSTORE_BIN, "m_sample", sample, dim, chunks, &l[n]);
    manage_ops(EMBSTORE_BIN, "m_sample", dim, &o[n++]);
    admin_exec("DROP DATABASE m_sample"); /* its disk for the large one */
  }
  run_load(EMBSTORE_BIN, "m_full", docs, dim, chunks, &l[n]);
  manage_ops(EMBSTORE_BIN, "m_full", dim, &o[n++]);
  write_report(out, cmd, where, versions, l, n, dim, chunks, o);
  printf("wrote %s\n", out);
  PQfinish(admin);
  if (cluster) {
    es_cluster_stop(cluster);
    es_cluster_close(cluster);
  }
  plainpg_stop(&plain);
  if (keep) {
    printf("kept %s\n", root);
    return 0;
  }
  char rm[128];
  snprintf(rm, sizeof rm, "rm -rf %s", root);
  if (system(rm) != 0)
    fprintf(stderr, "bench: could not remove %s\n", root);
  return 0;
}
