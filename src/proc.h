/* proc.h - running PostgreSQL's programs, as another user when root. */
#ifndef ES_PROC_H
#define ES_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct es__runas {
  bool drop; /* switch to uid/gid before exec */
  uid_t uid;
  gid_t gid;
} es__runas;

/* Runs argv[0] with argv (no shell), as runas says, in directory cwd
 * (entered as that user; NULL: ours), stdin from /dev/null, stdout and
 * stderr captured into out (the last outlen-1 bytes, NUL-terminated).
 * The program is killed (SIGKILL) if the calling thread dies before it
 * ends; what it forks is not.  Returns the exit status (0..255), or -1
 * when the program could not be started (errno-style text in out). */
int es__proc_run(const char *const argv[], const es__runas *runas,
                 const char *cwd, char *out, size_t outlen);

/* Checks, as runas's user (in a child process, so that ACLs count), that
 * it can search every directory named by a prefix of the absolute path
 * that ends before a '/', stopping at the first one that does not exist.
 * Returns 0 when it can, the length of the prefix naming the first
 * directory it cannot enter, or -1 when the check could not run. */
long es__proc_first_closed_dir(const es__runas *runas, const char *path);

#endif
