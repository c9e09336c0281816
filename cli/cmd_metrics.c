/* cmd_metrics.c - `embstore metrics`. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

/* 100 years.  The server computes now() - since, which leaves the
 * timestamp range at about 6,700 years back; a bound well inside it keeps
 * that an ordinary usage error instead of an SQL one. */
#define MAX_SINCE_S (36500LL * 86400)

static const char usage[] =
    "usage: embstore metrics [--since DURATION] [--json]\n"
    "\n"
    "Per operation: count, median (p50), p95 and p99 duration, and error rate,\n"
    "from the performance metrics every library operation records.\n"
    "\n"
    "  --since DURATION   only the last 90s, 30m, 1h, 7d, ... up to 36500d\n"
    "                     (default 24h; \"all\" for everything kept)\n"
    "\n"
    "--json prints {\"since_s\",\"operations\":[{\"operation\",\"count\",\"p50_ms\",\n"
    "\"p95_ms\",\"p99_ms\",\"error_rate\"}]}.\n";

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"since", required_argument, NULL, 's'}, CLI_COMMON_LONGOPTS, {0, 0, 0, 0}};
  int64_t since = 24 * 3600;
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_metrics, argc, argv, "", lo, &code)) != -1) {
    if (opt == CLI_STOP)
      return code;
    if (opt == 's') {
      if (strcmp(optarg, "all") == 0)
        since = 0;
      else if (!cli_parse_duration(optarg, &since) || since == 0)
        return cli_usage(c, "--since must be a duration like 90s, 30m, 1h or 7d, "
                         "or all, not '%s'", optarg);
      else if (since > MAX_SINCE_S)
        return cli_usage(c, "--since must be at most 36500d (100 years), or "
                         "all, not '%s'", optarg);
    }
  }
  if (optind != argc)
    return cli_usage(c, "unexpected argument '%s'", argv[optind]);
  es_store *s = cli_open(c);
  if (s == NULL)
    return EXIT_FAIL;
  es_metrics_report *r = NULL;
  es_status rc = es_metrics_report_get(s, since, &r);
  int exit_code = EXIT_OK;
  if (rc != ES_OK) {
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
  } else if (c->json) {
    jw w;
    jw_init(&w, stdout);
    render_metrics(&w, r, since);
    jw_done(&w);
  } else if (r->n == 0) {
    printf("no operations recorded in this period\n");
  } else {
    printf("%-20s %10s %10s %10s %10s %8s\n", "operation", "count", "p50 ms",
           "p95 ms", "p99 ms", "errors");
    for (size_t i = 0; i < r->n; i++) {
      const es_op_metrics *m = &r->ops[i];
      cli_put_cell(stdout, m->operation, 20, 0);
      printf(" %10lld %10.2f %10.2f %10.2f %7.1f%%\n", (long long)m->count,
             m->p50_ms, m->p95_ms, m->p99_ms, 100.0 * m->error_rate);
    }
  }
  es_metrics_report_free(r);
  es_close(s);
  return exit_code;
}

const cli_command cli_cmd_metrics = {"metrics", run,
                                     "durations and error rates per operation",
                                     usage};
