/* cmd_mcp.c - `embstore mcp`: the Model Context Protocol over stdio
 * (server/mcp.c), for agents that start embstore as their memory. */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mcp.h" /* server/ (the server's own include path) */

static const char mcp_usage[] =
    "usage: embstore mcp [--read-only] [--max-message-mb N]\n"
    "\n"
    "Speaks the Model Context Protocol on standard input and output: JSON-RPC\n"
    "2.0, one message a line (an MCP client starts it as a subprocess).\n"
    "Tools: store, search, get, list, delete, delete_by_source,\n"
    "get_statistics, cleanup_orphaned; resources embstore://stats and\n"
    "embstore://sources.  Nothing but protocol messages is written to\n"
    "standard output; diagnostics go to standard error.\n"
    "\n"
    "  --read-only        list and run only the tools that never write\n"
    "  --max-message-mb N a longer message is refused and skipped (8)\n"
    "\n"
    "With an embedding provider (--embed-url, --embed-model) store embeds\n"
    "texts and search with a query runs hybrid; without one, store needs an\n"
    "embedding per document and a query alone is a full-text search.\n";

static int run_mcp(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"read-only", no_argument, NULL, 'r'},
      {"max-message-mb", required_argument, NULL, 'm'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  mcp_config cfg;
  mcp_config_init(&cfg);
  long n;
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_mcp, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 'r':
      cfg.read_only = true;
      break;
    case 'm':
      if (!cli_parse_int(optarg, 1, 1024, &n))
        return cli_usage(c, "--max-message-mb must be 1..1024, not '%s'", optarg);
      cfg.max_message = (size_t)n << 20;
      break;
    }
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  es_options o;
  es_options_init(&o);
  o.pool_size = 4;
  es_store *s = cli_open_with(c, &o);
  if (s == NULL)
    return EXIT_FAIL;
  const char *model = es_embed_model(s);
  fprintf(stderr, "embstore mcp: ready on stdio (%s%s%s)\n",
          model ? "texts are embedded by model " : "no embedding provider: "
                                                   "store needs embeddings, "
                                                   "query searches text",
          model ? model : "", cfg.read_only ? "; read-only tools" : "");
  signal(SIGPIPE, SIG_IGN); /* a client gone is an end, not a crash */
  mcp *m = mcp_new(s, &cfg);
  if (m == NULL) {
    es_close(s);
    return cli_fail(c, EXIT_FAIL, ES_ENOMEM, "out of memory");
  }
  int rc = mcp_run_stdio(m, stdin, stdout);
  mcp_free(m);
  es_close(s);
  return rc == 0 ? EXIT_OK : EXIT_FAIL;
}

const cli_command cli_cmd_mcp = {"mcp", run_mcp,
                                 "the Model Context Protocol on stdio (agents)",
                                 mcp_usage};
