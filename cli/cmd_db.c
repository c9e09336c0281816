/* cmd_db.c - `embstore db start|stop|status|url`: the embedded cluster. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: embstore db start|stop|status|url [--home DIR] [--json]\n"
    "\n"
    "Controls the embedded PostgreSQL cluster that embstore runs when no\n"
    "--db / EMBSTORE_DB is given.  It lives in --home (default $EMBSTORE_HOME,\n"
    "else ~/.local/share/embstore; as root /var/lib/embstore), mode 0700, and\n"
    "listens on a Unix socket in that directory only, never on TCP.\n"
    "\n"
    "  start   create the cluster on first use and start it (idempotent)\n"
    "  stop    stop it (fast shutdown; idempotent)\n"
    "  status  say whether it exists and runs\n"
    "  url     print its connection URI (for psql and other tools)\n"
    "\n"
    "--json prints {\"state\",\"pid\",\"home\",\"url\"}; state is \"running\",\n"
    "\"stopped\" or \"absent\".\n";

static const char *state_name(es_cluster_state st) {
  return st == ES_CLUSTER_RUNNING ? "running"
         : st == ES_CLUSTER_STOPPED ? "stopped" : "absent";
}

static void print_state(cli *c, es_cluster *cl, es_cluster_state st) {
  if (c->json) {
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w);
    jw_key(&w, "state");
    jw_str(&w, state_name(st));
    jw_key(&w, "pid");
    if (st == ES_CLUSTER_RUNNING)
      jw_int(&w, es_cluster_pid(cl));
    else
      jw_null(&w);
    jw_key(&w, "home");
    jw_str(&w, es_cluster_home(cl));
    jw_key(&w, "url");
    jw_str(&w, es_cluster_url(cl));
    jw_obj_end(&w);
    jw_done(&w);
    return;
  }
  /* The home path comes from the command line or the environment. */
  if (st == ES_CLUSTER_RUNNING) {
    printf("running (pid %ld) in ", es_cluster_pid(cl));
    cli_put_printable(stdout, es_cluster_home(cl));
    fputc('\n', stdout);
  } else if (st == ES_CLUSTER_STOPPED) {
    fputs("stopped (", stdout);
    cli_put_printable(stdout, es_cluster_home(cl));
    fputs(")\n", stdout);
  } else {
    fputs("absent: no cluster in ", stdout);
    cli_put_printable(stdout, es_cluster_home(cl));
    fputs(" yet (created by `embstore db start` or on first use)\n", stdout);
  }
}

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {CLI_COMMON_LONGOPTS, {0, 0, 0, 0}};
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_db, argc, argv, "", lo, &code)) != -1) {
    if (opt == CLI_STOP)
      return code;
  }
  if (optind + 1 != argc)
    return cli_usage(c, "expected one of start, stop, status, url");
  const char *action = argv[optind];
  if (strcmp(action, "start") && strcmp(action, "stop") &&
      strcmp(action, "status") && strcmp(action, "url"))
    return cli_usage(c, "unknown action '%s' (start, stop, status, url)", action);
  if (c->db != NULL)
    return cli_fail(c, EXIT_USAGE, ES_EINVAL,
                    "`db %s` controls the embedded cluster, but --db or "
                    "EMBSTORE_DB names another server", action);

  es_cluster *cl = NULL;
  es_cluster_state st = ES_CLUSTER_ABSENT;
  es_status rc = es_cluster_open(c->home, &cl);
  int exit_code = EXIT_OK;
  if (rc != ES_OK) {
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_cluster_errmsg(cl));
    goto done;
  }
  if (strcmp(action, "url") == 0) {
    if (c->json) {
      jw w;
      jw_init(&w, stdout);
      jw_obj(&w);
      jw_key(&w, "url");
      jw_str(&w, es_cluster_url(cl));
      jw_key(&w, "conninfo");
      jw_str(&w, es_cluster_conninfo(cl));
      jw_obj_end(&w);
      jw_done(&w);
    } else {
      cli_put_printable(stdout, es_cluster_url(cl)); /* percent-encoded */
      fputc('\n', stdout);
    }
    goto done;
  }
  if (strcmp(action, "start") == 0)
    rc = es_cluster_start(cl);
  else if (strcmp(action, "stop") == 0)
    rc = es_cluster_stop(cl);
  if (rc == ES_OK)
    rc = es_cluster_status(cl, &st);
  if (rc != ES_OK) {
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_cluster_errmsg(cl));
    goto done;
  }
  print_state(c, cl, st);
done:
  es_cluster_close(cl);
  return exit_code;
}

const cli_command cli_cmd_db = {"db", run, "start, stop, status or url of the "
                                "embedded cluster", usage};
