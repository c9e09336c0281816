/* cmd_ingest.c - `embstore ingest FILE|-`: JSON Lines documents. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "lines.h"

#define DEFAULT_MAX_LINE (64L * 1024 * 1024)
#define MAX_ERRORS_KEPT 10000

static const char usage[] =
    "usage: embstore ingest FILE|- [--source S] [--workspace W]\n"
    "                       [--max-line-bytes N] [--json]\n"
    "\n"
    "Loads documents from JSON Lines, one document a line:\n"
    "  {\"id\": \"...\", \"text\": \"...\", \"embedding\": [...], \"metadata\": {...},\n"
    "   \"source_id\": \"...\", \"chunks\": [{\"id\": \"...\", \"text\": \"...\",\n"
    "   \"embedding\": [...] or null, \"metadata\": {...}}]}\n"
    "A document with \"chunks\" replaces its whole chunk set; without it, the\n"
    "stored chunks are kept.  An unchanged document is not rewritten.\n"
    "Invalid lines are reported with their line number; valid ones land.\n"
    "\n"
    "  --source S          source_id for lines that have none\n"
    "  --workspace W       metadata.workspace for lines that have none\n"
    "  --max-line-bytes N  longest accepted line (default 64 MiB)\n"
    "\n"
    "--json prints {\"inserted\",\"updated\",\"unchanged\",\"failed\",\n"
    "\"chunks_written\",\"errors\":[{\"id\",\"line\",\"error\"}],\"seconds\"}.\n"
    "Exit status 0 when every document landed, 3 when some failed, 2 when\n"
    "nothing could be written.\n";

typedef struct ingest_error {
  char *id;
  long line;
  char *error;
} ingest_error;

typedef struct tally {
  int64_t inserted, updated, unchanged, failed, chunks_written;
  ingest_error *errors;
  size_t n_errors, cap_errors;
} tally;

static void add_error(tally *t, const char *id, long line, const char *msg) {
  t->failed++;
  if (t->n_errors == MAX_ERRORS_KEPT)
    return;
  if (t->n_errors == t->cap_errors) {
    size_t cap = t->cap_errors ? t->cap_errors * 2 : 16;
    ingest_error *g = realloc(t->errors, cap * sizeof *g);
    if (g == NULL)
      return;
    t->errors = g;
    t->cap_errors = cap;
  }
  ingest_error *e = &t->errors[t->n_errors++];
  e->id = id ? strdup(id) : NULL;
  e->line = line;
  e->error = strdup(msg);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_summary(cli *c, const tally *t, double seconds) {
  if (c->json) {
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w);
    jw_key(&w, "inserted");
    jw_int(&w, t->inserted);
    jw_key(&w, "updated");
    jw_int(&w, t->updated);
    jw_key(&w, "unchanged");
    jw_int(&w, t->unchanged);
    jw_key(&w, "failed");
    jw_int(&w, t->failed);
    jw_key(&w, "chunks_written");
    jw_int(&w, t->chunks_written);
    jw_key(&w, "errors");
    jw_arr(&w);
    for (size_t i = 0; i < t->n_errors; i++) {
      jw_obj(&w);
      jw_key(&w, "id");
      jw_str(&w, t->errors[i].id);
      jw_key(&w, "line");
      jw_int(&w, t->errors[i].line);
      jw_key(&w, "error");
      jw_str(&w, t->errors[i].error);
      jw_obj_end(&w);
    }
    jw_arr_end(&w);
    jw_key(&w, "seconds");
    jw_num(&w, seconds);
    jw_obj_end(&w);
    jw_done(&w);
    return;
  }
  for (size_t i = 0; i < t->n_errors; i++)
    fprintf(stderr, "line %ld%s%s%s: %s\n", t->errors[i].line,
            t->errors[i].id ? " (id \"" : "",
            t->errors[i].id ? t->errors[i].id : "",
            t->errors[i].id ? "\")" : "", t->errors[i].error);
  printf("%lld inserted, %lld updated, %lld unchanged, %lld failed, "
         "%lld chunks written in %.2f s\n",
         (long long)t->inserted, (long long)t->updated,
         (long long)t->unchanged, (long long)t->failed,
         (long long)t->chunks_written, seconds);
}

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"source", required_argument, NULL, 's'},
      {"workspace", required_argument, NULL, 'w'},
      {"max-line-bytes", required_argument, NULL, 'm'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  const char *source = NULL, *workspace = NULL;
  long max_line = DEFAULT_MAX_LINE;
  int code, opt;
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_ingest, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 's': source = optarg; break;
    case 'w': workspace = optarg; break;
    case 'm':
      if (!cli_parse_int(optarg, 64, 1L << 30, &max_line))
        return cli_usage(c, "--max-line-bytes must be 64..1073741824");
      break;
    }
  }
  if (optind + 1 != argc)
    return cli_usage(c, "expected one FILE (or - for standard input)");
  const char *path = argv[optind];
  FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
  if (in == NULL)
    return cli_fail(c, EXIT_FAIL, ES_EIO, "cannot open %s: %s", path,
                    strerror(errno));
  es_store *s = cli_open(c);
  if (s == NULL) {
    if (in != stdin)
      fclose(in);
    return EXIT_FAIL;
  }
  lines l;
  tally t = {0};
  int exit_code = EXIT_OK;
  double t0 = now_s();
  if (lines_open(&l, in, (size_t)max_line) != 0) {
    exit_code = cli_fail(c, EXIT_FAIL, ES_ENOMEM, "out of memory");
    goto done;
  }
  for (;;) {
    lines_status ls = lines_next(&l);
    if (ls == LINES_EOF)
      break;
    if (ls == LINES_ERROR) {
      exit_code = cli_fail(c, EXIT_FAIL, ES_EIO, "reading %s: %s", path,
                           strerror(l.error));
      goto done;
    }
    char msg[1024];
    if (ls == LINES_TOO_LONG) {
      snprintf(msg, sizeof msg, "line is %zu bytes long; the limit is %ld "
               "(--max-line-bytes)", l.len, max_line);
      add_error(&t, NULL, l.lineno, msg);
      continue;
    }
    if (strspn(l.buf, " \t") == l.len)
      continue; /* blank line */
    es_doc_json *d = NULL;
    if (es_doc_parse_json(l.buf, l.len, &d, msg, sizeof msg) != ES_OK) {
      add_error(&t, NULL, l.lineno, msg);
      continue;
    }
    es_doc_json_set_defaults(d, source, workspace);
    const es_doc *doc = es_doc_json_doc(d);
    es_upsert_outcome out;
    es_status rc = es_upsert(s, doc, &out);
    if (rc == ES_OK) {
      if (out == ES_UPSERT_INSERTED)
        t.inserted++;
      else if (out == ES_UPSERT_UPDATED)
        t.updated++;
      else
        t.unchanged++;
      if (out != ES_UPSERT_UNCHANGED && doc->has_chunks)
        t.chunks_written += (int64_t)doc->n_chunks;
    } else if (rc == ES_ECONNECT) {
      exit_code = cli_fail(c, EXIT_FAIL, rc, "%s", es_errmsg(s));
      es_doc_json_free(d);
      goto done;
    } else {
      add_error(&t, doc->id, l.lineno, es_errmsg(s));
    }
    es_doc_json_free(d);
  }
  print_summary(c, &t, now_s() - t0);
  if (t.failed > 0)
    exit_code = (t.inserted + t.updated + t.unchanged) > 0 ? EXIT_PARTIAL : EXIT_FAIL;
done:
  lines_close(&l);
  for (size_t i = 0; i < t.n_errors; i++) {
    free(t.errors[i].id);
    free(t.errors[i].error);
  }
  free(t.errors);
  es_close(s);
  if (in != stdin)
    fclose(in);
  return exit_code;
}

const cli_command cli_cmd_ingest = {"ingest", run,
                                    "load documents from JSON Lines", usage};
