/* cmd_distribute.c - `embstore distribute`: the store onto Citus. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static const char distribute_usage[] =
    "usage: embstore distribute [--shards N] [--json]\n"
    "\n"
    "Distributes the store over a Citus cluster: --db names the coordinator,\n"
    "whose database has the citus extension and worker nodes.  Documents are\n"
    "sharded by id, chunks by document id beside their documents, the\n"
    "counters beside both (still exact), the small tables copied to every\n"
    "node; every shard keeps its HNSW index.  Writers are held off while\n"
    "the tables move, in one transaction: a failure leaves the store as it\n"
    "was, and running it again finishes the job.  On a distributed store it\n"
    "changes nothing but the trigger functions, installed again (a --shards\n"
    "other than the store's count is refused: embstore does not reshard).\n"
    "Refused on a plain PostgreSQL.  Other processes using the store (serve,\n"
    "mcp) must be restarted afterwards.  See docs/SCALING.md.\n"
    "\n"
    "  --shards N  shards of the documents, 1..1024 (default 4: measured\n"
    "              against 8 and 32, 4 answered kNN 1.9x and 8.7x faster\n"
    "              and stats 1.2x and 3.5x; see BENCHMARKS.md)\n"
    "\n"
    "--json prints {\"already\",\"shards\",\"workers\",\"steps\":[...]}.\n";

/* The report as JSON members of the object being written. */
static void json_report(jw *w, const es_distribute_report *r) {
  jw_key(w, "already");
  jw_bool(w, r->already);
  jw_key(w, "shards");
  jw_int(w, r->shards);
  jw_key(w, "workers");
  jw_int(w, r->workers);
  jw_key(w, "steps");
  jw_arr(w);
  for (size_t i = 0; i < r->n_steps; i++)
    jw_str(w, r->steps[i]);
  jw_arr_end(w);
}

es_distribute_report *cli_distribute(cli *c, es_store *s, int shards) {
  es_distribute_report *r = NULL;
  es_status rc = es_distribute(s, shards, &r);
  if (rc != ES_OK)
    cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
  return r;
}

void cli_print_distribute(cli *c, const es_distribute_report *r, jw *into) {
  if (into) {
    jw_key(into, "distribute");
    jw_obj(into);
    json_report(into, r);
    jw_obj_end(into);
    return;
  }
  if (c->json) {
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w);
    json_report(&w, r);
    jw_obj_end(&w);
    jw_done(&w);
    return;
  }
  if (r->already)
    printf("store already distributed: %d shards on %d workers; trigger "
           "functions installed again\n", r->shards, r->workers);
  else
    printf("store distributed: %d shards on %d workers\n", r->shards, r->workers);
  for (size_t i = 0; i < r->n_steps; i++) {
    fputs("  ", stdout);
    cli_put_printable(stdout, r->steps[i]);
    fputc('\n', stdout);
  }
}

static int run_distribute(cli *c, int argc, char **argv) {
  static const struct option lo[] = {{"shards", required_argument, NULL, 's'},
                                     CLI_COMMON_LONGOPTS,
                                     {0, 0, 0, 0}};
  long shards = 0;
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_distribute, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 's':
      if (!cli_parse_int(optarg, 1, 1024, &shards))
        return cli_usage(c, "--shards must be an integer 1..1024, not '%s'", optarg);
      break;
    }
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  es_store *s = cli_open(c);
  if (s == NULL)
    return EXIT_FAIL;
  es_distribute_report *r = cli_distribute(c, s, (int)shards);
  es_close(s);
  if (r == NULL)
    return EXIT_FAIL;
  cli_print_distribute(c, r, NULL);
  es_distribute_report_free(r);
  return EXIT_OK;
}

const cli_command cli_cmd_distribute = {"distribute", run_distribute,
                                        "distribute the store over a Citus "
                                        "cluster", distribute_usage};
