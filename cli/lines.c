/* lines.c - bounded line reader. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lines.h"

#define CHUNK (256 * 1024)

int lines_open(lines *l, FILE *in, size_t max) {
  memset(l, 0, sizeof *l);
  l->in = in;
  l->max = max;
  l->chunk = malloc(CHUNK);
  l->cap = 4096;
  l->buf = malloc(l->cap);
  if (l->chunk == NULL || l->buf == NULL) {
    lines_close(l);
    return -1;
  }
  return 0;
}

void lines_close(lines *l) {
  free(l->chunk);
  free(l->buf);
  l->chunk = l->buf = NULL;
}

/* Refills the read-ahead; false at end of input or on error. */
static int refill(lines *l) {
  if (l->eof)
    return 0;
  l->chunk_len = fread(l->chunk, 1, CHUNK, l->in);
  l->chunk_pos = 0;
  if (l->chunk_len == 0) {
    if (ferror(l->in))
      l->error = errno ? errno : EIO;
    l->eof = 1;
    return 0;
  }
  return 1;
}

#define SHRINK_ABOVE (1u << 20)

lines_status lines_next(lines *l) {
  size_t total = 0;
  int too_long = 0, any = 0;
  l->len = 0;
  /* After a long line, give the memory back: one huge line must not keep
   * the reader big for the rest of the input. */
  if (l->cap > SHRINK_ABOVE) {
    char *g = realloc(l->buf, 4096);
    if (g != NULL) {
      l->buf = g;
      l->cap = 4096;
    }
  }
  for (;;) {
    if (l->chunk_pos == l->chunk_len && !refill(l)) {
      if (l->error)
        return LINES_ERROR;
      if (!any)
        return LINES_EOF;
      break; /* last line without a newline */
    }
    any = 1;
    char *start = l->chunk + l->chunk_pos;
    size_t avail = l->chunk_len - l->chunk_pos;
    char *nl = memchr(start, '\n', avail);
    size_t take = nl ? (size_t)(nl - start) : avail;
    total += take;
    if (!too_long && total > l->max)
      too_long = 1;
    if (!too_long) {
      if (l->len + take + 1 > l->cap) {
        size_t cap = l->cap;
        while (cap < l->len + take + 1)
          cap *= 2;
        char *g = realloc(l->buf, cap);
        if (g == NULL) {
          l->error = ENOMEM;
          return LINES_ERROR;
        }
        l->buf = g;
        l->cap = cap;
      }
      memcpy(l->buf + l->len, start, take);
      l->len += take;
    }
    l->chunk_pos += take + (nl ? 1 : 0);
    if (nl)
      break;
  }
  l->lineno++;
  if (too_long) {
    l->len = total;
    return LINES_TOO_LONG;
  }
  if (l->len > 0 && l->buf[l->len - 1] == '\r')
    l->len--;
  l->buf[l->len] = '\0';
  return LINES_OK;
}
