/* jsonw.c - streaming JSON writer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "tool_utf8.h"

void jw_init(jw *w, FILE *out) {
  memset(w, 0, sizeof *w);
  w->out = out;
  w->first[0] = true;
}

/* Writes the separator a new value needs. */
static void sep(jw *w) {
  if (w->after_key) {
    w->after_key = false;
    return;
  }
  if (!w->first[w->depth])
    fputc(',', w->out);
  w->first[w->depth] = false;
}

static void open_(jw *w, char c) {
  sep(w);
  fputc(c, w->out);
  if (w->depth + 1 < JW_MAX_DEPTH)
    w->depth++;
  w->first[w->depth] = true;
}

static void close_(jw *w, char c) {
  fputc(c, w->out);
  if (w->depth > 0)
    w->depth--;
}

void jw_obj(jw *w) { open_(w, '{'); }
void jw_obj_end(jw *w) { close_(w, '}'); }
void jw_arr(jw *w) { open_(w, '['); }
void jw_arr_end(jw *w) { close_(w, ']'); }

/* Writes the bytes s[0..n), valid UTF-8, with JSON's escapes. */
static void put_escaped(FILE *out, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t run = 0; /* start of the bytes that need no escape */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c != '"' && c != '\\' && c >= 0x20)
      continue;
    fwrite(s + run, 1, i - run, out);
    run = i + 1;
    fputc('\\', out);
    switch (c) {
    case '"': fputc('"', out); break;
    case '\\': fputc('\\', out); break;
    case '\n': fputc('n', out); break;
    case '\r': fputc('r', out); break;
    case '\t': fputc('t', out); break;
    default: fprintf(out, "u00%c%c", hex[c >> 4], hex[c & 15]);
    }
  }
  fwrite(s + run, 1, n - run, out);
}

/* Writes s as a JSON string; bytes that are not UTF-8 become '?', so the
 * output is valid JSON whatever a message quotes. */
static void put_string(jw *w, const char *s) {
  size_t n = strlen(s);
  long bad;
  fputc('"', w->out);
  while ((bad = es__utf8_invalid_at(s, n)) >= 0) {
    put_escaped(w->out, s, (size_t)bad);
    fputc('?', w->out);
    s += bad + 1;
    n -= (size_t)bad + 1;
  }
  put_escaped(w->out, s, n);
  fputc('"', w->out);
}

void jw_key(jw *w, const char *key) {
  sep(w);
  put_string(w, key);
  fputc(':', w->out);
  w->after_key = true;
}

void jw_str(jw *w, const char *s) {
  if (s == NULL) {
    jw_null(w);
    return;
  }
  sep(w);
  put_string(w, s);
}

void jw_int(jw *w, int64_t v) {
  sep(w);
  fprintf(w->out, "%lld", (long long)v);
}

/* The fewest significant digits, at least 6 and at most most (17 for a
 * double, 9 for a float: both always enough), that read back as v.  Found
 * by bisection: the nearest p-digit decimal is a p+1-digit one too, so
 * once some precision reads back every larger one does. */
static void shortest(char *buf, size_t cap, double v, int most, bool as_float) {
  int lo = 6, hi = most; /* hi reads back; lo - 1 is not asked about */
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    snprintf(buf, cap, "%.*g", mid, v);
    bool back = as_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v;
    if (back)
      hi = mid;
    else
      lo = mid + 1;
  }
  snprintf(buf, cap, "%.*g", lo, v);
}

void jw_num(jw *w, double v) {
  if (!isfinite(v)) {
    jw_null(w);
    return;
  }
  char buf[40];
  shortest(buf, sizeof buf, v, 17, false);
  sep(w);
  fputs(buf, w->out);
}

void jw_float(jw *w, float v) {
  if (!isfinite(v)) {
    jw_null(w);
    return;
  }
  char buf[40];
  shortest(buf, sizeof buf, v, 9, true);
  sep(w);
  fputs(buf, w->out);
}

void jw_bool(jw *w, bool v) {
  sep(w);
  fputs(v ? "true" : "false", w->out);
}

void jw_null(jw *w) {
  sep(w);
  fputs("null", w->out);
}

void jw_raw(jw *w, const char *json) {
  sep(w);
  fputs(json, w->out);
}

/* No flush here: a failed write is found at exit (cli_finish), where
 * glibc's retry of what is still buffered still knows why it failed. */
void jw_done(jw *w) { fputc('\n', w->out); }
