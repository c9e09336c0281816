/* cmd_search.c - `embstore search`. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: embstore search [--vector '[v1,v2,...]' | --like ID] [--text QUERY]\n"
    "                       [--mode vector|text|hybrid] [-k N] [--rrf-k N]\n"
    "                       [--weights V,T] [--workspace W] [--source S]\n"
    "                       [--filter JSON] [--chunks] [--exact] [--any-model]\n"
    "                       [--json]\n"
    "\n"
    "The k nearest stored documents to a vector, or to a stored document\n"
    "(which is left out of its own results), nearest first, by the store's\n"
    "metric; with --text the best text matches (PostgreSQL's full-text\n"
    "search, the store's configuration); with both, the two fused by\n"
    "Reciprocal Rank Fusion (hybrid).  With an embedding provider\n"
    "(--embed-url, --embed-model), --text alone is embedded too and the\n"
    "default mode is hybrid; --mode vector ranks by its vector only.  Filters\n"
    "keep returning k rows when k documents match.\n"
    "\n"
    "  --vector V      query vector as a JSON array\n"
    "  --like ID       search near the stored document ID\n"
    "  --text QUERY    web-search syntax: words, \"a phrase\", OR, -word\n"
    "  --mode M        vector, text or hybrid (default: what is given)\n"
    "  --rrf-k N       hybrid: score = V/(N + vector rank) + T/(N + text rank),\n"
    "                  1..10000 (default 60)\n"
    "  --weights V,T   hybrid: the weights V and T (default 1,1)\n"
    "  --chunks        chunks instead of documents, in any mode (a store made\n"
    "                  with init --chunk-index); filters apply to their\n"
    "                  documents\n"
    "  -k N            number of results, 1..1000 (default 10)\n"
    "  --workspace W   only documents whose metadata.workspace is W\n"
  "  --source S      only documents of source S\n"
    "  --filter JSON   only documents whose metadata contains this object\n"
    "                  ('{\"lang\":\"en\",\"tags\":[\"a\"]}': lang en, tags\n"
    "                  holding \"a\")\n"
    "  --exact         exact scan instead of the HNSW index (slow; ground truth)\n"
    "  --any-model     search a query embedded by the provider's model also\n"
    "                  when the store holds vectors of another model (refused\n"
    "                  by default: their distances mean nothing)\n"
    "\n"
    "--json prints {\"results\":[{\"id\",\"distance\",\"text\",\"source_id\",\n"
    "\"metadata\"}]}; text and hybrid results also carry \"score\" (larger\n"
    "first), \"vector_rank\" and \"text_rank\" (1-based; null: not in that\n"
    "pool), and \"distance\" is null for a hit the vector pool did not hold.\n"
    "With --chunks each hit is a chunk: its \"id\", \"chunk_index\",\n"
    "\"document_id\" and \"text\", its document's \"source_id\" and \"metadata\".\n";

/* "V,T" into *v and *t: numbers >= 0, not both 0 (the tool never sets a
 * locale, so strtod reads a point). */
static bool parse_weights(const char *arg, double *v, double *t) {
  char *end;
  double a = strtod(arg, &end);
  if (end == arg || *end != ',')
    return false;
  const char *second = end + 1;
  double b = strtod(second, &end);
  if (end == second || *end != '\0' || !(a >= 0) || !(b >= 0) || a + b <= 0 ||
      a > 1e300 || b > 1e300)
    return false;
  *v = a;
  *t = b;
  return true;
}

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
  bool ranked = r->mode != ES_SEARCH_VECTOR;
  if (ranked)
    printf("%-4s %-10s %-6s %-6s %-24s %-16s %s\n", "rank", "score", "vrank",
           "trank", "id", "source", "text");
  else
    printf("%-4s %-10s %-24s %-16s %s\n", "rank", "distance", "id", "source",
           "text");
  for (size_t i = 0; i < r->n; i++) {
    const es_hit *h = &r->hits[i];
    if (ranked) {
      char vr[12] = "-", tr[12] = "-";
      if (h->vector_rank)
        snprintf(vr, sizeof vr, "%d", h->vector_rank);
      if (h->text_rank)
        snprintf(tr, sizeof tr, "%d", h->text_rank);
      printf("%-4zu %-10.6f %-6s %-6s ", i + 1, h->score, vr, tr);
    } else {
      printf("%-4zu %-10.6f ", i + 1, h->distance);
    }
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
      {"text", required_argument, NULL, 't'},
      {"mode", required_argument, NULL, 'm'},
      {"rrf-k", required_argument, NULL, 'r'},
      {"weights", required_argument, NULL, 'W'},
      {"chunks", no_argument, NULL, 'c'},
      {"any-model", no_argument, NULL, 'A'},
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
    case 't': p.text = optarg; break;
    case 'c': p.chunks = 1; break;
    case 'A': p.any_model = 1; break;
    case 'm':
      if (es_search_mode_parse(optarg, &p.mode) != ES_OK || p.mode == ES_SEARCH_AUTO)
        return cli_usage(c, "--mode must be vector, text or hybrid, not '%s'",
                         optarg);
      break;
    case 'r': {
      long rk;
      if (!cli_parse_int(optarg, 1, 10000, &rk))
        return cli_usage(c, "--rrf-k must be an integer 1..10000, not '%s'",
                         optarg);
      p.rrf_k = (int)rk;
      break;
    }
    case 'W':
      if (!parse_weights(optarg, &p.weight_vector, &p.weight_text))
        return cli_usage(c, "--weights must be V,T: two numbers >= 0, not "
                         "both 0, not '%s'", optarg);
      break;
    case 'k':
      if (!cli_parse_int(optarg, 1, 1000, &k))
        return cli_usage(c, "-k must be an integer 1..1000, not '%s'", optarg);
      break;
    }
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  if (vector && p.like_id)
    return cli_usage(c, "give --vector or --like, not both");
  if (vector == NULL && p.like_id == NULL && p.text == NULL)
    return cli_usage(c, "give --vector, --like or --text");
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
