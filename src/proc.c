/* proc.c - runs a program with its output captured, and checks what
 * another user can reach.
 *
 * fork()+exec() rather than popen(): no shell, exact argv, and the child
 * can drop root privileges first.  Between fork and exec only
 * async-signal-safe calls are made, since the library may be used by a
 * multi-threaded program. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"

/* Keeps the tail of a stream in a fixed buffer. */
static void append_tail(char *out, size_t outlen, size_t *len, const char *buf,
                        size_t n) {
  if (outlen < 2)
    return;
  size_t cap = outlen - 1;
  if (n >= cap) {
    memcpy(out, buf + n - cap, cap);
    *len = cap;
  } else {
    if (*len + n > cap) {
      size_t drop = *len + n - cap;
      memmove(out, out + drop, *len - drop);
      *len -= drop;
    }
    memcpy(out + *len, buf, n);
    *len += n;
  }
  out[*len] = '\0';
}

/* In a forked child: switches to runas's user and group (no supplementary
 * groups).  false when that fails. */
static bool drop_privileges(const es__runas *runas) {
  if (runas == NULL || !runas->drop)
    return true;
  return setgroups(1, &runas->gid) == 0 && setgid(runas->gid) == 0 &&
         setuid(runas->uid) == 0;
}

/* In a forked child: asks for SIGKILL when parent, the thread that forked
 * it, dies, so that a program we wait for (initdb) never outlives a
 * killed caller and races the next one.  The postmaster that pg_ctl forks
 * is not affected: fork() clears the setting.  Set after the switch of
 * user, which also clears it. */
static void die_with_parent(pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) /* it died before prctl() */
    _exit(126);
}

int es__proc_run(const char *const argv[], const es__runas *runas,
                 const char *cwd, char *out, size_t outlen) {
  int fds[2];
  size_t len = 0;
  if (outlen > 0)
    out[0] = '\0';
  if (pipe2(fds, O_CLOEXEC) != 0) {
    snprintf(out, outlen, "pipe: %s", strerror(errno));
    return -1;
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(out, outlen, "fork: %s", strerror(errno));
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0)
      dup2(devnull, 0);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    /* The postmaster outlives us: it must not inherit our sockets, lock
     * files or the caller's pipes. */
    close_range(3, ~0U, 0);
    if (!drop_privileges(runas)) {
      static const char msg[] = "cannot switch to the unprivileged user\n";
      (void)!write(1, msg, sizeof msg - 1);
      _exit(126);
    }
    die_with_parent(parent);
    if (cwd && chdir(cwd) != 0) {
      static const char msg[] = "cannot change directory\n";
      (void)!write(1, msg, sizeof msg - 1);
      _exit(126);
    }
    signal(SIGPIPE, SIG_DFL);
    execv(argv[0], (char *const *)argv);
    static const char msg[] = "cannot execute the program\n";
    (void)!write(1, msg, sizeof msg - 1);
    _exit(127);
  }
  close(fds[1]);
  char buf[4096];
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0) {
      append_tail(out, outlen, &len, buf, (size_t)n);
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    break;
  }
  close(fds[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      snprintf(out, outlen, "waitpid: %s", strerror(errno));
      return -1;
    }
  }
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* In a forked child, as the other user: the length of the first prefix
 * of path (cut at a '/') that cannot be searched, or 0. */
static long first_closed(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    int rc = access(path, X_OK), err = errno;
    *p = '/';
    if (rc != 0 && err == EACCES)
      return (long)(p - path);
    if (rc != 0) /* missing (not created yet) or worse: initdb will say */
      return 0;
  }
  return 0;
}

long es__proc_first_closed_dir(const es__runas *runas, const char *path) {
  char copy[4096];
  int fds[2];
  if (strlen(path) >= sizeof copy || pipe2(fds, O_CLOEXEC) != 0)
    return -1;
  strcpy(copy, path);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    long n = drop_privileges(runas) ? first_closed(copy) : -1;
    (void)!write(fds[1], &n, sizeof n);
    _exit(0);
  }
  close(fds[1]);
  long n = -1;
  ssize_t got;
  while ((got = read(fds[0], &n, sizeof n)) < 0 && errno == EINTR) {
  }
  if (got != (ssize_t)sizeof n)
    n = -1;
  close(fds[0]);
  while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
  }
  return n;
}
