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

/* Runs argv[0] with argv (no shell), as runas says, stdin from /dev/null,
 * stdout and stderr captured into out (the last outlen-1 bytes,
 * NUL-terminated).  Returns the exit status (0..255), or -1 when the
 * program could not be started (errno-style text in out). */
int es__proc_run(const char *const argv[], const es__runas *runas,
                 const char *cwd, char *out, size_t outlen);

#endif
