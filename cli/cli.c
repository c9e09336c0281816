/* cli.c - helpers shared by the commands. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* True when --json is on, or is on the command line where getopt has
 * not reached it yet (a usage error stopped it first).  The scan stops at
 * "--", after which "--json" would be an argument. */
static bool wants_json(const cli *c) {
  if (c->json)
    return true;
  for (int i = 1; i < c->argc; i++) {
    if (strcmp(c->argv[i], "--") == 0)
      break;
    if (strcmp(c->argv[i], "--json") == 0)
      return true;
  }
  return false;
}

/* The --json error object on stdout. */
static void put_json_error(es_status status, const char *msg) {
  jw w;
  jw_init(&w, stdout);
  jw_obj(&w);
  jw_key(&w, "error");
  jw_obj(&w);
  jw_key(&w, "status");
  jw_str(&w, es_status_name(status));
  jw_key(&w, "message");
  jw_str(&w, msg);
  jw_obj_end(&w);
  jw_obj_end(&w);
  jw_done(&w);
}

/* "embstore CMD: msg" on stderr, msg made printable. */
static void put_stderr_line(const cli *c, const char *msg) {
  if (strcmp(c->cmd, "embstore") == 0)
    fputs("embstore: ", stderr);
  else
    fprintf(stderr, "embstore %s: ", c->cmd);
  cli_put_message(stderr, msg);
  fputc('\n', stderr);
}

int cli_fail(cli *c, int exit_code, es_status status, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  put_stderr_line(c, msg);
  if (wants_json(c))
    put_json_error(status, msg);
  return exit_code;
}

int cli_usage(cli *c, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  put_stderr_line(c, msg);
  if (strcmp(c->cmd, "embstore") == 0)
    fprintf(stderr, "try: embstore --help\n");
  else
    fprintf(stderr, "try: embstore %s --help\n", c->cmd);
  if (wants_json(c))
    put_json_error(ES_EINVAL, msg);
  return EXIT_USAGE;
}

void cli_warn(cli *c, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  put_stderr_line(c, msg);
}

int cli_finish(cli *c, int exit_code) {
  int err = 0; /* errno of the failure; -1: a write failed, errno unknown */
  /* glibc keeps unwritten data buffered after a failed write, so this
   * flush tries again and errno says why it failed. */
  errno = 0;
  if (fflush(stdout) != 0)
    err = errno ? errno : -1;
  else if (ferror(stdout))
    err = -1;
  errno = 0;
  if (fclose(stdout) != 0 && err == 0)
    err = errno ? errno : -1;
  if (err == 0)
    return exit_code;
  char msg[256];
  snprintf(msg, sizeof msg, "cannot write output: %s",
           err > 0 ? strerror(err) : "a write to standard output failed");
  put_stderr_line(c, msg);
  return exit_code == EXIT_OK || exit_code == EXIT_PARTIAL ? EXIT_FAIL : exit_code;
}

es_store *cli_open(cli *c) {
  es_options o;
  es_options_init(&o);
  /* One CLI process does one thing at a time: a small pool suffices. */
  o.pool_size = 4;
  return cli_open_with(c, &o);
}

es_store *cli_open_with(cli *c, es_options *o) {
  es_store *s = NULL;
  o->conninfo = c->db;
  o->home = c->home;
  o->index_memory_mb = c->index_memory_mb;
  o->read_conninfo = c->read_db;
  if (c->max_lag_ms >= 0)
    o->max_replica_lag_ms = c->max_lag_ms;
  if (c->embed_url && c->embed_url[0]) {
    if (c->embed_model == NULL || c->embed_model[0] == '\0') {
      cli_usage(c, "--embed-url needs --embed-model (or EMBSTORE_EMBED_MODEL): "
                "the model the service is asked for");
      return NULL;
    }
    o->embed_url = c->embed_url;
    o->embed_model = c->embed_model;
    /* The key comes from the environment only: a command line is visible
     * to every user of the machine (ps). */
    o->embed_api_key = getenv("EMBSTORE_EMBED_API_KEY");
  }
  es_status rc = es_open_opts(o, &s);
  if (rc != ES_OK) {
    cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
    es_close(s);
    return NULL;
  }
  return s;
}

bool cli_parse_max_lag(cli *c, const char *arg) {
  long ms;
  if (!cli_parse_int(arg, 0, 86400000, &ms)) {
    cli_usage(c, "--max-replica-lag must be 0..86400000 milliseconds, not "
              "'%s'", arg);
    return false;
  }
  c->max_lag_ms = (int)ms;
  return true;
}

int cli_next_opt(cli *c, const cli_command *cmd, int argc, char **argv,
                 const char *shortopts, const struct option *longopts,
                 int *exit_code) {
  char spec[64];
  snprintf(spec, sizeof spec, ":%s", shortopts); /* ':' reports missing args */
  opterr = 0;
  for (;;) {
    int prev = optind ? optind : 1;
    int opt = getopt_long(argc, argv, spec, longopts, NULL);
    switch (opt) {
    case OPT_JSON:
      c->json = true;
      continue;
    case OPT_DB:
      c->db = optarg;
      continue;
    case OPT_HOME:
      c->home = optarg;
      continue;
    case OPT_EMBED_URL:
      c->embed_url = optarg;
      continue;
    case OPT_EMBED_MODEL:
      c->embed_model = optarg;
      continue;
    case OPT_READ_DB:
      c->read_db = optarg[0] ? optarg : NULL;
      continue;
    case OPT_MAX_LAG:
      if (!cli_parse_max_lag(c, optarg)) {
        *exit_code = EXIT_USAGE;
        return CLI_STOP;
      }
      continue;
    case OPT_HELP:
      fputs(cmd->usage, stdout);
      *exit_code = EXIT_OK;
      return CLI_STOP;
    case ':':
      *exit_code = cli_usage(c, "option %s needs a value", argv[prev]);
      return CLI_STOP;
    case '?':
      *exit_code = cli_usage(c, "unknown option %s", argv[prev]);
      return CLI_STOP;
    default:
      return opt;
    }
  }
}

bool cli_check_filter(cli *c, const char *filter) {
  char err[256];
  if (filter == NULL ||
      es_filter_check(filter, strlen(filter), "--filter", err, sizeof err) == ES_OK)
    return true;
  cli_usage(c, "%s", err);
  return false;
}

bool cli_parse_int(const char *s, long min, long max, long *out) {
  char *end;
  if (s == NULL || *s == '\0')
    return false;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno != 0 || *end != '\0' || v < min || v > max)
    return false;
  *out = v;
  return true;
}

bool cli_parse_duration(const char *s, int64_t *seconds) {
  char *end;
  if (s == NULL || *s < '0' || *s > '9')
    return false;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  bool huge = errno == ERANGE; /* all digits, too many: over any maximum */
  long long unit = 1;
  if (*end != '\0') {
    switch (*end) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return false;
    }
    if (end[1] != '\0')
      return false;
  }
  *seconds = huge || v > INT64_MAX / unit ? INT64_MAX : v * unit;
  return true;
}

/* Whether code point cp is shown as \uNNNN: C1 controls, which terminals
 * obey like ESC sequences; the line and paragraph separators, which some
 * break lines at; and the invisible bidi controls, which reorder what is
 * shown (an id can read as another). */
static bool hidden_code_point(unsigned long cp) {
  return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200e ||
         cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

/* The length of the valid UTF-8 sequence at p (1..4; 0 when invalid, which
 * includes overlong forms, surrogates and truncation), its code point in
 * *cp. */
static size_t utf8_char(const unsigned char *p, unsigned long *cp) {
  size_t n;
  unsigned long min;
  if (p[0] < 0x80) {
    *cp = p[0];
    return 1;
  }
  if (p[0] >= 0xc2 && p[0] <= 0xdf) {
    n = 2, min = 0x80, *cp = p[0] & 0x1f;
  } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
    n = 3, min = 0x800, *cp = p[0] & 0x0f;
  } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
    n = 4, min = 0x10000, *cp = p[0] & 0x07;
  } else {
    return 0;
  }
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
      return 0;
    *cp = (*cp << 6) | (p[i] & 0x3f);
  }
  if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
    return 0;
  return n;
}

/* The printable form of the character at p, in out (NUL-terminated):
 * the character itself or an escape.  Returns the bytes of p it stands
 * for; *cols is the characters it takes on screen (one per character,
 * which is right for all but wide East Asian ones). */
static size_t printable_unit(const unsigned char *p, char out[8], size_t *cols) {
  unsigned long cp;
  size_t n = utf8_char(p, &cp);
  if (n == 0) {
    snprintf(out, 8, "\\x%02x", p[0]);
    *cols = 4;
    return 1;
  }
  if (cp == '\n' || cp == '\r' || cp == '\t') {
    snprintf(out, 8, "\\%c", cp == '\n' ? 'n' : cp == '\r' ? 'r' : 't');
    *cols = 2;
  } else if (cp < 0x20 || cp == 0x7f) {
    snprintf(out, 8, "\\x%02lx", cp);
    *cols = 4;
  } else if (hidden_code_point(cp)) {
    snprintf(out, 8, "\\u%04lx", cp);
    *cols = 6;
  } else {
    memcpy(out, p, n);
    out[n] = '\0';
    *cols = 1;
  }
  return n;
}

/* The characters s takes when written printable. */
static size_t printable_width(const char *s) {
  size_t total = 0, cols;
  char unit[8];
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    p += printable_unit(p, unit, &cols);
    total += cols;
  }
  return total;
}

void cli_put_printable(FILE *f, const char *s) {
  size_t cols;
  char unit[8];
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    p += printable_unit(p, unit, &cols);
    fputs(unit, f);
  }
}

void cli_put_message(FILE *f, const char *s) {
  size_t cols, len = strlen(s);
  char unit[8];
  while (len > 0 && strchr(" \t\r\n", s[len - 1]))
    len--;
  const unsigned char *p = (const unsigned char *)s, *end = p + len;
  while (p < end) {
    if (*p == '\n' || (*p == '\r' && p[1] == '\n')) {
      p += strspn((const char *)p, " \t\r\n");
      fputc(' ', f);
      continue;
    }
    /* A character never straddles end: only ASCII white space follows. */
    p += printable_unit(p, unit, &cols);
    fputs(unit, f);
  }
}

void cli_put_cell(FILE *f, const char *s, size_t width, size_t max) {
  size_t total = printable_width(s), used = 0, cols;
  bool cut = max > 0 && total > max + 3;
  char unit[8];
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    size_t n = printable_unit(p, unit, &cols);
    if (cut && used + cols > max)
      break;
    fputs(unit, f);
    used += cols;
    p += n;
  }
  if (cut) {
    fputs("...", f);
    used += 3;
  }
  for (; used < width; used++)
    fputc(' ', f);
}

void cli_note_index(cli *c, const es_index_build *x) {
  if (x->built && !x->graph_fit)
    cli_warn(c, "note: the HNSW graph did not fit in the build's %d MB of memory "
             "and was finished on disk, several times slower (pgvector: %s); "
             "--index-memory raises it on a server that has the memory",
             x->memory_mb, x->notice);
  if (x->note[0])
    cli_warn(c, "note: the HNSW index build: %s", x->note);
}

bool cli_parse_index_memory(cli *c, const char *arg) {
  long mb;
  if (!cli_parse_int(arg, 1, 2097151, &mb))
    return false;
  c->index_memory_mb = (int)mb;
  return true;
}
