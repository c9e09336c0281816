/* pgembed.c - the embedded cluster: a private PostgreSQL in a directory of
 * embstore's own.
 *
 * Layout of the home directory (mode 0700):
 *   data/             PGDATA
 *   run/              the Unix socket (mode 0700); no TCP listener at all
 *   postgresql.log    the server log
 *   lock              flock()ed while starting or stopping, so that two
 *                     processes starting the cluster at once do not race
 *
 * PostgreSQL refuses to run as root.  When we are root, its programs run
 * as an unprivileged user (EMBSTORE_PG_USER, default "postgres") who owns
 * the home directory, as Debian's pg_virtualenv does. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "proc.h"

#define PORT "5432"
#define SUPERUSER "embstore"
#define DBNAME "embstore"
#define LOCK_WAIT_MS 120000
#define SETUP_HINT "run scripts/setup from the embstore source tree"

struct es_cluster {
  char *home, *datadir, *sockdir, *lockpath, *logpath;
  char *conninfo, *url;
  es__runas runas;
  char run_user[64];
  long pid;
  char bindir[PATH_MAX];
  char err[1024];
};

/* Records a failure on the handle and returns code. */
static es_status fail(es_cluster *c, es_status code, const char *fmt, ...)
    ES__PRINTF(3, 4);
static es_status fail(es_cluster *c, es_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->err, sizeof c->err, fmt, ap);
  va_end(ap);
  return code;
}

static char *join(const char *a, const char *b) {
  char *s = NULL;
  if (asprintf(&s, "%s/%s", a, b) < 0)
    return NULL;
  return s;
}

/* The home directory to use when none is given. */
static char *default_home(void) {
  const char *env = getenv("EMBSTORE_HOME");
  if (env && env[0])
    return strdup(env);
  if (geteuid() == 0)
    return strdup("/var/lib/embstore");
  const char *xdg = getenv("XDG_DATA_HOME");
  if (xdg && xdg[0] == '/')
    return join(xdg, "embstore");
  const char *home = getenv("HOME");
  if (home == NULL || home[0] == '\0') {
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &res) == 0 && res)
      home = res->pw_dir;
  }
  if (home == NULL)
    return NULL;
  char *s = NULL;
  if (asprintf(&s, "%s/.local/share/embstore", home) < 0)
    return NULL;
  return s;
}

/* Percent-encodes s for a URI query value (keeps unreserved and '/'). */
static char *uri_encode(const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  char *out = malloc(3 * strlen(s) + 1), *p = out;
  if (out == NULL)
    return NULL;
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
        (ch >= '0' && ch <= '9') || strchr("-._~/", ch)) {
      *p++ = (char)ch;
    } else {
      *p++ = '%';
      *p++ = hex[ch >> 4];
      *p++ = hex[ch & 15];
    }
  }
  *p = '\0';
  return out;
}

/* Makes path absolute against the current directory. */
static char *absolute(const char *path) {
  if (path[0] == '/')
    return strdup(path);
  char cwd[PATH_MAX];
  if (getcwd(cwd, sizeof cwd) == NULL)
    return NULL;
  return join(cwd, path);
}

es_status es_cluster_open(const char *home, es_cluster **out) {
  es_cluster *c = calloc(1, sizeof *c);
  *out = c;
  if (c == NULL)
    return ES_ENOMEM;
  char *h = home ? strdup(home) : default_home();
  if (h == NULL)
    return fail(c, ES_EINVAL, "cannot tell the embstore home directory: set "
                "EMBSTORE_HOME");
  c->home = absolute(h);
  free(h);
  if (c->home == NULL)
    return fail(c, ES_ENOMEM, "out of memory");
  size_t n = strlen(c->home);
  while (n > 1 && c->home[n - 1] == '/')
    c->home[--n] = '\0';
  c->datadir = join(c->home, "data");
  c->sockdir = join(c->home, "run");
  c->lockpath = join(c->home, "lock");
  c->logpath = join(c->home, "postgresql.log");
  char *qsock = c->sockdir ? es__conninfo_quote(c->sockdir) : NULL;
  char *usock = c->sockdir ? uri_encode(c->sockdir) : NULL;
  if (qsock && usock) {
    if (asprintf(&c->conninfo, "host=%s port=" PORT " user=" SUPERUSER
                 " dbname=" DBNAME, qsock) < 0)
      c->conninfo = NULL;
    if (asprintf(&c->url, "postgresql://" SUPERUSER "@/" DBNAME
                 "?host=%s&port=" PORT, usock) < 0)
      c->url = NULL;
  }
  free(qsock);
  free(usock);
  if (!c->datadir || !c->sockdir || !c->lockpath || !c->logpath ||
      !c->conninfo || !c->url)
    return fail(c, ES_ENOMEM, "out of memory");

  /* sockaddr_un holds 108 bytes including the socket's own name. */
  if (strlen(c->sockdir) + sizeof "/.s.PGSQL." PORT > 108)
    return fail(c, ES_EINVAL, "the embstore home %s is too long for a Unix "
                "socket path (%zu bytes; at most %zu): choose a shorter "
                "EMBSTORE_HOME", c->home, strlen(c->home),
                108 - sizeof "/run/.s.PGSQL." PORT);

  if (geteuid() == 0) {
    const char *user = getenv("EMBSTORE_PG_USER");
    if (user == NULL || user[0] == '\0')
      user = "postgres";
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwnam_r(user, &pw, buf, sizeof buf, &res) != 0 || res == NULL)
      return fail(c, ES_ENOPG, "running as root, embstore runs PostgreSQL as "
                  "the unprivileged user '%s', which does not exist: %s, or "
                  "set EMBSTORE_PG_USER", user, SETUP_HINT);
    if (res->pw_uid == 0)
      return fail(c, ES_EINVAL, "EMBSTORE_PG_USER '%s' is root; PostgreSQL "
                  "must run as an unprivileged user", user);
    c->runas.drop = true;
    c->runas.uid = res->pw_uid;
    c->runas.gid = res->pw_gid;
    snprintf(c->run_user, sizeof c->run_user, "%s", user);
  }
  return ES_OK;
}

void es_cluster_close(es_cluster *c) {
  if (c == NULL)
    return;
  free(c->home);
  free(c->datadir);
  free(c->sockdir);
  free(c->lockpath);
  free(c->logpath);
  free(c->conninfo);
  free(c->url);
  free(c);
}

const char *es_cluster_errmsg(const es_cluster *c) {
  if (c == NULL)
    return "out of memory";
  return c->err[0] ? c->err : "no error";
}
const char *es_cluster_conninfo(const es_cluster *c) { return c->conninfo; }
const char *es_cluster_url(const es_cluster *c) { return c->url; }
const char *es_cluster_home(const es_cluster *c) { return c->home; }
long es_cluster_pid(const es_cluster *c) { return c->pid; }

static bool is_exec(const char *dir, const char *prog) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, prog);
  return access(path, X_OK) == 0;
}

static bool has_server(const char *dir) {
  return is_exec(dir, "postgres") && is_exec(dir, "pg_ctl") &&
         is_exec(dir, "initdb");
}

/* Reads the number that starts file name in the data directory, or 0. */
static long read_number(const es_cluster *c, const char *name) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", c->datadir, name);
  FILE *f = fopen(path, "r");
  long v = 0;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1)
      v = 0;
    fclose(f);
  }
  return v;
}

/* The major version the data directory was created with, or 0. */
static int data_version(const es_cluster *c) {
  return (int)read_number(c, "PG_VERSION");
}

/* Finds PostgreSQL's server programs: $EMBSTORE_PG_BINDIR, Debian's
 * /usr/lib/postgresql/N/bin (the data directory's version first, else the
 * newest), then $PATH. */
static es_status find_bindir(es_cluster *c) {
  const char *env = getenv("EMBSTORE_PG_BINDIR");
  if (env && env[0]) {
    if (!has_server(env))
      return fail(c, ES_ENOPG, "EMBSTORE_PG_BINDIR=%s holds no postgres, "
                  "pg_ctl and initdb: point it at PostgreSQL's server "
                  "programs, or unset it and %s", env, SETUP_HINT);
    snprintf(c->bindir, sizeof c->bindir, "%s", env);
    return ES_OK;
  }
  int want = data_version(c);
  if (want > 0) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "/usr/lib/postgresql/%d/bin", want);
    if (has_server(dir)) {
      snprintf(c->bindir, sizeof c->bindir, "%s", dir);
      return ES_OK;
    }
  }
  int best = 0;
  DIR *d = opendir("/usr/lib/postgresql");
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      int v = atoi(e->d_name);
      char dir[PATH_MAX];
      snprintf(dir, sizeof dir, "/usr/lib/postgresql/%s/bin", e->d_name);
      if (v > best && (want == 0 || v == want) && has_server(dir))
        best = v;
    }
    closedir(d);
  }
  if (best > 0) {
    snprintf(c->bindir, sizeof c->bindir, "/usr/lib/postgresql/%d/bin", best);
    return ES_OK;
  }
  const char *path = getenv("PATH");
  if (path && want == 0) {
    char *copy = strdup(path), *save = NULL;
    for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir;
         dir = strtok_r(NULL, ":", &save)) {
      if (has_server(dir)) {
        snprintf(c->bindir, sizeof c->bindir, "%s", dir);
        free(copy);
        return ES_OK;
      }
    }
    free(copy);
  }
  if (want > 0)
    return fail(c, ES_ENOPG, "the cluster in %s was created by PostgreSQL %d, "
                "whose server programs are not installed: %s", c->home, want,
                SETUP_HINT);
  return fail(c, ES_ENOPG, "PostgreSQL server programs (postgres, pg_ctl, "
              "initdb) not found in /usr/lib/postgresql/*/bin or $PATH: %s",
              SETUP_HINT);
}

/* Creates dir with mode 0700 owned by the server's user, or tightens an
 * existing one to 0700. */
static es_status make_private_dir(es_cluster *c, const char *dir) {
  struct stat st;
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    return fail(c, ES_EIO, "cannot create %s: %s", dir, strerror(errno));
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return fail(c, ES_EIO, "%s is not a directory", dir);
  if ((st.st_mode & 0777) != 0700 && chmod(dir, 0700) != 0)
    return fail(c, ES_EIO, "cannot make %s private (mode 0700): %s", dir,
                strerror(errno));
  if (c->runas.drop && (st.st_uid != c->runas.uid || st.st_gid != c->runas.gid) &&
      chown(dir, c->runas.uid, c->runas.gid) != 0)
    return fail(c, ES_EIO, "cannot give %s to user %s: %s", dir, c->run_user,
                strerror(errno));
  return ES_OK;
}

/* mkdir -p for the parents of home (mode 0700 for those it creates). */
static es_status make_parents(es_cluster *c) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s", c->home);
  for (char *p = path + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
      return fail(c, ES_EIO, "cannot create %s: %s", path, strerror(errno));
    *p = '/';
  }
  return ES_OK;
}

/* Takes the home's lock file, waiting up to LOCK_WAIT_MS.  Returns the fd
 * or -1. */
static int take_lock(es_cluster *c) {
  int fd = open(c->lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    fail(c, ES_EIO, "cannot open the lock file %s: %s", c->lockpath,
         strerror(errno));
    return -1;
  }
  int64_t deadline = es__now_ms() + LOCK_WAIT_MS;
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      fail(c, ES_EIO, "cannot lock %s: %s", c->lockpath, strerror(errno));
      close(fd);
      return -1;
    }
    if (es__now_ms() > deadline) {
      fail(c, ES_ETIMEOUT, "another embstore process has held %s for %d s",
           c->lockpath, LOCK_WAIT_MS / 1000);
      close(fd);
      return -1;
    }
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
  }
  return fd;
}

static void drop_lock(int fd) {
  if (fd >= 0) {
    flock(fd, LOCK_UN);
    close(fd);
  }
}

/* Runs one of PostgreSQL's programs from bindir as the server's user. */
static int run_pg(es_cluster *c, const char *prog, const char *const args[],
                  char *out, size_t outlen) {
  const char *argv[16];
  char path[PATH_MAX];
  size_t n = 0;
  snprintf(path, sizeof path, "%s/%s", c->bindir, prog);
  argv[n++] = path;
  for (size_t i = 0; args[i] && n < 15; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  return es__proc_run(argv, &c->runas, c->home, out, outlen);
}

/* Last line(s) of text that fit, for messages. */
static const char *tail(const char *s, size_t max) {
  size_t n = strlen(s);
  return n > max ? s + n - max : s;
}

/* Appends the last part of the server log to a failure message. */
static void add_log_tail(es_cluster *c) {
  FILE *f = fopen(c->logpath, "r");
  if (f == NULL)
    return;
  char buf[600];
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0,
        SEEK_SET);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  size_t len = strlen(c->err);
  snprintf(c->err + len, sizeof c->err - len, "\nserver log %s ends:\n%s",
           c->logpath, tail(buf, 400));
}

/* initdb into data.init, configure, then rename into place, so that an
 * interrupted initdb never leaves a half-made data directory behind. */
static es_status create_cluster(es_cluster *c) {
  char tmp[PATH_MAX], out[2048], conf[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.init", c->datadir);
  const char *rm[] = {"/bin/rm", "-rf", tmp, NULL};
  es__proc_run(rm, NULL, NULL, out, sizeof out);

  const char *args[] = {"-D", tmp, "-U", SUPERUSER, "-E", "UTF8",
                        "--no-locale", "--auth-local=trust",
                        "--auth-host=reject", NULL};
  int rc = run_pg(c, "initdb", args, out, sizeof out);
  if (rc != 0)
    return fail(c, ES_ECLUSTER, "initdb failed (exit %d): %s", rc,
                tail(out, 600));

  snprintf(conf, sizeof conf, "%s/postgresql.conf", tmp);
  FILE *f = fopen(conf, "a");
  if (f == NULL)
    return fail(c, ES_EIO, "cannot append to %s: %s", conf, strerror(errno));
  fprintf(f, "\n# embstore: a private cluster reachable only through a Unix "
             "socket in a 0700 directory\n"
             "listen_addresses = ''\n"
             "unix_socket_directories = '");
  for (const char *p = c->sockdir; *p; p++)
    fprintf(f, *p == '\'' ? "''" : "%c", *p);
  fprintf(f, "'\n"
             "unix_socket_permissions = 0700\n"
             "port = " PORT "\n"
             "max_connections = 100\n"
             "maintenance_work_mem = '256MB'\n"
             "logging_collector = off\n");
  if (fclose(f) != 0)
    return fail(c, ES_EIO, "cannot write %s: %s", conf, strerror(errno));
  if (rename(tmp, c->datadir) != 0)
    return fail(c, ES_EIO, "cannot move %s to %s: %s", tmp, c->datadir,
                strerror(errno));
  return ES_OK;
}

/* The postmaster's PID from postmaster.pid, or 0. */
static long read_pidfile(const es_cluster *c) {
  return read_number(c, "postmaster.pid");
}

/* true when pid is alive and is a postmaster serving our data directory
 * (a PID from before a crash or reboot may now belong to anything). */
static bool is_our_postmaster(const es_cluster *c, long pid) {
  if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM))
    return false;
  char link[64], cwd[PATH_MAX], real[PATH_MAX];
  snprintf(link, sizeof link, "/proc/%ld/cwd", pid);
  ssize_t n = readlink(link, cwd, sizeof cwd - 1);
  if (n < 0)
    return errno != ENOENT; /* cannot tell: assume it is ours */
  cwd[n] = '\0';
  if (realpath(c->datadir, real) == NULL)
    return false;
  return strcmp(cwd, real) == 0;
}

/* true while any process still works in the data directory: the
 * children of a killed postmaster take a moment to notice its death, and
 * a new postmaster refuses to start while they hold its shared memory. */
static bool datadir_busy(const es_cluster *c) {
  char real[PATH_MAX], link[64], cwd[PATH_MAX];
  if (realpath(c->datadir, real) == NULL)
    return false;
  DIR *d = opendir("/proc");
  if (d == NULL)
    return false;
  bool busy = false;
  struct dirent *e;
  while (!busy && (e = readdir(d)) != NULL) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9')
      continue;
    snprintf(link, sizeof link, "/proc/%s/cwd", e->d_name);
    ssize_t n = readlink(link, cwd, sizeof cwd - 1);
    if (n <= 0)
      continue;
    cwd[n] = '\0';
    busy = strcmp(cwd, real) == 0;
  }
  closedir(d);
  return busy;
}

/* Removes postmaster.pid and the socket lock left by a crashed server,
 * once the crashed server's children are gone (10 s at most). */
static void clear_stale_pid(es_cluster *c) {
  long pid = read_pidfile(c);
  if (pid == 0 || is_our_postmaster(c, pid))
    return;
  for (int i = 0; i < 100 && datadir_busy(c); i++) {
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
  }
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/postmaster.pid", c->datadir);
  unlink(path);
  snprintf(path, sizeof path, "%s/.s.PGSQL." PORT ".lock", c->sockdir);
  unlink(path);
  snprintf(path, sizeof path, "%s/.s.PGSQL." PORT, c->sockdir);
  unlink(path);
}

/* PQping on the cluster's maintenance database. */
static bool accepting(const es_cluster *c) {
  char *q = es__conninfo_quote(c->sockdir), ci[PATH_MAX + 128];
  if (q == NULL)
    return false;
  snprintf(ci, sizeof ci,
           "host=%s port=" PORT " user=" SUPERUSER " dbname=postgres "
           "connect_timeout=2",
           q);
  free(q);
  return PQping(ci) == PQPING_OK;
}

/* Creates the store's database when missing and checks that pgvector is
 * installed for this server. */
static es_status prepare_database(es_cluster *c) {
  char *q = es__conninfo_quote(c->sockdir), ci[PATH_MAX + 128];
  if (q == NULL)
    return fail(c, ES_ENOMEM, "out of memory");
  snprintf(ci, sizeof ci,
           "host=%s port=" PORT " user=" SUPERUSER " dbname=postgres "
           "connect_timeout=10",
           q);
  free(q);
  PGconn *pg = PQconnectdb(ci);
  es_status rc = ES_OK;
  PGresult *r = NULL;
  if (PQstatus(pg) != CONNECTION_OK) {
    rc = fail(c, ES_ECLUSTER, "the embedded server started but refuses "
              "connections: %s", PQerrorMessage(pg));
    goto done;
  }
  const char *params[1] = {DBNAME};
  r = PQexecParams(pg, "SELECT 1 FROM pg_database WHERE datname = $1", 1,
                   NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = fail(c, ES_ECLUSTER, "cannot list databases: %s", PQerrorMessage(pg));
    goto done;
  }
  if (PQntuples(r) == 0) {
    PQclear(r);
    r = PQexec(pg, "CREATE DATABASE " DBNAME);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      rc = fail(c, ES_ECLUSTER, "cannot create database " DBNAME ": %s",
                PQerrorMessage(pg));
      goto done;
    }
  }
  PQclear(r);
  r = PQexec(pg, "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'");
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0)
    rc = fail(c, ES_ENOVECTOR, "pgvector is not installed for the PostgreSQL "
              "in %s: %s", c->bindir, SETUP_HINT);
done:
  PQclear(r);
  PQfinish(pg);
  return rc;
}

es_status es_cluster_start(es_cluster *c) {
  es_status rc;
  int lock = -1;
  char out[2048];

  if ((rc = make_parents(c)) != ES_OK || (rc = make_private_dir(c, c->home)) != ES_OK)
    return rc;
  if ((lock = take_lock(c)) < 0)
    return strstr(c->err, "held") ? ES_ETIMEOUT : ES_EIO;
  if ((rc = find_bindir(c)) != ES_OK)
    goto done;
  if (data_version(c) == 0) {
    struct stat st;
    if (stat(c->datadir, &st) == 0) {
      rc = fail(c, ES_ECLUSTER, "%s exists but holds no PostgreSQL cluster "
                "(no PG_VERSION); move it away", c->datadir);
      goto done;
    }
    if ((rc = create_cluster(c)) != ES_OK)
      goto done;
  }
  if ((rc = make_private_dir(c, c->sockdir)) != ES_OK)
    goto done;
  if (!accepting(c)) {
    clear_stale_pid(c);
    const char *opts = getenv("EMBSTORE_PG_OPTIONS");
    const char *args[] = {"start", "-w", "-t", "120", "-s", "-D", c->datadir,
                          "-l", c->logpath, opts && opts[0] ? "-o" : NULL,
                          opts, NULL};
    int st = run_pg(c, "pg_ctl", args, out, sizeof out);
    if (st != 0) {
      rc = fail(c, ES_ECLUSTER, "pg_ctl start failed (exit %d): %s", st,
                tail(out, 400));
      add_log_tail(c);
      goto done;
    }
  }
  c->pid = read_pidfile(c);
  rc = prepare_database(c);
done:
  drop_lock(lock);
  return rc;
}

es_status es_cluster_stop(es_cluster *c) {
  char out[2048];
  es_status rc = ES_OK;
  if (data_version(c) == 0)
    return ES_OK;
  int lock = take_lock(c);
  if (lock < 0)
    return strstr(c->err, "held") ? ES_ETIMEOUT : ES_EIO;
  long pid = read_pidfile(c);
  if (pid != 0 && is_our_postmaster(c, pid)) {
    if ((rc = find_bindir(c)) == ES_OK) {
      const char *args[] = {"stop", "-w", "-t", "120", "-s", "-m", "fast",
                            "-D", c->datadir, NULL};
      int st = run_pg(c, "pg_ctl", args, out, sizeof out);
      if (st != 0)
        rc = fail(c, ES_ECLUSTER, "pg_ctl stop failed (exit %d): %s", st,
                  tail(out, 400));
    }
  } else {
    clear_stale_pid(c);
  }
  if (rc == ES_OK)
    c->pid = 0;
  drop_lock(lock);
  return rc;
}

es_status es_cluster_status(es_cluster *c, es_cluster_state *state) {
  if (data_version(c) == 0) {
    *state = ES_CLUSTER_ABSENT;
    c->pid = 0;
    return ES_OK;
  }
  if (accepting(c)) {
    *state = ES_CLUSTER_RUNNING;
    c->pid = read_pidfile(c);
  } else {
    *state = ES_CLUSTER_STOPPED;
    c->pid = 0;
  }
  return ES_OK;
}

/* Used by es_open(NULL): the embedded cluster's conninfo, started. */
es_status es__embedded_conninfo(es_store *store, const char *home,
                                char **conninfo) {
  es_cluster *c = NULL;
  es_cluster_state state = ES_CLUSTER_ABSENT;
  es_status rc = es_cluster_open(home, &c);
  /* Fast path: a running cluster was fully prepared when it started. */
  if (rc == ES_OK && es_cluster_status(c, &state) == ES_OK &&
      state != ES_CLUSTER_RUNNING)
    rc = es_cluster_start(c);
  if (rc == ES_OK) {
    *conninfo = strdup(c->conninfo);
    if (*conninfo == NULL)
      rc = es__fail(store, ES_ENOMEM, "out of memory");
  } else {
    es__fail(store, rc, "embedded cluster: %s", es_cluster_errmsg(c));
  }
  es_cluster_close(c);
  return rc;
}
