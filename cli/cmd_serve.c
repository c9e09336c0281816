/* cmd_serve.c - `embstore serve`: the HTTP JSON API (server/), and
 * `embstore token new`: a fresh API token and its line for the tokens
 * file. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "server.h"
#include "auth.h" /* server/ (the server's own include path) */

static const char serve_usage[] =
    "usage: embstore serve [--listen HOST:PORT] [--tokens FILE] [--cache-mb N]\n"
    "                      [--max-connections N] [--max-body-mb N] [--pool N]\n"
    "                      [--ready-file FILE] [--idle-timeout S] [--header-timeout S]\n"
    "\n"
    "Serves the store over HTTP with JSON in and out (GET /v1/openapi.json\n"
    "describes every route).  One process keeps its pool of connections, its\n"
    "search cache and its metrics for as long as it runs.\n"
    "\n"
    "  --listen HOST:PORT   where to listen (127.0.0.1:8750; port 0 picks one)\n"
    "  --tokens FILE        API tokens, one a line: TOKEN ROLE WORKSPACES [NAME]\n"
    "                       (see `embstore token new`); the file must not be\n"
    "                       readable by group or others; SIGHUP reloads it.\n"
    "                       Without it the server listens only on loopback.\n"
    "  --cache-mb N         search cache size (default 64; 0 disables it)\n"
    "  --max-connections N  beyond N open connections a quick 503 (256)\n"
    "  --max-body-mb N      largest request body (64); streamed NDJSON ingest\n"
    "                       is read in bounded memory whatever this says\n"
    "  --pool N             database connections (16): the bound on concurrent\n"
    "                       database work\n"
    "  --ready-file FILE    write HOST:PORT there once listening\n"
    "  --idle-timeout S     a keep-alive connection silent this long is closed (30)\n"
    "  --header-timeout S   a request's headers must all arrive within S seconds,\n"
    "                       however slowly they trickle in (10): slow clients\n"
    "                       cannot hold connections\n"
    "\n"
    "An access log goes to stderr, one JSON line a request.  SIGTERM or\n"
    "SIGINT: no new connections, in-flight requests finish (30 s at most),\n"
    "exit 0.\n";

static int run_serve(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"listen", required_argument, NULL, 'l'},
      {"tokens", required_argument, NULL, 't'},
      {"cache-mb", required_argument, NULL, 'c'},
      {"max-connections", required_argument, NULL, 'm'},
      {"max-body-mb", required_argument, NULL, 'b'},
      {"pool", required_argument, NULL, 'p'},
      {"ready-file", required_argument, NULL, 'r'},
      {"idle-timeout", required_argument, NULL, 'i'},
      {"header-timeout", required_argument, NULL, 'h'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  serve_config cfg;
  serve_config_init(&cfg);
  long cache_mb = 64, pool = 16, n;
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_serve, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 'l':
      cfg.listen = optarg;
      break;
    case 't':
      cfg.tokens_path = optarg;
      break;
    case 'c':
      if (!cli_parse_int(optarg, 0, 65536, &cache_mb))
        return cli_usage(c, "--cache-mb must be 0..65536, not '%s'", optarg);
      break;
    case 'm':
      if (!cli_parse_int(optarg, 1, 100000, &n))
        return cli_usage(c, "--max-connections must be 1..100000, not '%s'", optarg);
      cfg.max_connections = (int)n;
      break;
    case 'b':
      if (!cli_parse_int(optarg, 1, 1 << 20, &n))
        return cli_usage(c, "--max-body-mb must be 1..1048576, not '%s'", optarg);
      cfg.max_body_bytes = (size_t)n << 20;
      break;
    case 'p':
      if (!cli_parse_int(optarg, 1, 1000, &pool))
        return cli_usage(c, "--pool must be 1..1000, not '%s'", optarg);
      break;
    case 'r':
      cfg.ready_file = optarg;
      break;
    case 'i':
      if (!cli_parse_int(optarg, 1, 86400, &n))
        return cli_usage(c, "--idle-timeout must be 1..86400 seconds, not '%s'", optarg);
      cfg.idle_timeout_s = (int)n;
      break;
    case 'h':
      if (!cli_parse_int(optarg, 1, 3600, &n))
        return cli_usage(c, "--header-timeout must be 1..3600 seconds, not '%s'", optarg);
      cfg.header_timeout_s = (int)n;
      break;
    }
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  es_options o;
  es_options_init(&o);
  o.pool_size = (int)pool;
  o.cache_bytes = (size_t)cache_mb << 20;
  es_store *s = cli_open_with(c, &o);
  if (s == NULL)
    return EXIT_FAIL;
  char err[1024];
  int rc = serve_run(s, &cfg, err, sizeof err);
  es_close(s); /* flushes the buffered metrics */
  if (rc != 0)
    return cli_fail(c, EXIT_FAIL, ES_EINVAL, "%s", err);
  return EXIT_OK;
}

const cli_command cli_cmd_serve = {"serve", run_serve,
                                   "the HTTP JSON API (tokens, tenants)",
                                   serve_usage};

static const char token_usage[] =
    "usage: embstore token new ROLE WORKSPACES [--json]\n"
    "\n"
    "Prints a fresh random API token and the line that grants it in a\n"
    "--tokens file (its SHA-256, so the file holds no secret).  ROLE is read\n"
    "(GET, search), write (also ingest and delete) or admin (also cleanup,\n"
    "store-wide statistics and metrics); WORKSPACES is * or a comma list: a\n"
    "token limited to workspaces is a tenant that sees only those.\n"
    "\n"
    "--json prints {\"token\",\"line\"}.\n";

static int run_token(cli *c, int argc, char **argv) {
  static const struct option lo[] = {CLI_COMMON_LONGOPTS, {0, 0, 0, 0}};
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_token, argc, argv, "", lo, &code)) != -1)
    if (opt == CLI_STOP)
      return code;
  if (argc - optind != 3 || strcmp(argv[optind], "new") != 0)
    return cli_usage(c, "expected: token new ROLE WORKSPACES");
  role r;
  if (!role_parse(argv[optind + 1], &r))
    return cli_usage(c, "ROLE must be read, write or admin, not '%s'",
                     argv[optind + 1]);
  const char *ws = argv[optind + 2];
  if (ws[0] == '\0' || strpbrk(ws, " \t\r\n#") != NULL || strstr(ws, ",,") ||
      ws[0] == ',' || ws[strlen(ws) - 1] == ',')
    return cli_usage(c, "WORKSPACES must be * or a comma list of names without "
                     "spaces or '#'");
  char tok[64], hex[65], line[512];
  if (!token_generate(tok, sizeof tok, hex))
    return cli_fail(c, EXIT_FAIL, ES_EIO, "the system has no randomness to give");
  snprintf(line, sizeof line, "sha256:%s %s %s", hex, role_name(r), ws);
  if (c->json) {
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w);
    jw_key(&w, "token");
    jw_str(&w, tok);
    jw_key(&w, "line");
    jw_str(&w, line);
    jw_obj_end(&w);
    jw_done(&w);
  } else {
    printf("token: %s\nline:  %s\n", tok, line);
    fprintf(stderr, "Give the token to its client (it is shown once); add the "
            "line to the tokens file.\n");
  }
  return EXIT_OK;
}

const cli_command cli_cmd_token = {"token", run_token,
                                   "a fresh API token for `embstore serve`",
                                   token_usage};
