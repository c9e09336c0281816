/* cmd_cleanup.c - `embstore cleanup`. */
#include <getopt.h>
#include <limits.h>

#include "cli.h"

#define MAX_MIN_AGE_S INT_MAX /* es_cleanup_options.min_age_s is an int */

static const char usage[] =
    "usage: embstore cleanup [--dry-run] [--batch-size N] [--min-age DURATION]\n"
    "                        [--json]\n"
    "\n"
    "Removes what broken pipelines left behind: chunks whose document does not\n"
    "exist (possible in adopted databases) and documents without a vector\n"
    "older than the grace period.  Deletes in batches, each its own short\n"
    "transaction; then VACUUM (ANALYZE) on the tables it changed, and validates\n"
    "a NOT VALID foreign key once no orphaned chunk is left.\n"
    "\n"
    "  --dry-run            report the exact totals, change nothing\n"
    "  --batch-size N       rows per transaction (default 1000)\n"
    "  --min-age DURATION   grace period for documents without a vector, e.g.\n"
    "                       90s, 30m, 1h, 7d (default 1h; at most 24855d)\n"
    "\n"
    "--json prints {\"orphaned_chunks\",\"orphaned_embeddings\",\"cleaned\",\n"
    "\"dry_run\",\"details\":[...]}.\n";

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"dry-run", no_argument, NULL, 'd'},
      {"batch-size", required_argument, NULL, 'b'},
      {"min-age", required_argument, NULL, 'm'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  es_cleanup_options o;
  es_cleanup_options_init(&o);
  long batch = 1000;
  int64_t min_age;
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_cleanup, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 'd': o.dry_run = 1; break;
    case 'b':
      if (!cli_parse_int(optarg, 1, 1000000, &batch))
        return cli_usage(c, "--batch-size must be 1..1000000, not '%s'", optarg);
      o.batch_size = (size_t)batch;
      break;
    case 'm':
      if (!cli_parse_duration(optarg, &min_age))
        return cli_usage(c, "--min-age must be a duration like 90s, 30m, 1h or "
                         "7d, not '%s'", optarg);
      if (min_age > MAX_MIN_AGE_S) /* the library takes an int */
        return cli_usage(c, "--min-age must be at most %ds (24855d, about 68 "
                         "years), not '%s'", MAX_MIN_AGE_S, optarg);
      o.min_age_s = (int)min_age;
      break;
    }
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  es_store *s = cli_open(c);
  if (s == NULL)
    return EXIT_FAIL;
  es_cleanup_result *r = NULL;
  es_status rc = es_cleanup_orphaned(s, &o, &r);
  int exit_code = EXIT_OK;
  if (rc != ES_OK) {
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
    if (r && r->cleaned > 0)
      cli_warn(c, "%lld rows were deleted before the failure",
               (long long)r->cleaned);
  } else if (c->json) {
    jw w;
    jw_init(&w, stdout);
    render_cleanup(&w, r);
    jw_done(&w);
  } else {
    printf("%lld orphaned chunks, %lld documents without a vector older than "
           "%d s; %s %lld rows\n",
           (long long)r->orphaned_chunks, (long long)r->orphaned_embeddings,
           o.min_age_s, r->dry_run ? "would delete" : "deleted",
           (long long)(r->dry_run ? r->orphaned_chunks + r->orphaned_embeddings
                                  : r->cleaned));
    for (size_t i = 0; i < r->n_details; i++) {
      fputs("  - ", stdout);
      cli_put_message(stdout, r->details[i]);
      fputc('\n', stdout);
    }
  }
  es_cleanup_result_free(r);
  es_close(s);
  return exit_code;
}

const cli_command cli_cmd_cleanup = {"cleanup", run,
                                     "remove orphaned chunks and stale "
                                     "documents without a vector", usage};
