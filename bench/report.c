/* report.c - one section of BENCHMARKS.md at a time. */
#include "report.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The whole file as a string ("" when it does not exist), or NULL. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return errno == ENOENT ? calloc(1, 1) : NULL;
  char *buf = NULL;
  size_t len = 0, cap = 0, n;
  char tmp[8192];
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
    if (len + n + 1 > cap) {
      cap = (len + n + 1) * 2;
      char *g = realloc(buf, cap);
      if (g == NULL) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = g;
    }
    memcpy(buf + len, tmp, n);
    len += n;
  }
  bool bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return NULL;
  }
  if (buf == NULL)
    return calloc(1, 1);
  buf[len] = '\0';
  return buf;
}

/* Where the line "## name" starts in text, or NULL. */
static const char *find_heading(const char *text, const char *name) {
  size_t len = strlen(name);
  for (const char *p = text; p != NULL; p = strchr(p, '\n'), p = p ? p + 1 : p)
    if (strncmp(p, "## ", 3) == 0 && strncmp(p + 3, name, len) == 0 &&
        (p[3 + len] == '\n' || p[3 + len] == '\0'))
      return p;
  return NULL;
}

static int write_section(const char *path, const char *name, const char *body) {
  char *old = slurp(path);
  if (old == NULL)
    return -1;
  const char *start = find_heading(old, name), *end = NULL;
  if (start != NULL) {
    end = strstr(start + 3, "\n## ");
    end = end ? end + 1 : start + strlen(start);
  }
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (f == NULL) {
    free(old);
    return -1;
  }
  if (start != NULL) {
    fwrite(old, 1, (size_t)(start - old), f);
    fputs(body, f);
    if (*end != '\0')
      fputc('\n', f);
    fputs(end, f);
  } else {
    size_t len = strlen(old);
    fputs(len ? old : "# Benchmarks\n", f);
    fputs(len && old[len - 1] != '\n' ? "\n\n" : "\n", f);
    fputs(body, f);
  }
  free(old);
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    int e = errno;
    remove(tmp);
    errno = e;
    return -1;
  }
  return 0;
}

int report_open(report *r) {
  *r = (report){0};
  time_t now = time(NULL);
  strftime(r->when, sizeof r->when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
  r->f = open_memstream(&r->body, &r->len);
  return r->f ? 0 : -1;
}

int report_close(report *r, const char *path, const char *name) {
  int rc = fclose(r->f) == 0 ? write_section(path, name, r->body) : -1;
  int e = errno;
  free(r->body);
  *r = (report){0};
  errno = e;
  return rc;
}
