/* cmd_search.c - `embstore search`. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: embstore search (--vector '[v1,v2,...]' | --like ID) [-k N]\n"
    "                       [--workspace W] [--source S] [--filter JSON]\n"
    "                       [--exact] [--json]\n"
    "\n"
    "The k nearest stored documents to a vector, or to a stored document\n"
    "(which is left out of its own results), nearest first, by the store's\n"
    "metric.  Filters keep returning k rows when k documents match.\n"
    "\n"
    "  --vector V      query vector as a JSON array\n"
    "  --like ID       search near the stored document ID\n"
    "  -k N            number of results, 1..1000 (default 10)\n"
    "  --workspace W   only documents whose metadata.workspace is W\n"
  "  --source S      only documents of source S\n"
    "  --filter JSON   only documents whose metadata contains this object\n"
    "                  ('{\"lang\":\"en\",\"tags\":[\"a\"]}': lang en, tags\n"
    "                  holding \"a\")\n"
    "  --exact         exact scan instead of the HNSW index (slow; ground truth)\n"
    "\n"
    "--json prints {\"results\":[{\"id\",\"distance\",\"text\",\"source_id\",\n"
    "\"metadata\"}]}.\n";

static void print_results(cli *c, const es_results *r) {
  if (c->json) {
    jw w;
    jw_init(&w, stdout);
    render_results(&w, r);
    jw_done(&w);
    return;
  }
  if (r->n == 0) {
    printf("no results\n");
    return;
  }
  printf("%-4s %-10s %-24s %-16s %s\n", "rank", "distance", "id", "source",
         "text");
  for (size_t i = 0; i < r->n; i++) {
    const es_hit *h = &r->hits[i];
    printf("%-4zu %-10.6f ", i + 1, h->distance);
    cli_put_cell(stdout, h->id, 24, 0);
    fputc(' ', stdout);
    cli_put_cell(stdout, h->source_id ? h->source_id : "-", 16, 0);
    fputc(' ', stdout);
    cli_put_cell(stdout, h->text ? h->text : "", 0, 57);
    fputc('\n', stdout);
  }
}

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"vector", required_argument, NULL, 'v'},
      {"like", required_argument, NULL, 'l'},
      {"workspace", required_argument, NULL, 'w'},
      {"source", required_argument, NULL, 's'},
      {"exact", no_argument, NULL, 'e'},
      {"filter", required_argument, NULL, 'f'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  es_search_params p;
  const char *vector = NULL;
  long k = 10;
  int code, opt;
  es_search_params_init(&p);
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_search, argc, argv, "k:", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 'v': vector = optarg; break;
    case 'l': p.like_id = optarg; break;
    case 'w': p.workspace = optarg; break;
    case 's': p.source_id = optarg; break;
    case 'e': p.exact = 1; break;
    case 'f': p.filter_json = optarg; break;
    case 'k':
      if (!cli_parse_int(optarg, 1, 1000, &k))
        return cli_usage(c, "-k must be an integer 1..1000, not '%s'", optarg);
      break;
    }
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  if ((vector == NULL) == (p.like_id == NULL))
    return cli_usage(c, "give exactly one of --vector and --like");
  if (!cli_check_filter(c, p.filter_json))
    return EXIT_USAGE;
  p.k = (int)k;
  float *v = NULL;
  if (vector) {
    char err[256];
    es_status prc = es_vector_parse_json(vector, strlen(vector), "--vector",
                                         &v, &p.dim, err, sizeof err);
    if (prc == ES_ENOMEM)
      return cli_fail(c, EXIT_FAIL, prc, "%s", err);
    if (prc != ES_OK)
      return cli_usage(c, "%s", err);
    p.vector = v;
  }
  int exit_code = EXIT_OK;
  es_store *s = cli_open(c);
  if (s == NULL) {
    es_vector_free(v);
    return EXIT_FAIL;
  }
  es_results *r = NULL;
  es_status rc = es_search(s, &p, &r);
  if (rc != ES_OK)
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
  else
    print_results(c, r);
  es_results_free(r);
  es_close(s);
  es_vector_free(v);
  return exit_code;
}

const cli_command cli_cmd_search = {"search", run,
                                    "nearest neighbours of a vector or a "
                                    "stored document", usage};
