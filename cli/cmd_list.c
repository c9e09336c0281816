/* cmd_list.c - `embstore list`: the stored documents, a page at a time. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: embstore list [--source S] [--workspace W] [--filter JSON]\n"
    "                     [--limit N] [--after ID] [--chunks] [--json]\n"
    "\n"
    "The stored documents in id order, one page of at most N.  The next page\n"
    "starts after the last id shown (--after): paging so visits every\n"
    "document that exists throughout exactly once, whatever is written\n"
    "meanwhile.\n"
    "\n"
    "  --source S      only documents of source S\n"
    "  --workspace W   only documents whose metadata.workspace is W\n"
    "  --filter JSON   only documents whose metadata contains this object:\n"
    "                  '{\"lang\":\"en\"}' matches {\"lang\":\"en\",\"n\":1},\n"
    "                  '{\"tags\":[\"a\"]}' matches tags [\"a\",\"b\"]\n"
    "  --limit N       documents a page, 1..10000 (default 100)\n"
    "  --after ID      start after document ID (the last page's next_after)\n"
    "  --chunks        each document's chunks too\n"
    "\n"
    "--json prints {\"documents\":[{\"id\",\"text\",\"metadata\",\"source_id\",\n"
    "\"created_at\",\"updated_at\"}],\"next_after\"} (with --chunks each document\n"
    "has \"chunks\" as in `embstore get`); next_after is null on the last page.\n"
    "The human form ends with the command for the next page.\n";

static void print_human(const es_document_list *l, bool chunks) {
  if (l->n == 0) {
    printf("no documents\n");
    return;
  }
  printf("%-24s %-16s %-27s %s\n", "id", "source", "updated_at", "text");
  for (size_t i = 0; i < l->n; i++) {
    const es_document *d = &l->documents[i];
    char t[48];
    render_time(d->updated_at_us, t, sizeof t);
    cli_put_cell(stdout, d->id, 24, 0);
    fputc(' ', stdout);
    cli_put_cell(stdout, d->source_id ? d->source_id : "-", 16, 0);
    printf(" %-27s ", t);
    cli_put_cell(stdout, d->text, 0, 40);
    fputc('\n', stdout);
    for (size_t k = 0; chunks && k < d->n_chunks; k++) {
      printf("  chunk %-4d ", d->chunks[k].chunk_index);
      cli_put_cell(stdout, d->chunks[k].id, 24, 0);
      fputc(' ', stdout);
      cli_put_cell(stdout, d->chunks[k].text, 0, 40);
      fputc('\n', stdout);
    }
  }
  if (l->next_after) {
    fputs("more: --after ", stdout);
    cli_put_printable(stdout, l->next_after);
    fputc('\n', stdout);
  }
}

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"source", required_argument, NULL, 's'},
      {"workspace", required_argument, NULL, 'w'},
      {"filter", required_argument, NULL, 'f'},
      {"limit", required_argument, NULL, 'n'},
      {"after", required_argument, NULL, 'a'},
      {"chunks", no_argument, NULL, 'c'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  es_list_params p;
  long limit = 100;
  int code, opt;
  es_list_params_init(&p);
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_list, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 's': p.source_id = optarg; break;
    case 'w': p.workspace = optarg; break;
    case 'f': p.filter_json = optarg; break;
    case 'a': p.after = optarg; break;
    case 'c': p.include_chunks = 1; break;
    case 'n':
      if (!cli_parse_int(optarg, 1, 10000, &limit))
        return cli_usage(c, "--limit must be an integer 1..10000, not '%s'",
                         optarg);
      break;
    }
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  if (!cli_check_filter(c, p.filter_json))
    return EXIT_USAGE;
  p.limit = (int)limit;
  es_store *s = cli_open(c);
  if (s == NULL)
    return EXIT_FAIL;
  es_document_list *l = NULL;
  es_status rc = es_list_documents(s, &p, &l);
  int exit_code = EXIT_OK;
  if (rc != ES_OK) {
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
  } else if (c->json) {
    jw w;
    jw_init(&w, stdout);
    render_document_list(&w, l, p.include_chunks, false);
    jw_done(&w);
  } else {
    print_human(l, p.include_chunks);
  }
  es_document_list_free(l);
  es_close(s);
  return exit_code;
}

const cli_command cli_cmd_list = {"list", run,
                                  "the stored documents, a page at a time",
                                  usage};
