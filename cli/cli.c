/* cli.c - helpers shared by the commands. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_fail(cli *c, int exit_code, es_status status, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "embstore %s: %s\n", c->cmd, msg);
  if (c->json) {
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
  return exit_code;
}

int cli_usage(cli *c, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "embstore %s: %s\n", c->cmd, msg);
  if (strcmp(c->cmd, "embstore") == 0)
    fprintf(stderr, "try: embstore --help\n");
  else
    fprintf(stderr, "try: embstore %s --help\n", c->cmd);
  return EXIT_USAGE;
}

es_store *cli_open(cli *c) {
  es_options o;
  es_store *s = NULL;
  es_options_init(&o);
  o.conninfo = c->db;
  o.home = c->home;
  /* One CLI process does one thing at a time: a small pool suffices. */
  o.pool_size = 4;
  es_status rc = es_open_opts(&o, &s);
  if (rc != ES_OK) {
    cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
    es_close(s);
    return NULL;
  }
  return s;
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
  if (errno != 0)
    return false;
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
  if (v > INT64_MAX / unit)
    return false;
  *seconds = v * unit;
  return true;
}

void cli_put_printable(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '\n')
      fputs("\\n", f);
    else if (*p < 0x20 || *p == 0x7f)
      fprintf(f, "\\x%02x", *p);
    else
      fputc(*p, f);
  }
}
