/* util.h - what every benchmark needs: a clock and a way to give up that
 * stops the servers it started first. */
#ifndef EMBSTORE_BENCH_UTIL_H
#define EMBSTORE_BENCH_UTIL_H

#include <stddef.h>

/* Seconds on the monotonic clock. */
double bench_now_s(void);
/* "bench/run NAME ARGS..." into cmd (cap bytes, cut if longer): the
 * command a report names. */
void bench_command_line(char *cmd, size_t cap, const char *name, int argc,
                        char **argv);
/* What bench_die runs before exiting (stop clusters, kill servers). */
void bench_on_die(void (*cleanup)(void));
/* Prints "bench: MESSAGE", runs the cleanup and exits 1. */
void bench_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#endif
