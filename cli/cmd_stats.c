/* cmd_stats.c - `embstore stats`. */
#include <getopt.h>
#include <math.h>
#include <stdbool.h>

#include "cli.h"

static const char usage[] =
    "usage: embstore stats [--workspace W] [--verify | --repair] [--json]\n"
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
    "  --workspace W  only the documents of workspace W\n"
    "  --verify       also check every counter against COUNT(*) of the tables,\n"
    "                 in one snapshot (scans them: seconds at millions of rows)\n"
    "  --repair       --verify, and recount when they disagree (holds writers\n"
    "                 off meanwhile)\n"
    "\n"
    "--json prints {\"documents\",\"chunks\",\"without_vector\",\"orphaned_chunks\",\n"
    "\"sources\":[{\"source_id\",\"documents\",\"chunks\"}],\"sources_total\",\n"
    "\"storage_mb\",\"storage_attribution\",\"index_health\",\"health_reasons\",\n"
    "\"reclaimable_mb\",\"performance\":{\"avg_search_ms\",\"avg_insert_ms\",\n"
    "\"cache_hit_rate\"},\"workspace\",\"models\":[{\"model\",\"documents\",\n"
    "\"chunks\"}]} (the vectors of the whole store by the model that made\n"
    "them; model null: not recorded), \"served_by\" (\"primary\" or \"replica\")\n"
    "and \"replica\": null without --read-db, else {\"state\" (ok, behind,\n"
    "lagging, down), \"lag_ms\"}; with --verify or --repair also\n"
    "\"counts_check\":{\"documents\",\"chunks\",\"orphaned_chunks\",\n"
    "\"orphaned_counted\",\"drift\":[{\"source_id\",\"workspace\",\n"
    "\"documents_counted\",\"documents_actual\",\"chunks_counted\",\"chunks_actual\",\n"
    "\"without_vector_counted\",\"without_vector_actual\"}],\"repaired\"}.\n";

static const char drift_reason[] = RENDER_DRIFT_REASON;

static void print_check_text(const es_count_check *k) {
  printf("counters checked against COUNT(*): %lld documents, %lld chunks, "
         "%lld orphaned (counted %lld)",
         (long long)k->documents, (long long)k->chunks,
         (long long)k->orphaned_chunks, (long long)k->orphaned_counted);
  if (k->repaired)
    printf("; they disagreed and were recounted\n");
  else if (!render_drifted(k))
    printf("; they agree\n");
  else
    printf("; %zu key(s) disagree:\n", k->n_drift);
  for (size_t i = 0; i < k->n_drift; i++) {
    const es_count_drift *d = &k->drift[i];
    fputs("  source ", stdout);
    cli_put_printable(stdout, d->source_id ? d->source_id : "(none)");
    fputs(", workspace ", stdout);
    cli_put_printable(stdout, d->workspace ? d->workspace : "(none)");
    printf(": documents %lld counted, %lld actual; chunks %lld counted, %lld "
           "actual; without a vector %lld counted, %lld actual\n",
           (long long)d->documents_counted, (long long)d->documents_actual,
           (long long)d->chunks_counted, (long long)d->chunks_actual,
           (long long)d->without_vector_counted,
           (long long)d->without_vector_actual);
  }
}

static void print_num(const char *label, double v, const char *unit) {
  if (isnan(v))
    printf("  %-16s -\n", label);
  else
    printf("  %-16s %.3f%s\n", label, v, unit);
}

static void print_text(const es_stats *st, const es_count_check *k) {
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
  printf("index health: %s\n",
         es_health_name(render_drifted(k) ? ES_HEALTH_CRITICAL : st->index_health));
  for (size_t i = 0; i < st->n_health_reasons; i++) {
    fputs("  - ", stdout); /* reasons quote index and table names */
    cli_put_message(stdout, st->health_reasons[i]);
    fputc('\n', stdout);
  }
  if (render_drifted(k))
    printf("  - %s\n", drift_reason);
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
  if (st->n_models > 0) {
    printf("%-32s %12s %12s\n", "model (vectors)", "documents", "chunks");
    for (size_t i = 0; i < st->n_models; i++) {
      const char *m = st->models[i].model;
      cli_put_cell(stdout, m ? m : "(not recorded)", 32, 0);
      printf(" %12lld %12lld\n", (long long)st->models[i].documents,
             (long long)st->models[i].chunks);
    }
  }
  if (st->replica) {
    printf("answered by the %s; replica %s", st->served_by_replica ? "replica"
           : "primary", es_replica_state_name(st->replica_state));
    if (st->replica_lag_ms >= 0)
      printf(", lag %lld ms", (long long)st->replica_lag_ms);
    fputc('\n', stdout);
  }
  if (k)
    print_check_text(k);
}

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"workspace", required_argument, NULL, 'w'},
      {"verify", no_argument, NULL, 'v'},
      {"repair", no_argument, NULL, 'r'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  const char *workspace = NULL;
  bool verify = false, repair = false;
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_stats, argc, argv, "", lo, &code)) != -1) {
    if (opt == CLI_STOP)
      return code;
    if (opt == 'w')
      workspace = optarg;
    else if (opt == 'v')
      verify = true;
    else if (opt == 'r')
      repair = true;
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  es_store *s = cli_open(c);
  if (s == NULL)
    return EXIT_FAIL;
  es_stats *st = NULL;
  es_count_check *k = NULL;
  es_status rc = ES_OK;
  /* A repair goes first, so that the statistics show its result. */
  if (repair)
    rc = es_check_counts(s, 1, &k);
  if (rc == ES_OK)
    rc = es_stats_get(s, workspace, &st);
  if (rc == ES_OK && verify && !repair)
    rc = es_check_counts(s, 0, &k);
  int exit_code = EXIT_OK;
  if (rc != ES_OK)
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
  else if (c->json) {
    jw w;
    jw_init(&w, stdout);
    render_stats(&w, st, k, NULL);
    jw_done(&w);
  }
  else
    print_text(st, k);
  es_count_check_free(k);
  es_stats_free(st);
  es_close(s);
  return exit_code;
}

const cli_command cli_cmd_stats = {"stats", run,
                                   "exact counts, storage and index health", usage};
