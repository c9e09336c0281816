/* plainpg.h - a second private PostgreSQL for the benchmarks, configured
 * as initdb leaves it: what a user's `--db` points at when nobody tuned
 * the server.  Only where it listens is set (a Unix socket in its own
 * directory, no TCP), on the command line, so postgresql.conf stays
 * initdb's.  Run as root, the server's programs run as EMBSTORE_PG_USER
 * (default postgres); its programs come from EMBSTORE_PG_BINDIR, else
 * `pg_config --bindir`. */
#ifndef EMBSTORE_BENCH_PLAINPG_H
#define EMBSTORE_BENCH_PLAINPG_H

#include <stddef.h>

typedef struct plainpg {
  char dir[256];      /* the cluster's directory: data/, socket, log */
  char bindir[256];
  char conninfo[512]; /* host=DIR port=PORT user=... dbname=postgres */
  char log[300];      /* the server's log file */
  int running;
} plainpg;

/* initdb into dir/data (dir is created, and must not exist) and start
 * the server.  Returns 0, or -1 with a message in err. */
int plainpg_start(plainpg *pg, const char *dir, char *err, size_t errcap);
/* Stops the server (fast shutdown); the directory is left for the caller
 * to remove.  A plainpg that never started is a no-op. */
void plainpg_stop(plainpg *pg);

#endif
