/* bench_serve.c - how fast `embstore serve` answers POST /v1/search, set
 * against PostgreSQL's own client running the same kNN SQL:
 *
 *   bench/run serve [--docs N] [--dim D] [--seconds S] [--rss-requests N]
 *                   [--conns 1,8,32] [--threads T] [--pool N] [--out FILE]
 *                   [--keep]
 *
 * Loads --docs documents (default 100,000) of --dim dimensions (384), no
 * chunks, into the embedded cluster as embstore configures it
 * (EMBSTORE_PG_OPTIONS only if the caller set it) through es_batch_upsert
 * with the index deferred (the fastest load of bench/run ingest), so the
 * store has its HNSW index.  1,000 fixed query vectors (corpus_query_vector
 * 0..999), k 10.  Then, at each connection count, for --seconds each:
 *
 *   ceiling   pgbench -M prepared, the library's search statement
 *             (src/search.c) with the query vector read from a table of the
 *             1,000 by a scalar subquery, `\set q random(1, 1000)`, the
 *             session option the pool sets (hnsw.iterative_scan)
 *   uncached  wrk on POST /v1/search against `embstore serve --cache-mb 0`,
 *             a Lua script cycling through the 1,000 request bodies
 *   cached    the same against `embstore serve` with its default cache
 *
 * each server warmed first (two passes over the queries per wrk thread).
 * Then --rss-requests more requests (200,000) on each server at the
 * largest connection count, with its VmRSS and VmHWM (/proc/PID/status)
 * after the warm-up, after the throughput points and after those
 * requests.  Writes the section "HTTP search (embstore serve)".
 *
 * At full size on 2 cores: the load and its index build take a few
 * minutes; 9 points of 30 s; the two RSS runs take 200,000 / the
 * uncached rate (minutes) and 200,000 / the cached rate. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
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
#include "report.h"
#include "util.h"

#define N_QUERIES 1000
#define K 10
#define MAX_CONNS 8
#define PGBENCH "/usr/lib/postgresql/15/bin/pgbench"
#define WRK "wrk"
/* What the pool sets that decides a search's plan (src/pool.c). */
#define HNSW_OPTIONS "-c hnsw.iterative_scan=relaxed_order"

/* One measured point. */
typedef struct point {
  int conns;
  double qps, p50_ms, p99_ms;
  double client_cores, server_cores; /* CPU seconds per second */
  long long requests, errors;
  char errors_note[160];
} point;

/* A server's resident set at one moment, KiB. */
typedef struct rss {
  long vm_rss, vm_hwm;
} rss;

/* One `embstore serve` configuration and what it measured. */
typedef struct server_run {
  const char *name; /* in the report */
  int cache_mb;     /* -1: the server's default */
  point pts[MAX_CONNS];
  rss after_warmup, after_points, after_run;
  long long run_requests, run_errors;
  double run_seconds;
  int exit_status;
} server_run;

static es_cluster *cluster;
static pid_t server_pid;
static char root[64], conninfo[1024];

/* What giving up stops first. */
static void stop_all(void) {
  if (server_pid > 0)
    kill(server_pid, SIGKILL);
  if (cluster)
    es_cluster_stop(cluster);
}

/* A timeval as seconds. */
static double tv_s(struct timeval tv) {
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* The whole file as a string (NUL-terminated), or dies. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    bench_die("%s: %s", path, strerror(errno));
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  char tmp[8192];
  size_t n;
  while (m && (n = fread(tmp, 1, sizeof tmp, f)) > 0)
    fwrite(tmp, 1, n, m);
  fclose(f);
  if (m == NULL || fclose(m) != 0)
    bench_die("out of memory");
  return buf;
}

/* How many threads process pid has (0 when it cannot be read). */
static int proc_threads(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  int n = 0;
  while (f && fgets(line, sizeof line, f))
    sscanf(line, "Threads: %d", &n);
  if (f)
    fclose(f);
  return n;
}

/* Runs argv with stdout and stderr into out_path (PGOPTIONS set to
 * pgoptions unless NULL); cpu receives the child's CPU seconds.  With
 * stop_idle, the child is wrk running a script whose threads stop
 * themselves: wrk's main thread sleeps out -d whatever its threads do, so
 * once only it is left it gets the SIGINT that makes it report (polled
 * every 20 ms: that much may be added to its duration).  Returns its wait
 * status. */
static int run_to_file(char *const *argv, const char *pgoptions,
                       const char *out_path, bool stop_idle, double *cpu) {
  pid_t pid = fork();
  if (pid < 0)
    bench_die("fork: %s", strerror(errno));
  if (pid == 0) {
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    dup2(fd, 2);
    if (pgoptions)
      setenv("PGOPTIONS", pgoptions, 1);
    execvp(argv[0], argv);
    fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int st;
  struct rusage ru;
  bool started = false, signalled = false;
  for (;;) {
    pid_t w = wait4(pid, &st, stop_idle ? WNOHANG : 0, &ru);
    if (w == pid)
      break;
    if (w < 0 && errno != EINTR)
      bench_die("wait4: %s", strerror(errno));
    if (w != 0)
      continue;
    int threads = proc_threads(pid);
    started |= threads > 1;
    if (started && threads == 1 && !signalled) {
      kill(pid, SIGINT);
      signalled = true;
    }
    usleep(20000); /* a benchmark's poll, not a test's synchronisation */
  }
  *cpu = tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
  return st;
}

/* qsort order of doubles, ascending. */
static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The p-th percentile (0..100) of n sorted values. */
static double percentile(const double *v, size_t n, double p) {
  if (n == 0)
    return 0;
  size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

/* ---- the store -------------------------------------------------------------- */

/* Runs sql on pg, or dies naming it. */
static void exec_or_die(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    bench_die("%s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
}

/* Loads docs documents with the HNSW index built after the rows; returns
 * the seconds it took. */
static double load_store(size_t docs, size_t dim) {
  es_store *s = NULL;
  if (es_open(conninfo, &s) != ES_OK ||
      es_init(s, (int)dim, ES_METRIC_COSINE, NULL) != ES_OK)
    bench_die("init: %s", es_errmsg(s));
  corpus c;
  if (corpus_make(&c, docs, dim, 0, 100, 10) != 0)
    bench_die("out of memory");
  es_batch_options o;
  es_batch_options_init(&o);
  o.defer_index = ES_DEFER_ALWAYS;
  es_batch_result *r = NULL;
  double t0 = bench_now_s();
  if (es_batch_upsert(s, c.docs, c.n_docs, &o, &r) != ES_OK)
    bench_die("load: %s", es_errmsg(s));
  double secs = bench_now_s() - t0;
  es_batch_result_free(r);
  corpus_free(&c);
  es_close(s);
  return secs;
}

/* The 1,000 queries: as request bodies, one a line, into bodies_path, and
 * as the table bench_queries (i 1..1000, v) for pgbench. */
static void write_queries(PGconn *pg, size_t dim, const char *bodies_path) {
  float *v = malloc(dim * sizeof *v);
  size_t cap = dim * 34 + 64;
  char *json = malloc(cap);
  FILE *f = fopen(bodies_path, "w");
  if (v == NULL || json == NULL || f == NULL)
    bench_die("%s: %s", bodies_path, strerror(errno));
  char sql[128];
  snprintf(sql, sizeof sql, "CREATE TABLE bench_queries (i int PRIMARY KEY, "
           "v vector(%zu) NOT NULL)", dim);
  exec_or_die(pg, sql);
  exec_or_die(pg, "BEGIN");
  for (unsigned i = 0; i < N_QUERIES; i++) {
    corpus_query_vector(v, dim, i);
    corpus_vector_json(json, cap, v, dim);
    fprintf(f, "{\"vector\":%s,\"k\":%d}\n", json, K);
    char num[16];
    snprintf(num, sizeof num, "%u", i + 1);
    const char *p[2] = {num, json};
    PGresult *r = PQexecParams(pg, "INSERT INTO bench_queries VALUES ($1, $2)",
                               2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
      bench_die("bench_queries: %s", PQresultErrorMessage(r));
    PQclear(r);
  }
  exec_or_die(pg, "COMMIT");
  exec_or_die(pg, "VACUUM ANALYZE bench_queries");
  if (fclose(f) != 0)
    bench_die("%s: %s", bodies_path, strerror(errno));
  free(v);
  free(json);
}

/* The library's search statement (src/search.c, cosine, no filters) with
 * the vector taken by expression vec and the limit by lim. */
static void search_sql(char *buf, size_t cap, const char *vec, const char *lim) {
  snprintf(buf, cap,
           "SELECT id, distance, text, source_id, metadata::text FROM ("
           "SELECT id, embedding <=> %s AS distance, text, source_id, "
           "metadata FROM embeddings WHERE embedding IS NOT NULL "
           "ORDER BY (embedding <=> %s) LIMIT %s) r "
           "ORDER BY distance, id",
           vec, vec, lim);
}

#define QVEC "(SELECT v FROM bench_queries WHERE i = %s)"

/* Whether the plan EXPLAIN sql prints walks the HNSW index. */
static bool uses_index(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    bench_die("%s: %s", sql, PQresultErrorMessage(r));
  bool index = false;
  for (int i = 0; i < PQntuples(r); i++)
    index |= strstr(PQgetvalue(r, i, 0), "embeddings_embedding_hnsw_idx") != NULL;
  PQclear(r);
  return index;
}

/* Checks that the pgbench statement finds what es_search finds for the
 * same query; returns whether its plan walks the HNSW index, and in
 * *lib_index whether the library's own statement's plan does (prepared,
 * the vector a parameter; on a small store the planner may prefer reading
 * the table). */
static bool check_sql(PGconn *pg, size_t dim, bool *lib_index) {
  char vec[96], sql[1024], explain[1100];
  snprintf(vec, sizeof vec, QVEC, "7");
  search_sql(sql, sizeof sql, vec, "10");
  snprintf(explain, sizeof explain, "EXPLAIN %s", sql);
  exec_or_die(pg, "SET hnsw.iterative_scan = relaxed_order");
  bool index = uses_index(pg, explain);
  char libsql[1024], prep[1100], *text = NULL;
  search_sql(libsql, sizeof libsql, "$1::vector", "$2");
  snprintf(prep, sizeof prep, "PREPARE libq(vector, int) AS %s", libsql);
  exec_or_die(pg, prep);
  PGresult *r = PQexec(pg, "SELECT format('EXPLAIN EXECUTE libq(%L, 10)', v) "
                           "FROM bench_queries WHERE i = 7");
  if (PQresultStatus(r) != PGRES_TUPLES_OK || (text = PQgetvalue(r, 0, 0)) == NULL)
    bench_die("bench_queries: %s", PQresultErrorMessage(r));
  *lib_index = uses_index(pg, text);
  PQclear(r);
  exec_or_die(pg, "DEALLOCATE libq");

  r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != K)
    bench_die("pgbench's statement: %s", PQresultErrorMessage(r));
  es_store *s = NULL;
  float *v = malloc(dim * sizeof *v);
  if (v == NULL || es_open(conninfo, &s) != ES_OK)
    bench_die("open: %s", es_errmsg(s));
  corpus_query_vector(v, dim, 6); /* bench_queries.i 7 */
  es_search_params p;
  es_search_params_init(&p);
  p.vector = v;
  p.dim = dim;
  p.k = K;
  es_results *res = NULL;
  if (es_search(s, &p, &res) != ES_OK)
    bench_die("search: %s", es_errmsg(s));
  for (int i = 0; i < K; i++)
    if ((size_t)i >= res->n || strcmp(res->hits[i].id, PQgetvalue(r, i, 0)) != 0)
      bench_die("pgbench's statement and es_search disagree at rank %d", i + 1);
  es_results_free(res);
  es_close(s);
  free(v);
  PQclear(r);
  return index;
}

/* ---- pgbench ---------------------------------------------------------------- */

/* Writes pgbench's script: one search with a random query of the 1,000. */
static void write_pgbench_script(const char *path) {
  char vec[96], sql[1024];
  snprintf(vec, sizeof vec, QVEC, ":q");
  search_sql(sql, sizeof sql, vec, ":k");
  FILE *f = fopen(path, "w");
  if (f == NULL)
    bench_die("%s: %s", path, strerror(errno));
  fprintf(f, "\\set q random(1, %d)\n\\set k %d\n%s;\n", N_QUERIES, K, sql);
  if (fclose(f) != 0)
    bench_die("%s: %s", path, strerror(errno));
}

/* The number after key in text, or -1. */
static double number_after(const char *text, const char *key) {
  const char *p = strstr(text, key);
  return p ? strtod(p + strlen(key), NULL) : -1;
}

/* Reads the latencies of pgbench's per-transaction logs (prefix.*),
 * removes them, and puts p50/p99 into pt. */
static void pgbench_latencies(const char *prefix, point *pt) {
  char pattern[300];
  snprintf(pattern, sizeof pattern, "%s.*", prefix);
  glob_t g;
  if (glob(pattern, 0, NULL, &g) != 0)
    bench_die("no pgbench logs %s", pattern);
  double *lat = NULL;
  size_t n = 0, cap = 0;
  for (size_t i = 0; i < g.gl_pathc; i++) {
    FILE *f = fopen(g.gl_pathv[i], "r");
    long long client, tx, us;
    int script;
    while (f && fscanf(f, "%lld %lld %lld %d %*s %*s", &client, &tx, &us,
                       &script) == 4) {
      if (n == cap) {
        cap = cap ? cap * 2 : 4096;
        lat = realloc(lat, cap * sizeof *lat);
        if (lat == NULL)
          bench_die("out of memory");
      }
      lat[n++] = (double)us / 1e3;
    }
    if (f)
      fclose(f);
    unlink(g.gl_pathv[i]);
  }
  globfree(&g);
  qsort(lat, n, sizeof *lat, cmp_double);
  pt->p50_ms = percentile(lat, n, 50);
  pt->p99_ms = percentile(lat, n, 99);
  free(lat);
}

/* pgbench at conns clients for secs seconds. */
static void run_pgbench(int conns, int threads, int secs, point *pt) {
  char script[128], out[128], prefix[128], c[16], j[16], t[16], logp[160];
  snprintf(script, sizeof script, "%s/search.sql", root);
  snprintf(out, sizeof out, "%s/pgbench.out", root);
  snprintf(prefix, sizeof prefix, "%s/pgbench_log", root);
  snprintf(logp, sizeof logp, "--log-prefix=%s", prefix);
  snprintf(c, sizeof c, "%d", conns);
  snprintf(j, sizeof j, "%d", conns < threads ? conns : threads);
  snprintf(t, sizeof t, "%d", secs);
  char *argv[] = {PGBENCH, "-n", "-M", "prepared", "-f", script, "-c", c, "-j", j,
                  "-T", t, "-l", logp, conninfo, NULL};
  double cpu;
  int st = run_to_file(argv, HNSW_OPTIONS, out, false, &cpu);
  char *text = slurp(out);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    bench_die("pgbench exited with %d:\n%s", WEXITSTATUS(st), text);
  *pt = (point){.conns = conns};
  pt->qps = number_after(text, "tps = ");
  pt->requests = (long long)number_after(text, "actually processed: ");
  double failed = number_after(text, "number of failed transactions: ");
  pt->errors = failed > 0 ? (long long)failed : 0;
  pt->client_cores = cpu / secs;
  free(text);
  if (pt->qps <= 0)
    bench_die("pgbench printed no tps (see %s)", out);
  pgbench_latencies(prefix, pt);
}

/* ---- wrk and the server --------------------------------------------------------- */

/* Writes wrk's Lua script: each thread cycles through the request bodies
 * from its own starting point; with stop_after, each thread stops after
 * that many responses (wrk itself only knows durations).  done() prints
 * one line for the benchmark to read. */
static void write_wrk_script(const char *path, bool stop_after) {
  FILE *f = fopen(path, "w");
  if (f == NULL)
    bench_die("%s: %s", path, strerror(errno));
  fputs("-- bench/run serve: POST /v1/search through the query bodies\n"
        "local reqs, n, next, limit, seen = {}, 0, 0, 0, 0\n"
        "local threads = 0\n"
        "function setup(thread)\n"
        "  thread:set(\"tid\", threads)\n"
        "  threads = threads + 1\n"
        "end\n"
        "function init(args)\n"
        "  local h = {[\"Content-Type\"] = \"application/json\"}\n"
        "  for line in io.lines(args[1]) do\n"
        "    n = n + 1\n"
        "    reqs[n] = wrk.format(\"POST\", \"/v1/search\", h, line)\n"
        "  end\n"
        "  next = (tid * 379) % n\n"
        "  limit = tonumber(args[2]) or 0\n"
        "end\n"
        "function request()\n"
        "  next = next % n + 1\n"
        "  return reqs[next]\n"
        "end\n", f);
  if (stop_after)
    fputs("function response(status, headers, body)\n"
          "  seen = seen + 1\n"
          "  if seen >= limit then wrk.thread:stop() end\n"
          "end\n", f);
  fputs("function done(s, latency, requests)\n"
        "  local e = s.errors\n"
        "  io.write(string.format(\"wrk-result requests=%d duration_us=%d \" ..\n"
        "    \"p50_us=%d p99_us=%d connect=%d read=%d write=%d status=%d \" ..\n"
        "    \"timeout=%d\\n\", s.requests, s.duration, latency:percentile(50),\n"
        "    latency:percentile(99), e.connect, e.read, e.write, e.status,\n"
        "    e.timeout))\n"
        "end\n", f);
  if (fclose(f) != 0)
    bench_die("%s: %s", path, strerror(errno));
}

/* The CPU seconds process pid has used, from /proc/PID/stat. */
static double proc_cpu(pid_t pid) {
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* past the command name */
  unsigned long long ut = 0, stime = 0;
  if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                          "%llu %llu", &ut, &stime) != 2)
    bench_die("cannot read %s", path);
  return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* The resident set of pid now. */
static rss proc_rss(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    bench_die("%s: %s", path, strerror(errno));
  rss r = {-1, -1};
  while (fgets(line, sizeof line, f)) {
    sscanf(line, "VmRSS: %ld", &r.vm_rss);
    sscanf(line, "VmHWM: %ld", &r.vm_hwm);
  }
  fclose(f);
  if (r.vm_rss < 0 || r.vm_hwm < 0)
    bench_die("no VmRSS/VmHWM in %s", path);
  return r;
}

/* wrk at conns connections against url: for secs seconds, or until each
 * thread has had per_thread responses when per_thread > 0. */
static void run_wrk(const char *url, int conns, int threads, int secs,
                    long long per_thread, point *pt) {
  char script[128], bodies[128], out[128], c[16], t[16], d[32], lim[32];
  snprintf(script, sizeof script, "%s/%s.lua", root, per_thread ? "stop" : "run");
  snprintf(bodies, sizeof bodies, "%s/bodies.jsonl", root);
  snprintf(out, sizeof out, "%s/wrk.out", root);
  snprintf(c, sizeof c, "%d", conns);
  snprintf(t, sizeof t, "%d", conns < threads ? conns : threads);
  snprintf(d, sizeof d, "%ds", per_thread ? 86400 : secs);
  snprintf(lim, sizeof lim, "%lld", per_thread);
  char *argv[] = {WRK, "-t", t, "-c", c, "-d", d, "--timeout", "10s", "--latency",
                  "-s", script, (char *)url, "--", bodies, lim, NULL};
  double s0 = proc_cpu(server_pid);
  double cpu, t0 = bench_now_s();
  int st = run_to_file(argv, NULL, out, per_thread > 0, &cpu);
  double wall = bench_now_s() - t0;
  double server_cpu = proc_cpu(server_pid) - s0;
  char *text = slurp(out);
  const char *line = strstr(text, "wrk-result ");
  long long req = 0, dur = 0, p50 = 0, p99 = 0, ec = 0, er = 0, ew = 0, es = 0, et = 0;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || line == NULL ||
      sscanf(line, "wrk-result requests=%lld duration_us=%lld p50_us=%lld "
             "p99_us=%lld connect=%lld read=%lld write=%lld status=%lld "
             "timeout=%lld", &req, &dur, &p50, &p99, &ec, &er, &ew, &es, &et) != 9)
    bench_die("wrk exited with %d:\n%s", WEXITSTATUS(st), text);
  free(text);
  *pt = (point){.conns = conns, .requests = req};
  pt->qps = (double)req / ((double)dur / 1e6);
  pt->p50_ms = (double)p50 / 1e3;
  pt->p99_ms = (double)p99 / 1e3;
  pt->client_cores = cpu / wall;
  pt->server_cores = server_cpu / wall;
  pt->errors = ec + er + ew + es + et;
  if (pt->errors)
    snprintf(pt->errors_note, sizeof pt->errors_note, "connect %lld, read %lld, "
             "write %lld, non-2xx %lld, timeout %lld", ec, er, ew, es, et);
}

/* Starts `embstore --db CONNINFO serve` on a free loopback port (cache_mb
 * < 0: the default cache) and waits until it listens; its URL into url. */
static void start_server(int cache_mb, int pool, const char *name, char *url,
                         size_t cap) {
  char ready[128], log[128], cache[16], pl[16];
  snprintf(ready, sizeof ready, "%s/ready-%s", root, name);
  snprintf(log, sizeof log, "%s/serve-%s.log", root, name);
  snprintf(cache, sizeof cache, "%d", cache_mb);
  snprintf(pl, sizeof pl, "%d", pool);
  unlink(ready);
  server_pid = fork();
  if (server_pid < 0)
    bench_die("fork: %s", strerror(errno));
  if (server_pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    dup2(fd, 2); /* the access log */
    char *argv[16] = {EMBSTORE_BIN, "--db", conninfo, "serve", "--listen",
                      "127.0.0.1:0", "--ready-file", ready, "--pool", pl};
    int n = 10;
    if (cache_mb >= 0) {
      argv[n++] = "--cache-mb";
      argv[n++] = cache;
    }
    argv[n] = NULL;
    execv(argv[0], argv);
    _exit(127);
  }
  /* A benchmark, not a test: polling with a short sleep is what it should do. */
  for (double until = bench_now_s() + 60; bench_now_s() < until; usleep(20000)) {
    int st;
    if (waitpid(server_pid, &st, WNOHANG) == server_pid) {
      server_pid = 0;
      bench_die("embstore serve exited with %d (see %s)", WEXITSTATUS(st), log);
    }
    FILE *f = fopen(ready, "r");
    char hp[128] = "";
    if (f && fgets(hp, sizeof hp, f)) {
      fclose(f);
      hp[strcspn(hp, "\n")] = '\0';
      snprintf(url, cap, "http://%s/v1/search", hp);
      return;
    }
    if (f)
      fclose(f);
  }
  bench_die("embstore serve did not listen within 60 s (see %s)", log);
}

/* SIGTERM, then waits; returns its wait status. */
static int stop_server(void) {
  int st = 0;
  kill(server_pid, SIGTERM);
  while (waitpid(server_pid, &st, 0) < 0)
    if (errno != EINTR)
      bench_die("waitpid: %s", strerror(errno));
  server_pid = 0;
  return st;
}

/* Prints a point as it is measured. */
static void print_point(const char *what, const point *p) {
  printf("  %-22s %2d connections: %9.0f q/s  p50 %7.2f ms  p99 %7.2f ms  "
         "client %.2f cores, server %.2f%s%s\n", what, p->conns, p->qps, p->p50_ms,
         p->p99_ms, p->client_cores, p->server_cores, p->errors ? "  ERRORS: " : "", p->errors_note);
  fflush(stdout);
}

/* One server configuration: warm-up, the throughput points, the RSS run. */
static void run_server(server_run *sr, const int *conns, int n_conns, int threads,
                       int pool, int secs, long long rss_requests) {
  char url[256];
  start_server(sr->cache_mb, pool, sr->cache_mb == 0 ? "uncached" : "cached",
               url, sizeof url);
  int warm_conns = conns[n_conns - 1];
  point warm;
  run_wrk(url, warm_conns, threads, 0, 2 * N_QUERIES, &warm);
  printf("  %-22s warm-up: %lld requests, %.0f q/s%s%s\n", sr->name,
         warm.requests, warm.qps, warm.errors ? "  ERRORS: " : "",
         warm.errors_note);
  sr->after_warmup = proc_rss(server_pid);
  for (int i = 0; i < n_conns; i++) {
    run_wrk(url, conns[i], threads, secs, 0, &sr->pts[i]);
    print_point(sr->name, &sr->pts[i]);
  }
  sr->after_points = proc_rss(server_pid);
  int t = warm_conns < threads ? warm_conns : threads;
  point run;
  run_wrk(url, warm_conns, threads, 0, (rss_requests + t - 1) / t, &run);
  sr->after_run = proc_rss(server_pid);
  sr->run_requests = run.requests;
  sr->run_errors = run.errors;
  sr->run_seconds = (double)run.requests / run.qps;
  printf("  %-22s %lld requests at %d connections in %.0f s: VmRSS %ld -> %ld "
         "-> %ld KiB, VmHWM %ld -> %ld -> %ld KiB%s%s\n", sr->name, run.requests,
         warm_conns, sr->run_seconds, sr->after_warmup.vm_rss,
         sr->after_points.vm_rss, sr->after_run.vm_rss, sr->after_warmup.vm_hwm,
         sr->after_points.vm_hwm, sr->after_run.vm_hwm,
         run.errors ? "  ERRORS: " : "", run.errors_note);
  sr->exit_status = stop_server();
}

/* ---- the report --------------------------------------------------------------- */

/* "met" or "missed" for value against a target it must reach. */
static const char *verdict(double value, double target) {
  return value >= target ? "met" : "**missed**";
}

/* One row of the throughput table. */
static void point_row(FILE *f, const char *who, const point *p, const point *ceil,
                      double target) {
  char vs[32] = "1.00×", tgt[48] = "the ceiling";
  if (p != ceil) {
    double x = p->qps / ceil->qps;
    snprintf(vs, sizeof vs, "%.2f×", x);
    snprintf(tgt, sizeof tgt, "≥ %.1f×: %s", target, verdict(x, target));
  }
  char cores[48], per[32] = "–";
  if (p == ceil)
    snprintf(cores, sizeof cores, "%.2f / –", p->client_cores);
  else {
    snprintf(cores, sizeof cores, "%.2f / %.2f", p->client_cores, p->server_cores);
    snprintf(per, sizeof per, "%.0f µs", p->server_cores / p->qps * 1e6);
  }
  fprintf(f, "| %s | %d | %.0f | %s | %.2f ms | %.2f ms | %s | %s | %lld%s%s%s | %s |\n",
          who, p->conns, p->qps, vs, p->p50_ms, p->p99_ms, cores, per, p->errors,
          p->errors ? " (" : "", p->errors_note, p->errors ? ")" : "", tgt);
}

/* One row of the resident-set table. */
static void rss_row(FILE *f, const server_run *sr) {
  double change = (double)sr->after_run.vm_rss / (double)sr->after_points.vm_rss - 1;
  double hwm = (double)sr->after_run.vm_hwm / (double)sr->after_points.vm_hwm - 1;
  double worst = change > hwm ? change : hwm;
  fprintf(f, "| %s | %.1f / %.1f MiB | %.1f / %.1f MiB | %lld in %.0f s | "
             "%.1f / %.1f MiB | %+.1f%% / %+.1f%% | %lld | %s |\n",
          sr->name, sr->after_warmup.vm_rss / 1024.0,
          sr->after_warmup.vm_hwm / 1024.0, sr->after_points.vm_rss / 1024.0,
          sr->after_points.vm_hwm / 1024.0, sr->run_requests, sr->run_seconds,
          sr->after_run.vm_rss / 1024.0, sr->after_run.vm_hwm / 1024.0,
          change * 100, hwm * 100, sr->run_errors,
          worst <= 0.10 ? "met" : "**missed**");
}

/* What the report says about the store and the run. */
typedef struct setup_info {
  const char *cmd, *server, *versions, *index_def;
  size_t docs, dim;
  double load_s;
  int secs, threads, pool;
  bool hnsw_plan;     /* whether pgbench's statement walks the HNSW index */
  bool lib_hnsw_plan; /* whether the library's statement does */
} setup_info;

/* Writes the section "HTTP search (embstore serve)" into path. */
static void write_report(const char *path, const setup_info *in, int n_conns,
                         const point *pg, const server_run *sr) {
  report rep;
  if (report_open(&rep) != 0)
    bench_die("out of memory");
  FILE *f = rep.f;
  fprintf(f, "## HTTP search (embstore serve)\n\n"
             "Produced by `%s` on %s (%ld cores; %s; %s).  %zu documents of "
             "%zu dimensions (no chunks) loaded through es_batch_upsert with "
             "the index deferred in %.0f s; index `%s`.  1,000 fixed query "
             "vectors (corpus_query_vector 0–999), k %d, no filters.  Each "
             "point runs %d s after a warm-up of two passes over the queries "
             "per client thread; client threads: at most %d.  One run; the "
             "machine is shared, and the client, `embstore serve` and "
             "PostgreSQL share its cores.\n\n",
          in->cmd, rep.when, sysconf(_SC_NPROCESSORS_ONLN), in->versions,
          in->server, in->docs, in->dim, in->load_s, in->index_def, K, in->secs,
          in->threads);
  fprintf(f, "| client → server | connections | queries/s | vs pgbench | p50 | "
             "p99 | CPU cores: client / embstore | embstore CPU per request | "
             "errors | target |\n"
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (int i = 0; i < n_conns; i++) {
    point_row(f, "pgbench -M prepared → PostgreSQL", &pg[i], &pg[i], 0);
    point_row(f, "wrk → serve --cache-mb 0", &sr[0].pts[i], &pg[i], 0.8);
    point_row(f, "wrk → serve (default cache)", &sr[1].pts[i], &pg[i], 5.0);
  }
  fprintf(f, "\n*pgbench* (PostgreSQL 15's, `-M prepared`, `-j` as the client "
             "threads, PGOPTIONS `%s` as the pool sets it) runs the library's "
             "search statement from src/search.c with the query vector read "
             "by a scalar subquery from a table of the same 1,000 vectors "
             "(`\\set q random(1, %d)`) and the limit a parameter; it returns "
             "es_search's ten ids for a query (checked).  Its plan %s the HNSW "
             "index; the plan of the library's statement (prepared, the "
             "vector a parameter) %s it.  Both wrk rows are "
             "POST /v1/search with `{\"vector\":[...],\"k\":%d}` through a "
             "Lua script cycling through the 1,000 bodies, against `embstore "
             "serve --pool %d`, without and with its default --cache-mb (64 "
             "MB; the 1,000 answers fit), its access log to a file; p50/p99 are wrk's "
             "latency percentiles and pgbench's per-transaction log.  *CPU "
             "cores* is CPU seconds per second of the client process and of "
             "the server process (PostgreSQL's backends are not counted); "
             "*embstore CPU per request* is the server process's CPU time "
             "divided by the requests it answered.\n\n",
          HNSW_OPTIONS, N_QUERIES,
          in->hnsw_plan ? "walks" : "**does not walk**",
          in->lib_hnsw_plan ? "walks" : "**does not walk**",
          K, in->pool);
  fprintf(f, "Resident set of the server (VmRSS / VmHWM from /proc/PID/status) "
             "after the warm-up, after the throughput points, and after a "
             "further run of requests at the largest connection count; the "
             "target compares the last two (within 10%%):\n\n"
             "| server | after warm-up | after the points | requests | after "
             "them | change RSS / HWM | errors | target |\n"
             "|---|---:|---:|---:|---:|---:|---:|---|\n");
  rss_row(f, &sr[0]);
  rss_row(f, &sr[1]);
  fprintf(f, "\nBoth servers exited with status %d and %d after SIGTERM.\n",
          WIFEXITED(sr[0].exit_status) ? WEXITSTATUS(sr[0].exit_status) : -1,
          WIFEXITED(sr[1].exit_status) ? WEXITSTATUS(sr[1].exit_status) : -1);
  if (report_close(&rep, path, "HTTP search (embstore serve)") != 0)
    bench_die("cannot write %s: %s", path, strerror(errno));
}

/* ---- main ---------------------------------------------------------------------- */

/* Parses "1,8,32" into conns (ascending); returns how many. */
static int parse_conns(const char *s, int *conns) {
  int n = 0;
  for (char *end; *s && n < MAX_CONNS; s = *end ? end + 1 : end) {
    long v = strtol(s, &end, 10);
    if (end == s || v < 1 || v > 1000 || (*end && *end != ',') ||
        (n > 0 && v <= conns[n - 1]))
      return 0;
    conns[n++] = (int)v;
  }
  return *s ? 0 : n;
}

/* One value of the server, as text, into out. */
static void server_value(PGconn *pg, const char *sql, char *out, size_t cap) {
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
    bench_die("%s: %s", sql, PQresultErrorMessage(r));
  snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
  PQclear(r);
}

int main(int argc, char **argv) {
  bench_on_die(stop_all);
  size_t docs = 100000, dim = 384;
  int secs = 30, threads = 2, pool = 32, conns[MAX_CONNS], n_conns = 3;
  long long rss_requests = 200000;
  const char *out = "BENCHMARKS.md";
  bool keep = false;
  conns[0] = 1, conns[1] = 8, conns[2] = 32;
  char cmd[256];
  bench_command_line(cmd, sizeof cmd, "serve", argc, argv);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--docs") && i + 1 < argc)
      docs = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--dim") && i + 1 < argc)
      dim = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      secs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--rss-requests") && i + 1 < argc)
      rss_requests = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
      n_conns = parse_conns(argv[++i], conns);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--pool") && i + 1 < argc)
      pool = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else if (!strcmp(argv[i], "--keep"))
      keep = true;
    else
      bench_die("usage: bench/serve [--docs N] [--dim D] [--seconds S] "
          "[--rss-requests N] [--conns 1,8,32] [--threads T] [--pool N] "
          "[--out FILE] [--keep]");
  }
  if (docs < 100 || dim < 1 || dim > 16000 || secs < 1 || threads < 1 ||
      pool < 1 || pool > 1000 || rss_requests < 1 || n_conns == 0)
    bench_die("--docs must be at least 100, --dim 1..16000, --conns ascending "
        "counts 1..1000, the others positive");
  signal(SIGPIPE, SIG_IGN);
  snprintf(root, sizeof root, "/tmp/es-bench-XXXXXX");
  if (mkdtemp(root) == NULL)
    bench_die("mkdtemp: %s", strerror(errno));
  chmod(root, 0711);
  char home[128], where[200];
  snprintf(home, sizeof home, "%s/pg", root);
  if (es_cluster_open(home, &cluster) != ES_OK || es_cluster_start(cluster) != ES_OK)
    bench_die("cluster: %s", es_cluster_errmsg(cluster));
  snprintf(conninfo, sizeof conninfo, "%s", es_cluster_conninfo(cluster));
  const char *opts = getenv("EMBSTORE_PG_OPTIONS");
  snprintf(where, sizeof where, "the embedded cluster as embstore configures "
           "it%s%s%s", opts && opts[0] ? ", EMBSTORE_PG_OPTIONS `" : "",
           opts && opts[0] ? opts : "", opts && opts[0] ? "`" : "");

  printf("loading %zu documents of %zu dimensions...\n", docs, dim);
  fflush(stdout);
  setup_info in = {.cmd = cmd, .server = where, .docs = docs, .dim = dim,
                   .secs = secs, .threads = threads, .pool = pool};
  in.load_s = load_store(docs, dim);
  PGconn *pg = PQconnectdb(conninfo);
  if (PQstatus(pg) != CONNECTION_OK)
    bench_die("connect: %s", PQerrorMessage(pg));
  char bodies[128], script[128], versions[300], v[4][64], def[512];
  snprintf(bodies, sizeof bodies, "%s/bodies.jsonl", root);
  write_queries(pg, dim, bodies);
  in.hnsw_plan = check_sql(pg, dim, &in.lib_hnsw_plan);
  exec_or_die(pg, "CHECKPOINT");
  server_value(pg, "SELECT current_setting('server_version')", v[0], sizeof v[0]);
  server_value(pg, "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
               v[1], sizeof v[1]);
  server_value(pg, "SELECT current_setting('shared_buffers')", v[2], sizeof v[2]);
  server_value(pg, "SELECT current_setting('hnsw.ef_search')", v[3], sizeof v[3]);
  server_value(pg, "SELECT pg_get_indexdef('embeddings_embedding_hnsw_idx'::regclass)",
               def, sizeof def);
  PQfinish(pg);
  snprintf(versions, sizeof versions, "PostgreSQL %s, pgvector %s, shared_buffers "
           "%s, hnsw.ef_search %s; wrk 4.1", v[0], v[1], v[2], v[3]);
  in.versions = versions;
  in.index_def = def;
  printf("loaded in %.1f s; %s; %s; the HNSW index is %sused by pgbench's "
         "statement, %sby the library's\n", in.load_s, versions, where,
         in.hnsw_plan ? "" : "NOT ", in.lib_hnsw_plan ? "" : "NOT ");
  fflush(stdout);

  snprintf(script, sizeof script, "%s/run.lua", root);
  write_wrk_script(script, false);
  snprintf(script, sizeof script, "%s/stop.lua", root);
  write_wrk_script(script, true);
  snprintf(script, sizeof script, "%s/search.sql", root);
  write_pgbench_script(script);

  point pgp[MAX_CONNS], warm;
  run_pgbench(conns[n_conns - 1], threads, secs < 5 ? secs : 5, &warm);
  printf("  pgbench warm-up: %.0f q/s\n", warm.qps);
  for (int i = 0; i < n_conns; i++) {
    run_pgbench(conns[i], threads, secs, &pgp[i]);
    print_point("pgbench -M prepared", &pgp[i]);
  }
  server_run sr[2] = {{.name = "serve --cache-mb 0", .cache_mb = 0},
                      {.name = "serve (default cache)", .cache_mb = -1}};
  for (int i = 0; i < 2; i++)
    run_server(&sr[i], conns, n_conns, threads, pool, secs, rss_requests);
  write_report(out, &in, n_conns, pgp, sr);
  printf("wrote %s\n", out);
  es_cluster_stop(cluster);
  es_cluster_close(cluster);
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
