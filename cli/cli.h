/* cli.h - what the embstore tool's commands share.  The tool uses only the
 * public API (embstore.h) plus the library's JSON helpers (json.h). */
#ifndef EMBSTORE_CLI_H
#define EMBSTORE_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "embstore.h"
#include "jsonw.h"
#include "render.h"

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
  int index_memory_mb; /* --index-memory of ingest, init, migrate; 0: sized */
  const char *embed_url;   /* --embed-url or EMBSTORE_EMBED_URL; NULL: none */
  const char *embed_model; /* --embed-model or EMBSTORE_EMBED_MODEL */
  const char *read_db;     /* --read-db or EMBSTORE_READ_DB; NULL: none */
  int max_lag_ms;          /* --max-replica-lag MS; -1: the default */
  int argc;         /* the whole command line, to find a --json that */
  char **argv;      /* getopt has not reached when a usage error stops it */
} cli;

typedef struct cli_command {
  const char *name;
  int (*run)(cli *c, int argc, char **argv);
  const char *summary;
  const char *usage; /* full help text */
} cli_command;

extern const cli_command cli_cmd_db, cli_cmd_init, cli_cmd_migrate,
    cli_cmd_ingest, cli_cmd_search, cli_cmd_delete, cli_cmd_stats,
    cli_cmd_cleanup, cli_cmd_metrics, cli_cmd_get, cli_cmd_list, cli_cmd_export,
    cli_cmd_serve, cli_cmd_token, cli_cmd_mcp, cli_cmd_distribute;

/* es_distribute(s, shards), or NULL after saying why (cmd_distribute.c). */
es_distribute_report *cli_distribute(cli *c, es_store *s, int shards);
/* The report as text, as --json, or as a "distribute" member of into. */
void cli_print_distribute(cli *c, const es_distribute_report *r, jw *into);

/* Notes on stderr when a build's graph did not fit in its memory, or a
 * setting was refused. */
void cli_note_index(cli *c, const es_index_build *build);
/* --index-memory MB (1..2097151) into c; false when it is not one. */
bool cli_parse_index_memory(cli *c, const char *arg);
#define CLI_INDEX_MEMORY_USAGE                                                \
  "  --index-memory MB  maintenance_work_mem of an HNSW index build\n"        \
  "                 (default: sized from the data, at most the smaller of\n" \
  "                 1 GiB and a quarter of the server's memory)\n"

/* Prints "embstore CMD: message" to stderr (see cli_put_message), and with
 * --json also {"error":{"status","message"}} on stdout.  Returns exit_code. */
int cli_fail(cli *c, int exit_code, es_status status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A usage error: message plus "try embstore CMD --help" on stderr, and with
 * --json anywhere on the command line the error object (ES_EINVAL) on
 * stdout.  Returns 1. */
int cli_usage(cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "embstore CMD: message" to stderr only: news after the output
 * (or the --json object) was already written. */
void cli_warn(cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Flushes and closes stdout at exit.  A write that failed (a full disk)
 * is said on stderr and turns exit_code 0 or 3 into 2.  Returns the exit
 * code. */
int cli_finish(cli *c, int exit_code);

/* Opens the store named by --db/EMBSTORE_DB, or the embedded one.  On
 * failure prints why and returns NULL. */
es_store *cli_open(cli *c);
/* cli_open with the caller's options o (filled by es_options_init and
 * set as the command needs); conninfo, home and index memory come from
 * c. */
es_store *cli_open_with(cli *c, es_options *o);

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
enum { OPT_JSON = 1000, OPT_DB, OPT_HOME, OPT_HELP, OPT_EMBED_URL,
       OPT_EMBED_MODEL, OPT_READ_DB, OPT_MAX_LAG };
#define CLI_COMMON_LONGOPTS                                    \
  {"json", no_argument, NULL, OPT_JSON},                       \
  {"db", required_argument, NULL, OPT_DB},                     \
  {"home", required_argument, NULL, OPT_HOME},                 \
  {"embed-url", required_argument, NULL, OPT_EMBED_URL},       \
  {"embed-model", required_argument, NULL, OPT_EMBED_MODEL},   \
  {"read-db", required_argument, NULL, OPT_READ_DB},           \
  {"max-replica-lag", required_argument, NULL, OPT_MAX_LAG},   \
  {"help", no_argument, NULL, OPT_HELP}

/* Writes s so that text from input or from the database cannot drive the
 * terminal or fake output lines: C0 controls and DEL as \n, \r, \t or \xNN,
 * bytes that are not UTF-8 as \xNN, and C1 controls (U+0080..U+009F), the
 * line and paragraph separators (U+2028, U+2029) and the invisible bidi
 * controls (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069) as
 * \uNNNN.  Everything else, UTF-8 included, is written as it is. */
void cli_put_printable(FILE *f, const char *s);

/* The same for a message: a line break and the indentation after it
 * become one space, so that a multi-line message (libpq's) stays on the
 * line that names embstore, and trailing white space is dropped. */
void cli_put_message(FILE *f, const char *s);

/* Writes s printable, left-aligned in a column of width characters (padded
 * with spaces; never cut), or, when max > 0 and s needs more than max + 3
 * characters, its first max characters and "..." (cut between characters,
 * never inside one or inside an escape). */
void cli_put_cell(FILE *f, const char *s, size_t width, size_t max);

/* Whether --filter's text filter (NULL: none) is one JSON object; if not,
 * a usage error naming the byte is said (cli_usage) and false returned. */
bool cli_check_filter(cli *c, const char *filter);

/* Parses a whole decimal integer in [min, max]; false otherwise. */
bool cli_parse_int(const char *s, long min, long max, long *out);

/* Sets c->max_lag_ms from --max-replica-lag's value; false after a usage
 * message when it is not 0..86400000. */
bool cli_parse_max_lag(cli *c, const char *arg);

/* Parses a duration: a number with s, m, h or d (90s, 30m, 1h, 7d), or
 * plain seconds.  false when malformed or negative; true with *seconds
 * set even when it exceeds a caller's maximum, which the caller checks to
 * say so. */
bool cli_parse_duration(const char *s, int64_t *seconds);

#endif
