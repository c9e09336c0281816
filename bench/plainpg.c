/* plainpg.c - a default-settings PostgreSQL for the benchmarks (see
 * plainpg.h). */
#define _GNU_SOURCE
#include "plainpg.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PLAIN_PORT "5433"

/* Runs bindir/prog with args as the server's user, output into log (or
 * /dev/null); returns its exit status, or -1. */
static int run_as_server(const plainpg *pg, const char *prog,
                         const char *const args[], const char *log) {
  char path[300];
  const char *argv[16] = {path};
  snprintf(path, sizeof path, "%s/%s", pg->bindir, prog);
  for (int i = 0; args[i] != NULL && i < 14; i++)
    argv[i + 1] = args[i];
  const char *user = getenv("EMBSTORE_PG_USER");
  struct passwd *pw = getpwnam(user && user[0] ? user : "postgres");
  if (geteuid() == 0 && pw == NULL)
    return -1;
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    if (geteuid() == 0 &&
        (setgroups(1, &pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
         setuid(pw->pw_uid) != 0))
      _exit(126);
    /* opened as the server's user, who writes to it later */
    int fd = open(log ? log : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    if (chdir(pg->dir) != 0)
      _exit(126);
    execv(path, (char *const *)argv);
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The server programs' directory, from the environment or pg_config. */
static int find_bindir(plainpg *pg) {
  const char *env = getenv("EMBSTORE_PG_BINDIR");
  if (env && env[0]) {
    snprintf(pg->bindir, sizeof pg->bindir, "%s", env);
    return 0;
  }
  FILE *p = popen("pg_config --bindir", "r");
  if (p == NULL)
    return -1;
  int ok = fgets(pg->bindir, sizeof pg->bindir, p) != NULL;
  if (pclose(p) != 0 || !ok)
    return -1;
  pg->bindir[strcspn(pg->bindir, "\n")] = '\0';
  return 0;
}

int plainpg_start(plainpg *pg, const char *dir, char *err, size_t errcap) {
  *pg = (plainpg){0};
  snprintf(pg->dir, sizeof pg->dir, "%s", dir);
  snprintf(pg->log, sizeof pg->log, "%s/postgresql.log", dir);
  if (find_bindir(pg) != 0) {
    snprintf(err, errcap, "cannot find PostgreSQL's programs (pg_config --bindir; "
             "or set EMBSTORE_PG_BINDIR)");
    return -1;
  }
  if (mkdir(dir, 0700) != 0) {
    snprintf(err, errcap, "cannot create %s: %s", dir, strerror(errno));
    return -1;
  }
  const char *user = getenv("EMBSTORE_PG_USER");
  struct passwd *pw = getpwnam(user && user[0] ? user : "postgres");
  if (geteuid() == 0 && (pw == NULL || chown(dir, pw->pw_uid, pw->pw_gid) != 0)) {
    snprintf(err, errcap, "cannot hand %s to the server's user", dir);
    return -1;
  }
  /* The same initdb flags as the embedded cluster (C collation, trust on
   * the socket only), none of its postgresql.conf lines. */
  const char *init[] = {"-D", "data", "-U", "postgres", "-E", "UTF8",
                        "--no-locale", "--auth-local=trust",
                        "--auth-host=reject", NULL};
  int st = run_as_server(pg, "initdb", init, pg->log);
  if (st != 0) {
    snprintf(err, errcap, "initdb exited with %d (see %s)", st, pg->log);
    return -1;
  }
  char opts[400];
  snprintf(opts, sizeof opts, "-c listen_addresses='' -c port=" PLAIN_PORT
           " -c unix_socket_directories='%s'", dir);
  const char *start[] = {"start", "-w", "-t", "120", "-s", "-D", "data", "-l",
                         pg->log, "-o", opts, NULL};
  st = run_as_server(pg, "pg_ctl", start, NULL);
  if (st != 0) {
    snprintf(err, errcap, "pg_ctl start exited with %d (see %s)", st, pg->log);
    return -1;
  }
  pg->running = 1;
  snprintf(pg->conninfo, sizeof pg->conninfo,
           "host=%s port=" PLAIN_PORT " user=postgres dbname=postgres", dir);
  return 0;
}

void plainpg_stop(plainpg *pg) {
  if (!pg->running)
    return;
  const char *stop[] = {"stop", "-w", "-t", "120", "-s", "-m", "fast", "-D",
                        "data", NULL};
  run_as_server(pg, "pg_ctl", stop, NULL);
  pg->running = 0;
}
