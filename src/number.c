/* number.c - numbers in text, read and written the same whatever locale
 * the host program chose.
 *
 * strtod() and printf("%g") follow LC_NUMERIC: a program that calls
 * setlocale(LC_ALL, "") in a German locale would read "0.5" as 0 and write
 * "0,5".  The library reads the server's output and JSON, and writes
 * vectors, so it uses the C locale explicitly, per call, without touching
 * the program's own locale (no setlocale, which is not thread-safe). */
#define _GNU_SOURCE
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static locale_t c_locale; /* (locale_t)0 when newlocale failed */

static void make_c_locale(void) {
  c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* The C locale object, created once; (locale_t)0 when out of memory. */
static locale_t c_numeric(void) {
  pthread_once(&once, make_c_locale);
  return c_locale;
}

double es__strtod(const char *s, char **end) {
  locale_t loc = c_numeric();
  return loc ? strtod_l(s, end, loc) : strtod(s, end);
}

float es__strtof(const char *s, char **end) {
  locale_t loc = c_numeric();
  return loc ? strtof_l(s, end, loc) : strtof(s, end);
}

int es__snprintf_c(char *buf, size_t cap, const char *fmt, ...) {
  locale_t loc = c_numeric(), old = loc ? uselocale(loc) : (locale_t)0;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
  if (loc)
    uselocale(old);
  return n;
}
