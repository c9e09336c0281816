/* cmd_delete.c - `embstore delete` by source, by metadata filter, or by id. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: embstore delete (--source S [--filter JSON] | --filter JSON |\n"
    "                        --id ID [--id ID]...) [--workspace W]\n"
    "                       [--no-cascade] [--dry-run] [--all] [--json]\n"
    "\n"
    "Deletes every document of source S, or every document whose metadata\n"
    "matches the filter, or the documents ID, and all their chunks, in one\n"
    "transaction, with exact counts.\n"
    "\n"
    "  --source S      the source to delete\n"
    "  --filter JSON   only documents whose metadata contains this object\n"
    "                  ('{\"lang\":\"en\"}'); alone, of every source ('{}':\n"
    "                  every document, which also needs --all)\n"
    "  --all           confirm a filter that matches every document ({})\n"
    "  --id ID         a document to delete (repeatable; an id given twice\n"
    "                  counts once)\n"
    "  --workspace W   only documents whose metadata.workspace is W (with --id,\n"
    "                  another document counts as not found)\n"
    "  --no-cascade    restrict: if any of the documents still has chunks,\n"
    "                  delete nothing and say how many chunks block it (exit 2)\n"
    "  --dry-run       report the exact counts, change nothing\n"
    "\n"
    "With --id, ids that name no stored document are listed on stderr: exit 3\n"
    "when some were found and deleted, exit 2 when none was.\n"
    "\n"
    "--json prints {\"deleted\",\"chunks_removed\",\"dry_run\"}; with --id also\n"
    "\"not_found\" (a count), \"not_found_ids\" and \"duplicates\".\n";

/* Most ids listed on stderr as not found. */
#define MAX_LISTED 10

/* The growing list of --id values. */
typedef struct id_list {
  const char **v;
  size_t n, cap;
} id_list;

/* Appends id; false when out of memory. */
static bool id_push(id_list *l, const char *id) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 16;
    const char **v = realloc(l->v, cap * sizeof *v);
    if (v == NULL)
      return false;
    l->v = v;
    l->cap = cap;
  }
  l->v[l->n++] = id;
  return true;
}

static void print_json(const es_delete_result *r, bool by_id) {
  jw w;
  jw_init(&w, stdout);
  render_delete(&w, r, by_id);
  jw_done(&w);
}

/* The ids not found, quoted, into buf (at most MAX_LISTED of them). */
static void list_missing(const es_delete_result *r, char *buf, size_t cap) {
  size_t len = 0;
  buf[0] = '\0';
  for (int64_t i = 0; i < r->not_found && i < MAX_LISTED && len < cap; i++)
    len += (size_t)snprintf(buf + len, cap - len, "%s\"%s\"", i ? ", " : "",
                            r->not_found_ids[i]);
  if (r->not_found > MAX_LISTED && len < cap)
    snprintf(buf + len, cap - len, " and %lld more",
             (long long)(r->not_found - MAX_LISTED));
}

/* Reports a delete by id; returns the exit code. */
static int report_ids(cli *c, const es_delete_result *r) {
  char missing[1024];
  list_missing(r, missing, sizeof missing);
  if (r->deleted == 0 && r->not_found > 0) {
    if (r->not_found == 1)
      return cli_fail(c, EXIT_FAIL, ES_ENOTFOUND, "no document with id %s",
                      missing);
    return cli_fail(c, EXIT_FAIL, ES_ENOTFOUND, "none of the %lld ids names a "
                    "stored document: %s", (long long)r->not_found, missing);
  }
  if (c->json) {
    print_json(r, true);
  } else {
    printf("%s %lld documents and %lld chunks", r->dry_run ? "would delete"
                                                           : "deleted",
           (long long)r->deleted, (long long)r->chunks_removed);
    if (r->not_found > 0)
      printf("; %lld ids not found", (long long)r->not_found);
    if (r->duplicates > 0)
      printf("; %lld ids repeated", (long long)r->duplicates);
    fputc('\n', stdout);
  }
  if (r->not_found == 0)
    return EXIT_OK;
  cli_warn(c, "%lld ids name no stored document: %s", (long long)r->not_found,
           missing);
  return EXIT_PARTIAL;
}

/* Reports a delete by source. */
static void report_source(cli *c, const es_delete_result *r, const char *source,
                          const char *filter, const char *workspace) {
  if (c->json) {
    print_json(r, false);
    return;
  }
  printf("%s %lld documents and %lld chunks ",
         r->dry_run ? "would delete" : "deleted", (long long)r->deleted,
         (long long)r->chunks_removed);
  if (source) {
    fputs("of source ", stdout);
    cli_put_printable(stdout, source);
  }
  if (filter)
    fputs(source ? " matching the filter" : "matching the filter", stdout);
  if (workspace) {
    fputs(" in workspace ", stdout);
    cli_put_printable(stdout, workspace);
  }
  fputc('\n', stdout);
}

/* Whether filter (a valid JSON object) is {} with any spacing. */
static bool matches_all(const char *filter) {
  for (const char *p = filter; *p; p++)
    if (*p != '{' && *p != '}' && *p != ' ' && *p != '\t' && *p != '\n' &&
        *p != '\r')
      return false;
  return true;
}

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"source", required_argument, NULL, 's'},
      {"id", required_argument, NULL, 'i'},
      {"workspace", required_argument, NULL, 'w'},
      {"no-cascade", no_argument, NULL, 'n'},
      {"dry-run", no_argument, NULL, 'd'},
      {"filter", required_argument, NULL, 'f'},
      {"all", no_argument, NULL, 'a'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  const char *source = NULL;
  bool all = false;
  id_list ids = {0};
  es_delete_options o;
  int code, opt;
  es_delete_options_init(&o);
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_delete, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      free(ids.v);
      return code;
    case 's': source = optarg; break;
    case 'w': o.workspace = optarg; break;
    case 'n': o.no_cascade = 1; break;
    case 'd': o.dry_run = 1; break;
    case 'f': o.filter_json = optarg; break;
    case 'a': all = true; break;
    case 'i':
      if (optarg[0] == '\0') {
        free(ids.v);
        return cli_usage(c, "--id needs a non-empty id");
      }
      if (!id_push(&ids, optarg)) {
        free(ids.v);
        return cli_fail(c, EXIT_FAIL, ES_ENOMEM, "out of memory");
      }
      break;
    }
  }
  int bad = optind != argc ? cli_usage(c, "unexpected argument '%s'", argv[optind])
            : (source != NULL || o.filter_json != NULL) && ids.n > 0
                ? cli_usage(c, "--id takes neither --source nor --filter: the "
                            "ids name the documents")
            : ids.n == 0 && o.filter_json == NULL && source == NULL
                ? cli_usage(c, "--source, --filter or --id is required")
            : source != NULL && source[0] == '\0'
                ? cli_usage(c, "--source needs a non-empty source id")
            : !cli_check_filter(c, o.filter_json) ? EXIT_USAGE
            : source == NULL && o.filter_json && matches_all(o.filter_json) && !all
                ? cli_usage(c, "--filter '%s' matches every document: add --all "
                            "to delete them all", o.filter_json)
                : EXIT_OK;
  if (bad != EXIT_OK) {
    free(ids.v);
    return bad;
  }
  es_store *s = cli_open(c);
  if (s == NULL) {
    free(ids.v);
    return EXIT_FAIL;
  }
  es_delete_result *r = NULL;
  es_status rc = ids.n > 0 ? es_delete_documents(s, ids.v, ids.n, &o, &r)
                 : source  ? es_delete_by_source(s, source, &o, &r)
                           : es_delete_by_filter(s, o.filter_json, &o, &r);
  int exit_code = EXIT_OK;
  if (rc != ES_OK)
    exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
  else if (ids.n > 0)
    exit_code = report_ids(c, r);
  else
    report_source(c, r, source, o.filter_json, o.workspace);
  es_delete_result_free(r);
  es_close(s);
  free(ids.v);
  return exit_code;
}

const cli_command cli_cmd_delete = {"delete", run,
                                    "delete documents and their chunks, by "
                                    "source, by metadata filter or by id",
                                    usage};
