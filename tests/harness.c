/* harness.c - what tests use: the test's database, its temporary
 * directory, data files, running the CLI. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "test.h"

th_state th__state;

static char fail_context[256];

/* Sets (or with NULL clears) the line th_fail adds to a failure. */
void th_set_fail_context(const char *fmt, ...) {
  fail_context[0] = '\0';
  if (fmt == NULL)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(fail_context, sizeof fail_context, fmt, ap);
  va_end(ap);
}

_Noreturn void th_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s:%d: ", file, line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (fail_context[0] != '\0')
    fprintf(stderr, "  (%s)\n", fail_context);
  fflush(NULL);
  _exit(1); /* skip leak checks: the test stopped half-way on purpose */
}

_Noreturn void th_skip(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "  skipped: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(NULL);
  _exit(TH_SKIP_EXIT);
}

/* Prints up to the first 32 bytes of a range in hex, from byte off on. */
static void hex_dump(const char *name, const unsigned char *p, size_t n,
                     size_t off) {
  fprintf(stderr, "  %s [%zu..]:", name, off);
  for (size_t i = off; i < n && i < off + 32; i++)
    fprintf(stderr, " %02x", p[i]);
  fputc('\n', stderr);
}

/* Fails, with both sides in hex from the first difference, unless the
 * ranges are equal (want_equal) or differ (!want_equal). */
void th_assert_mem(const char *file, int line, const char *an, const char *bn,
                   const void *a, const void *b, size_t n, int want_equal) {
  int equal = memcmp(a, b, n) == 0;
  if (equal == (want_equal != 0))
    return;
  if (equal)
    th_fail(file, line, "%s and %s must differ in %zu bytes: they are equal",
            an, bn, n);
  size_t first = 0;
  while (((const unsigned char *)a)[first] == ((const unsigned char *)b)[first])
    first++;
  fprintf(stderr, "%s:%d: %s == %s (%zu bytes): first difference at byte %zu\n",
          file, line, an, bn, n, first);
  hex_dump(an, a, n, first);
  hex_dump(bn, b, n, first);
  th_fail(file, line, "memory differs");
}

const char *th_conninfo(void) {
  if (th__state.conninfo[0] == '\0')
    FAIL("this test is not marked as needing the database (test-list.h)");
  return th__state.conninfo;
}

const char *th_admin_conninfo(void) { return th__state.admin; }
const char *th_cluster_home(void) { return th__state.cluster_home; }

const char *th_tmpdir(void) {
  if (mkdir(th__state.tmpdir, 0755) != 0 && errno != EEXIST)
    FAIL("cannot create %s: %s", th__state.tmpdir, strerror(errno));
  return th__state.tmpdir;
}

es_store *th_open(void) {
  es_store *s = NULL;
  es_status rc = es_open(th_conninfo(), &s);
  if (rc != ES_OK)
    FAIL("es_open: %s: %s", es_status_name(rc), es_errmsg(s));
  return s;
}

es_store *th_open_init(int dim, es_metric metric) {
  es_store *s = th_open();
  ASSERT_OK(s, es_init(s, dim, metric, NULL));
  return s;
}

es_batch_result *th_batch_upsert(es_store *s, const es_doc *d, size_t n,
                                 size_t batch_size, es_status want) {
  es_batch_options o;
  es_batch_options_init(&o);
  o.batch_size = batch_size;
  es_batch_result *r = NULL;
  es_status rc = es_batch_upsert(s, d, n, &o, &r);
  if (rc != want)
    FAIL("es_batch_upsert: want %s, got %s: %s%s%s", es_status_name(want),
         es_status_name(rc), es_errmsg(s),
         r && r->n_failures ? "; the first failure: " : "",
         r && r->n_failures ? r->failures[0].error : "");
  ASSERT_NOT_NULL(r);
  return r;
}

/* One connection per test process, opened on first use. */
static PGconn *test_conn(void) {
  static PGconn *pg;
  if (pg == NULL) {
    pg = PQconnectdb(th_conninfo());
    if (PQstatus(pg) != CONNECTION_OK)
      FAIL("cannot connect to the test database: %s", PQerrorMessage(pg));
    PQclear(PQexec(pg, "SET client_min_messages = warning"));
  }
  return pg;
}

void th_exec(const char *sql) {
  PGresult *r = PQexec(test_conn(), sql);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    FAIL("SQL failed: %s\n  %s", PQresultErrorMessage(r), sql);
  PQclear(r);
}

char *th_text(const char *sql) {
  PGresult *r = PQexec(test_conn(), sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 ||
      PQnfields(r) != 1)
    FAIL("query must return one value: %s\n  %s", PQresultErrorMessage(r), sql);
  char *v = PQgetisnull(r, 0, 0) ? NULL : strdup(PQgetvalue(r, 0, 0));
  PQclear(r);
  return v;
}

void th_assert_text(const char *file, int line, const char *sql,
                    const char *want) {
  char *got = th_text(sql);
  if (got == NULL || strcmp(got, want) != 0)
    th_fail(file, line, "%s\n  returned \"%s\", want \"%s\"", sql,
            got ? got : "(null)", want);
  free(got);
}

long long th_int(const char *sql) {
  char *v = th_text(sql);
  if (v == NULL)
    FAIL("query returned NULL: %s", sql);
  long long n = strtoll(v, NULL, 10);
  free(v);
  return n;
}

PGconn *th_connect(const char *conninfo) {
  PGconn *pg = PQconnectdb(conninfo);
  if (PQstatus(pg) != CONNECTION_OK)
    FAIL("connect: %s", PQerrorMessage(pg));
  PQclear(PQexec(pg, "SET client_min_messages = warning"));
  return pg;
}

void th_pg_exec(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    FAIL("%s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
}

long long th_pg_int(PGconn *pg, const char *sql) {
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
    FAIL("%s: %s", sql, PQresultErrorMessage(r));
  long long v = atoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  return v;
}

void th_wait_for(const char *sql, long long want) {
  double deadline = th_now() + 30;
  long long got;
  while ((got = th_int(sql)) != want) {
    if (th_now() > deadline)
      FAIL("waited 30 s for %s to be %lld: it is %lld", sql, want, got);
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL); /* polling a condition, not guessing a delay */
  }
}

char *th_conninfo_value(const char *conninfo, const char *key) {
  PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
  char *v = NULL;
  for (PQconninfoOption *o = opts; o && o->keyword; o++)
    if (strcmp(o->keyword, key) == 0 && o->val)
      v = strdup(o->val);
  PQconninfoFree(opts);
  if (v == NULL)
    FAIL("%s has no %s", conninfo, key);
  return v;
}

void th_cache_listen(es_store *s) {
  int dim = 0;
  es_metric metric;
  ASSERT_OK(s, es_store_shape(s, &dim, &metric));
  float *q = calloc((size_t)dim, sizeof *q);
  ASSERT(q != NULL);
  for (int i = 0; i < dim; i++)
    q[i] = 1;
  es_search_params p;
  es_search_params_init(&p);
  p.vector = q;
  p.dim = (size_t)dim;
  p.k = 1;
  p.source_id = "th-cache-listen";
  for (int i = 0; i < 2; i++) {
    es_results *r = NULL;
    ASSERT_OK(s, es_search(s, &p, &r));
    es_results_free(r);
  }
  free(q);
  es_runtime rt;
  es_runtime_get(s, &rt);
  ASSERT_INT_EQ(rt.cache_listening, 1);
}

es_cluster *th_own_cluster(void) {
  static char home[600];
  setenv("EMBSTORE_PG_OPTIONS", "", 1);
  snprintf(home, sizeof home, "%s/h", th_tmpdir());
  es_cluster *c = NULL;
  if (es_cluster_open(home, &c) != ES_OK || es_cluster_start(c) != ES_OK)
    FAIL("own cluster: %s", es_cluster_errmsg(c));
  return c;
}

const char *th_data(const char *name) {
  static char path[4096];
  const char *dir = getenv("EMBSTORE_TEST_DATA");
  snprintf(path, sizeof path, "%s/%s", dir ? dir : EMBSTORE_DATA_DIR, name);
  if (access(path, R_OK) != 0)
    FAIL("test data %s is missing (set EMBSTORE_TEST_DATA)", path);
  return path;
}

const char *th_cli_path(void) { return EMBSTORE_BIN; }

int th_migration_count(void) {
  char pattern[1024];
  snprintf(pattern, sizeof pattern, "%s/sql/*.sql", EMBSTORE_SOURCE_DIR);
  glob_t g;
  int n = glob(pattern, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
  if (n > 0)
    globfree(&g);
  return n;
}

double th_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void th_wait_exit(long pid) {
  int fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
  if (fd < 0)
    return; /* already gone */
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 60000) != 1)
    FAIL("process %ld did not exit within 60 s", pid);
  close(fd);
}

/* Appends what fd has to *buf; false at end of file. */
static bool drain(int fd, char **buf, size_t *len) {
  char tmp[65536];
  ssize_t n = read(fd, tmp, sizeof tmp);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return true;
  if (n <= 0)
    return false;
  char *g = realloc(*buf, *len + (size_t)n + 1);
  if (g == NULL)
    FAIL("out of memory");
  memcpy(g + *len, tmp, (size_t)n);
  *len += (size_t)n;
  g[*len] = '\0';
  *buf = g;
  return true;
}

/* th_cli_io, with standard output going to out_fd when it is not -1. */
static th_proc cli_run(const char *in, size_t inlen, int in_fd, int out_fd,
                       const char *const *args) {
  const char *argv[64] = {th_cli_path()};
  size_t n = 1;
  for (size_t i = 0; args[i] && n < 63; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  int pin[2], pout[2], perr[2];
  if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC))
    FAIL("pipe: %s", strerror(errno));
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(in_fd >= 0 ? in_fd : pin[0], 0);
    dup2(out_fd >= 0 ? out_fd : pout[1], 1);
    dup2(perr[1], 2);
    unsetenv("EMBSTORE_DB");
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  close(pin[0]);
  close(pout[1]);
  close(perr[1]);
  signal(SIGPIPE, SIG_IGN);
  th_proc r = {0};
  r.out = calloc(1, 1);
  r.err = calloc(1, 1);
  size_t olen = 0, elen = 0, off = 0;
  int ofd = pout[0], efd = perr[0], ifd = pin[1];
  if (out_fd >= 0) {
    close(ofd);
    ofd = -1;
  }
  if (inlen == 0 || in_fd >= 0) {
    close(ifd);
    ifd = -1;
  } else {
    fcntl(ifd, F_SETFL, O_NONBLOCK);
  }
  while (ofd >= 0 || efd >= 0) {
    struct pollfd fds[3];
    int nf = 0, io = -1, ie = -1, ii = -1;
    if (ofd >= 0) { io = nf; fds[nf++] = (struct pollfd){ofd, POLLIN, 0}; }
    if (efd >= 0) { ie = nf; fds[nf++] = (struct pollfd){efd, POLLIN, 0}; }
    if (ifd >= 0) { ii = nf; fds[nf++] = (struct pollfd){ifd, POLLOUT, 0}; }
    if (poll(fds, (nfds_t)nf, -1) < 0) {
      if (errno == EINTR)
        continue;
      FAIL("poll: %s", strerror(errno));
    }
    if (io >= 0 && fds[io].revents && !drain(ofd, &r.out, &olen)) {
      close(ofd);
      ofd = -1;
    }
    if (ie >= 0 && fds[ie].revents && !drain(efd, &r.err, &elen)) {
      close(efd);
      efd = -1;
    }
    if (ii >= 0 && fds[ii].revents) {
      size_t want = inlen - off < 1 << 20 ? inlen - off : 1 << 20;
      ssize_t w = write(ifd, in + off, want);
      if (w > 0)
        off += (size_t)w;
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || off == inlen) {
        close(ifd);
        ifd = -1;
      }
    }
  }
  if (ifd >= 0)
    close(ifd);
  int status = 0;
  struct rusage ru;
  memset(&ru, 0, sizeof ru);
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.maxrss_kib = ru.ru_maxrss;
  return r;
}

th_proc th_cli_io(const char *in, size_t inlen, int in_fd,
                  const char *const *args) {
  return cli_run(in, inlen, in_fd, -1, args);
}

th_proc th_cli_to(int out_fd, const char *const *args) {
  return cli_run(NULL, 0, -1, out_fd, args);
}

th_proc th_cli(const char *stdin_data, const char *const *argv) {
  return th_cli_io(stdin_data, stdin_data ? strlen(stdin_data) : 0, -1, argv);
}

void th_proc_free(th_proc *p) {
  free(p->out);
  free(p->err);
  p->out = p->err = NULL;
}
