/* test_replica.c - reads on a real streaming replica: a hot standby that
 * the test makes of its own primary with pg_basebackup -R, on a socket of
 * its own.  Reads land there (its pg_stat_activity shows them), a handle
 * reads its own writes at once, a replica held behind is not used past
 * the lag bound, one stopped mid-run makes reads fall back and recover,
 * and a cached search never keeps what the replica had not replayed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#define DIM 4

typedef struct replica {
  char dir[PATH_MAX];      /* its data directory */
  char sock[PATH_MAX];     /* its socket directory */
  char bindir[PATH_MAX];
  char conninfo[PATH_MAX + 128];
  char primary[PATH_MAX + 128]; /* the primary's conninfo */
  es_cluster *cl;          /* the primary */
  bool running;            /* the standby runs */
} replica;

/* The PostgreSQL programs the primary runs: beside its postmaster. */
static void find_bindir(long pid, char *out, size_t cap) {
  char link[64], exe[PATH_MAX];
  snprintf(link, sizeof link, "/proc/%ld/exe", pid);
  ssize_t n = readlink(link, exe, sizeof exe - 1);
  if (n <= 0)
    FAIL("cannot read %s", link);
  exe[n] = '\0';
  snprintf(out, cap, "%s", dirname(exe));
}

/* Runs argv as the servers' user (postgres when we are root) in dir,
 * output to log; fails the test unless it exits 0. */
static void run_pg(const char *dir, const char *log, char *const argv[]) {
  pid_t pid = fork();
  if (pid < 0)
    FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    if (getuid() == 0) {
      struct passwd *pw = getpwnam("postgres");
      if (pw == NULL || setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 ||
          setuid(pw->pw_uid) != 0)
        _exit(126);
    }
    if (chdir(dir) != 0)
      _exit(126);
    execv(argv[0], argv);
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    char buf[2048] = "";
    FILE *f = fopen(log, "r");
    if (f) {
      fseek(f, 0, SEEK_END);
      long size = ftell(f);
      fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0,
            SEEK_SET);
      size_t n = fread(buf, 1, sizeof buf - 1, f);
      buf[n] = '\0';
      fclose(f);
    }
    FAIL("%s failed (status %d): %s", argv[0], st, buf);
  }
}

/* A directory the servers' user owns, mode 0700. */
static void own_dir(const char *path) {
  if (mkdir(path, 0700) != 0 && errno != EEXIST)
    FAIL("mkdir %s: %s", path, strerror(errno));
  if (getuid() == 0) {
    struct passwd *pw = getpwnam("postgres");
    if (pw == NULL || chown(path, pw->pw_uid, pw->pw_gid) != 0)
      FAIL("chown %s to postgres: %s", path, strerror(errno));
  }
}

static void replica_ctl(replica *r, const char *action) {
  char log[PATH_MAX + 16], slog[PATH_MAX + 16], ctl[PATH_MAX + 16],
      opts[PATH_MAX + 128];
  snprintf(log, sizeof log, "%s/../replica.log", r->dir);
  snprintf(slog, sizeof slog, "%s/../server.log", r->dir); /* the server's */
  snprintf(ctl, sizeof ctl, "%s/pg_ctl", r->bindir);
  snprintf(opts, sizeof opts, "-c port=5433 -c listen_addresses='' "
           "-c unix_socket_directories='%s' -c hot_standby_feedback=on", r->sock);
  if (strcmp(action, "start") == 0) {
    char *argv[] = {ctl, "start", "-w", "-t", "60", "-s", "-D", r->dir, "-l",
                    slog, "-o", opts, NULL};
    run_pg(r->dir, log, argv);
    r->running = true;
  } else {
    char *argv[] = {ctl, "stop", "-w", "-t", "60", "-s", "-m", "fast", "-D",
                    r->dir, NULL};
    run_pg(r->dir, log, argv);
    r->running = false;
  }
}

/* A hot standby of the primary cl, started, streaming. */
static void replica_make(es_cluster *cl, replica *r) {
  memset(r, 0, sizeof *r);
  snprintf(r->primary, sizeof r->primary, "%s", es_cluster_conninfo(cl));
  find_bindir(es_cluster_pid(cl), r->bindir, sizeof r->bindir);
  char base[PATH_MAX];
  snprintf(base, sizeof base, "%s/rep", th_tmpdir());
  own_dir(base);
  snprintf(r->dir, sizeof r->dir, "%s/data", base);
  snprintf(r->sock, sizeof r->sock, "%s/sock", base);
  own_dir(r->sock);
  /* The primary's socket directory and user, from its conninfo. */
  char *host = th_conninfo_value(r->primary, "host");
  char *user = th_conninfo_value(r->primary, "user");
  char *db = th_conninfo_value(r->primary, "dbname");
  char prog[PATH_MAX + 32], log[PATH_MAX + 16];
  snprintf(prog, sizeof prog, "%s/pg_basebackup", r->bindir);
  snprintf(log, sizeof log, "%s/replica.log", base);
  char *argv[] = {prog, "-D", r->dir, "-R", "-X", "stream", "-c", "fast",
                  "-h", host, "-p", "5432", "-U", user, NULL};
  run_pg(base, log, argv);
  snprintf(r->conninfo, sizeof r->conninfo,
           "host=%s port=5433 user=%s dbname=%s application_name=es_reader",
           r->sock, user, db);
  free(host);
  free(user);
  free(db);
  replica_ctl(r, "start");
}

/* The one value of sql on pg, or its error, for a failure's message. */
static const char *pg_text(PGconn *pg, const char *sql) {
  static char buf[256];
  PGresult *r = PQexec(pg, sql);
  snprintf(buf, sizeof buf, "%s", PQresultStatus(r) == PGRES_TUPLES_OK
                                      ? PQgetvalue(r, 0, 0)
                                      : PQresultErrorMessage(r));
  PQclear(r);
  return buf;
}

/* WAL bytes of an LSN expression on pg. */
static long long lsn(PGconn *pg, const char *expr) {
  char sql[256];
  snprintf(sql, sizeof sql, "SELECT (%s - '0/0')::bigint", expr);
  return th_pg_int(pg, sql);
}

/* Waits until the replica has replayed all the primary wrote so far. */
static void replica_catch_up(const replica *r) {
  PGconn *p = th_connect(r->primary), *q = th_connect(r->conninfo);
  long long want = lsn(p, "pg_current_wal_flush_lsn()");
  double deadline = th_now() + 60;
  while (lsn(q, "coalesce(pg_last_wal_replay_lsn(), '0/0')") < want) {
    if (th_now() > deadline)
      FAIL("the replica did not replay up to %lld within 60 s", want);
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL); /* polling a condition, not guessing a delay */
  }
  PQfinish(p);
  PQfinish(q);
}

/* Opens a store on the primary that reads from r. */
static es_store *open_with_replica(const replica *r, int max_lag_ms,
                                   size_t cache_bytes) {
  es_options o;
  es_options_init(&o);
  o.conninfo = r->primary;
  o.read_conninfo = r->conninfo;
  o.max_replica_lag_ms = max_lag_ms;
  o.replica_retry_ms = 0;
  o.cache_bytes = cache_bytes;
  o.retry_backoff_ms = 5;
  es_store *s = NULL;
  ASSERT_OK(s, es_open_opts(&o, &s));
  return s;
}

static void put(es_store *s, const char *id, float x, float y) {
  float v[DIM] = {x, y, 0, 0};
  es_doc d = {.id = id, .embedding = v, .dim = DIM, .source_id = "src",
              .text = "replicated text"};
  ASSERT_OK(s, es_upsert(s, &d, NULL));
}

/* Whether id is stored, as a read through s finds it. */
static bool found(es_store *s, const char *id) {
  es_document *doc = NULL;
  es_status rc = es_get_document(s, id, NULL, &doc);
  if (rc != ES_OK && rc != ES_ENOTFOUND)
    FAIL("get %s: %s", id, es_errmsg(s));
  es_document_free(doc);
  return rc == ES_OK;
}

/* The nearest document to [x, y, 0, 0] through s. */
static char *nearest(es_store *s, float x, float y) {
  float q[DIM] = {x, y, 0, 0};
  es_search_params p;
  es_search_params_init(&p);
  p.vector = q;
  p.dim = DIM;
  p.k = 1;
  es_results *res = NULL;
  ASSERT_OK(s, es_search(s, &p, &res));
  char *id = strdup(res->n ? res->hits[0].id : "");
  es_results_free(res);
  return id;
}

static size_t listed(es_store *s) {
  es_list_params lp;
  es_list_params_init(&lp);
  es_document_list *l = NULL;
  ASSERT_OK(s, es_list_documents(s, &lp, &l));
  size_t n = l->n;
  es_document_list_free(l);
  return n;
}

static es_runtime runtime(es_store *s) {
  es_runtime rt;
  es_runtime_get(s, &rt);
  return rt;
}

/* The store on the primary, with a few documents, replicated. */
static es_cluster *setup(replica *r) {
  es_cluster *cl = th_own_cluster();
  es_store *s = NULL;
  ASSERT_OK(s, es_open(es_cluster_conninfo(cl), &s));
  ASSERT_OK(s, es_init(s, DIM, ES_METRIC_COSINE, NULL));
  put(s, "a", 1, 0);
  replica_make(cl, r); /* (clears *r) */
  r->cl = cl;
  /* A commit replayed since the standby started: it knows its lag. */
  put(s, "b", 0, 1);
  es_close(s);
  replica_catch_up(r);
  return cl;
}

/* Stops the standby and the primary (their memory too). */
static void finish(replica *r) {
  if (r->running)
    replica_ctl(r, "stop");
  if (es_cluster_stop(r->cl) != ES_OK)
    FAIL("stopping the primary: %s", es_cluster_errmsg(r->cl));
  es_cluster_close(r->cl);
}

TEST(reads_land_on_the_replica_and_writes_on_the_primary) {
  replica r;
  setup(&r);
  /* Dead tuples on the primary: a standby keeps no such statistics, so
   * the facts built on them must come from the primary. */
  /* (Chunks without vectors: 1,500 identical dead vectors in the HNSW
   * graph could cut the live documents off from its entry point.) */
  PGconn *p = th_connect(r.primary);
  th_pg_exec(p, "ALTER TABLE chunks SET (autovacuum_enabled = off)");
  th_pg_exec(p, "INSERT INTO chunks (id, document_id, chunk_index, text) "
                "SELECT 'dead' || i, 'a', i, 'x' FROM generate_series(1, 1500) i");
  th_pg_exec(p, "DELETE FROM chunks WHERE id LIKE 'dead%'");
  th_pg_exec(p, "SELECT pg_stat_force_next_flush()");
  double deadline = th_now() + 60;
  while (th_pg_int(p, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE "
                      "relname = 'chunks'") < 1500) {
    if (th_now() > deadline)
      FAIL("the primary's statistics did not count the dead tuples in 60 s");
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL); /* polling a condition, not guessing a delay */
  }
  PQfinish(p);
  replica_catch_up(&r);
  es_store *s = open_with_replica(&r, 60000, 0);
  es_store *plain = NULL;
  ASSERT_OK(plain, es_open(r.primary, &plain));
  PGconn *q = th_connect(r.conninfo);
  ASSERT(found(s, "a"));
  char *top = nearest(s, 1, 0.1f);
  ASSERT_STR_EQ(top, "a");
  free(top);
  ASSERT_INT_EQ(listed(s), 2);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->documents, 2);
  ASSERT_INT_EQ(st->replica, 1);
  ASSERT_INT_EQ(st->served_by_replica, 1);
  ASSERT_STR_EQ(es_replica_state_name(st->replica_state), "ok");
  ASSERT(st->replica_lag_ms >= 0);
  es_stats *ps = NULL; /* the same facts as the primary's own */
  ASSERT_OK(plain, es_stats_get(plain, NULL, &ps));
  ASSERT_INT_EQ(ps->served_by_replica, 0);
  ASSERT_INT_EQ(ps->replica, 0);
  ASSERT_INT_EQ(st->index_health, ps->index_health);
  ASSERT_INT_EQ(st->n_health_reasons, ps->n_health_reasons);
  ASSERT(st->n_health_reasons >= 1 && strstr(st->health_reasons[0], "dead"));
  for (size_t i = 0; i < st->n_health_reasons; i++)
    ASSERT_STR_EQ(st->health_reasons[i], ps->health_reasons[i]);
  ASSERT(fabs(st->reclaimable_mb - ps->reclaimable_mb) < 1e-9);
  es_stats_free(ps);
  es_stats_free(st);
  es_close(plain);
  es_runtime rt = runtime(s);
  ASSERT_INT_EQ(rt.replica_reads, 4);
  ASSERT_INT_EQ(rt.replica_fallbacks, 0);
  ASSERT(rt.replica_pool_open >= 1);
  /* The replica's own view: the handle's connections are there and the
   * last thing they ran read the store. */
  ASSERT(th_pg_int(q, "SELECT count(*) FROM pg_stat_activity WHERE "
                      "application_name = 'es_reader'") >= 1);
  ASSERT(th_pg_int(q, "SELECT count(*) FROM pg_stat_activity WHERE "
                      "application_name = 'es_reader' AND query ~ "
                      "'embstore_counts|embeddings'") >= 1);
  /* A write goes to the primary (a standby refuses writes), and the
   * handle reads it at once. */
  put(s, "c", 1, 1);
  ASSERT(found(s, "c"));
  es_close(s);
  PQfinish(q);
  finish(&r);
}

TEST(a_handle_reads_its_own_writes_at_once_while_the_replica_is_held_back) {
  replica r;
  setup(&r);
  es_store *s = open_with_replica(&r, 600000, 0);
  es_store *other = open_with_replica(&r, 600000, 0);
  PGconn *q = th_connect(r.conninfo);
  ASSERT(found(s, "a")); /* from the replica */
  ASSERT_INT_EQ(runtime(s).replica_reads, 1);
  th_pg_exec(q, "SELECT pg_wal_replay_pause()");
  put(s, "new", 1, 0.01f);
  /* Straight after the commit: the handle sees its write everywhere. */
  ASSERT(found(s, "new"));
  char *top = nearest(s, 1, 0.01f);
  ASSERT_STR_EQ(top, "new");
  free(top);
  ASSERT_INT_EQ(listed(s), 3);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->documents, 3);
  ASSERT_INT_EQ(st->served_by_replica, 0);
  ASSERT_STR_EQ(es_replica_state_name(st->replica_state), "behind");
  es_stats_free(st);
  es_runtime rt = runtime(s);
  ASSERT_INT_EQ(rt.replica_reads, 1);
  ASSERT_INT_EQ(rt.replica_fallbacks, 4);
  /* Another handle made no write: its reads stay on the replica, within
   * its lag bound, and so do not see it yet (the replica is used). */
  if (found(other, "new"))
    FAIL("the other handle read the primary: the replica was %s (%lld "
         "reads, %lld fallbacks), its replay %s",
         es_replica_state_name(runtime(other).replica_state),
         (long long)runtime(other).replica_reads,
         (long long)runtime(other).replica_fallbacks,
         pg_text(q, "SELECT pg_get_wal_replay_pause_state()"));
  ASSERT_INT_EQ(runtime(other).replica_reads, 1);
  /* Replayed: the writer's reads go back to the replica. */
  th_pg_exec(q, "SELECT pg_wal_replay_resume()");
  replica_catch_up(&r);
  ASSERT(found(s, "new"));
  ASSERT(found(other, "new"));
  ASSERT_INT_EQ(runtime(s).replica_reads, 2);
  es_close(s);
  es_close(other);
  PQfinish(q);
  finish(&r);
}

TEST(a_replica_held_behind_is_not_used_past_the_lag_bound) {
  replica r;
  setup(&r);
  es_store *strict = open_with_replica(&r, 300, 0);
  es_store *loose = open_with_replica(&r, 600000, 0);
  PGconn *p = th_connect(r.primary), *q = th_connect(r.conninfo);
  ASSERT(found(strict, "a"));
  ASSERT_INT_EQ(runtime(strict).replica_reads, 1);
  th_pg_exec(q, "SELECT pg_wal_replay_pause()");
  /* Another writer (plain SQL) commits; the replica does not replay it. */
  th_pg_exec(p, "INSERT INTO embeddings (id, embedding, source_id) VALUES "
                "('sql', '[1,0.5,0,0]', 'src')");
  long long want = lsn(p, "pg_current_wal_flush_lsn()");
  double deadline = th_now() + 60;
  while (lsn(q, "coalesce(pg_last_wal_receive_lsn(), '0/0')") < want ||
         th_pg_int(q, "SELECT (extract(epoch FROM clock_timestamp() - "
                      "pg_last_xact_replay_timestamp()) * 1000)::bigint") <= 400) {
    if (th_now() > deadline)
      FAIL("for 60 s the replica did not receive the write (want %lld, "
           "received %lld) or stayed fresh (replay %s)", want,
           lsn(q, "coalesce(pg_last_wal_receive_lsn(), '0/0')"),
           pg_text(q, "SELECT pg_get_wal_replay_pause_state()"));
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL); /* polling a condition, not guessing a delay */
  }
  /* Beyond 300 ms behind: the strict handle reads from the primary. */
  ASSERT(found(strict, "sql"));
  es_runtime rt = runtime(strict);
  ASSERT_INT_EQ(rt.replica_reads, 1);
  ASSERT_INT_EQ(rt.replica_fallbacks, 1);
  ASSERT_STR_EQ(es_replica_state_name(rt.replica_state), "lagging");
  ASSERT(rt.replica_lag_ms > 300);
  es_stats *st = NULL;
  ASSERT_OK(strict, es_stats_get(strict, NULL, &st));
  ASSERT_INT_EQ(st->served_by_replica, 0);
  ASSERT_STR_EQ(es_replica_state_name(st->replica_state), "lagging");
  ASSERT(st->replica_lag_ms > 300);
  ASSERT_INT_EQ(st->documents, 3);
  es_stats_free(st);
  /* Within a 10-minute bound the replica still answers, without it. */
  ASSERT(!found(loose, "sql"));
  ASSERT_INT_EQ(runtime(loose).replica_reads, 1);
  th_pg_exec(q, "SELECT pg_wal_replay_resume()");
  replica_catch_up(&r);
  ASSERT(found(strict, "sql"));
  ASSERT_INT_EQ(runtime(strict).replica_reads, 2);
  es_close(strict);
  es_close(loose);
  PQfinish(p);
  PQfinish(q);
  finish(&r);
}

TEST(reads_fall_back_to_the_primary_while_the_replica_is_down_and_return) {
  replica r;
  setup(&r);
  es_store *s = open_with_replica(&r, 60000, 0);
  ASSERT(found(s, "a"));
  ASSERT_INT_EQ(listed(s), 2);
  ASSERT_INT_EQ(runtime(s).replica_reads, 2);
  replica_ctl(&r, "stop");
  /* Its pooled connections are dead, and it refuses new ones: every read
   * still succeeds, from the primary. */
  for (int i = 0; i < 3; i++) {
    ASSERT(found(s, "a"));
    ASSERT_INT_EQ(listed(s), 2);
    char *top = nearest(s, 0, 1);
    ASSERT_STR_EQ(top, "b");
    free(top);
  }
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->served_by_replica, 0);
  ASSERT_STR_EQ(es_replica_state_name(st->replica_state), "down");
  es_stats_free(st);
  es_runtime rt = runtime(s);
  ASSERT_INT_EQ(rt.replica_reads, 2);
  ASSERT_INT_EQ(rt.replica_fallbacks, 10);
  ASSERT_STR_EQ(es_replica_state_name(rt.replica_state), "down");
  /* A handle opened while it is down opens, and reads. */
  es_store *late = open_with_replica(&r, 60000, 0);
  ASSERT(found(late, "b"));
  ASSERT_INT_EQ(runtime(late).replica_fallbacks, 1);
  replica_ctl(&r, "start");
  replica_catch_up(&r);
  ASSERT(found(s, "a"));
  ASSERT(found(late, "a"));
  ASSERT_INT_EQ(runtime(s).replica_reads, 3);
  ASSERT_INT_EQ(runtime(late).replica_reads, 1);
  ASSERT_STR_EQ(es_replica_state_name(runtime(s).replica_state), "ok");
  es_close(s);
  es_close(late);
  finish(&r);
}

TEST(a_cached_search_never_keeps_what_the_replica_had_not_replayed) {
  replica r;
  setup(&r);
  es_store *reader = open_with_replica(&r, 600000, 1 << 20);
  es_store *writer = NULL;
  ASSERT_OK(writer, es_open(r.primary, &writer));
  PGconn *q = th_connect(r.conninfo);
  th_cache_listen(reader); /* two misses, answered by the replica */
  for (int i = 0; i < 2; i++) { /* the second answer comes from the cache */
    char *top = nearest(reader, 1, 0.02f);
    ASSERT_STR_EQ(top, "a");
    free(top);
  }
  ASSERT_INT_EQ(runtime(reader).cache_hits, 1);
  ASSERT_INT_EQ(runtime(reader).replica_reads, 3);
  th_pg_exec(q, "SELECT pg_wal_replay_pause()");
  /* Another handle's commit: the reader's listener hears it, so its next
   * search cannot take the replica's answer (it has not replayed the
   * commit), nor cache it. */
  put(writer, "nearer", 1, 0.02f);
  for (int i = 0; i < 3; i++) {
    char *top = nearest(reader, 1, 0.02f);
    ASSERT_STR_EQ(top, "nearer");
    free(top);
  }
  ASSERT(runtime(reader).cache_invalidations >= 1);
  th_pg_exec(q, "SELECT pg_wal_replay_resume()");
  replica_catch_up(&r);
  char *top = nearest(reader, 1, 0.02f);
  ASSERT_STR_EQ(top, "nearer");
  free(top);
  es_close(reader);
  es_close(writer);
  PQfinish(q);
  finish(&r);
}

/* A store whose reads name conninfo as their replica. */
static es_store *open_reading(const char *primary, const char *reads) {
  es_options o;
  es_options_init(&o);
  o.conninfo = primary;
  o.read_conninfo = reads;
  o.replica_retry_ms = 0;
  o.cache_bytes = 0;
  es_store *s = NULL;
  ASSERT_OK(s, es_open_opts(&o, &s));
  return s;
}

TEST(a_read_server_that_is_not_a_standby_of_the_store_is_never_used) {
  replica r;
  setup(&r);
  /* The primary itself (not in recovery), the standby's other database
   * (another store, or none), and another cluster altogether. */
  char other_db[PATH_MAX + 160];
  snprintf(other_db, sizeof other_db,
           "host=%s port=5433 user=embstore dbname=postgres", r.sock);
  char primary_postgres[PATH_MAX + 160];
  snprintf(primary_postgres, sizeof primary_postgres, "%s dbname=postgres",
           r.primary);
  /* Each of them holds a store of one other document: a read there would
   * miss "a" and list one document. */
  const char *others[] = {primary_postgres, th_conninfo()};
  for (int i = 0; i < 2; i++) {
    es_store *o = NULL;
    ASSERT_OK(o, es_open(others[i], &o));
    ASSERT_OK(o, es_init(o, DIM, ES_METRIC_COSINE, NULL));
    put(o, "elsewhere", 1, 0);
    es_close(o);
  }
  replica_catch_up(&r); /* the standby's postgres database has it too */
  const char *reads[] = {other_db, th_conninfo(), r.primary};
  for (int i = 0; i < 3; i++) {
    es_store *s = open_reading(r.primary, reads[i]);
    ASSERT(found(s, "a"));
    ASSERT_INT_EQ(listed(s), 2);
    es_runtime rt = runtime(s);
    if (rt.replica_reads != 0 ||
        strcmp(es_replica_state_name(rt.replica_state), "invalid") != 0)
      FAIL("read server %d was used (%lld reads) or not found invalid (%s)",
           i, (long long)rt.replica_reads,
           es_replica_state_name(rt.replica_state));
    es_stats *st = NULL;
    ASSERT_OK(s, es_stats_get(s, NULL, &st));
    ASSERT_INT_EQ(st->served_by_replica, 0);
    ASSERT_INT_EQ(st->documents, 2);
    ASSERT_STR_EQ(es_replica_state_name(st->replica_state), "invalid");
    es_stats_free(st);
    es_close(s);
  }
  /* The real standby, for contrast, is used; also named second in a
   * libpq multi-host string whose first host is not there. */
  es_store *s = open_reading(r.primary, r.conninfo);
  ASSERT(found(s, "a"));
  ASSERT_INT_EQ(runtime(s).replica_reads, 1);
  es_close(s);
  char multi[2 * PATH_MAX + 200];
  snprintf(multi, sizeof multi, "host=%s/absent,%s port=5433,5433 user=embstore "
           "dbname=embstore", th_tmpdir(), r.sock);
  s = open_reading(r.primary, multi);
  ASSERT(found(s, "a"));
  ASSERT_INT_EQ(listed(s), 2);
  ASSERT_INT_EQ(runtime(s).replica_reads, 2);
  es_close(s);
  finish(&r);
}

TEST(cli_reads_from_the_replica_named_by_read_db_or_embstore_read_db) {
  replica r;
  setup(&r);
  const char *argv[] = {"--db", r.primary, "--read-db", r.conninfo, "stats",
                        "--json", NULL};
  th_proc p = th_cli(NULL, argv);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT(strstr(p.out, "\"served_by\": \"replica\"") ||
         strstr(p.out, "\"served_by\":\"replica\""));
  ASSERT(strstr(p.out, "\"state\": \"ok\"") || strstr(p.out, "\"state\":\"ok\""));
  th_proc_free(&p);
  setenv("EMBSTORE_READ_DB", r.conninfo, 1);
  const char *argv2[] = {"--db", r.primary, "stats", NULL};
  p = th_cli(NULL, argv2);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT(strstr(p.out, "answered by the replica; replica ok") != NULL);
  th_proc_free(&p);
  /* Down: the same command answers from the primary and says so. */
  replica_ctl(&r, "stop");
  p = th_cli(NULL, argv2);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT(strstr(p.out, "answered by the primary; replica down") != NULL);
  ASSERT(strstr(p.out, "documents 2") != NULL);
  th_proc_free(&p);
  const char *bad[] = {"--db", r.primary, "--max-replica-lag", "soon", "stats",
                       NULL};
  p = th_cli(NULL, bad);
  ASSERT_INT_EQ(p.status, 1);
  ASSERT(strstr(p.err, "--max-replica-lag") != NULL);
  th_proc_free(&p);
  unsetenv("EMBSTORE_READ_DB");
  finish(&r);
}

/* ---- threads: the listener and the replica under ThreadSanitizer ------- */

typedef struct racer {
  es_store *s;
  int id;
  int rounds;
  int failures;
  char err[512];
} racer;

/* Searches the same query over and over (cache hits and misses, replica
 * and primary), and writes now and then through the same handle. */
static void *race_reads(void *arg) {
  racer *w = arg;
  for (int i = 0; i < w->rounds; i++) {
    float q[DIM] = {1, 0.05f * (float)(i % 3), 0, 0};
    es_search_params p;
    es_search_params_init(&p);
    p.vector = q;
    p.dim = DIM;
    p.k = 3;
    es_results *res = NULL;
    es_status rc = es_search(w->s, &p, &res);
    es_results_free(res);
    es_document *doc = NULL;
    if (rc == ES_OK && i % 4 == 0) {
      rc = es_get_document(w->s, "a", NULL, &doc);
      es_document_free(doc);
    }
    if (rc == ES_OK && i % 10 == 5) {
      char id[32];
      snprintf(id, sizeof id, "own-%d-%d", w->id, i);
      /* No two documents of the test tie (a tie may be broken either
       * way by the index). */
      float v[DIM] = {1, 0.1f + 0.02f * (float)w->id + 0.005f * (float)(i / 10),
                      0, 0};
      es_doc d = {.id = id, .embedding = v, .dim = DIM, .source_id = "own"};
      rc = es_upsert(w->s, &d, NULL);
      if (rc == ES_OK && !found(w->s, id)) { /* its own write, at once */
        w->failures++;
        snprintf(w->err, sizeof w->err, "%s not read back", id);
      }
    }
    if (rc != ES_OK) {
      w->failures++;
      snprintf(w->err, sizeof w->err, "%s", es_errmsg(w->s));
    }
  }
  return NULL;
}

/* Another process's writes: notifications for the readers' listener. */
static void *race_writes(void *arg) {
  racer *w = arg;
  for (int i = 0; i < w->rounds; i++) {
    char id[32];
    snprintf(id, sizeof id, "other-%d", i % 7);
    float v[DIM] = {1, 0.001f * (float)i, 0, 0};
    es_doc d = {.id = id, .embedding = v, .dim = DIM, .source_id = "other"};
    if (es_upsert(w->s, &d, NULL) != ES_OK) {
      w->failures++;
      snprintf(w->err, sizeof w->err, "%s", es_errmsg(w->s));
    }
  }
  return NULL;
}

typedef struct chaos {
  const replica *r;
  pthread_t thread;
  _Atomic int stop;
  int kills;
} chaos;

/* Terminates the readers' listening connection, and holds the replica's
 * replay back and lets it go, until told to stop. */
static void *race_chaos(void *arg) {
  chaos *c = arg;
  PGconn *p = th_connect(c->r->primary), *q = th_connect(c->r->conninfo);
  for (int i = 0; !c->stop; i++) {
    PGresult *res = PQexec(p, "SELECT count(pg_terminate_backend(pid, 10000)) "
                              "FROM pg_stat_activity WHERE datname = "
                              "current_database() AND (query IN ('LISTEN "
                              "embstore_changes', '') OR query LIKE 'SELECT "
                              "count(*) FROM pg_trigger%') AND pid <> "
                              "pg_backend_pid()");
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
      c->kills += atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQclear(PQexec(q, i % 2 ? "SELECT pg_wal_replay_resume()"
                            : "SELECT pg_wal_replay_pause()"));
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL); /* pacing the disturbance, not synchronising */
  }
  PQclear(PQexec(q, "SELECT pg_wal_replay_resume()"));
  PQfinish(p);
  PQfinish(q);
  return NULL;
}

TEST(a_shared_handle_with_a_listener_and_a_replica_is_race_free) {
  replica r;
  setup(&r);
  es_store *s = open_with_replica(&r, 600000, 1 << 20);
  es_store *other = NULL;
  ASSERT_OK(other, es_open(r.primary, &other));
  enum { READERS = 3 };
  pthread_t t[READERS + 1];
  racer w[READERS + 1];
  chaos ch = {.r = &r};
  ASSERT_INT_EQ(pthread_create(&ch.thread, NULL, race_chaos, &ch), 0);
  for (int i = 0; i <= READERS; i++) {
    w[i] = (racer){.s = i < READERS ? s : other, .id = i, .rounds = 40};
    ASSERT_INT_EQ(pthread_create(&t[i], NULL, i < READERS ? race_reads : race_writes,
                                 &w[i]), 0);
  }
  for (int i = 0; i <= READERS; i++)
    pthread_join(t[i], NULL);
  ch.stop = 1;
  pthread_join(ch.thread, NULL);
  for (int i = 0; i <= READERS; i++)
    if (w[i].failures)
      FAIL("thread %d: %d failures, last: %s", i, w[i].failures, w[i].err);
  /* Nothing stale is left in the cache: the shared handle answers as the
   * primary does. */
  replica_catch_up(&r);
  for (int i = 0; i < 3; i++) {
    float x = 1, y = 0.05f * (float)i;
    char *mine = nearest(s, x, y), *truth = nearest(other, x, y);
    ASSERT_STR_EQ(mine, truth);
    free(mine);
    free(truth);
  }
  es_runtime rt = runtime(s);
  ASSERT(rt.replica_reads > 0);
  ASSERT(rt.cache_hits > 0);
  es_close(s);
  es_close(other);
  finish(&r);
}

#ifdef EMBSTORE_HAVE_SERVE
#include <jansson.h>

#include "http.h"

TEST(serve_reads_from_the_replica_and_reports_it_in_stats_and_metrics) {
  replica r;
  setup(&r);
  const char *args[] = {"--read-db", r.conninfo, NULL};
  th_server srv = th_serve_start(r.primary, args);
  th_http h = th_post_json(&srv, "/v1/search", "{\"vector\":[1,0,0,0],\"k\":1}",
                           NULL);
  ASSERT_HTTP(h, 200);
  ASSERT(strstr(h.body, "\"a\"") != NULL);
  th_http_free(&h);
  h = th_get(&srv, "/v1/stats", NULL);
  ASSERT_HTTP(h, 200);
  json_error_t e;
  json_t *j = json_loads(h.body, 0, &e);
  ASSERT(j != NULL);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "served_by")), "replica");
  json_t *rep = json_object_get(j, "replica");
  ASSERT_STR_EQ(json_string_value(json_object_get(rep, "state")), "ok");
  ASSERT(json_is_integer(json_object_get(rep, "lag_ms")));
  json_t *sr = json_object_get(j, "server_replica");
  ASSERT(json_integer_value(json_object_get(sr, "reads")) >= 1);
  ASSERT(json_integer_value(json_object_get(sr, "pool_open")) >= 1);
  json_decref(j);
  th_http_free(&h);
  ASSERT(th_metric(&srv, "embstore_replica_reads_total") >= 2);
  ASSERT_INT_EQ(th_metric(&srv, "embstore_replica_up"), 1);
  long long fallbacks = th_metric(&srv, "embstore_replica_fallbacks_total");
  /* Stopped: the server still answers, from the primary, and says so. */
  replica_ctl(&r, "stop");
  h = th_post_json(&srv, "/v1/search", "{\"vector\":[0,1,0,0],\"k\":1}", NULL);
  ASSERT_HTTP(h, 200);
  ASSERT(strstr(h.body, "\"b\"") != NULL);
  th_http_free(&h);
  ASSERT_INT_EQ(th_metric(&srv, "embstore_replica_up"), 0);
  ASSERT(th_metric(&srv, "embstore_replica_fallbacks_total") > fallbacks);
  ASSERT_INT_EQ(th_serve_stop(&srv), 0);
  finish(&r);
}
#endif
