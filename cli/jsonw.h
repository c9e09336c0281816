/* jsonw.h - a small streaming JSON writer for --json output.  Raw JSON
 * fragments (metadata from the database) are written verbatim, so numbers
 * in them are never reformatted. */
#ifndef EMBSTORE_JSONW_H
#define EMBSTORE_JSONW_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JW_MAX_DEPTH 32

typedef struct jw {
  FILE *out;
  int depth;
  bool first[JW_MAX_DEPTH]; /* no value written yet at this depth */
  bool after_key;
} jw;

void jw_init(jw *w, FILE *out);
void jw_obj(jw *w);     /* { */
void jw_obj_end(jw *w); /* } */
void jw_arr(jw *w);     /* [ */
void jw_arr_end(jw *w); /* ] */
void jw_key(jw *w, const char *key);
void jw_str(jw *w, const char *s); /* NULL writes null */
void jw_int(jw *w, int64_t v);
void jw_num(jw *w, double v); /* shortest form that reads back; NaN: null */
/* A float (a vector's value): the shortest form that strtof reads back as
 * the same float; not finite: null. */
void jw_float(jw *w, float v);
void jw_bool(jw *w, bool v);
void jw_null(jw *w);
void jw_raw(jw *w, const char *json); /* a valid JSON value, verbatim */
/* Ends the document with a newline. */
void jw_done(jw *w);

#endif
