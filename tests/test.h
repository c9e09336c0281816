/* test.h - the test harness: assertions, and a private PostgreSQL.
 *
 * Tests are plain functions listed once in test-list.h.  The runner forks
 * each test into its own process (a crash fails one test, not the run)
 * and gives each database test its own database, created from a template
 * that already has the vector extension. */
#ifndef EMBSTORE_TEST_H
#define EMBSTORE_TEST_H

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embstore.h"

#define TEST(name) void test_##name(void)

/* Ends the test as failed (after printing why). */
_Noreturn void th_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define FAIL(...) th_fail(__FILE__, __LINE__, __VA_ARGS__)

/* Ends the test as skipped, saying why (a part it needs is not installed
 * here): the runner counts it apart, neither passed nor failed. */
_Noreturn void th_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define TH_SKIP_EXIT 77

/* A line th_fail adds to every failure until the next call; NULL clears. */
void th_set_fail_context(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

#define ASSERT(cond)                                   \
  do {                                                 \
    if (!(cond))                                       \
      FAIL("assertion failed: %s", #cond);             \
  } while (0)

#define ASSERT_INT_EQ(a, b)                                                \
  do {                                                                     \
    long long a_ = (long long)(a), b_ = (long long)(b);                    \
    if (a_ != b_)                                                          \
      FAIL("%s == %s: %lld != %lld", #a, #b, a_, b_);                      \
  } while (0)

#define ASSERT_INT_GE(a, b)                                                \
  do {                                                                     \
    long long a_ = (long long)(a), b_ = (long long)(b);                    \
    if (a_ < b_)                                                           \
      FAIL("%s >= %s: %lld < %lld", #a, #b, a_, b_);                       \
  } while (0)

/* Integer comparisons: both sides are printed (as long long). */
#define ASSERT_INT_CMP_(a, op, b)                                          \
  do {                                                                     \
    long long a_ = (long long)(a), b_ = (long long)(b);                    \
    if (!(a_ op b_))                                                       \
      FAIL("%s %s %s: %lld vs %lld", #a, #op, #b, a_, b_);                 \
  } while (0)
#define ASSERT_INT_NE(a, b) ASSERT_INT_CMP_(a, !=, b)
#define ASSERT_INT_LT(a, b) ASSERT_INT_CMP_(a, <, b)
#define ASSERT_INT_LE(a, b) ASSERT_INT_CMP_(a, <=, b)
#define ASSERT_INT_GT(a, b) ASSERT_INT_CMP_(a, >, b)

/* Floating-point comparisons (NaN fails every one of them). */
#define ASSERT_DBL_CMP_(a, op, b)                                          \
  do {                                                                     \
    double a_ = (double)(a), b_ = (double)(b);                             \
    if (!(a_ op b_))                                                       \
      FAIL("%s %s %s: %.9g vs %.9g", #a, #op, #b, a_, b_);                 \
  } while (0)
#define ASSERT_DBL_GE(a, b) ASSERT_DBL_CMP_(a, >=, b)
#define ASSERT_DBL_GT(a, b) ASSERT_DBL_CMP_(a, >, b)
#define ASSERT_DBL_LE(a, b) ASSERT_DBL_CMP_(a, <=, b)
#define ASSERT_DBL_LT(a, b) ASSERT_DBL_CMP_(a, <, b)

/* |a - b| <= tol; tol 0 asks for exact equality. */
#define ASSERT_DBL_EQ(a, b, tol)                                           \
  do {                                                                     \
    double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);         \
    if (!(a_ == b_ || fabs(a_ - b_) <= t_))                                \
      FAIL("%s == %s (within %g): %.17g != %.17g", #a, #b, t_, a_, b_);    \
  } while (0)

/* A double that must be NaN ("no data"). */
#define ASSERT_NAN(a)                                                      \
  do {                                                                     \
    double a_ = (double)(a);                                               \
    if (!isnan(a_))                                                        \
      FAIL("%s is NaN: it is %.17g", #a, a_);                              \
  } while (0)

#define ASSERT_NULL(p)                                                     \
  do {                                                                     \
    const void *p_ = (const void *)(p);                                    \
    if (p_ != NULL)                                                        \
      FAIL("%s == NULL: it is %p", #p, p_);                                \
  } while (0)

/* Prints errno's message too: most NULLs in tests come from fopen & co. */
#define ASSERT_NOT_NULL(p)                                                 \
  do {                                                                     \
    if ((const void *)(p) == NULL)                                         \
      FAIL("%s != NULL: it is NULL (errno: %s)", #p, strerror(errno));     \
  } while (0)

#define ASSERT_STR_EQ(a, b)                                                \
  do {                                                                     \
    const char *a_ = (a), *b_ = (b);                                       \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                   \
      FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",       \
           b_ ? b_ : "(null)");                                            \
  } while (0)

#define ASSERT_STR_NE(a, b)                                                \
  do {                                                                     \
    const char *a_ = (a), *b_ = (b);                                       \
    if (a_ != NULL && b_ != NULL && strcmp(a_, b_) == 0)                   \
      FAIL("%s != %s: both are \"%s\"", #a, #b, a_);                       \
  } while (0)

/* Two byte ranges of n bytes; a difference prints both in hex. */
#define ASSERT_MEM_EQ(a, b, n) th_assert_mem(__FILE__, __LINE__, #a, #b, a, b, n, 1)
#define ASSERT_MEM_NE(a, b, n) th_assert_mem(__FILE__, __LINE__, #a, #b, a, b, n, 0)
void th_assert_mem(const char *file, int line, const char *an, const char *bn,
                   const void *a, const void *b, size_t n, int want_equal);

#define ASSERT_CONTAINS(hay, needle)                                       \
  do {                                                                     \
    const char *h_ = (hay), *n_ = (needle);                                \
    if (h_ == NULL || strstr(h_, n_) == NULL)                              \
      FAIL("%s contains \"%s\": it is \"%s\"", #hay, n_, h_ ? h_ : "(null)"); \
  } while (0)

#define ASSERT_NOT_CONTAINS(hay, needle)                                   \
  do {                                                                     \
    const char *h_ = (hay), *n_ = (needle);                                \
    if (h_ != NULL && strstr(h_, n_) != NULL)                              \
      FAIL("%s must not contain \"%s\": it is \"%s\"", #hay, n_, h_);      \
  } while (0)

/* A library call on store s must succeed; prints es_errmsg otherwise. */
#define ASSERT_OK(s, call)                                                 \
  do {                                                                     \
    es_status rc_ = (call);                                                \
    if (rc_ != ES_OK)                                                      \
      FAIL("%s: %s: %s", #call, es_status_name(rc_), es_errmsg(s));         \
  } while (0)

/* A call must fail with the given status. */
#define ASSERT_STATUS(s, call, want)                                       \
  do {                                                                     \
    es_status rc_ = (call);                                                \
    if (rc_ != (want))                                                     \
      FAIL("%s: want %s, got %s (%s)", #call, es_status_name(want),         \
           es_status_name(rc_), es_errmsg(s));                             \
  } while (0)

/* ---- the database -------------------------------------------------------- */

/* The conninfo of this test's own, empty database (vector extension
 * created, no store yet). */
const char *th_conninfo(void);
/* The conninfo of the cluster's maintenance database. */
const char *th_admin_conninfo(void);
/* The harness cluster's home directory. */
const char *th_cluster_home(void);
/* A fresh temporary directory for this test (removed after the run). */
const char *th_tmpdir(void);

/* Opens a store on this test's database; fails the test on error. */
es_store *th_open(void);
/* Opens a store and runs es_init(dim, metric). */
es_store *th_open_init(int dim, es_metric metric);
/* Runs es_batch_upsert in batches of batch_size; fails the test unless it
 * returns want.  The result is never NULL. */
es_batch_result *th_batch_upsert(es_store *s, const es_doc *d, size_t n,
                                 size_t batch_size, es_status want);

/* Makes s's cache listen for other writers (it starts with the first
 * answer the cache could give): two searches of a source no document has,
 * both misses.  Fails the test unless it then listens. */
void th_cache_listen(es_store *s);

/* Runs SQL on this test's database; fails the test on error. */
void th_exec(const char *sql);
/* Runs a query returning one integer. */
long long th_int(const char *sql);
/* Runs a query returning one text value (malloc'd; NULL for SQL NULL). */
char *th_text(const char *sql);
/* A query's one text value must equal want. */
void th_assert_text(const char *file, int line, const char *sql,
                    const char *want);
#define ASSERT_SQL_STR(sql, want) th_assert_text(__FILE__, __LINE__, sql, want)

/* The value of key in conninfo (malloc'd); fails the test when it has
 * none. */
char *th_conninfo_value(const char *conninfo, const char *key);
/* Connects to conninfo; fails the test on error.  Freed with PQfinish. */
PGconn *th_connect(const char *conninfo);
/* Runs sql on pg; fails the test on error. */
void th_pg_exec(PGconn *pg, const char *sql);
/* The first value of sql's first row on pg, as a number. */
long long th_pg_int(PGconn *pg, const char *sql);
/* Polls sql (one integer, on the test's database) until it returns want;
 * fails the test after 30 s.  For waiting on a condition, never a delay. */
void th_wait_for(const char *sql, long long want);
/* A cluster of the test's own in its temporary directory, started and
 * durable (the run's shared cluster trades durability for speed, which a
 * test that kills or reconfigures its server must not inherit). */
es_cluster *th_own_cluster(void);

/* ---- data and programs ----------------------------------------------------- */

/* Full path of a file in ../shared/data. */
const char *th_data(const char *name);

typedef struct th_proc {
  int status;      /* exit status, or 128+signal */
  char *out;       /* captured stdout (malloc'd, NUL-terminated) */
  char *err;       /* captured stderr */
  long maxrss_kib; /* the tool's peak resident set (wait4); it includes
                      what the child shared with us before exec, so a test
                      that measures it must not hold large buffers */
} th_proc;

/* Runs the embstore binary with argv (NULL-terminated, without argv[0])
 * and EMBSTORE_DB unset, feeding in[0..inlen) (NUL bytes and all) on its
 * standard input, or in_fd when it is not -1. */
th_proc th_cli_io(const char *in, size_t inlen, int in_fd,
                  const char *const *argv);
/* The same with nothing on standard input and standard output going to
 * out_fd (p.out stays empty). */
th_proc th_cli_to(int out_fd, const char *const *argv);
/* The same with a C string (or NULL) on standard input. */
th_proc th_cli(const char *stdin_data, const char *const *argv);
void th_proc_free(th_proc *p);

/* Path of the built embstore binary. */
const char *th_cli_path(void);

/* How many migration files (sql/NNN_name.sql) the source tree holds:
 * what es_init applies to a new store. */
int th_migration_count(void);

/* Monotonic seconds. */
double th_now(void);

/* Blocks until process pid (not necessarily our child) has exited. */
void th_wait_exit(long pid);

/* ---- allocation-failure injection (oom.c) ------------------------------- */

/* Makes the n-th allocation (malloc, calloc, realloc, strdup, strndup,
 * asprintf) of the calling thread from now on fail, and with persist every
 * one after it too.  libpq's and libc's own allocations are not seen. */
void th_oom_arm(long n, bool persist);
/* Stops failing; returns whether an allocation was failed. */
bool th_oom_disarm(void);
/* Allocations counted since the last th_oom_arm. */
long th_oom_calls(void);

#define TH_OOM_MAX_ALLOCATIONS 100000

/* A scenario run with every one of its allocations failing in turn. */
typedef struct th_oom_case {
  const char *name;
  void *ctx;
  void (*setup)(void *ctx);    /* before each run, not failing (or NULL) */
  void (*run)(void *ctx);      /* the calls under test; records outcomes */
  void (*check)(void *ctx, bool hit); /* checks them, not failing; hit:
                                         an allocation was failed */
  void (*teardown)(void *ctx); /* frees what run made (or NULL) */
  long min_allocations;        /* the run must make at least this many */
} th_oom_case;

/* SQLite's countdown: runs c with its 1st, 2nd, ... allocation failing
 * once, until a run completes without reaching the countdown; then the
 * same with every allocation from the n-th on failing.  Returns the
 * number of allocations of a complete run.  Leaks show in LeakSanitizer
 * and Valgrind at the test's exit. */
long th_oom_run(const th_oom_case *c);

/* got must be want, or ES_ENOMEM when an allocation was failed (hit). */
void th_oom_assert_status(const char *file, int line, const char *what,
                          es_status got, es_status want, bool hit);
#define ASSERT_OOM_STATUS(what, got, want, hit) \
  th_oom_assert_status(__FILE__, __LINE__, what, got, want, hit)

#endif
