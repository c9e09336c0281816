/* cmd_init.c - `embstore init` and `embstore migrate`. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static const char init_usage[] =
    "usage: embstore init --dim N [--metric cosine|l2|ip] [--index-memory MB]\n"
    "                     [--text-config CONFIG | --no-text-search]\n"
    "                     [--chunk-index] [--distribute [--shards N]] [--json]\n"
    "\n"
    "Creates the store in the database: the vector extension, the tables\n"
    "embeddings, chunks and performance_metrics, their indexes (HNSW on the\n"
    "vectors) and the chunks -> embeddings foreign key (ON DELETE CASCADE).\n"
    "Re-running it with the same shape changes nothing.\n"
    "\n"
    "Pointed at a database that already has embeddings and chunks tables of\n"
    "the same shape, it adopts them without losing a row: it adds missing\n"
    "columns and indexes, adds the foreign key NOT VALID while orphaned chunks\n"
    "exist (and reports them), and validates the key once they are gone\n"
    "(re-run init or `embstore cleanup`).\n"
    "\n"
    "  --dim N        vector dimension, 1..2000\n"
    "  --metric M     cosine (default), l2 or ip (negative inner product)\n"
    "  --text-config CONFIG  the full-text search configuration (PostgreSQL's:\n"
    "                 english by default; simple for a store of many\n"
    "                 languages); its GIN index is built concurrently\n"
    "  --no-text-search  a store without full-text search and its index\n"
    "  --chunk-index  keep an HNSW index on the chunks' vectors and, with\n"
    "                 text search, a GIN index on their text, for search\n"
    "                 --chunks (on an existing store: built now)\n"
    "  --distribute   then distribute the store over the Citus cluster whose\n"
    "                 coordinator --db names (see `embstore distribute`)\n"
    "  --shards N     with --distribute: the documents' shards (default 4)\n"
    CLI_INDEX_MEMORY_USAGE
    "\n"
    "--json prints {\"created\",\"adopted\",\"migrations_applied\",\n"
    "\"indexes_created\",\"dim\",\"metric\",\"orphaned_chunks\",\"fk_valid\",\n"
    "\"fk_validated\",\"index\":{...},\"text_config\",\"chunk_index\"} (index: as\n"
    "ingest --json says; text_config null without text search), and with\n"
    "--distribute \"distribute\":{...} as distribute --json says.\n";

/* The members init --json and migrate --json share, after their own. */
static void json_tail(jw *w, const es_init_report *r) {
  jw_key(w, "fk_valid");
  jw_bool(w, r->fk_valid);
  jw_key(w, "fk_validated");
  jw_bool(w, r->fk_validated);
  jw_key(w, "index");
  render_index(w, &r->index);
  jw_key(w, "text_config");
  jw_str(w, r->text_config[0] ? r->text_config : NULL);
  jw_key(w, "chunk_index");
  jw_bool(w, r->chunk_index);
}

/* Prints what es_init() did. */
static void print_init(cli *c, const es_init_report *r,
                       const es_distribute_report *d) {
  if (c->json) {
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w);
    jw_key(&w, "created");
    jw_bool(&w, r->created);
    jw_key(&w, "adopted");
    jw_bool(&w, r->adopted);
    jw_key(&w, "migrations_applied");
    jw_int(&w, r->migrations_applied);
    jw_key(&w, "indexes_created");
    jw_int(&w, r->indexes_created);
    jw_key(&w, "dim");
    jw_int(&w, r->dim);
    jw_key(&w, "metric");
    jw_str(&w, es_metric_name(r->metric));
    jw_key(&w, "orphaned_chunks");
    jw_int(&w, r->orphaned_chunks);
    json_tail(&w, r);
    if (d)
      cli_print_distribute(c, d, &w);
    jw_obj_end(&w);
    jw_done(&w);
    return;
  }
  if (r->created)
    printf("created store: dim %d, metric %s\n", r->dim,
           es_metric_name(r->metric));
  else if (r->adopted && r->migrations_applied > 0)
    printf("adopted existing tables: dim %d, metric %s\n", r->dim,
           es_metric_name(r->metric));
  else if (r->migrations_applied == 0 && r->indexes_created == 0 && !r->fk_validated)
    printf("store already initialised (dim %d, metric %s): nothing to do\n",
           r->dim, es_metric_name(r->metric));
  else
    printf("store updated: dim %d, metric %s\n", r->dim,
           es_metric_name(r->metric));
  if (r->migrations_applied > 0)
    printf("  %d migration(s) applied\n", r->migrations_applied);
  if (r->indexes_created > 0 && !r->created)
    printf("  %d missing index(es) created\n", r->indexes_created);
  if (r->orphaned_chunks > 0)
    printf("  %lld orphaned chunk(s) found (their document does not exist): the\n"
           "  foreign key chunks.document_id -> embeddings.id was added NOT VALID;\n"
           "  remove them with `embstore cleanup`, then it is validated\n",
           (long long)r->orphaned_chunks);
  if (r->fk_validated && !r->created)
    printf("  foreign key chunks.document_id -> embeddings.id validated\n");
  if (r->index.built && !r->created)
    printf("  HNSW index built over %lld vectors in %.1f s (%d MB, %d workers)\n",
           (long long)r->index.vectors, r->index.seconds, r->index.memory_mb,
           r->index.workers_launched);
  cli_note_index(c, &r->index);
  if (d)
    cli_print_distribute(c, d, NULL);
}

static int run_init(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"dim", required_argument, NULL, 'd'},
      {"metric", required_argument, NULL, 'm'},
      {"index-memory", required_argument, NULL, 'i'},
      {"text-config", required_argument, NULL, 't'},
      {"no-text-search", no_argument, NULL, 'n'},
      {"chunk-index", no_argument, NULL, 'k'},
      {"distribute", no_argument, NULL, 'D'},
      {"shards", required_argument, NULL, 'S'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  long dim = 0, shards = 0;
  bool distribute = false;
  es_metric metric = ES_METRIC_COSINE;
  es_init_options o;
  es_init_options_init(&o);
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_init, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 'd':
      if (!cli_parse_int(optarg, 1, ES_MAX_DIM, &dim))
        return cli_usage(c, "--dim must be an integer 1..%d, not '%s'",
                         ES_MAX_DIM, optarg);
      break;
    case 'm':
      if (es_metric_parse(optarg, &metric) != ES_OK)
        return cli_usage(c, "--metric must be cosine, l2 or ip, not '%s'", optarg);
      break;
    case 'i':
      if (!cli_parse_index_memory(c, optarg))
        return cli_usage(c, "--index-memory must be 1..2097151 (MB), not '%s'",
                         optarg);
      break;
    case 't':
      if (optarg[0] == '\0')
        return cli_usage(c, "--text-config needs a configuration name");
      o.text_config = optarg;
      break;
    case 'n': o.no_text_search = 1; break;
    case 'k': o.chunk_index = 1; break;
    case 'D': distribute = true; break;
    case 'S':
      if (!cli_parse_int(optarg, 1, 1024, &shards))
        return cli_usage(c, "--shards must be an integer 1..1024, not '%s'", optarg);
      break;
    }
  }
  if (shards && !distribute)
    return cli_usage(c, "--shards goes with --distribute");
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  if (dim == 0)
    return cli_usage(c, "--dim is required");
  if (o.text_config && o.no_text_search)
    return cli_usage(c, "give --text-config or --no-text-search, not both");
  o.dim = (int)dim;
  o.metric = metric;

  es_store *s = cli_open(c);
  if (s == NULL)
    return EXIT_FAIL;
  es_init_report *r = NULL;
  es_status rc = es_init_with(s, &o, &r);
  if (rc != ES_OK) {
    int e = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
    es_close(s);
    return e;
  }
  es_distribute_report *d = NULL;
  if (distribute && (d = cli_distribute(c, s, (int)shards)) == NULL) {
    es_close(s);
    es_init_report_free(r); /* created, not distributed: said on stderr */
    return EXIT_FAIL;
  }
  es_close(s);
  print_init(c, r, d);
  es_init_report_free(r);
  es_distribute_report_free(d);
  return EXIT_OK;
}

const cli_command cli_cmd_init = {"init", run_init,
                                  "create the store, or adopt existing tables",
                                  init_usage};

static const char migrate_usage[] =
    "usage: embstore migrate [--status] [--index-memory MB] [--json]\n"
    "\n"
    "Applies the migrations this version of embstore knows and the store has\n"
    "not had yet, each in its own transaction.  None drops user data.\n"
    "\n"
    "  --status   list applied and pending migrations, change nothing\n"
    CLI_INDEX_MEMORY_USAGE
    "\n"
    "Also builds required indexes that are missing (a load killed while its\n"
    "HNSW index was deferred) and adds or validates the foreign key.\n"
    "\n"
    "--json prints {\"applied\",\"indexes_created\",\"fk_valid\",\"fk_validated\",\n"
    "\"index\":{...}} (index: as ingest --json says)\n"
    "or, with --status,\n"
    "{\"migrations\":[{\"version\",\"name\",\"applied\",\"applied_at\"}],\"pending\"}.\n";

static int run_migrate(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"status", no_argument, NULL, 's'},
      {"index-memory", required_argument, NULL, 'i'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  bool status = false;
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_migrate, argc, argv, "", lo, &code)) != -1) {
    if (opt == CLI_STOP)
      return code;
    if (opt == 's')
      status = true;
    if (opt == 'i' && !cli_parse_index_memory(c, optarg))
      return cli_usage(c, "--index-memory must be 1..2097151 (MB), not '%s'",
                       optarg);
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  es_store *s = cli_open(c);
  if (s == NULL)
    return EXIT_FAIL;
  int exit_code = EXIT_OK;
  if (!status) {
    es_init_report *r = NULL;
    es_status rc = es_migrate_report(s, &r);
    if (rc != ES_OK) {
      exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
    } else if (c->json) {
      jw w;
      jw_init(&w, stdout);
      jw_obj(&w);
      jw_key(&w, "applied");
      jw_int(&w, r->migrations_applied);
      jw_key(&w, "indexes_created");
      jw_int(&w, r->indexes_created);
      json_tail(&w, r);
      jw_obj_end(&w);
      jw_done(&w);
    } else {
      if (r->migrations_applied > 0)
        printf("%d migration(s) applied\n", r->migrations_applied);
      if (r->indexes_created > 0)
        printf("%d missing index(es) built\n", r->indexes_created);
      if (r->fk_validated)
        printf("foreign key chunks.document_id -> embeddings.id validated\n");
      if (r->index.built)
        printf("HNSW index built over %lld vectors in %.1f s (%d MB, %d workers)\n",
               (long long)r->index.vectors, r->index.seconds, r->index.memory_mb,
               r->index.workers_launched);
      if (r->migrations_applied == 0 && r->indexes_created == 0 && !r->fk_validated)
        printf("up to date\n");
      cli_note_index(c, &r->index);
    }
    es_init_report_free(r);
    es_close(s);
    return exit_code;
  }
  es_migration_list *l = NULL;
  es_status rc = es_migration_list_get(s, &l);
  if (rc != ES_OK) {
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
    es_close(s);
    return exit_code;
  }
  int pending = 0;
  for (size_t i = 0; i < l->n; i++)
    pending += !l->items[i].applied;
  if (c->json) {
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w);
    jw_key(&w, "migrations");
    jw_arr(&w);
    for (size_t i = 0; i < l->n; i++) {
      jw_obj(&w);
      jw_key(&w, "version");
      jw_int(&w, l->items[i].version);
      jw_key(&w, "name");
      jw_str(&w, l->items[i].name);
      jw_key(&w, "applied");
      jw_bool(&w, l->items[i].applied);
      jw_key(&w, "applied_at");
      jw_str(&w, l->items[i].applied ? l->items[i].applied_at : NULL);
      jw_obj_end(&w);
    }
    jw_arr_end(&w);
    jw_key(&w, "pending");
    jw_int(&w, pending);
    jw_obj_end(&w);
    jw_done(&w);
  } else {
    printf("%-8s %-8s %-21s %s\n", "version", "state", "applied at", "name");
    /* Names and times are read from the store's table. */
    for (size_t i = 0; i < l->n; i++) {
      printf("%-8d %-8s ", l->items[i].version,
             l->items[i].applied ? "applied" : "pending");
      cli_put_cell(stdout, l->items[i].applied ? l->items[i].applied_at : "-",
                   21, 0);
      fputc(' ', stdout);
      cli_put_printable(stdout, l->items[i].name);
      fputc('\n', stdout);
    }
    printf("%d pending\n", pending);
  }
  es_migration_list_free(l);
  es_close(s);
  return exit_code;
}

const cli_command cli_cmd_migrate = {"migrate", run_migrate,
                                     "apply pending migrations (--status lists "
                                     "them)", migrate_usage};
