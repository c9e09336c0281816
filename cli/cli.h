/* cli.h - what the embstore tool's commands share.  The tool uses only the
 * public API (embstore.h) plus the library's JSON helpers (json.h). */
#ifndef EMBSTORE_CLI_H
#define EMBSTORE_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "embstore.h"
#include "jsonw.h"

/* Exit codes: stable, documented in the README. */
enum {
  EXIT_OK = 0,
  EXIT_USAGE = 1,   /* bad command line */
  EXIT_FAIL = 2,    /* operational error: nothing (more) could be done */
  EXIT_PARTIAL = 3  /* some items failed, the others landed */
};

typedef struct cli {
  const char *db;   /* --db or EMBSTORE_DB; NULL: embedded cluster */
  const char *home; /* --home or EMBSTORE_HOME */
  bool json;        /* --json */
  const char *cmd;  /* the command's name, for messages */
} cli;

typedef struct cli_command {
  const char *name;
  int (*run)(cli *c, int argc, char **argv);
  const char *summary;
  const char *usage; /* full help text */
} cli_command;

extern const cli_command cli_cmd_db, cli_cmd_init, cli_cmd_migrate,
    cli_cmd_ingest, cli_cmd_search, cli_cmd_delete, cli_cmd_stats,
    cli_cmd_cleanup, cli_cmd_metrics;

/* Prints "embstore CMD: message" to stderr, and with --json also
 * {"error":{"status","message"}} on stdout.  Returns exit_code. */
int cli_fail(cli *c, int exit_code, es_status status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A usage error: message plus "try embstore CMD --help".  Returns 1. */
int cli_usage(cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Opens the store named by --db/EMBSTORE_DB, or the embedded one.  On
 * failure prints why and returns NULL. */
es_store *cli_open(cli *c);

struct option;

/* The next command-specific option from getopt_long, handling the common
 * ones (--json, --db, --home, --help) and usage errors itself.  Returns -1
 * at the end of the options, CLI_STOP when the command must exit with
 * *exit_code (after --help or a usage error).  Start with optind = 0. */
int cli_next_opt(cli *c, const cli_command *cmd, int argc, char **argv,
                 const char *shortopts, const struct option *longopts,
                 int *exit_code);
#define CLI_STOP (-2)

/* getopt_long codes for the common options. */
enum { OPT_JSON = 1000, OPT_DB, OPT_HOME, OPT_HELP };
#define CLI_COMMON_LONGOPTS                                    \
  {"json", no_argument, NULL, OPT_JSON},                       \
  {"db", required_argument, NULL, OPT_DB},                     \
  {"home", required_argument, NULL, OPT_HOME},                 \
  {"help", no_argument, NULL, OPT_HELP}

/* Writes s with control characters escaped (\n, \xNN), so that text from
 * input cannot drive the terminal. */
void cli_put_printable(FILE *f, const char *s);

/* Parses a whole decimal integer in [min, max]; false otherwise. */
bool cli_parse_int(const char *s, long min, long max, long *out);

/* Parses a duration: a number with s, m, h or d (90s, 30m, 1h, 7d), or
 * plain seconds.  false when malformed or negative. */
bool cli_parse_duration(const char *s, int64_t *seconds);

#endif
