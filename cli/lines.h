/* lines.h - reads lines of bounded length from a stream.  Memory is
 * bounded by the limit: a longer line is read up to the limit, then
 * skipped to its end without being kept, and the buffer shrinks back
 * after any line over 1 MiB. */
#ifndef EMBSTORE_LINES_H
#define EMBSTORE_LINES_H

#include <stddef.h>
#include <stdio.h>

typedef struct lines {
  FILE *in;
  size_t max;      /* longest line accepted, in bytes (without newline) */
  char *buf;       /* holds the current line, NUL-terminated */
  size_t cap, len;
  char *chunk;     /* read-ahead */
  size_t chunk_pos, chunk_len;
  long lineno;     /* number of the line last returned */
  int eof, error;
} lines;

typedef enum lines_status {
  LINES_OK,       /* buf/len hold the line */
  LINES_TOO_LONG, /* the line exceeded max; len holds its full length */
  LINES_EOF,
  LINES_ERROR     /* read error (errno) or out of memory */
} lines_status;

int lines_open(lines *l, FILE *in, size_t max);
lines_status lines_next(lines *l);
void lines_close(lines *l);

#endif
