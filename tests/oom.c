/* oom.c - allocation-failure injection (SQLite's countdown).
 *
 * The test binary is linked with -Wl,--wrap=malloc,--wrap=calloc,... (see
 * tests/CMakeLists.txt): every call of those functions from the library,
 * which is linked in statically, and from the tests lands in the wrappers
 * here.  The allocations of libpq, libc and jansson (shared libraries) are
 * not seen.  Disarmed, a wrapper only forwards.  Armed with n in a thread,
 * the n-th allocation that thread makes fails with ENOMEM: once, or in
 * persistent mode that one and every later one.  Other threads (the
 * metrics writer of a store) never fail, so a run with a given n fails
 * the same allocation every time.
 *
 * To see where a failing run's allocation is made, set
 * EMBSTORE_OOM_TRACE=1: every injected failure prints a backtrace on
 * stderr (the test's log). */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

/* malloc, failing when the countdown says so (as do the ones below). */
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_asprintf(char **out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static __thread bool armed, persistent, fired;
static __thread long fail_at, calls;

/* Starts counting this thread's allocations; the n-th fails. */
void th_oom_arm(long n, bool persist) {
  armed = true;
  persistent = persist;
  fired = false;
  fail_at = n;
  calls = 0;
}

/* Stops counting; whether an allocation was failed. */
bool th_oom_disarm(void) {
  armed = false;
  return fired;
}

/* Allocations counted since th_oom_arm. */
long th_oom_calls(void) { return calls; }

/* Whether the allocation being made now is to fail. */
static bool fail_now(void) {
  if (!armed)
    return false;
  calls++;
  if (calls == fail_at || (persistent && calls > fail_at)) {
    fired = true;
    if (getenv("EMBSTORE_OOM_TRACE")) {
      void *frames[32];
      fprintf(stderr, "allocation %ld fails:\n", calls);
      backtrace_symbols_fd(frames, backtrace(frames, 32), 2);
    }
    errno = ENOMEM;
    return true;
  }
  return false;
}

/* malloc, failing when the countdown says so (as do the ones below). */
void *__wrap_malloc(size_t n) { return fail_now() ? NULL : __real_malloc(n); }

void *__wrap_calloc(size_t n, size_t size) {
  return fail_now() ? NULL : __real_calloc(n, size);
}

/* realloc(p, 0) frees in glibc: that is no allocation to fail. */
void *__wrap_realloc(void *p, size_t n) {
  return n > 0 && fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s) { return fail_now() ? NULL : __real_strdup(s); }

char *__wrap_strndup(const char *s, size_t n) {
  return fail_now() ? NULL : __real_strndup(s, n);
}

/* glibc's vasprintf allocates inside libc, out of the wrappers' sight:
 * the wrapper fails the call as a whole, as asprintf does (-1, *out
 * unspecified). */
int __wrap_asprintf(char **out, const char *fmt, ...) {
  if (fail_now())
    return -1;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(out, fmt, ap);
  va_end(ap);
  return n;
}

/* One pass of c over n = 1, 2, ...: returns how many allocations the
 * complete run made. */
static long pass(const th_oom_case *c, bool persist) {
  for (long n = 1;; n++) {
    if (n > TH_OOM_MAX_ALLOCATIONS)
      FAIL("%s: still allocating after %d allocations", c->name,
           TH_OOM_MAX_ALLOCATIONS);
    if (c->setup)
      c->setup(c->ctx);
    th_oom_arm(n, persist);
    c->run(c->ctx);
    bool hit = th_oom_disarm();
    long made = th_oom_calls();
    th_set_fail_context("%s: allocation %ld of the run failed%s", c->name, n,
                        persist ? ", and every one after it" : "");
    c->check(c->ctx, hit);
    if (c->teardown)
      c->teardown(c->ctx);
    th_set_fail_context(NULL);
    if (!hit)
      return made;
  }
}

/* Runs both passes of case c (see test.h). */
long th_oom_run(const th_oom_case *c) {
  double t0 = th_now();
  long made = pass(c, false);
  if (made < c->min_allocations)
    FAIL("%s: %ld allocations seen, want at least %ld (is the library "
         "linked with the allocation wrappers?)", c->name, made,
         c->min_allocations);
  pass(c, true);
  printf("%s: %ld allocations, each failed once and persistently (%.1f s)\n",
         c->name, made, th_now() - t0);
  return made;
}

/* Fails unless got is want, or ES_ENOMEM after a failed allocation. */
void th_oom_assert_status(const char *file, int line, const char *what,
                          es_status got, es_status want, bool hit) {
  if (got == want || (hit && got == ES_ENOMEM))
    return;
  th_fail(file, line, "%s: %s, want %s%s", what, es_status_name(got),
          es_status_name(want), hit ? " or ES_ENOMEM" : "");
}
