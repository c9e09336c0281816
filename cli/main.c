/* main.c - embstore's command dispatcher. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const cli_command *const commands[] = {
    &cli_cmd_db,     &cli_cmd_init,    &cli_cmd_migrate,
    &cli_cmd_ingest, &cli_cmd_search,  &cli_cmd_get,
    &cli_cmd_list,   &cli_cmd_export,  &cli_cmd_delete,
    &cli_cmd_stats,  &cli_cmd_cleanup, &cli_cmd_metrics,
    &cli_cmd_distribute,
#ifdef EMBSTORE_HAVE_SERVE
    &cli_cmd_serve,  &cli_cmd_token,   &cli_cmd_mcp,
#endif
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void help(FILE *f) {
  fprintf(f,
          "usage: embstore [--db CONNINFO] [--read-db CONNINFO] [--home DIR] [--json]\n"
          "                COMMAND [ARGS]\n"
          "\n"
          "A store for text embeddings on PostgreSQL + pgvector.\n"
          "\n"
          "Commands:\n");
  for (size_t i = 0; i < N_COMMANDS; i++)
    fprintf(f, "  %-9s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(f,
          "\n"
          "Options (also accepted after COMMAND):\n"
          "  --db CONNINFO  libpq connection string or postgresql:// URI of a\n"
          "                 PostgreSQL 13+ with pgvector; libpq's PG* variables\n"
          "                 and service files apply.  Default: $EMBSTORE_DB, else\n"
          "                 the embedded cluster (started on first use)\n"
          "  --home DIR     the embedded cluster's directory (default:\n"
          "                 $EMBSTORE_HOME, else ~/.local/share/embstore; as\n"
          "                 root /var/lib/embstore)\n"
          "  --read-db CONNINFO  a streaming replica (or a libpq multi-host\n"
          "                 string of several): search, get, list and stats\n"
          "                 read there when it has replayed this process's\n"
          "                 writes and is fresh enough, else on the primary.\n"
          "                 Default: $EMBSTORE_READ_DB\n"
          "  --max-replica-lag MS  how stale a read from the replica may be\n"
          "                 (default 5000); beyond it the primary answers\n"
          "  --embed-url URL  an OpenAI-compatible embeddings service (POST\n"
          "                 URL/embeddings): documents and chunks with text but\n"
          "                 no vector are embedded, and search --text ranks by\n"
          "                 vectors too.  Default: $EMBSTORE_EMBED_URL.  Its key,\n"
          "                 if it needs one: $EMBSTORE_EMBED_API_KEY (never an\n"
          "                 option, never printed)\n"
          "  --embed-model M  the model asked for and recorded with each vector\n"
          "                 (default: $EMBSTORE_EMBED_MODEL)\n"
          "  --json         machine-readable output with stable fields\n"
          "  --help         this help; `embstore COMMAND --help` for a command\n"
          "  --version      print the version\n"
          "\n"
          "Exit status: 0 success, 1 usage error, 2 operational error,\n"
          "3 some items failed while the others landed.\n");
}

/* Parses the global options and runs the command. */
static int dispatch(cli *c, int argc, char **argv) {
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--json") == 0) {
      c->json = true;
    } else if (strcmp(a, "--read-db") == 0 ||
               strcmp(a, "--max-replica-lag") == 0) {
      if (i + 1 >= argc)
        return cli_usage(c, "%s needs a value", a);
      if (a[2] == 'r')
        c->read_db = argv[++i][0] ? argv[i] : NULL;
      else if (!cli_parse_max_lag(c, argv[++i]))
        return EXIT_USAGE;
    } else if (strcmp(a, "--db") == 0 || strcmp(a, "--home") == 0 ||
               strcmp(a, "--embed-url") == 0 || strcmp(a, "--embed-model") == 0) {
      if (i + 1 >= argc)
        return cli_usage(c, "%s needs a value", a);
      if (a[2] == 'd')
        c->db = argv[++i];
      else if (a[2] == 'h')
        c->home = argv[++i];
      else if (a[8] == 'u')
        c->embed_url = argv[++i];
      else
        c->embed_model = argv[++i];
    } else if (strncmp(a, "--read-db=", 10) == 0) {
      c->read_db = a[10] ? a + 10 : NULL;
    } else if (strncmp(a, "--max-replica-lag=", 18) == 0) {
      if (!cli_parse_max_lag(c, a + 18))
        return EXIT_USAGE;
    } else if (strncmp(a, "--db=", 5) == 0) {
      c->db = a + 5;
    } else if (strncmp(a, "--home=", 7) == 0) {
      c->home = a + 7;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      help(stdout);
      return EXIT_OK;
    } else if (strcmp(a, "--version") == 0) {
      printf("embstore %s\n", es_version());
      return EXIT_OK;
    } else {
      return cli_usage(c, "unknown option %s", a);
    }
  }
  if (i >= argc) {
    help(stderr);
    return cli_usage(c, "no command given");
  }
  for (size_t k = 0; k < N_COMMANDS; k++) {
    if (strcmp(argv[i], commands[k]->name) == 0) {
      c->cmd = commands[k]->name;
      return commands[k]->run(c, argc - i, argv + i);
    }
  }
  if (strcmp(argv[i], "help") == 0) {
    help(stdout);
    return EXIT_OK;
  }
  return cli_usage(c, "unknown command '%s'", argv[i]);
}

int main(int argc, char **argv) {
  cli c = {0};
  c.max_lag_ms = -1;
  c.db = getenv("EMBSTORE_DB");
  if (c.db && c.db[0] == '\0')
    c.db = NULL;
  c.read_db = getenv("EMBSTORE_READ_DB");
  if (c.read_db && c.read_db[0] == '\0')
    c.read_db = NULL;
  c.embed_url = getenv("EMBSTORE_EMBED_URL");
  c.embed_model = getenv("EMBSTORE_EMBED_MODEL");
  c.cmd = "embstore";
  c.argc = argc;
  c.argv = argv;
  return cli_finish(&c, dispatch(&c, argc, argv));
}
