/* cmd_delete.c - `embstore delete --source S`. */
#include <getopt.h>

#include "cli.h"

static const char usage[] =
    "usage: embstore delete --source S [--workspace W] [--no-cascade] [--dry-run]\n"
    "                       [--json]\n"
    "\n"
    "Deletes every document of source S and all their chunks, in one\n"
    "transaction, with exact counts.\n"
    "\n"
    "  --source S      the source to delete (required)\n"
    "  --workspace W   only its documents whose metadata.workspace is W\n"
    "  --no-cascade    restrict: if any of the documents still has chunks,\n"
    "                  delete nothing and say how many chunks block it (exit 2)\n"
    "  --dry-run       report the exact counts, change nothing\n"
    "\n"
    "--json prints {\"deleted\",\"chunks_removed\",\"dry_run\"}.\n";

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"source", required_argument, NULL, 's'},
      {"workspace", required_argument, NULL, 'w'},
      {"no-cascade", no_argument, NULL, 'n'},
      {"dry-run", no_argument, NULL, 'd'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  const char *source = NULL;
  es_delete_options o;
  int code, opt;
  es_delete_options_init(&o);
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_delete, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 's': source = optarg; break;
    case 'w': o.workspace = optarg; break;
    case 'n': o.no_cascade = 1; break;
    case 'd': o.dry_run = 1; break;
    }
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  if (source == NULL || source[0] == '\0')
    return cli_usage(c, "--source is required");
  es_store *s = cli_open(c);
  if (s == NULL)
    return EXIT_FAIL;
  es_delete_result *r = NULL;
  es_status rc = es_delete_by_source(s, source, &o, &r);
  int exit_code = EXIT_OK;
  if (rc != ES_OK) {
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
  } else if (c->json) {
    jw w;
    jw_init(&w, stdout);
    render_delete(&w, r);
    jw_done(&w);
  } else {
    printf("%s %lld documents and %lld chunks of source ",
           r->dry_run ? "would delete" : "deleted", (long long)r->deleted,
           (long long)r->chunks_removed);
    cli_put_printable(stdout, source);
    if (o.workspace) {
      fputs(" in workspace ", stdout);
      cli_put_printable(stdout, o.workspace);
    }
    fputc('\n', stdout);
  }
  es_delete_result_free(r);
  es_close(s);
  return exit_code;
}

const cli_command cli_cmd_delete = {"delete", run,
                                    "delete a source's documents and chunks",
                                    usage};
