/* report.h - BENCHMARKS.md as sections that each benchmark replaces on
 * its own, so that running one leaves the others' results in place. */
#ifndef EMBSTORE_BENCH_REPORT_H
#define EMBSTORE_BENCH_REPORT_H

/* Replaces the section that starts with the line "## NAME" in the file
 * at path (up to the next "## " line) with body, which starts with that
 * line; appends it when there is none, and starts a missing file with a
 * title.  Returns 0, or -1 with errno set. */
int report_section(const char *path, const char *name, const char *body);

#endif
