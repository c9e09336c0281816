/* index_build.c - the HNSW index build: memory sized from the data,
 * parallel workers, pgvector's notice heard, progress read from
 * pg_stat_progress_create_index (see "Index builds" in embstore.h).
 *
 * pgvector builds the graph in maintenance_work_mem; once it is full it
 * says so once (a NOTICE), writes what it has and inserts every further
 * vector on disk, several times slower.  The server's default (64 MB)
 * holds about 25,000 vectors of 384 dimensions, so a first load of any
 * size falls off that cliff unless the build session sizes it. */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "schema.h"

#define BYTES_PER_VECTOR_FIXED 780 /* see embstore.h */
#define MARGIN_MB 8
#define MB_PER_PROCESS 32 /* PostgreSQL launches no worker getting less */
#define CAP_MB 1024
#define POLL_MS 500

/* ---- the plan ------------------------------------------------------------ */

void es__build_plan(int64_t vectors, int dim, int override_mb,
                    const es__build_facts *f, int *memory_mb, int *workers) {
  assert(f != NULL && memory_mb != NULL && workers != NULL && dim > 0);
  int64_t cap = CAP_MB;
  if (f->machine_mb > 0 && f->machine_mb / 4 < cap)
    cap = f->machine_mb / 4;
  if (f->server_mwm_mb > cap)
    cap = f->server_mwm_mb;
  if (cap < 1)
    cap = 1;

  int w = f->max_parallel_workers < f->max_worker_processes
              ? f->max_parallel_workers
              : f->max_worker_processes;
  if (f->cpus > 0) {
    if (f->cpus - 1 < w)
      w = f->cpus - 1; /* the leader builds too */
  } else if (f->server_workers < w) {
    w = f->server_workers; /* a remote server: its own setting */
  }
  if (w < 0)
    w = 0;

  int64_t mem;
  if (override_mb > 0) {
    mem = override_mb;
  } else {
    double bytes = (double)(vectors > 0 ? vectors : 0) *
                   (4.0 * dim + BYTES_PER_VECTOR_FIXED) * 1.1;
    mem = (int64_t)ceil(bytes / (1024.0 * 1024.0)) + MARGIN_MB;
    if (w > 0 && mem < (int64_t)MB_PER_PROCESS * (w + 1))
      mem = (int64_t)MB_PER_PROCESS * (w + 1);
    if (mem > cap)
      mem = cap;
    if (mem < f->server_mwm_mb)
      mem = f->server_mwm_mb; /* never below what the server gives */
  }
  if (mem > INT32_MAX / 1024)
    mem = INT32_MAX / 1024; /* the server's own bound, in kB */
  while (w > 0 && mem / (w + 1) < MB_PER_PROCESS)
    w--;
  *memory_mb = (int)mem;
  *workers = w;
}

/* ---- what the server is ---------------------------------------------------- */

/* The memory of this machine in MiB, or its cgroup's limit when lower. */
static int64_t machine_memory_mb(void) {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  int64_t mb = pages > 0 && size > 0 ? (int64_t)pages * size / (1 << 20) : 0;
  FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
  if (f != NULL) {
    char line[64];
    if (fgets(line, sizeof line, f) && line[0] >= '0' && line[0] <= '9') {
      int64_t limit = strtoll(line, NULL, 10) / (1 << 20);
      if (limit > 0 && (mb == 0 || limit < mb))
        mb = limit;
    }
    fclose(f);
  }
  return mb;
}

/* Whether the server runs on this machine: reached through a Unix-domain
 * socket (the embedded cluster, a local server). */
static bool server_is_local(PGconn *pg) {
  const char *host = PQhost(pg);
  return host == NULL || host[0] == '\0' || host[0] == '/' || host[0] == '@';
}

/* The settings a build depends on, as integers (pg_settings.setting:
 * maintenance_work_mem in kB), whatever DateStyle or locale say. */
typedef struct settings {
  int64_t mwm_kb;
  int max_worker_processes, max_parallel_workers, maintenance_workers;
} settings;

/* Reads the settings of this session. */
static es_status read_settings(es_store *s, es__conn *c, settings *out) {
  memset(out, 0, sizeof *out);
  PGresult *r = PQexec(c->pg,
                       "SELECT name, setting FROM pg_settings WHERE name IN "
                       "('maintenance_work_mem', 'max_worker_processes', "
                       "'max_parallel_workers', 'max_parallel_maintenance_workers')");
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot read the server's settings");
    PQclear(r);
    return rc;
  }
  for (int i = 0; i < PQntuples(r); i++) {
    const char *name = PQgetvalue(r, i, 0);
    long long v = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    if (strcmp(name, "maintenance_work_mem") == 0)
      out->mwm_kb = v;
    else if (strcmp(name, "max_worker_processes") == 0)
      out->max_worker_processes = (int)v;
    else if (strcmp(name, "max_parallel_workers") == 0)
      out->max_parallel_workers = (int)v;
    else
      out->maintenance_workers = (int)v;
  }
  PQclear(r);
  return ES_OK;
}

/* Reads what the plan needs to know of the server. */
static es_status read_facts(es_store *s, es__conn *c, es__build_facts *f) {
  settings set;
  es_status rc = read_settings(s, c, &set);
  memset(f, 0, sizeof *f);
  if (rc != ES_OK)
    return rc;
  f->server_mwm_mb = set.mwm_kb / 1024;
  f->max_worker_processes = set.max_worker_processes;
  f->max_parallel_workers = set.max_parallel_workers;
  f->server_workers = set.maintenance_workers;
  if (server_is_local(c->pg)) {
    f->machine_mb = machine_memory_mb();
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    f->cpus = n > 0 ? (int)n : 0;
  }
  return ES_OK;
}

/* The vectors to index in def's table and their dimension: the planner's
 * estimate scaled to the table's current size (as the planner does), or
 * a count when the table has no statistics yet. */
static es_status count_vectors(es_store *s, es__conn *c, const es__index_def *def,
                               int64_t *vectors, int *dim, int64_t *pages) {
  const char *v[2] = {def->table, def->column};
  PGresult *r = PQexecParams(
      c->pg,
      "SELECT c.reltuples::float8, c.relpages::int8, "
      "(pg_relation_size(c.oid) / current_setting('block_size')::int)::int8, "
      "a.atttypmod FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
      "WHERE c.oid = $1::regclass AND a.attname = $2",
      2, NULL, v, NULL, NULL, 0);
  if (!es__res_ok(r) || PQntuples(r) != 1) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot size the index build");
    PQclear(r);
    return rc;
  }
  double tuples = es__strtod(PQgetvalue(r, 0, 0), NULL);
  int64_t relpages = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  *pages = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
  *dim = atoi(PQgetvalue(r, 0, 3));
  PQclear(r);
  if (tuples > 0 && relpages > 0) {
    *vectors = (int64_t)(tuples / (double)relpages * (double)*pages + 0.5);
    return ES_OK;
  }
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", def->table);
  r = PQexec(c->pg, sql);
  if (!es__res_ok(r)) {
    es_status rc = es__fail_pg(s, c->pg, r, "cannot size the index build");
    PQclear(r);
    return rc;
  }
  *vectors = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return ES_OK;
}

/* ---- the settings ---------------------------------------------------------- */

/* Sets name to value until the transaction ends; a value the server
 * refuses keeps the server's own, and note says so. */
static void set_local(es__conn *c, const char *name, const char *value,
                      es_index_build *rep) {
  const char *v[2] = {name, value};
  PQclear(PQexec(c->pg, "SAVEPOINT es_build_setting"));
  PGresult *r = PQexecParams(c->pg, "SELECT set_config($1, $2, true)", 2, NULL,
                             v, NULL, NULL, 0);
  if (!es__res_ok(r)) {
    size_t len = strlen(rep->note);
    snprintf(rep->note + len, sizeof rep->note - len,
             "%sthe server refused %s = %s, so its own value was used: %s",
             len ? "; " : "", name, value,
             PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                 ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
                 : "no reason given");
    PQclear(PQexec(c->pg, "ROLLBACK TO SAVEPOINT es_build_setting"));
  }
  PQclear(r);
  PQclear(PQexec(c->pg, "RELEASE SAVEPOINT es_build_setting"));
}

/* Reads back the build's memory and workers as the server has them. */
static es_status read_back(es_store *s, es__conn *c, es_index_build *rep) {
  settings set;
  es_status rc = read_settings(s, c, &set);
  if (rc == ES_OK) {
    rep->memory_mb = (int)(set.mwm_kb / 1024);
    rep->workers = set.maintenance_workers;
  }
  return rc;
}

/* Applies memory_mb and workers for this transaction, hears notices (and
 * pgvector's DEBUG1 "using N parallel workers"), and reads them back. */
static es_status apply(es_store *s, es__conn *c, int memory_mb, int workers,
                       es_index_build *rep) {
  char value[32];
  snprintf(value, sizeof value, "%dMB", memory_mb);
  set_local(c, "maintenance_work_mem", value, rep);
  snprintf(value, sizeof value, "%d", workers);
  set_local(c, "max_parallel_maintenance_workers", value, rep);
  set_local(c, "client_min_messages", "debug1", rep);
  return read_back(s, c, rep);
}

/* ---- the build ------------------------------------------------------------- */

typedef struct build_run {
  es_index_build *rep;
  const es__build_watch *watch;
  int launched; /* workers pgvector said it launched, -1 before it says */
} build_run;

/* The notices of the build: pgvector's "graph no longer fits" becomes
 * the report's notice; its DEBUG1 line says how many workers it got. */
static void hear(void *arg, const PGresult *res) {
  build_run *b = arg;
  const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  int n;
  if (msg == NULL)
    return;
  if (sev && strcmp(sev, "DEBUG") == 0) {
    if (sscanf(msg, "using %d parallel workers", &n) == 1)
      b->launched = n;
    return;
  }
  if (strstr(msg, "no longer fits into maintenance_work_mem") != NULL) {
    b->rep->graph_fit = 0;
    snprintf(b->rep->notice, sizeof b->rep->notice, "%s", msg);
  }
}

/* Tells the watcher how far the build is. */
static void tell(build_run *b, double fraction, size_t done, size_t total) {
  if (b->watch == NULL || b->watch->phase == NULL)
    return;
  es_phase_info info = {ES_PHASE_INDEXING, fraction, done, total, b->rep};
  b->watch->phase(&info, b->watch->user);
}

/* Reads the build's progress (pid's row of pg_stat_progress_create_index)
 * on other and tells the watcher; silent when it cannot. */
static void poll_progress(build_run *b, es__conn *other, int pid) {
  char p[16];
  snprintf(p, sizeof p, "%d", pid);
  const char *v[1] = {p};
  PGresult *r = PQexecParams(other->pg,
                             "SELECT blocks_done, blocks_total FROM "
                             "pg_stat_progress_create_index WHERE pid = $1::int",
                             1, NULL, v, NULL, NULL, 0);
  size_t done = 0, total = 0;
  if (es__res_ok(r) && PQntuples(r) == 1) {
    done = (size_t)strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    total = (size_t)strtoull(PQgetvalue(r, 0, 1), NULL, 10);
  }
  PQclear(r);
  double fraction = total > 0 ? (double)done / (double)total : 0;
  tell(b, fraction > 0.99 ? 0.99 : fraction, done, total);
}

/* Runs sql on c, polling the progress on a second connection (when one is
 * free) about every POLL_MS while it runs.  Returns its last result. */
static PGresult *run_watched(es_store *s, es__conn *c, const char *sql,
                             build_run *b) {
  if (b->watch == NULL || b->watch->phase == NULL || !PQsendQuery(c->pg, sql))
    return PQexec(c->pg, sql);
  es__conn *other = NULL;
  es__err saved = *es__last_err(s);
  if (es__acquire_quiet(s, &other) != ES_OK)
    other = NULL;
  *es__last_err(s) = saved;
  int pid = PQbackendPID(c->pg);
  int64_t next = es__now_ms() + POLL_MS;
  PGresult *last = NULL;
  for (;;) {
    if (PQconsumeInput(c->pg) && PQisBusy(c->pg)) {
      int64_t wait = next - es__now_ms();
      struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLIN};
      if (wait > 0 && poll(&pfd, 1, (int)wait) > 0)
        continue;
      if (other != NULL)
        poll_progress(b, other, pid);
      else
        tell(b, 0, 0, 0);
      next = es__now_ms() + POLL_MS;
      continue;
    }
    PGresult *r = PQgetResult(c->pg);
    if (r == NULL)
      break;
    if (last == NULL || es__res_ok(last)) {
      PQclear(last);
      last = r; /* the first failure, else the last result */
    } else {
      PQclear(r);
    }
  }
  es__release(s, other);
  return last ? last : PQmakeEmptyPGresult(c->pg, PGRES_FATAL_ERROR);
}

/* Whether a failed parallel build failed for want of (shared) memory, so
 * that a serial build may succeed. */
static bool for_want_of_memory(const PGresult *r) {
  const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  return (state && (strcmp(state, "53100") == 0 || strcmp(state, "53200") == 0)) ||
         (msg && strstr(msg, "shared memory") != NULL);
}

es_status es__build_hnsw(es_store *s, es__conn *c, const es__index_def *def,
                         const es__build_watch *watch) {
  assert(s != NULL && c != NULL && def != NULL && es__index_is_hnsw(def));
  es_index_build local, *rep = watch && watch->report ? watch->report : &local;
  memset(rep, 0, sizeof *rep);
  build_run b = {rep, watch, -1};
  es__build_facts facts;
  int64_t pages = 0;
  int dim = 0, memory_mb, workers;
  es_status rc = read_facts(s, c, &facts);
  if (rc == ES_OK)
    rc = count_vectors(s, c, def, &rep->vectors, &dim, &pages);
  if (rc != ES_OK)
    return rc;
  es__build_plan(rep->vectors, dim > 0 ? dim : 1, s->opts.index_memory_mb,
                 &facts, &memory_mb, &workers);
  if ((rc = apply(s, c, memory_mb, workers, rep)) != ES_OK)
    return rc;
  rep->graph_fit = 1;

  PQnoticeReceiver old = PQsetNoticeReceiver(c->pg, hear, &b);
  double t0 = (double)es__now_ms();
  tell(&b, 0, 0, (size_t)pages);
  PQclear(PQexec(c->pg, "SAVEPOINT es_build"));
  PGresult *r = run_watched(s, c, def->create, &b);
  if (!es__res_ok(r) && rep->workers > 0 && for_want_of_memory(r)) {
    size_t len = strlen(rep->note);
    snprintf(rep->note + len, sizeof rep->note - len,
             "%sthe parallel build with %d workers failed (%s), so it ran "
             "again serially", len ? "; " : "", rep->workers,
             PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    PQclear(r);
    PQclear(PQexec(c->pg, "ROLLBACK TO SAVEPOINT es_build"));
    set_local(c, "max_parallel_maintenance_workers", "0", rep);
    rep->workers = 0;
    rep->graph_fit = 1;
    rep->notice[0] = '\0';
    b.launched = -1;
    r = run_watched(s, c, def->create, &b);
  }
  PQsetNoticeReceiver(c->pg, old, NULL);
  if (!es__res_ok(r)) {
    char what[128];
    snprintf(what, sizeof what, "cannot create index %s", def->name);
    rc = es__fail_pg(s, c->pg, r, what);
    PQclear(r);
    memset(rep, 0, sizeof *rep);
    return rc;
  }
  PQclear(r);
  PQclear(PQexec(c->pg, "RELEASE SAVEPOINT es_build"));
  PQclear(PQexec(c->pg, "SET LOCAL client_min_messages = error"));
  rep->built = 1;
  rep->seconds = ((double)es__now_ms() - t0) / 1000.0;
  rep->workers_launched = b.launched > 0 ? b.launched : 0;
  tell(&b, 1, (size_t)pages, (size_t)pages);
  return ES_OK;
}
