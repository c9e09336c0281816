/* cmd_get.c - `embstore get ID`. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char usage[] =
    "usage: embstore get ID [--embedding] [--workspace W]... [--json]\n"
    "\n"
    "Prints the stored document ID (any UTF-8; quote it for the shell) and\n"
    "its chunks in order, read in one snapshot.  A document that does not\n"
    "exist is an error naming the id (exit 2).\n"
    "\n"
    "  --embedding     the vectors of the document and of its chunks too\n"
    "  --workspace W   only if the document's metadata.workspace is W (or\n"
    "                  another --workspace); else it is not found\n"
    "\n"
    "--json prints {\"id\",\"text\",\"metadata\",\"source_id\",\"created_at\",\n"
    "\"updated_at\",\"chunks\":[{\"id\",\"chunk_index\",\"text\",\"metadata\"}]};\n"
    "with --embedding, \"embedding\" (an array, or null when there is no vector)\n"
    "in the document and in every chunk.  Times are RFC 3339 in UTC with\n"
    "microseconds (2025-01-02T03:04:05.000006Z).\n";

static void print_json(const es_document *d, bool embedding) {
  jw w;
  jw_init(&w, stdout);
  render_document(&w, d, embedding);
  jw_done(&w);
}

/* One "label  value" line, the value made printable. */
static void line(const char *indent, const char *label, const char *value) {
  printf("%s%-*s ", indent, 11 - (int)strlen(indent), label);
  cli_put_printable(stdout, value);
  fputc('\n', stdout);
}

/* "label  [v1,v2,...]" or "label  -" (numbers only: nothing to escape). */
static void vector_line(const char *indent, const float *v, size_t dim) {
  printf("%s%-*s ", indent, 11 - (int)strlen(indent), "embedding");
  if (v == NULL) {
    fputs("-\n", stdout);
    return;
  }
  fputc('[', stdout);
  for (size_t i = 0; i < dim; i++)
    printf("%s%.9g", i ? "," : "", (double)v[i]);
  fputs("]\n", stdout);
}

static void print_human(const es_document *d, bool embedding) {
  char t[48], n[32];
  line("", "id", d->id);
  line("", "source", d->source_id ? d->source_id : "-");
  render_time(d->created_at_us, t, sizeof t);
  line("", "created_at", t);
  render_time(d->updated_at_us, t, sizeof t);
  line("", "updated_at", t);
  line("", "metadata", d->metadata_json);
  line("", "text", d->text);
  if (embedding)
    vector_line("", d->embedding, d->dim);
  snprintf(n, sizeof n, "%zu", d->n_chunks);
  line("", "chunks", n);
  for (size_t i = 0; i < d->n_chunks; i++) {
    const es_document_chunk *ch = &d->chunks[i];
    printf("chunk %-5d ", ch->chunk_index);
    cli_put_printable(stdout, ch->id);
    fputc('\n', stdout);
    line("  ", "text", ch->text);
    line("  ", "metadata", ch->metadata_json);
    if (embedding)
      vector_line("  ", ch->embedding, ch->dim);
  }
}

/* Most --workspace options one command line takes. */
#define MAX_WORKSPACES 64

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"embedding", no_argument, NULL, 'e'},
      {"workspace", required_argument, NULL, 'w'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  const char *workspaces[MAX_WORKSPACES];
  es_get_options o;
  int code, opt;
  es_get_options_init(&o);
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_get, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 'e': o.include_embedding = 1; break;
    case 'w':
      if (o.n_workspaces == MAX_WORKSPACES)
        return cli_usage(c, "at most %d --workspace options", MAX_WORKSPACES);
      workspaces[o.n_workspaces++] = optarg;
      o.workspaces = workspaces;
      break;
    }
  }
  if (optind == argc)
    return cli_usage(c, "a document id is required");
  if (optind + 1 != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind + 1]);
  const char *id = argv[optind];
  if (id[0] == '\0')
    return cli_usage(c, "the document id is empty");
  es_store *s = cli_open(c);
  if (s == NULL)
    return EXIT_FAIL;
  es_document *d = NULL;
  es_status rc = es_get_document(s, id, &o, &d);
  int exit_code = EXIT_OK;
  if (rc != ES_OK)
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
  else if (c->json)
    print_json(d, o.include_embedding);
  else
    print_human(d, o.include_embedding);
  es_document_free(d);
  es_close(s);
  return exit_code;
}

const cli_command cli_cmd_get = {"get", run,
                                 "one document and its chunks, by id", usage};
