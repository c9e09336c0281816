/* test_cluster.c - the embedded cluster: lifecycle, privacy, crash
 * recovery, concurrent starts, missing binaries. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <errno.h>
#include <poll.h>
#include <pwd.h>
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
  ASSERT_NOT_NULL(d);
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
  ASSERT_INT_GT(n, 0); /* it does hold its Unix socket */
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
  ASSERT_INT_GT(pid, 0);
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
  ASSERT_INT_NE(es_cluster_pid(c), pid);
  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK);

  /* A stale postmaster.pid naming a live process that is not our
   * postmaster (after a reboot the PID may belong to anything). */
  FILE *f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
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
    ASSERT_INT_GE(kids[i], 0);
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

/* ---- a hostile home ------------------------------------------------------ */

/* The server's user: what embstore runs PostgreSQL as when root. */
static struct passwd *pg_user(void) {
  struct passwd *pw = getpwnam("postgres");
  if (geteuid() != 0 || pw == NULL)
    FAIL("this test plants files as other users: run it as root, with a "
         "postgres user");
  return pw;
}

/* The uid of user name. */
static uid_t uid_of(const char *name) {
  struct passwd *pw = getpwnam(name);
  if (pw == NULL)
    FAIL("no user %s", name);
  return pw->pw_uid;
}

/* <tmpdir>/name, into a static buffer (one of four, used round-robin). */
static const char *tpath(const char *name) {
  static char bufs[4][700];
  static int next;
  char *b = bufs[next++ % 4];
  snprintf(b, sizeof bufs[0], "%s/%s", th_tmpdir(), name);
  return b;
}

/* mkdir with exactly this mode and owner. */
static void make_dir(const char *path, int mode, uid_t uid) {
  if (mkdir(path, 0700) != 0 || chown(path, uid, (gid_t)-1) != 0 ||
      chmod(path, (mode_t)mode) != 0)
    FAIL("cannot make %s: %s", path, strerror(errno));
}

/* A symbolic link at path to target, owned by uid (as if they made it). */
static void make_link(const char *target, const char *path, uid_t uid) {
  if (symlink(target, path) != 0 || lchown(path, uid, (gid_t)-1) != 0)
    FAIL("cannot link %s: %s", path, strerror(errno));
}

/* A file holding text, mode 0600, owned by uid. */
static void write_file(const char *path, const char *text, uid_t uid) {
  FILE *f = fopen(path, "w");
  if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0 ||
      chown(path, uid, (gid_t)-1) != 0 || chmod(path, 0600) != 0)
    FAIL("cannot write %s: %s", path, strerror(errno));
}

/* A home of the server's user that looks like a stopped cluster (a data
 * directory with PG_VERSION), so that a start goes straight to the socket
 * directory and pg_ctl. */
static void fake_cluster(const char *h, uid_t pg) {
  char path[800];
  make_dir(h, 0700, pg);
  snprintf(path, sizeof path, "%s/data", h);
  make_dir(path, 0700, pg);
  snprintf(path, sizeof path, "%s/data/PG_VERSION", h);
  write_file(path, "15\n", pg);
}

/* Who owns path (not following a link). */
static uid_t owner_of(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0)
    FAIL("lstat %s: %s", path, strerror(errno));
  return st.st_uid;
}

/* es_cluster_start on h must fail with ES_ECLUSTER, say want and not
 * show a file only root may read. */
static void start_refused(const char *h, const char *want) {
  es_cluster *c = NULL;
  ASSERT_INT_EQ(es_cluster_open(h, &c), ES_OK);
  es_status rc = es_cluster_start(c);
  ASSERT_NOT_CONTAINS(es_cluster_errmsg(c), "ROOT-ONLY-CONTENT");
  if (rc != ES_ECLUSTER)
    FAIL("start on %s: want ES_ECLUSTER, got %s: %s", h, es_status_name(rc),
         es_cluster_errmsg(c));
  ASSERT_CONTAINS(es_cluster_errmsg(c), want);
  es_cluster_close(c);
}

TEST(cluster_refuses_symlinks_and_strangers_in_and_above_its_home) {
  uid_t pg = pg_user()->pw_uid, nobody = uid_of("nobody");
  char want[800], path[800];

  /* run/ replaced by the server's user with a link to another directory:
   * that directory is neither made private nor given away. */
  make_dir(tpath("a"), 0755, 0);
  fake_cluster(tpath("a/h"), pg);
  make_dir(tpath("a/other"), 0755, 0);
  make_link(tpath("a/other"), tpath("a/h/run"), pg);
  snprintf(want, sizeof want, "%s is a symbolic link; embstore refuses to use "
           "it: remove it or choose another EMBSTORE_HOME", tpath("a/h/run"));
  start_refused(tpath("a/h"), want);
  ASSERT_INT_EQ(mode_of(tpath("a/other")), 0755);
  ASSERT_INT_EQ(owner_of(tpath("a/other")), 0);

  /* The home itself a link: its target is left alone, status says why. */
  make_dir(tpath("b"), 0755, 0);
  make_dir(tpath("b/target"), 0755, 0);
  make_link(tpath("b/target"), tpath("b/h"), pg);
  snprintf(want, sizeof want, "%s is a symbolic link", tpath("b/h"));
  start_refused(tpath("b/h"), want);
  ASSERT_INT_EQ(mode_of(tpath("b/target")), 0755);
  ASSERT_INT_EQ(owner_of(tpath("b/target")), 0);
  es_cluster *c = NULL;
  es_cluster_state st;
  ASSERT_INT_EQ(es_cluster_open(tpath("b/h"), &c), ES_OK);
  ASSERT_INT_EQ(es_cluster_status(c, &st), ES_ECLUSTER);
  ASSERT_CONTAINS(es_cluster_errmsg(c), want);
  es_cluster_close(c);

  /* A world-writable home of another user is neither taken nor tightened;
   * one of the right user but writable by all is refused too. */
  make_dir(tpath("c"), 0755, 0);
  make_dir(tpath("c/h"), 0777, nobody);
  snprintf(want, sizeof want, "%s is owned by nobody, not by postgres",
           tpath("c/h"));
  start_refused(tpath("c/h"), want);
  ASSERT_INT_EQ(mode_of(tpath("c/h")), 0777);
  ASSERT_INT_EQ(owner_of(tpath("c/h")), nobody);
  make_dir(tpath("c/h2"), 0777, pg);
  snprintf(want, sizeof want, "%s is writable by users other than its owner "
           "(mode 0777)", tpath("c/h2"));
  start_refused(tpath("c/h2"), want);
  ASSERT_INT_EQ(mode_of(tpath("c/h2")), 0777);

  /* A lock planted as a link: root does not create its target. */
  make_dir(tpath("d"), 0755, 0);
  make_dir(tpath("d/h"), 0700, pg);
  make_link(tpath("d/made-by-root"), tpath("d/h/lock"), pg);
  snprintf(want, sizeof want, "%s is a symbolic link", tpath("d/h/lock"));
  start_refused(tpath("d/h"), want);
  ASSERT_INT_EQ(access(tpath("d/made-by-root"), F_OK), -1);

  /* The server log a link, or a hard link, to a file only root may read:
   * it is not printed as the server log. */
  make_dir(tpath("e"), 0755, 0);
  fake_cluster(tpath("e/h"), pg);
  write_file(tpath("e/secret"), "ROOT-ONLY-CONTENT\n", 0);
  make_link(tpath("e/secret"), tpath("e/h/postgresql.log"), pg);
  snprintf(want, sizeof want, "%s is a symbolic link",
           tpath("e/h/postgresql.log"));
  start_refused(tpath("e/h"), want);
  ASSERT_INT_EQ(unlink(tpath("e/h/postgresql.log")), 0);
  ASSERT_INT_EQ(link(tpath("e/secret"), tpath("e/h/postgresql.log")), 0);
  snprintf(want, sizeof want, "%s has 2 hard links",
           tpath("e/h/postgresql.log"));
  start_refused(tpath("e/h"), want);
  ASSERT_INT_EQ(unlink(tpath("e/h/postgresql.log")), 0);
  ASSERT_INT_EQ(access(tpath("e/h/postgresql.log"), F_OK), -1);

  /* Above the home: a directory anyone may write in (not sticky), and a
   * link in a sticky directory that another user made (and may change),
   * could each swap the home; neither is used. */
  make_dir(tpath("f"), 0777, 0);
  snprintf(want, sizeof want, "%s, on the way to the embstore home %s/h, is "
           "writable by every user (mode 0777)", tpath("f"), tpath("f"));
  start_refused(tpath("f/h"), want);
  ASSERT_INT_EQ(access(tpath("f/h"), F_OK), -1);
  make_dir(tpath("g"), 01777, 0);
  make_dir(tpath("g-real"), 0755, 0);
  make_link(tpath("g-real"), tpath("g/link"), nobody);
  snprintf(want, sizeof want, "%s (a symbolic link), on the way to the "
           "embstore home %s/h, is owned by nobody", tpath("g/link"),
           tpath("g/link"));
  start_refused(tpath("g/link/h"), want);
  ASSERT_INT_EQ(access(tpath("g-real/h"), F_OK), -1);

  /* A directory on the way that a stranger group may write in is refused;
   * one the server's group may write in is fine. */
  struct group *gr = getgrnam("nogroup");
  ASSERT_NOT_NULL(gr);
  make_dir(tpath("grp"), 0775, 0);
  ASSERT_INT_EQ(chown(tpath("grp"), 0, gr->gr_gid), 0);
  snprintf(want, sizeof want, "%s, on the way to the embstore home %s/h, is "
           "writable by group nogroup (mode 0775)", tpath("grp"), tpath("grp"));
  start_refused(tpath("grp/h"), want);
  ASSERT_INT_EQ(chown(tpath("grp"), 0, pg_user()->pw_gid), 0);
  snprintf(path, sizeof path, "%s/h", tpath("grp"));
  ASSERT_INT_EQ(es_cluster_open(path, &c), ES_OK);
  if (es_cluster_status(c, &st) != ES_OK)
    FAIL("status under the server's group: %s", es_cluster_errmsg(c));
  es_cluster_close(c);

  /* A link of root's on the way is fine (the home is absent, not refused). */
  make_link(tpath("g-real"), tpath("g/roots-link"), 0);
  snprintf(path, sizeof path, "%s/h", tpath("g/roots-link"));
  ASSERT_INT_EQ(es_cluster_open(path, &c), ES_OK);
  if (es_cluster_status(c, &st) != ES_OK)
    FAIL("status through root's link: %s", es_cluster_errmsg(c));
  ASSERT_INT_EQ(st, ES_CLUSTER_ABSENT);
  es_cluster_close(c);
}

TEST(cluster_names_the_directory_its_user_cannot_enter) {
  pg_user();
  make_dir(tpath("locked"), 0700, 0);
  char want[800];
  snprintf(want, sizeof want, "user postgres, who runs PostgreSQL when "
           "embstore runs as root, cannot enter %s (owner root, mode 0700)",
           tpath("locked"));
  start_refused(tpath("locked/deeper/h"), want);
  ASSERT_INT_EQ(access(tpath("locked/deeper"), F_OK), -1); /* nothing made */
}

/* In a child process running as the server's user (not root): a home of
 * root's is refused, one of its own starts. */
static void non_root_child(const char *mine, const char *roots) {
  struct passwd *pw = pg_user();
  if (setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
    FAIL("cannot become postgres: %s", strerror(errno));
  es_cluster *c = NULL;
  ASSERT_INT_EQ(es_cluster_open(roots, &c), ES_OK);
  ASSERT_INT_EQ(es_cluster_start(c), ES_ECLUSTER);
  char want[800];
  snprintf(want, sizeof want, "%s is owned by root, not by postgres (you)",
           roots);
  ASSERT_CONTAINS(es_cluster_errmsg(c), want);
  es_cluster_close(c);

  c = NULL;
  ASSERT_INT_EQ(es_cluster_open(mine, &c), ES_OK);
  if (es_cluster_start(c) != ES_OK)
    FAIL("start as postgres: %s", es_cluster_errmsg(c));
  ASSERT_INT_EQ(mode_of(mine), 0700);
  ASSERT_INT_EQ(state(c), ES_CLUSTER_RUNNING);
  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK);
  es_cluster_close(c);
}

TEST(cluster_run_by_a_non_root_user_wants_a_home_of_its_own) {
  uid_t pg = pg_user()->pw_uid;
  make_dir(tpath("mine"), 0750, pg);
  make_dir(tpath("roots"), 0777, 0);
  fflush(NULL);
  pid_t kid = fork();
  ASSERT_INT_GE(kid, 0);
  if (kid == 0) {
    non_root_child(tpath("mine"), tpath("roots"));
    fflush(NULL);
    _exit(0);
  }
  int status;
  ASSERT_INT_EQ(waitpid(kid, &status, 0), kid);
  ASSERT(WIFEXITED(status));
  ASSERT_INT_EQ(WEXITSTATUS(status), 0);
  ASSERT_INT_EQ(mode_of(tpath("roots")), 0777);
  ASSERT_INT_EQ(owner_of(tpath("roots")), 0);
}

/* ---- awkward paths --------------------------------------------------------- */

TEST(a_home_with_a_comma_or_a_control_character_is_refused_clearly) {
  es_cluster *c = NULL;
  ASSERT_INT_EQ(es_cluster_open(tpath("a,b"), &c), ES_EINVAL);
  ASSERT_CONTAINS(es_cluster_errmsg(c), "contains a comma, which PostgreSQL's "
                  "client library cannot use in a socket directory");
  ASSERT_CONTAINS(es_cluster_errmsg(c), "choose another EMBSTORE_HOME");
  es_cluster_close(c);
  c = NULL;
  ASSERT_INT_EQ(es_cluster_open(tpath("a\nb"), &c), ES_EINVAL);
  ASSERT_CONTAINS(es_cluster_errmsg(c), "contains a control character (byte "
                  "0x0a)");
  es_cluster_close(c);
}

TEST(cluster_starts_in_a_home_with_spaces_quotes_backslashes_and_dollars) {
  /* Its parent is made too, passable by the server's user. */
  const char *h = tpath("new/it's \"a\" back\\slash $HOME `x`");
  es_cluster *c = NULL;
  ASSERT_INT_EQ(es_cluster_open(h, &c), ES_OK);
  start(c);
  ASSERT_INT_EQ(state(c), ES_CLUSTER_RUNNING);
  ASSERT_INT_EQ(mode_of(tpath("new")), geteuid() == 0 ? 0711 : 0700);
  es_options o;
  es_options_init(&o);
  o.home = h;
  es_store *s = NULL;
  es_status rc = es_open_opts(&o, &s);
  if (rc != ES_OK)
    FAIL("embedded open: %s", es_errmsg(s));
  ASSERT_OK(s, es_init(s, 2, ES_METRIC_COSINE, NULL));
  es_close(s);
  /* The URL form names the same socket directory. */
  PGconn *pg = PQconnectdb(es_cluster_url(c));
  ASSERT_INT_EQ(PQstatus(pg), CONNECTION_OK);
  PQfinish(pg);
  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK);
  es_cluster_close(c);
}

/* ---- a start killed half-way ---------------------------------------------- */

/* Whether process pid (a name in /proc) works on home's data.init: its
 * working directory is in there, or an argument names it (relative to its
 * working directory, the home, or absolute). */
static bool on_data_init(const char *pid, const char *home_real) {
  char path[64], cwd[700], args[8192], init[800];
  snprintf(init, sizeof init, "%s/data.init", home_real);
  snprintf(path, sizeof path, "/proc/%s/cwd", pid);
  ssize_t n = readlink(path, cwd, sizeof cwd - 1);
  cwd[n > 0 ? n : 0] = '\0';
  if (strncmp(cwd, init, strlen(init)) == 0)
    return true;
  snprintf(path, sizeof path, "/proc/%s/cmdline", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return false;
  size_t len = fread(args, 1, sizeof args - 1, f);
  fclose(f);
  args[len] = '\0';
  for (const char *a = args; a < args + len; a += strlen(a) + 1)
    if (strcmp(a, init) == 0 ||
        (strcmp(a, "data.init") == 0 && strcmp(cwd, home_real) == 0))
      return true;
  return false;
}

/* The PID of a live (not zombie) process working on home's data.init
 * whose program is named prog (NULL: any), or 0. */
static long find_on_data_init(const char *home_real, const char *prog) {
  DIR *d = opendir("/proc");
  ASSERT_NOT_NULL(d);
  long found = 0;
  struct dirent *e;
  while (found == 0 && (e = readdir(d)) != NULL) {
    char path[300], comm[64] = "", state = 0;
    if (e->d_name[0] < '1' || e->d_name[0] > '9')
      continue;
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
      continue;
    int got = fscanf(f, "%*d (%63[^)]) %c", comm, &state);
    fclose(f);
    if (got == 2 && state != 'Z' && (prog == NULL || strcmp(comm, prog) == 0) &&
        on_data_init(e->d_name, home_real))
      found = atol(e->d_name);
  }
  closedir(d);
  return found;
}

/* Whether pid runs (exists and is not a zombie waiting for its parent). */
static bool running(long pid) {
  char path[64], state = 0;
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return false;
  int got = fscanf(f, "%*d (%*[^)]) %c", &state);
  fclose(f);
  return got == 1 && state != 'Z';
}

/* Polls until initdb runs on home's data.init (60 s at most). */
static long wait_for_initdb(const char *home_real) {
  double deadline = th_now() + 60;
  long pid;
  while ((pid = find_on_data_init(home_real, "initdb")) == 0) {
    if (th_now() > deadline)
      FAIL("no initdb appeared in %s/data.init within 60 s", home_real);
    poll(NULL, 0, 5);
  }
  return pid;
}

TEST(a_db_start_killed_during_initdb_leaves_no_initdb_and_the_next_works) {
  const char *h = tpath("h");
  ASSERT_INT_EQ(mkdir(h, 0700), 0); /* made now only to know its real path */
  char real[700];
  ASSERT_NOT_NULL(realpath(h, real));
  const char *argv[] = {th_cli_path(), "--home", h, "db", "start", NULL};
  fflush(NULL);
  pid_t cli = fork();
  ASSERT_INT_GE(cli, 0);
  if (cli == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  long initdb = wait_for_initdb(real);
  /* Stopped, initdb stands for one that is slow to finish: without care it
   * would still be writing data.init when the next start rewrites it. */
  ASSERT_INT_EQ(kill((pid_t)initdb, SIGSTOP), 0);
  ASSERT_INT_EQ(kill(cli, SIGKILL), 0);
  int status;
  ASSERT_INT_EQ(waitpid(cli, &status, 0), cli);

  const char *again[] = {"--home", h, "db", "start", NULL};
  th_proc p = th_cli(NULL, again);
  long left = find_on_data_init(real, NULL);
  if (left != 0) {
    kill((pid_t)left, SIGKILL);
    kill((pid_t)initdb, SIGKILL);
    FAIL("process %ld (the killed start's initdb is %ld) still works on "
         "data.init after the next start (exit %d: %s)", left, initdb,
         p.status, p.err);
  }
  if (p.status != 0)
    FAIL("the next db start: exit %d: %s", p.status, p.err);
  th_proc_free(&p);
  ASSERT(!running(initdb)); /* gone, not just elsewhere */

  es_cluster *c = NULL;
  ASSERT_INT_EQ(es_cluster_open(h, &c), ES_OK);
  ASSERT_INT_EQ(state(c), ES_CLUSTER_RUNNING);
  es_options o;
  es_options_init(&o);
  o.home = h;
  es_store *s = NULL;
  if (es_open_opts(&o, &s) != ES_OK)
    FAIL("embedded open: %s", es_errmsg(s));
  ASSERT_OK(s, es_init(s, 2, ES_METRIC_COSINE, NULL));
  es_close(s);
  ASSERT_INT_EQ(es_cluster_stop(c), ES_OK);
  es_cluster_close(c);
}
