/* report.h - BENCHMARKS.md as sections that each benchmark replaces on
 * its own, so that running one leaves the others' results in place. */
#ifndef EMBSTORE_BENCH_REPORT_H
#define EMBSTORE_BENCH_REPORT_H

#include <stdio.h>

/* One section being written: print it to f after report_open, then
 * report_close puts it into the file. */
typedef struct report {
  FILE *f;
  char *body;
  size_t len;
  char when[32]; /* when it was opened: "YYYY-MM-DD HH:MM UTC" */
} report;

/* Returns 0, or -1 with errno set. */
int report_open(report *r);
/* Replaces the section that starts with the line "## NAME" in the file at
 * path (up to the next "## " line) with what was printed, which starts
 * with that line; appends it when there is none, and starts a missing
 * file with a title.  Frees r either way.  Returns 0, or -1 with errno
 * set. */
int report_close(report *r, const char *path, const char *name);

#endif
