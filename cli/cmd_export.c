/* cmd_export.c - `embstore export`: documents and their chunks in the
 * ingest format, streamed a page at a time. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: embstore export [--source S] [--workspace W] [--filter JSON]\n"
    "                       [--embeddings] [--json]\n"
    "\n"
    "Writes the stored documents, each with its chunks, to standard output in\n"
    "the ingest format (JSON Lines, one document a line, in id order), in\n"
    "bounded memory.  With --embeddings, ingesting the output into a fresh\n"
    "store writes the same content: the same vectors to the bit, the same\n"
    "metadata, the same content hashes (a second ingest of it reports every\n"
    "document unchanged).  For backups, moves between databases and audits.\n"
    "\n"
    "  --source S      only documents of source S\n"
    "  --workspace W   only documents whose metadata.workspace is W\n"
    "  --filter JSON   only documents whose metadata contains this object\n"
    "  --embeddings    the vectors too (without them the output cannot be\n"
    "                  ingested as it is: every document needs its vector)\n"
    "\n"
    "Pages of 500 documents are read one after another, each in one snapshot;\n"
    "what is written meanwhile shows in the pages not yet read (stop the\n"
    "writers for a copy of one moment).  created_at and updated_at are not\n"
    "part of the ingest format: a copy's are its own.  A summary\n"
    "goes to stderr.  The output is JSON with or without --json, which only\n"
    "makes errors JSON objects too.\n";

#define PAGE 500

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"source", required_argument, NULL, 's'},
      {"workspace", required_argument, NULL, 'w'},
      {"filter", required_argument, NULL, 'f'},
      {"embeddings", no_argument, NULL, 'e'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  es_list_params p;
  int code, opt;
  es_list_params_init(&p);
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_export, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 's': p.source_id = optarg; break;
    case 'w': p.workspace = optarg; break;
    case 'f': p.filter_json = optarg; break;
    case 'e': p.include_embedding = 1; break;
    }
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  if (!cli_check_filter(c, p.filter_json))
    return EXIT_USAGE;
  p.limit = PAGE;
  p.include_chunks = 1;
  es_store *s = cli_open(c);
  if (s == NULL)
    return EXIT_FAIL;
  int exit_code = EXIT_OK;
  int64_t docs = 0, chunks = 0;
  char *after = NULL;
  for (;;) {
    es_document_list *l = NULL;
    p.after = after;
    es_status rc = es_list_documents(s, &p, &l);
    if (rc != ES_OK) {
      exit_code = cli_fail(c, EXIT_FAIL, rc, "%s (after %lld documents)",
                           es_errmsg(s), (long long)docs);
      break;
    }
    for (size_t i = 0; i < l->n; i++) {
      jw w;
      jw_init(&w, stdout);
      render_export(&w, &l->documents[i], p.include_embedding);
      jw_done(&w);
      chunks += (int64_t)l->documents[i].n_chunks;
    }
    docs += (int64_t)l->n;
    free(after);
    after = l->next_after;
    l->next_after = NULL; /* kept for the next page */
    es_document_list_free(l);
    if (after == NULL || ferror(stdout))
      break;
  }
  free(after);
  es_close(s);
  if (exit_code == EXIT_OK && (fflush(stdout) != 0 || ferror(stdout)))
    return EXIT_FAIL; /* cli_finish says why */
  if (exit_code == EXIT_OK)
    fprintf(stderr, "embstore export: %lld documents, %lld chunks%s\n",
            (long long)docs, (long long)chunks,
            p.include_embedding ? "" : " (without vectors: --embeddings)");
  return exit_code;
}

const cli_command cli_cmd_export = {"export", run,
                                    "documents and chunks in the ingest "
                                    "format, for backups and moves",
                                    usage};
