/* runner.c - walks the test list.
 *
 *   embstore-tests [-j N] [-v] [--unit] [--list] [FILTER...]
 *
 * Starts one private PostgreSQL + pgvector cluster in a temporary
 * directory (as an unprivileged user when run as root), forks every test
 * into its own process with its own database, and tears everything down at
 * the end, also when tests fail or the run is interrupted.  Ends with
 * "N passed, N failed". */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "test.h"
#include "test-list.h"

#define UNIT 0
#define DB 1
#define TEST_TIMEOUT_S 900

#define DECLARE(name, kind) void test_##name(void);
TEST_LIST(DECLARE)
#undef DECLARE

typedef struct entry {
  const char *name;
  void (*fn)(void);
  int kind;
} entry;

static const entry tests[] = {
#define ENTRY(name, kind) {#name, test_##name, kind},
    TEST_LIST(ENTRY)
#undef ENTRY
};
#define N_TESTS (sizeof tests / sizeof tests[0])

static pid_t runner_pid;
static char root[256];        /* the run's temporary directory */
static es_cluster *cluster;
static PGconn *admin;

/* Removes a directory tree. */
static void rm_rf(const char *path) {
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/rm", "rm", "-rf", path, (char *)NULL);
    _exit(127);
  }
  if (pid > 0)
    waitpid(pid, NULL, 0);
}

/* Kills whatever still runs in the run's directory (servers that tests
 * started and did not stop because they failed half-way). */
static void kill_leftovers(void) {
  DIR *d = opendir("/proc");
  if (d == NULL || root[0] == '\0') {
    if (d)
      closedir(d);
    return;
  }
  size_t rootlen = strlen(root);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char link[64], cwd[PATH_MAX];
    if (e->d_name[0] < '1' || e->d_name[0] > '9')
      continue;
    snprintf(link, sizeof link, "/proc/%s/cwd", e->d_name);
    ssize_t n = readlink(link, cwd, sizeof cwd - 1);
    if (n <= 0)
      continue;
    cwd[n] = '\0';
    if (strncmp(cwd, root, rootlen) == 0 && (cwd[rootlen] == '/' || cwd[rootlen] == '\0'))
      kill((pid_t)atol(e->d_name), SIGKILL);
  }
  closedir(d);
}

/* Stops the cluster and removes the run's directory; only in the runner. */
static void teardown(void) {
  if (getpid() != runner_pid)
    return;
  if (admin) {
    PQfinish(admin);
    admin = NULL;
  }
  if (cluster) {
    if (es_cluster_stop(cluster) != ES_OK)
      fprintf(stderr, "runner: stopping the test cluster: %s\n",
              es_cluster_errmsg(cluster));
    es_cluster_close(cluster);
    cluster = NULL;
  }
  if (root[0] && getenv("EMBSTORE_TEST_KEEP") == NULL) {
    kill_leftovers();
    rm_rf(root);
  }
}

typedef struct running {
  pid_t pid;
  size_t idx;
  double start;
} running;

static running *run;
static int jobs = 2;

static void on_signal(int sig) {
  signal(sig, SIG_DFL);
  for (int j = 0; run && j < jobs; j++) /* each test is a process group */
    if (run[j].pid > 0)
      kill(-run[j].pid, SIGKILL);
  teardown();
  _exit(128 + sig);
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "runner: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  teardown();
  exit(2);
}

static void admin_exec(const char *sql) {
  PGresult *r = PQexec(admin, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    die("%s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
}

/* Starts the cluster and the template database every test copies. */
static void start_cluster(void) {
  char home[300];
  snprintf(home, sizeof home, "%s/pg", root);
  /* A throwaway cluster needs no durability. */
  setenv("EMBSTORE_PG_OPTIONS",
         "-c fsync=off -c synchronous_commit=off -c full_page_writes=off", 0);
  if (es_cluster_open(home, &cluster) != ES_OK ||
      es_cluster_start(cluster) != ES_OK)
    die("cannot start the test cluster: %s", es_cluster_errmsg(cluster));
  snprintf(th__state.cluster_home, sizeof th__state.cluster_home, "%s", home);
  snprintf(th__state.admin, sizeof th__state.admin, "%s",
           es_cluster_conninfo(cluster));
  admin = PQconnectdb(th__state.admin);
  if (PQstatus(admin) != CONNECTION_OK)
    die("cannot connect to the test cluster: %s", PQerrorMessage(admin));
  PQclear(PQexec(admin, "SET client_min_messages = warning"));
  admin_exec("DROP DATABASE IF EXISTS es_template");
  admin_exec("CREATE DATABASE es_template");
  char ci[1200];
  snprintf(ci, sizeof ci, "%s dbname=es_template", th__state.admin);
  PGconn *t = PQconnectdb(ci);
  PGresult *r = PQexec(t, "CREATE EXTENSION vector");
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    die("CREATE EXTENSION vector: %s", PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(t);
}

static void db_name(size_t idx, char *buf, size_t cap) {
  snprintf(buf, cap, "t_%zu", idx);
}

/* Prepares test idx's database and directory, then forks it. */
static pid_t launch(size_t idx) {
  char db[32], sql[128], log[300];
  db_name(idx, db, sizeof db);
  th__state.conninfo[0] = '\0';
  if (tests[idx].kind == DB) {
    snprintf(sql, sizeof sql, "CREATE DATABASE %s TEMPLATE es_template", db);
    admin_exec(sql);
    snprintf(th__state.conninfo, sizeof th__state.conninfo, "%s dbname=%s",
             th__state.admin, db);
  }
  snprintf(th__state.tmpdir, sizeof th__state.tmpdir, "%s/t%zu", root, idx);
  snprintf(log, sizeof log, "%s/t%zu.log", root, idx);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    setpgid(0, 0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    alarm(TEST_TIMEOUT_S);
    /* The runner's admin connection is shared with the child but must
     * not be touched here: PQfinish would end the runner's session. */
    tests[idx].fn();
    fflush(NULL);
    exit(0);
  }
  setpgid(pid, pid); /* also here: no window where a signal misses it */
  return pid;
}

/* Prints the log of a finished test. */
static void show_log(size_t idx) {
  char path[300], buf[4096];
  snprintf(path, sizeof path, "%s/t%zu.log", root, idx);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return;
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    fwrite(buf, 1, n, stdout);
  fclose(f);
}

static bool selected(const entry *e, int unit_only, char **filters, int nf) {
  if (unit_only && e->kind != UNIT)
    return false;
  if (nf == 0)
    return true;
  for (int i = 0; i < nf; i++)
    if (strstr(e->name, filters[i]))
      return true;
  return false;
}

int main(int argc, char **argv) {
  int verbose = 0, unit_only = 0, nf = 0;
  char **filters = calloc((size_t)argc, sizeof *filters);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-j") == 0 && i + 1 < argc)
      jobs = atoi(argv[++i]);
    else if (strcmp(argv[i], "-v") == 0)
      verbose = 1;
    else if (strcmp(argv[i], "--unit") == 0)
      unit_only = 1;
    else if (strcmp(argv[i], "--list") == 0) {
      for (size_t k = 0; k < N_TESTS; k++)
        printf("%s %s\n", tests[k].kind == DB ? "db  " : "unit", tests[k].name);
      free(filters);
      return 0;
    } else
      filters[nf++] = argv[i];
  }
  if (jobs < 1)
    jobs = 1;

  size_t order[N_TESTS], n = 0;
  int need_db = 0;
  for (size_t k = 0; k < N_TESTS; k++) {
    if (selected(&tests[k], unit_only, filters, nf)) {
      order[n++] = k;
      need_db |= tests[k].kind == DB;
    }
  }
  free(filters);
  runner_pid = getpid();
  snprintf(root, sizeof root, "/tmp/es-test-XXXXXX");
  if (mkdtemp(root) == NULL)
    die("mkdtemp: %s", strerror(errno));
  chmod(root, 0711); /* the cluster's user must reach its home inside */
  atexit(teardown);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  signal(SIGHUP, on_signal);
  signal(SIGPIPE, SIG_IGN);
  double t0 = th_now();
  if (need_db)
    start_cluster();

  run = calloc((size_t)jobs, sizeof *run);
  size_t next = 0, done = 0, passed = 0, failed = 0, skipped = 0;
  while (done < n) {
    for (int j = 0; j < jobs && next < n; j++) {
      if (run[j].pid == 0) {
        run[j].idx = order[next++];
        run[j].start = th_now();
        run[j].pid = launch(run[j].idx);
      }
    }
    int status;
    pid_t pid = wait(&status);
    if (pid < 0) {
      if (errno == EINTR)
        continue;
      die("wait: %s", strerror(errno));
    }
    for (int j = 0; j < jobs; j++) {
      if (run[j].pid != pid)
        continue;
      size_t idx = run[j].idx;
      bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      bool skip = WIFEXITED(status) && WEXITSTATUS(status) == TH_SKIP_EXIT;
      double secs = th_now() - run[j].start;
      if (skip) { /* the log says why, on one line */
        skipped++;
        printf("skip   %-64s %7.2f s\n", tests[idx].name, secs);
        show_log(idx);
      } else if (ok) {
        passed++;
        printf("ok     %-64s %7.2f s\n", tests[idx].name, secs);
        if (verbose)
          show_log(idx);
      } else {
        failed++;
        printf("FAILED %-64s %7.2f s", tests[idx].name, secs);
        if (WIFSIGNALED(status))
          printf(" (signal %d%s)", WTERMSIG(status),
                 WTERMSIG(status) == SIGALRM ? ": timed out" : "");
        else
          printf(" (exit %d)", WEXITSTATUS(status));
        printf("\n");
        show_log(idx);
      }
      fflush(stdout);
      if (tests[idx].kind == DB && admin) {
        char db[32], sql[96];
        db_name(idx, db, sizeof db);
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
        admin_exec(sql);
      }
      run[j].pid = 0;
      done++;
    }
  }
  free(run);
  run = NULL;
  printf("\n%zu tests in %.1f s\n%zu passed, %zu failed", n, th_now() - t0,
         passed, failed);
  if (skipped > 0)
    printf(", %zu skipped", skipped);
  printf("\n");
  return failed ? 1 : 0;
}
