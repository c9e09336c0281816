/* test_cluster.c - the embedded cluster: lifecycle, privacy, crash
 * recovery, concurrent starts, missing binaries. */
#define _GNU_SOURCE
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

/* A home of its own inside the test's temporary directory. */
static const char *home(void) {
  static char path[600];
  snprintf(path, sizeof path, "%s/h", th_tmpdir());
  return path;
}

static es_cluster *open_cluster(void) {
  es_cluster *c = NULL;
  if (es_cluster_open(home(), &c) != ES_OK)
    FAIL("es_cluster_open: %s", es_cluster_errmsg(c));
  return c;
}

static void start(es_cluster *c) {
  if (es_cluster_start(c) != ES_OK)
    FAIL("es_cluster_start: %s", es_cluster_errmsg(c));
}

static es_cluster_state state(es_cluster *c) {
  es_cluster_state st;
  if (es_cluster_status(c, &st) != ES_OK)
    FAIL("es_cluster_status: %s", es_cluster_errmsg(c));
  return st;
}

static int mode_of(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0)
    FAIL("stat %s", path);
  return st.st_mode & 07777;
}

/* Whether process pid holds a listening TCP socket (IPv4 or IPv6). */
static bool listens_on_tcp(long pid) {
  char dir[64], link[64], target[128], line[512];
  unsigned long inodes[256];
  size_t n = 0;
  snprintf(dir, sizeof dir, "/proc/%ld/fd", pid);
  DIR *d = opendir(dir);
  ASSERT(d != NULL);
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < 256) {
    snprintf(link, sizeof link, "%s/%s", dir, e->d_name);
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len <= 0)
      continue;
    target[len] = '\0';
    unsigned long ino;
    if (sscanf(target, "socket:[%lu]", &ino) == 1)
      inodes[n++] = ino;
  }
  closedir(d);
  ASSERT(n > 0); /* it does hold its Unix socket */
  static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
  for (int t = 0; t < 2; t++) {
    FILE *f = fopen(tables[t], "r");
    if (f == NULL)
      continue;
    while (fgets(line, sizeof line, f)) {
      unsigned st;
      unsigned long ino;
      if (sscanf(line, "%*s %*s %*s %x %*s %*s %*s %*s %*s %lu", &st, &ino) != 2)
        continue;
      for (size_t i = 0; i < n; i++)
        if (st == 0x0A && ino == inodes[i]) {
          fclose(f);
          return true;
        }
    }
    fclose(f);
  }
  return false;
}

TEST(cluster_starts_privately_on_a_unix_socket_only_and_stops) {
  es_cluster *c = open_cluster();
  ASSERT_INT_EQ(state(c), ES_CLUSTER_ABSENT);
  start(c);
  ASSERT_INT_EQ(state(c), ES_CLUSTER_RUNNING);
  long pid = es_cluster_pid(c);
  ASSERT(pid > 0);
  char path[700];
  ASSERT_INT_EQ(mode_of(home()), 0700);
  snprintf(path, sizeof path, "%s/data", home());
  ASSERT_INT_EQ(mode_of(path), 0700);
  snprintf(path, sizeof path, "%s/run", home());
  ASSERT_INT_EQ(mode_of(path), 0700);
  snprintf(path, sizeof path, "%s/run/.s.PGSQL.5432", home());
  ASSERT_INT_EQ(mode_of(path) & 0777, 0700);
  ASSERT(!listens_on_tcp(pid));

  PGconn *pg = PQconnectdb(es_cluster_conninfo(c));
  ASSERT_INT_EQ(PQstatus(pg), CONNECTION_OK);
  PGresult *r = PQexec(pg, "SHOW listen_addresses");
  ASSERT_STR_EQ(PQgetvalue(r, 0, 0), "");
  PQclear(r);
  r = PQexec(pg, "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'");
  ASSERT_STR_EQ(PQgetvalue(r, 0, 0), "1");
  PQclear(r);
  PQfinish(pg);
  ASSERT_CONTAINS(es_cluster_url(c), "postgresql://embstore@/embstore?host=/");

  /* Starting a running cluster is a no-op. */
  start(c);
  ASSERT_INT_EQ(es_cluster_pid(c), pid);

  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK);
  ASSERT_INT_EQ(state(c), ES_CLUSTER_STOPPED);
  th_wait_exit(pid);
  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK); /* stopping twice is fine */

  /* es_open(NULL) on this home starts it again: the embedded default. */
  es_options o;
  es_options_init(&o);
  o.home = home();
  es_store *s = NULL;
  es_status rc = es_open_opts(&o, &s);
  if (rc != ES_OK)
    FAIL("embedded open: %s", es_errmsg(s));
  ASSERT_INT_EQ(state(c), ES_CLUSTER_RUNNING);
  ASSERT_OK(s, es_init(s, 2, ES_METRIC_COSINE, NULL));
  es_close(s);
  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK);
  es_cluster_close(c);
}

TEST(cluster_recovers_after_the_postmaster_is_killed) {
  es_cluster *c = open_cluster();
  start(c);
  long pid = es_cluster_pid(c);
  ASSERT_INT_EQ(kill((pid_t)pid, SIGKILL), 0);
  th_wait_exit(pid);
  ASSERT_INT_EQ(state(c), ES_CLUSTER_STOPPED);
  char path[700];
  snprintf(path, sizeof path, "%s/data/postmaster.pid", home());
  ASSERT_INT_EQ(access(path, F_OK), 0); /* left behind by the crash */
  start(c);
  ASSERT_INT_EQ(state(c), ES_CLUSTER_RUNNING);
  ASSERT(es_cluster_pid(c) != pid);
  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK);

  /* A stale postmaster.pid naming a live process that is not our
   * postmaster (after a reboot the PID may belong to anything). */
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  fprintf(f, "%ld\n%s/data\n", (long)getpid(), home());
  fclose(f);
  start(c);
  ASSERT_INT_EQ(state(c), ES_CLUSTER_RUNNING);
  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK);
  es_cluster_close(c);
}

TEST(two_processes_starting_the_cluster_at_once_do_not_race) {
  pid_t kids[3];
  int go[2];
  ASSERT_INT_EQ(pipe(go), 0);
  const char *h = home();
  for (int i = 0; i < 3; i++) {
    kids[i] = fork();
    ASSERT(kids[i] >= 0);
    if (kids[i] == 0) {
      char b;
      close(go[1]);
      if (read(go[0], &b, 1) != 0) /* wait for the starting gun */
        _exit(3);
      es_cluster *c = NULL;
      int ok = es_cluster_open(h, &c) == ES_OK && es_cluster_start(c) == ES_OK;
      if (!ok)
        fprintf(stderr, "child %d: %s\n", i, es_cluster_errmsg(c));
      es_cluster_close(c);
      _exit(ok ? 0 : 1);
    }
  }
  close(go[0]);
  close(go[1]); /* all three start now */
  for (int i = 0; i < 3; i++) {
    int st;
    ASSERT_INT_EQ(waitpid(kids[i], &st, 0), kids[i]);
    ASSERT(WIFEXITED(st));
    ASSERT_INT_EQ(WEXITSTATUS(st), 0);
  }
  es_cluster *c = open_cluster();
  ASSERT_INT_EQ(state(c), ES_CLUSTER_RUNNING);
  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK);
  es_cluster_close(c);
}

TEST(missing_postgresql_binaries_name_the_setup_command) {
  setenv("EMBSTORE_PG_BINDIR", th_tmpdir(), 1); /* no postgres in there */
  es_cluster *c = open_cluster();
  ASSERT_INT_EQ(es_cluster_start(c), ES_ENOPG);
  ASSERT_CONTAINS(es_cluster_errmsg(c), "scripts/setup");
  es_cluster_close(c);

  es_options o;
  es_options_init(&o);
  o.home = home();
  es_store *s = NULL;
  ASSERT_STATUS(s, es_open_opts(&o, &s), ES_ENOPG);
  ASSERT_CONTAINS(es_errmsg(s), "scripts/setup");
  es_close(s);
  unsetenv("EMBSTORE_PG_BINDIR");
}

TEST(a_home_too_long_for_a_socket_path_is_refused_clearly) {
  char longhome[200];
  memset(longhome, 'x', sizeof longhome);
  longhome[0] = '/';
  longhome[sizeof longhome - 1] = '\0';
  es_cluster *c = NULL;
  ASSERT_INT_EQ(es_cluster_open(longhome, &c), ES_EINVAL);
  ASSERT_CONTAINS(es_cluster_errmsg(c), "too long for a Unix socket path");
  es_cluster_close(c);
}

/* Runs a shell command line (fixed text plus paths of our own). */
static void sh(const char *cmd) {
  int rc = system(cmd);
  if (rc != 0)
    FAIL("command failed (%d): %s", rc, cmd);
}

TEST(missing_pgvector_names_the_setup_command) {
  /* A PostgreSQL installation without pgvector: a copy of the server
   * programs beside a copy of its share directory minus the extension.
   * (PostgreSQL finds its share and lib directories relative to the
   * program, so the copy keeps Debian's layout.) */
  char root[700], cmd[4096], bindir[800];
  snprintf(root, sizeof root, "%s/pg", th_tmpdir());
  snprintf(bindir, sizeof bindir, "%s/lib/postgresql/15/bin", root);
  snprintf(cmd, sizeof cmd,
           "mkdir -p '%s/lib/postgresql/15' '%s/share/postgresql' && "
           "cp -r /usr/lib/postgresql/15/bin '%s/lib/postgresql/15/' && "
           "ln -s /usr/lib/postgresql/15/lib '%s/lib/postgresql/15/lib' && "
           "cp -r /usr/share/postgresql/15 '%s/share/postgresql/' && "
           "rm -f '%s'/share/postgresql/15/extension/vector*",
           root, root, root, root, root, root);
  if (access("/usr/lib/postgresql/15/bin/postgres", X_OK) != 0)
    FAIL("this test needs Debian's PostgreSQL 15 layout");
  sh(cmd);
  setenv("EMBSTORE_PG_BINDIR", bindir, 1);
  es_cluster *c = open_cluster();
  ASSERT_INT_EQ(es_cluster_start(c), ES_ENOVECTOR);
  ASSERT_CONTAINS(es_cluster_errmsg(c), "pgvector is not installed");
  ASSERT_CONTAINS(es_cluster_errmsg(c), "scripts/setup");
  /* The server runs; a store on it says the same at init. */
  es_store *s = NULL;
  ASSERT_OK(s, es_open(es_cluster_conninfo(c), &s));
  ASSERT_STATUS(s, es_init(s, 3, ES_METRIC_COSINE, NULL), ES_ENOVECTOR);
  ASSERT_CONTAINS(es_errmsg(s), "scripts/setup");
  es_close(s);
  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK);
  es_cluster_close(c);
  unsetenv("EMBSTORE_PG_BINDIR");
}
