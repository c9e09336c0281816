/* util.c - the benchmarks' clock and their way to give up (util.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

static void (*on_die)(void);

double bench_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_on_die(void (*cleanup)(void)) { on_die = cleanup; }

void bench_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "bench: ");
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (on_die)
    on_die();
  exit(1);
}

void bench_command_line(char *cmd, size_t cap, const char *name, int argc,
                        char **argv) {
  snprintf(cmd, cap, "bench/run %s", name);
  for (int i = 1; i < argc; i++) {
    size_t len = strlen(cmd);
    snprintf(cmd + len, cap - len, " %s", argv[i]);
  }
}
