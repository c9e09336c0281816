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
 * the home directory, as Debian's pg_virtualenv does.
 *
 * That user can put anything in the home at any time, so what we do
 * there (maybe as root) goes through a descriptor of the home opened
 * without following a link, never follows a symbolic link inside it, and
 * acts on nothing another user owns; the directories on the way to the
 * home must be changeable only by root, us or that user.  PostgreSQL's
 * programs run as that user in the home, on relative paths. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "proc.h"

#define PORT "5432"
#define SUPERUSER "embstore"
#define DBNAME "embstore"
#define LOCK_WAIT_MS 120000
#define SETUP_HINT "run scripts/setup from the embstore source tree"
#define OTHER_HOME "choose another EMBSTORE_HOME"
#define MAX_LINKS 40
#define ORPHAN_WAIT_MS 10000

struct es_cluster {
  char *home, *datadir, *sockdir, *lockpath, *logpath;
  char *conninfo, *url;
  es__runas runas;
  uid_t owner; /* the server's user, who owns the home */
  gid_t owner_gid;
  char run_user[64]; /* that user's name, for messages */
  int homefd; /* the home, opened without following a link, while an
                 operation works in it; else -1 */
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

/* The home directory to use when none is given; NULL with *unknown set
 * when there is none to tell, NULL alone when out of memory. */
static char *default_home(bool *unknown) {
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
  if (home == NULL) {
    *unknown = true;
    return NULL;
  }
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

/* Refuses a home whose path PostgreSQL cannot use: libpq reads a comma in
 * a socket directory as a separator between hosts, with no way to escape
 * it, and a control character would end up inside a setting's value. */
static es_status check_home_chars(es_cluster *c) {
  for (const unsigned char *p = (const unsigned char *)c->home; *p; p++) {
    if (*p == ',')
      return fail(c, ES_EINVAL, "the embstore home %s contains a comma, which "
                  "PostgreSQL's client library cannot use in a socket "
                  "directory (it separates hosts there): " OTHER_HOME,
                  c->home);
    if (*p < 0x20 || *p == 0x7f)
      return fail(c, ES_EINVAL, "the embstore home %s contains a control "
                  "character (byte 0x%02x): " OTHER_HOME, c->home, *p);
  }
  return ES_OK;
}

/* Name of the user uid, or its number, into buf. */
static const char *user_name(uid_t uid, char *buf, size_t len) {
  struct passwd pw, *res = NULL;
  char tmp[4096];
  if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &res) == 0 && res)
    snprintf(buf, len, "%s", res->pw_name);
  else
    snprintf(buf, len, "uid %ld", (long)uid);
  return buf;
}

/* Who runs PostgreSQL and owns the home: us, or as root the unprivileged
 * EMBSTORE_PG_USER. */
static es_status choose_server_user(es_cluster *c) {
  if (geteuid() != 0) {
    c->owner = geteuid();
    c->owner_gid = getegid();
    user_name(c->owner, c->run_user, sizeof c->run_user);
    return ES_OK;
  }
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
  c->runas.uid = c->owner = res->pw_uid;
  c->runas.gid = c->owner_gid = res->pw_gid;
  snprintf(c->run_user, sizeof c->run_user, "%s", user);
  return ES_OK;
}

es_status es_cluster_open(const char *home, es_cluster **out) {
  es_cluster *c = calloc(1, sizeof *c);
  *out = c;
  if (c == NULL)
    return ES_ENOMEM;
  c->homefd = -1;
  bool unknown = false;
  char *h = home ? strdup(home) : default_home(&unknown);
  if (h == NULL && !unknown)
    return fail(c, ES_ENOMEM, "out of memory");
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
  es_status rc = check_home_chars(c);
  return rc != ES_OK ? rc : choose_server_user(c);
}

void es_cluster_close(es_cluster *c) {
  if (c == NULL)
    return;
  if (c->homefd >= 0)
    close(c->homefd);
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

/* ---- the home, opened safely ------------------------------------------- */

/* Name of the group gid, or its number, into buf. */
static const char *group_name(gid_t gid, char *buf, size_t len) {
  struct group gr, *res = NULL;
  char tmp[4096];
  if (getgrgid_r(gid, &gr, tmp, sizeof tmp, &res) == 0 && res)
    snprintf(buf, len, "%s", res->gr_name);
  else
    snprintf(buf, len, "gid %ld", (long)gid);
  return buf;
}

/* Why st, a directory passed or a link followed on the way to the home,
 * could be changed by someone other than root, us or the server's user
 * (into why), or NULL when it cannot: its owner is one of them, and no
 * other user or group may write in it unless it is sticky, like /tmp,
 * where others cannot rename what is not theirs. */
static const char *untrusted(const es_cluster *c, const struct stat *st,
                             char *why, size_t len) {
  char name[64];
  unsigned mode = (unsigned)(st->st_mode & 07777);
  if (st->st_uid != 0 && st->st_uid != geteuid() && st->st_uid != c->owner) {
    snprintf(why, len, "owned by %s", user_name(st->st_uid, name, sizeof name));
    return why;
  }
  if (S_ISLNK(st->st_mode) || (st->st_mode & S_ISVTX))
    return NULL;
  if (st->st_mode & S_IWOTH) {
    snprintf(why, len, "writable by every user (mode %04o)", mode);
    return why;
  }
  if ((st->st_mode & S_IWGRP) && st->st_gid != 0 && st->st_gid != getegid() &&
      st->st_gid != c->owner_gid) {
    snprintf(why, len, "writable by group %s (mode %04o)",
             group_name(st->st_gid, name, sizeof name), mode);
    return why;
  }
  return NULL;
}

/* lstat()s path, a step on the way to the home; when it is missing and
 * create is set, first makes it a directory (mode 0711 as root, so that
 * the server's user can pass, else 0700).  st->st_mode is 0 when it is
 * missing and create is not set. */
static es_status step(es_cluster *c, const char *path, bool create,
                      struct stat *st) {
  if (lstat(path, st) == 0)
    return ES_OK;
  if (errno != ENOENT)
    return fail(c, ES_EIO, "cannot look at %s: %s", path, strerror(errno));
  if (!create) {
    st->st_mode = 0;
    return ES_OK;
  }
  mode_t mode = c->runas.drop ? 0711 : 0700;
  if (mkdir(path, mode) == 0) {
    if (chmod(path, mode) != 0) /* the umask may have taken more */
      return fail(c, ES_EIO, "cannot set the mode of %s: %s", path,
                  strerror(errno));
  } else if (errno != EEXIST) {
    return fail(c, ES_EIO, "cannot create %s: %s", path, strerror(errno));
  }
  if (lstat(path, st) != 0)
    return fail(c, ES_EIO, "cannot look at %s: %s", path, strerror(errno));
  return ES_OK;
}

/* Replaces what is left of the walk, rest (inside todo), by the target of
 * the link path followed by rest, as the kernel resolves a link; an
 * absolute target restarts from / (done emptied). */
static es_status follow_link(es_cluster *c, const char *path, const char *rest,
                             char *done, char *todo, int *links) {
  char target[PATH_MAX], next[2 * PATH_MAX];
  if (++*links > MAX_LINKS)
    return fail(c, ES_ECLUSTER, "too many symbolic links on the way to %s",
                c->home);
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0)
    return fail(c, ES_EIO, "cannot read the link %s: %s", path,
                strerror(errno));
  target[n] = '\0';
  if (target[0] == '/')
    done[0] = '\0';
  if ((size_t)snprintf(next, sizeof next, "%s/%s", target, rest) >= PATH_MAX)
    return fail(c, ES_EINVAL, "the path to %s is too long", c->home);
  memcpy(todo, next, strlen(next) + 1);
  return ES_OK;
}

/* Walks from / to the home's parent the way the kernel resolves it,
 * creating missing directories when create is set, and refuses a
 * directory passed or a link followed that someone other than root, us
 * or the server's user could change (see untrusted()): that user could
 * swap the home for a directory of their own between our checks. */
static es_status secure_parents(es_cluster *c, bool create) {
  char done[PATH_MAX] = "", todo[PATH_MAX], path[PATH_MAX], why[128];
  int cut = (int)(strrchr(c->home, '/') - c->home), links = 0;
  snprintf(todo, sizeof todo, "%.*s", cut, c->home);
  const char *rest = todo;
  for (;;) {
    rest += strspn(rest, "/");
    int n = (int)strcspn(rest, "/");
    if (n == 0)
      return ES_OK;
    if ((n == 1 || n == 2) && strncmp(rest, "..", (size_t)n) == 0) {
      char *last = strrchr(done, '/');
      if (n == 2 && last) /* done holds no link: its parent is lexical */
        *last = '\0';
      rest += n;
      continue;
    }
    if (snprintf(path, sizeof path, "%s/%.*s", done, n, rest) >= PATH_MAX)
      return fail(c, ES_EINVAL, "the path to %s is too long", c->home);
    rest += n;
    struct stat st;
    es_status rc = step(c, path, create, &st);
    if (rc != ES_OK || st.st_mode == 0)
      return rc; /* missing: so is the home */
    if (untrusted(c, &st, why, sizeof why))
      return fail(c, ES_ECLUSTER, "%s%s, on the way to the embstore home %s, "
                  "is %s: another user could swap the home for a directory "
                  "of their own; embstore refuses to use it: " OTHER_HOME, path,
                  S_ISLNK(st.st_mode) ? " (a symbolic link)" : "", c->home,
                  why);
    if (S_ISLNK(st.st_mode)) {
      if ((rc = follow_link(c, path, rest, done, todo, &links)) != ES_OK)
        return rc;
      rest = todo;
    } else if (!S_ISDIR(st.st_mode)) {
      return fail(c, ES_ECLUSTER, "%s, on the way to the embstore home %s, "
                  "is not a directory: " OTHER_HOME, path, c->home);
    } else {
      memcpy(done, path, strlen(path) + 1);
    }
  }
}

/* As root: refuses a home that the server's user cannot reach, naming the
 * directory on the way that it cannot enter (initdb would only say that
 * it cannot change directory). */
static es_status check_reachable(es_cluster *c) {
  if (!c->runas.drop)
    return ES_OK;
  long n = es__proc_first_closed_dir(&c->runas, c->home);
  if (n < 0)
    return fail(c, ES_ECLUSTER, "cannot check that user %s can reach %s",
                c->run_user, c->home);
  if (n == 0)
    return ES_OK;
  char dir[PATH_MAX], owner[64];
  struct stat st;
  snprintf(dir, sizeof dir, "%.*s", (int)n, c->home);
  if (stat(dir, &st) != 0)
    memset(&st, 0, sizeof st);
  return fail(c, ES_ECLUSTER, "user %s, who runs PostgreSQL when embstore "
              "runs as root, cannot enter %s (owner %s, mode %04o) on the way "
              "to the embstore home %s: choose a home that %s can reach, or "
              "let it pass (chmod o+x %s)", c->run_user, dir,
              user_name(st.st_uid, owner, sizeof owner),
              (unsigned)(st.st_mode & 07777), c->home, c->run_user, dir);
}

/* Why embstore refuses st, the home or an entry in it (a directory when
 * dir is set), into buf, or NULL: a symbolic link, another kind of file
 * than expected, an owner other than the server's user or us (what root
 * made), a file with other hard links (maybe another user's file), a
 * directory that others may write in. */
static const char *refusal(const es_cluster *c, const struct stat *st, bool dir,
                           char *buf, size_t len) {
  char owner[64];
  if (S_ISLNK(st->st_mode))
    snprintf(buf, len, "is a symbolic link; embstore refuses to use it: "
             "remove it or " OTHER_HOME);
  else if (dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode))
    snprintf(buf, len, "is not a %s; embstore refuses to use it: move it "
             "away or " OTHER_HOME, dir ? "directory" : "regular file");
  else if (st->st_uid != c->owner && st->st_uid != geteuid())
    snprintf(buf, len, "is owned by %s, not by %s%s; embstore refuses to use "
             "it: move it away or " OTHER_HOME,
             user_name(st->st_uid, owner, sizeof owner), c->run_user,
             c->runas.drop ? " (who runs PostgreSQL)" : " (you)");
  else if (!dir && st->st_nlink != 1)
    snprintf(buf, len, "has %lu hard links, so it may be another user's file; "
             "embstore refuses to use it: remove it or " OTHER_HOME,
             (unsigned long)st->st_nlink);
  else if (dir && (st->st_mode & (S_IWGRP | S_IWOTH)))
    snprintf(buf, len, "is writable by users other than its owner (mode "
             "%04o); embstore refuses to use it: make it private (chmod 700) "
             "or " OTHER_HOME, (unsigned)(st->st_mode & 07777));
  else
    return NULL;
  return buf;
}

/* Records why path is refused, or returns ES_OK when st is acceptable. */
static es_status check_owned(es_cluster *c, const char *path,
                             const struct stat *st, bool dir) {
  char why[256];
  if (refusal(c, st, dir, why, sizeof why) == NULL)
    return ES_OK;
  return fail(c, ES_ECLUSTER, "%s %s", path, why);
}

/* Opens name in directory dirfd (path dir) with flags, following no
 * symbolic link, and checks what it opened (check_owned: a directory when
 * flags has O_DIRECTORY).  On failure *fd is -1 and, when report is set,
 * the reason is recorded. */
static es_status open_at(es_cluster *c, int dirfd, const char *dir,
                         const char *name, int flags, bool report, int *fd) {
  char path[PATH_MAX], why[256];
  struct stat st;
  bool want_dir = (flags & O_DIRECTORY) != 0;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  *fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
  if (*fd < 0) {
    int err = errno;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        refusal(c, &st, want_dir, why, sizeof why))
      return report ? fail(c, ES_ECLUSTER, "%s %s", path, why) : ES_ECLUSTER;
    return report ? fail(c, ES_EIO, "cannot open %s: %s", path, strerror(err))
                  : ES_EIO;
  }
  es_status rc = ES_OK;
  if (fstat(*fd, &st) != 0)
    rc = report ? fail(c, ES_EIO, "cannot stat %s: %s", path, strerror(errno))
                : ES_EIO;
  else if (refusal(c, &st, want_dir, why, sizeof why))
    rc = report ? fail(c, ES_ECLUSTER, "%s %s", path, why) : ES_ECLUSTER;
  if (rc != ES_OK) {
    close(*fd);
    *fd = -1;
  }
  return rc;
}

/* Makes the directory open as fd (path) the server's user's, mode 0700:
 * as root, one that root made is handed over. */
static es_status hand_over(es_cluster *c, int fd, const char *path) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return fail(c, ES_EIO, "cannot stat %s: %s", path, strerror(errno));
  if (st.st_uid != c->owner && fchown(fd, c->owner, c->owner_gid) != 0)
    return fail(c, ES_EIO, "cannot give %s to user %s: %s", path, c->run_user,
                strerror(errno));
  if ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) != 0)
    return fail(c, ES_EIO, "cannot make %s private (mode 0700): %s", path,
                strerror(errno));
  return ES_OK;
}

/* Opens the home into c->homefd (creating it, mode 0700, when create is
 * set) without following a symbolic link, checks it (check_owned) and
 * hands it over.  c->homefd stays -1 when it is missing and create is not
 * set. */
static es_status open_home(es_cluster *c, bool create) {
  struct stat st;
  if (create && mkdir(c->home, 0700) != 0 && errno != EEXIST)
    return fail(c, ES_EIO, "cannot create %s: %s", c->home, strerror(errno));
  int fd = open(c->home, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT && !create)
      return ES_OK;
    if (lstat(c->home, &st) == 0 && check_owned(c, c->home, &st, true) != ES_OK)
      return ES_ECLUSTER;
    return fail(c, ES_EIO, "cannot open %s: %s", c->home, strerror(err));
  }
  es_status rc = ES_OK;
  if (fstat(fd, &st) != 0)
    rc = fail(c, ES_EIO, "cannot stat %s: %s", c->home, strerror(errno));
  else if ((rc = check_owned(c, c->home, &st, true)) == ES_OK)
    rc = hand_over(c, fd, c->home);
  if (rc != ES_OK) {
    close(fd);
    return rc;
  }
  c->homefd = fd;
  return ES_OK;
}

/* What embstore keeps in the home; anything else there is left alone. */
static const struct {
  const char *name;
  bool dir;
} home_entries[] = {{"data", true},           {"data.init", true},
                    {"run", true},            {"lock", false},
                    {"postgresql.log", false}};

/* Checks what is already in the home (check_owned), so that a planted
 * link or a stranger's file is refused up front with a clear message;
 * each later use opens it again without following a link. */
static es_status check_entries(es_cluster *c) {
  for (size_t i = 0; i < sizeof home_entries / sizeof home_entries[0]; i++) {
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", c->home, home_entries[i].name);
    if (fstatat(c->homefd, home_entries[i].name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT)
        continue;
      return fail(c, ES_EIO, "cannot look at %s: %s", path, strerror(errno));
    }
    es_status rc = check_owned(c, path, &st, home_entries[i].dir);
    if (rc != ES_OK)
      return rc;
  }
  return ES_OK;
}

/* Checks the way to the home and opens it (see above); when create is
 * set, first checks that the server's user can reach it (before making
 * anything), then makes what is missing.  c->homefd stays -1 when the
 * home does not exist and create is not set.  leave_home() closes it. */
static es_status enter_home(es_cluster *c, bool create) {
  es_status rc = create ? check_reachable(c) : ES_OK;
  if (rc == ES_OK)
    rc = secure_parents(c, create);
  if (rc == ES_OK)
    rc = open_home(c, create);
  if (rc == ES_OK && c->homefd >= 0)
    rc = check_entries(c);
  return rc;
}

/* Closes what enter_home() opened. */
static void leave_home(es_cluster *c) {
  if (c->homefd >= 0)
    close(c->homefd);
  c->homefd = -1;
}

static bool is_exec(const char *dir, const char *prog) {
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/%s", dir, prog);
  return access(path, X_OK) == 0;
}

static bool has_server(const char *dir) {
  return is_exec(dir, "postgres") && is_exec(dir, "pg_ctl") &&
         is_exec(dir, "initdb");
}

/* Reads the number that starts file name in the data directory, or 0
 * (also when the home is not open, or the file is not a plain file of
 * the server's user). */
static long read_number(es_cluster *c, const char *name) {
  char buf[64];
  int dfd = -1, fd = -1;
  long v = 0;
  if (c->homefd < 0 ||
      open_at(c, c->homefd, c->home, "data", O_RDONLY | O_DIRECTORY, false,
              &dfd) != ES_OK ||
      open_at(c, dfd, c->datadir, name, O_RDONLY, false, &fd) != ES_OK)
    goto done;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  if (n > 0) {
    buf[n] = '\0';
    v = strtol(buf, NULL, 10);
  }
done:
  if (fd >= 0)
    close(fd);
  if (dfd >= 0)
    close(dfd);
  return v;
}

/* The major version the data directory was created with, or 0. */
static int data_version(es_cluster *c) {
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

/* Takes the home's lock file (opened without following a link), waiting
 * up to LOCK_WAIT_MS, into *fd. */
static es_status take_lock(es_cluster *c, int *fd) {
  es_status rc = open_at(c, c->homefd, c->home, "lock", O_RDWR | O_CREAT,
                         true, fd);
  if (rc != ES_OK)
    return rc;
  int64_t deadline = es__now_ms() + LOCK_WAIT_MS;
  while (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR)
      rc = fail(c, ES_EIO, "cannot lock %s: %s", c->lockpath, strerror(errno));
    else if (es__now_ms() > deadline)
      rc = fail(c, ES_ETIMEOUT, "another embstore process has held %s for %d s",
                c->lockpath, LOCK_WAIT_MS / 1000);
    if (rc != ES_OK) {
      close(*fd);
      *fd = -1;
      return rc;
    }
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
  }
  return ES_OK;
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

/* Appends the last part of the server log to a failure message; the log
 * is opened without following a link, and shown only when it is a plain
 * file of the server's user (else it could be anyone's). */
static void add_log_tail(es_cluster *c) {
  char buf[600];
  size_t len = strlen(c->err);
  int fd;
  es_status rc = open_at(c, c->homefd, c->home, "postgresql.log", O_RDONLY,
                         false, &fd);
  if (rc == ES_ECLUSTER) /* refused (a link, another user's file) */
    snprintf(c->err + len, sizeof c->err - len, "\nthe server log %s is not "
             "shown: it is not a plain file of user %s", c->logpath,
             c->run_user);
  if (rc != ES_OK)
    return;
  off_t size = lseek(fd, 0, SEEK_END);
  off_t from = size > (off_t)sizeof buf - 1 ? size - (off_t)sizeof buf + 1 : 0;
  ssize_t n = pread(fd, buf, sizeof buf - 1, from);
  close(fd);
  buf[n > 0 ? n : 0] = '\0';
  snprintf(c->err + len, sizeof c->err - len, "\nserver log %s ends:\n%s",
           c->logpath, tail(buf, 400));
}

/* The home's and data.init's real paths, as /proc shows them. */
typedef struct init_paths {
  char home[PATH_MAX];
  char init[PATH_MAX + 16];
} init_paths;

/* The effective user of process pid (a name in /proc), or -1. */
static long process_uid(const char *pid) {
  char path[64], line[256];
  long real = -1, effective = -1;
  snprintf(path, sizeof path, "/proc/%s/status", pid);
  FILE *f = fopen(path, "re");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Uid: %ld %ld", &real, &effective) == 2)
      break;
  fclose(f);
  return effective;
}

/* Whether process pid (a name in /proc) works on data.init: it runs as
 * the server's user, and its working directory is data.init or below, or
 * it names data.init among its arguments (initdb: in the home, where it
 * runs, or as an absolute path). */
static bool works_on_init(const es_cluster *c, const char *pid,
                          const init_paths *ip) {
  char path[64], cwd[PATH_MAX], args[8192], abs_init[PATH_MAX];
  if (process_uid(pid) != (long)c->owner || atol(pid) == getpid())
    return false;
  snprintf(path, sizeof path, "/proc/%s/cwd", pid);
  ssize_t n = readlink(path, cwd, sizeof cwd - 1);
  size_t ilen = strlen(ip->init);
  cwd[n > 0 ? n : 0] = '\0';
  if (strncmp(cwd, ip->init, ilen) == 0 &&
      (cwd[ilen] == '\0' || cwd[ilen] == '/'))
    return true;
  bool in_home = strcmp(cwd, ip->home) == 0;
  snprintf(path, sizeof path, "/proc/%s/cmdline", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  n = read(fd, args, sizeof args - 1);
  close(fd);
  if (n <= 0)
    return false;
  args[n] = '\0';
  snprintf(abs_init, sizeof abs_init, "%s.init", c->datadir);
  for (const char *a = args; a < args + n; a += strlen(a) + 1)
    if ((in_home && strcmp(a, "data.init") == 0) ||
        strcmp(a, abs_init) == 0 || strcmp(a, ip->init) == 0)
      return true;
  return false;
}

/* Kills pid (a name in /proc) if it still works on data.init, and waits
 * for it to end until deadline.  false when it outlives the deadline. */
static bool end_orphan(const es_cluster *c, const char *pid,
                       const init_paths *ip, int64_t deadline) {
  int fd = (int)syscall(SYS_pidfd_open, (pid_t)atol(pid), 0);
  if (fd < 0) {
    if (errno != ESRCH) /* no pidfds before Linux 5.3: kill by PID */
      kill((pid_t)atol(pid), SIGKILL);
    return true;
  }
  /* Checked again once pinned by the pidfd: the PID may have been reused. */
  if (works_on_init(c, pid, ip))
    syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
  int64_t left = deadline - es__now_ms();
  struct pollfd p = {fd, POLLIN, 0};
  bool gone = poll(&p, 1, left > 0 ? (int)left : 0) == 1 ||
              !works_on_init(c, pid, ip);
  close(fd);
  return gone;
}

/* Ends what a killed start left working on data.init: its initdb dies
 * with it (es__proc_run), but the postgres that initdb was feeding may
 * run on, and a start by an older embstore left initdb itself.  We hold
 * the lock, so no live start owns them. */
static es_status stop_orphans(es_cluster *c) {
  char link[64];
  init_paths ip;
  snprintf(link, sizeof link, "/proc/self/fd/%d", c->homefd);
  ssize_t n = readlink(link, ip.home, sizeof ip.home - 1);
  if (n <= 0)
    return ES_OK; /* no /proc: nothing to look at */
  ip.home[n] = '\0';
  snprintf(ip.init, sizeof ip.init, "%s/data.init", ip.home);
  DIR *d = opendir("/proc");
  if (d == NULL)
    return ES_OK;
  int64_t deadline = es__now_ms() + ORPHAN_WAIT_MS;
  es_status rc = ES_OK;
  struct dirent *e;
  while (rc == ES_OK && (e = readdir(d)) != NULL) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9' ||
        !works_on_init(c, e->d_name, &ip))
      continue;
    if (!end_orphan(c, e->d_name, &ip, deadline))
      rc = fail(c, ES_ECLUSTER, "process %s, left by an interrupted start, "
                "still works in %s.init after SIGKILL", e->d_name, c->datadir);
  }
  closedir(d);
  return rc;
}

/* Writes dir into f as a postgresql.conf string holding a list of one
 * directory: the element double-quoted ('"' doubled) so that nothing in
 * it separates elements, the whole single-quoted with '\'' doubled and
 * '\\' escaped, as the file's syntax wants. */
static void put_dir_list(FILE *f, const char *dir) {
  fputs("'\"", f);
  for (const char *p = dir; *p; p++) {
    if (*p == '"')
      fputs("\"\"", f);
    else if (*p == '\'')
      fputs("''", f);
    else if (*p == '\\')
      fputs("\\\\", f);
    else
      fputc(*p, f);
  }
  fputs("\"'", f);
}

/* Appends embstore's settings to data.init's postgresql.conf, opened
 * without following a link. */
static es_status write_conf(es_cluster *c, const char *tmp) {
  int dfd = -1, fd = -1;
  es_status rc = open_at(c, c->homefd, c->home, "data.init",
                         O_RDONLY | O_DIRECTORY, true, &dfd);
  if (rc == ES_OK)
    rc = open_at(c, dfd, tmp, "postgresql.conf", O_WRONLY | O_APPEND, true, &fd);
  if (dfd >= 0)
    close(dfd);
  if (rc != ES_OK)
    return rc;
  FILE *f = fdopen(fd, "a");
  if (f == NULL) {
    close(fd);
    return fail(c, ES_EIO, "cannot append to %s/postgresql.conf: %s", tmp,
                strerror(errno));
  }
  fprintf(f, "\n# embstore: a private cluster reachable only through a Unix "
             "socket in a 0700 directory\n"
             "listen_addresses = ''\n"
             "unix_socket_directories = ");
  put_dir_list(f, c->sockdir);
  fprintf(f, "\n"
             "unix_socket_permissions = 0700\n"
             "port = " PORT "\n"
             "max_connections = 100\n"
             "maintenance_work_mem = '256MB'\n"
             "logging_collector = off\n");
  if (fclose(f) != 0)
    return fail(c, ES_EIO, "cannot write %s/postgresql.conf: %s", tmp,
                strerror(errno));
  return ES_OK;
}

/* initdb into data.init, configure, then rename into place, so that an
 * interrupted initdb never leaves a half-made data directory behind.
 * Everything runs as the server's user in the home, on relative paths. */
static es_status create_cluster(es_cluster *c) {
  char tmp[PATH_MAX], out[2048];
  snprintf(tmp, sizeof tmp, "%s.init", c->datadir);
  es_status rc = stop_orphans(c);
  if (rc != ES_OK)
    return rc;
  const char *rm[] = {"/bin/rm", "-rf", "--", "data.init", NULL};
  int st = es__proc_run(rm, &c->runas, c->home, out, sizeof out);
  if (st != 0)
    return fail(c, ES_EIO, "cannot remove %s, left by an interrupted start "
                "(exit %d): %s", tmp, st, tail(out, 400));

  const char *args[] = {"-D", "data.init", "-U", SUPERUSER, "-E", "UTF8",
                        "--no-locale", "--auth-local=trust",
                        "--auth-host=reject", NULL};
  st = run_pg(c, "initdb", args, out, sizeof out);
  if (st != 0)
    return fail(c, ES_ECLUSTER, "initdb failed (exit %d): %s", st,
                tail(out, 600));
  if ((rc = write_conf(c, tmp)) != ES_OK)
    return rc;
  if (renameat(c->homefd, "data.init", c->homefd, "data") != 0)
    return fail(c, ES_EIO, "cannot move %s to %s: %s", tmp, c->datadir,
                strerror(errno));
  return ES_OK;
}

/* The postmaster's PID from postmaster.pid, or 0. */
static long read_pidfile(es_cluster *c) {
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
 * once the crashed server's children are gone (10 s at most); unlinkat()
 * in the directories opened without following a link. */
static void clear_stale_pid(es_cluster *c) {
  long pid = read_pidfile(c);
  if (pid == 0 || is_our_postmaster(c, pid))
    return;
  for (int i = 0; i < 100 && datadir_busy(c); i++) {
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
  }
  int fd;
  if (open_at(c, c->homefd, c->home, "data", O_RDONLY | O_DIRECTORY, false,
              &fd) == ES_OK) {
    unlinkat(fd, "postmaster.pid", 0);
    close(fd);
  }
  if (open_at(c, c->homefd, c->home, "run", O_RDONLY | O_DIRECTORY, false,
              &fd) == ES_OK) {
    unlinkat(fd, ".s.PGSQL." PORT ".lock", 0);
    unlinkat(fd, ".s.PGSQL." PORT, 0);
    close(fd);
  }
}

/* Server notices are not the caller's business. */
static void ignore_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
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
  /* Nothing the server says on the way may reach the caller's stderr:
   * no notices are sent, and none would be printed. */
  snprintf(ci, sizeof ci,
           "host=%s port=" PORT " user=" SUPERUSER " dbname=postgres "
           "connect_timeout=10 client_encoding=UTF8 "
           "options='-c client_min_messages=error'",
           q);
  free(q);
  PGconn *pg = PQconnectdb(ci);
  if (pg != NULL)
    PQsetNoticeProcessor(pg, ignore_notice, NULL);
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

/* Makes the socket directory run/ (mode 0700, the server's user's). */
static es_status make_run_dir(es_cluster *c) {
  int fd;
  if (mkdirat(c->homefd, "run", 0700) != 0 && errno != EEXIST)
    return fail(c, ES_EIO, "cannot create %s: %s", c->sockdir, strerror(errno));
  es_status rc = open_at(c, c->homefd, c->home, "run", O_RDONLY | O_DIRECTORY,
                         true, &fd);
  if (rc != ES_OK)
    return rc;
  rc = hand_over(c, fd, c->sockdir);
  close(fd);
  return rc;
}

/* Creates the cluster when the home has none yet. */
static es_status ensure_cluster(es_cluster *c) {
  struct stat st;
  if (data_version(c) != 0)
    return ES_OK;
  if (fstatat(c->homefd, "data", &st, AT_SYMLINK_NOFOLLOW) == 0)
    return fail(c, ES_ECLUSTER, "%s exists but holds no PostgreSQL cluster "
                "(no PG_VERSION); move it away", c->datadir);
  return create_cluster(c);
}

/* pg_ctl start, after clearing what a crashed server left. */
static es_status start_server(es_cluster *c) {
  char out[2048];
  clear_stale_pid(c);
  const char *opts = getenv("EMBSTORE_PG_OPTIONS");
  const char *args[] = {"start", "-w", "-t", "120", "-s", "-D", "data",
                        "-l", "postgresql.log", opts && opts[0] ? "-o" : NULL,
                        opts, NULL};
  int st = run_pg(c, "pg_ctl", args, out, sizeof out);
  if (st == 0)
    return ES_OK;
  es_status rc = fail(c, ES_ECLUSTER, "pg_ctl start failed (exit %d): %s", st,
                      tail(out, 400));
  add_log_tail(c);
  return rc;
}

es_status es_cluster_start(es_cluster *c) {
  es_status rc;
  int lock = -1;
  if ((rc = enter_home(c, true)) != ES_OK ||
      (rc = take_lock(c, &lock)) != ES_OK || (rc = find_bindir(c)) != ES_OK ||
      (rc = ensure_cluster(c)) != ES_OK || (rc = make_run_dir(c)) != ES_OK)
    goto done;
  if (!accepting(c) && (rc = start_server(c)) != ES_OK)
    goto done;
  c->pid = read_pidfile(c);
  rc = prepare_database(c);
done:
  drop_lock(lock);
  leave_home(c);
  return rc;
}

es_status es_cluster_stop(es_cluster *c) {
  char out[2048];
  int lock = -1;
  es_status rc = enter_home(c, false);
  if (rc != ES_OK || c->homefd < 0 || data_version(c) == 0 ||
      (rc = take_lock(c, &lock)) != ES_OK)
    goto done;
  long pid = read_pidfile(c);
  if (pid != 0 && is_our_postmaster(c, pid)) {
    if ((rc = find_bindir(c)) == ES_OK) {
      const char *args[] = {"stop", "-w", "-t", "120", "-s", "-m", "fast",
                            "-D", "data", NULL};
      int st = run_pg(c, "pg_ctl", args, out, sizeof out);
      if (st != 0)
        rc = fail(c, ES_ECLUSTER, "pg_ctl stop failed (exit %d): %s", st,
                  tail(out, 400));
    }
  } else {
    clear_stale_pid(c);
  }
done:
  if (rc == ES_OK)
    c->pid = 0;
  drop_lock(lock);
  leave_home(c);
  return rc;
}

es_status es_cluster_status(es_cluster *c, es_cluster_state *state) {
  *state = ES_CLUSTER_ABSENT;
  c->pid = 0;
  es_status rc = enter_home(c, false);
  if (rc != ES_OK || c->homefd < 0 || data_version(c) == 0)
    goto done;
  if (accepting(c)) {
    *state = ES_CLUSTER_RUNNING;
    c->pid = read_pidfile(c);
  } else {
    *state = ES_CLUSTER_STOPPED;
  }
done:
  leave_home(c);
  return rc;
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
