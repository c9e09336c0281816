/* cmd_stats.c - `embstore stats`. */
#include <getopt.h>
#include <math.h>

#include "cli.h"

static const char usage[] =
    "usage: embstore stats [--workspace W] [--json]\n"
    "\n"
    "Exact counts (documents, chunks, per source), storage, and index health,\n"
    "for the whole store or one workspace.  Health is decided from facts, each\n"
    "listed: a missing or invalid required index, or a foreign key that is not\n"
    "validated, is critical; many dead tuples, tables never analysed,\n"
    "documents without a vector or orphaned chunks are degraded.\n"
    "storage_mb is heap + TOAST + indexes of the store's tables in MiB; for a\n"
    "workspace, the store's size times the workspace's share of the rows.\n"
    "Performance figures average the last 1,000 recorded operations.\n"
    "\n"
    "--json prints {\"documents\",\"chunks\",\"without_vector\",\"orphaned_chunks\",\n"
    "\"sources\":[{\"source_id\",\"documents\",\"chunks\"}],\"sources_total\",\n"
    "\"storage_mb\",\"storage_attribution\",\"index_health\",\"health_reasons\",\n"
    "\"reclaimable_mb\",\"performance\":{\"avg_search_ms\",\"avg_insert_ms\",\n"
    "\"cache_hit_rate\"},\"workspace\"}.\n";

static void print_json(const es_stats *st) {
  jw w;
  jw_init(&w, stdout);
  jw_obj(&w);
  jw_key(&w, "workspace");
  jw_str(&w, st->workspace);
  jw_key(&w, "documents");
  jw_int(&w, st->documents);
  jw_key(&w, "chunks");
  jw_int(&w, st->chunks);
  jw_key(&w, "without_vector");
  jw_int(&w, st->without_vector);
  jw_key(&w, "orphaned_chunks");
  jw_int(&w, st->orphaned_chunks < 0 ? 0 : st->orphaned_chunks);
  jw_key(&w, "sources");
  jw_arr(&w);
  for (size_t i = 0; i < st->sources_total; i++) {
    jw_obj(&w);
    jw_key(&w, "source_id");
    jw_str(&w, st->sources[i].source_id);
    jw_key(&w, "documents");
    jw_int(&w, st->sources[i].documents);
    jw_key(&w, "chunks");
    jw_int(&w, st->sources[i].chunks);
    jw_obj_end(&w);
  }
  jw_arr_end(&w);
  jw_key(&w, "sources_total");
  jw_int(&w, (int64_t)st->sources_total);
  jw_key(&w, "storage_mb");
  jw_num(&w, st->storage_mb);
  jw_key(&w, "storage_attribution");
  jw_str(&w, st->workspace ? "share of the store's rows" : "store");
  jw_key(&w, "reclaimable_mb");
  jw_num(&w, st->reclaimable_mb);
  jw_key(&w, "index_health");
  jw_str(&w, es_health_name(st->index_health));
  jw_key(&w, "health_reasons");
  jw_arr(&w);
  for (size_t i = 0; i < st->n_health_reasons; i++)
    jw_str(&w, st->health_reasons[i]);
  jw_arr_end(&w);
  jw_key(&w, "performance");
  jw_obj(&w);
  jw_key(&w, "avg_search_ms");
  jw_num(&w, st->avg_search_ms); /* NaN (no data) prints null */
  jw_key(&w, "avg_insert_ms");
  jw_num(&w, st->avg_insert_ms);
  jw_key(&w, "cache_hit_rate");
  jw_num(&w, st->cache_hit_rate);
  jw_obj_end(&w);
  jw_obj_end(&w);
  jw_done(&w);
}

static void print_num(const char *label, double v, const char *unit) {
  if (isnan(v))
    printf("  %-16s -\n", label);
  else
    printf("  %-16s %.3f%s\n", label, v, unit);
}

static void print_text(const es_stats *st) {
  if (st->workspace) {
    fputs("workspace ", stdout);
    cli_put_printable(stdout, st->workspace);
    fputc('\n', stdout);
  }
  printf("documents %lld, chunks %lld, sources %zu", (long long)st->documents,
         (long long)st->chunks, st->sources_total);
  if (st->without_vector)
    printf(", %lld without a vector", (long long)st->without_vector);
  printf("\nstorage %.2f MiB%s, reclaimable %.2f MiB\n", st->storage_mb,
         st->workspace ? " (its share of the store's rows)" : "",
         st->reclaimable_mb);
  printf("index health: %s\n", es_health_name(st->index_health));
  for (size_t i = 0; i < st->n_health_reasons; i++) {
    fputs("  - ", stdout); /* reasons quote index and table names */
    cli_put_message(stdout, st->health_reasons[i]);
    fputc('\n', stdout);
  }
  printf("performance (last 1,000 operations):\n");
  print_num("search", st->avg_search_ms, " ms");
  print_num("insert", st->avg_insert_ms, " ms per document");
  print_num("cache hit rate", st->cache_hit_rate, "");
  if (st->sources_total > 0) {
    printf("%-32s %12s %12s\n", "source", "documents", "chunks");
    for (size_t i = 0; i < st->sources_total; i++) {
      const char *id = st->sources[i].source_id;
      cli_put_cell(stdout, id ? id : "(none)", 32, 0);
      printf(" %12lld %12lld\n", (long long)st->sources[i].documents,
             (long long)st->sources[i].chunks);
    }
  }
}

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"workspace", required_argument, NULL, 'w'}, CLI_COMMON_LONGOPTS, {0, 0, 0, 0}};
  const char *workspace = NULL;
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_stats, argc, argv, "", lo, &code)) != -1) {
    if (opt == CLI_STOP)
      return code;
    if (opt == 'w')
      workspace = optarg;
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  es_store *s = cli_open(c);
  if (s == NULL)
    return EXIT_FAIL;
  es_stats *st = NULL;
  es_status rc = es_get_statistics(s, workspace, &st);
  int exit_code = EXIT_OK;
  if (rc != ES_OK)
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
  else if (c->json)
    print_json(st);
  else
    print_text(st);
  es_stats_free(st);
  es_close(s);
  return exit_code;
}

const cli_command cli_cmd_stats = {"stats", run,
                                   "exact counts, storage and index health", usage};
