/* cmd_ingest.c - `embstore ingest FILE|-`: JSON Lines documents, in
 * batches, with exact per-line accounting.
 *
 * Memory is bounded by one batch of documents: lines are read, parsed and
 * handed to the library a batch at a time. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "lines.h"

#define DEFAULT_MAX_LINE (64L * 1024 * 1024)

static const char usage[] =
    "usage: embstore ingest FILE|- [--batch-size N] [--source S] [--workspace W]\n"
    "                       [--max-line-bytes N] [--defer-index auto|always|never]\n"
    "                       [--json]\n"
    "\n"
    "Loads documents from JSON Lines, one document a line:\n"
    "  {\"id\": \"...\", \"text\": \"...\", \"embedding\": [...], \"metadata\": {...},\n"
    "   \"source_id\": \"...\", \"chunks\": [{\"id\": \"...\", \"text\": \"...\",\n"
    "   \"embedding\": [...] or null, \"metadata\": {...}}]}\n"
    "\n"
    "Each batch is one transaction.  A document with \"chunks\" replaces its\n"
    "whole chunk set; without it, the stored chunks are kept.  A document\n"
    "identical to what is stored is not rewritten (\"unchanged\").  The same id\n"
    "twice: the last one wins, the others count as duplicates.  Invalid lines\n"
    "are reported with their line number and reason; every valid line lands.\n"
    "\n"
    "  --batch-size N      documents per transaction (default 1000)\n"
    "  --source S          source_id for lines that have none\n"
    "  --workspace W       metadata.workspace for lines that have none\n"
    "  --max-line-bytes N  longest accepted line (default 64 MiB)\n"
    "  --defer-index M     build the HNSW index after the load instead of row\n"
    "                      by row: auto (default: for 10,000+ documents into a\n"
    "                      store no larger than the load), always, never\n"
    "\n"
    "On a terminal a progress line (documents/s, ETA) is shown on stderr.\n"
    "--json prints {\"inserted\",\"updated\",\"unchanged\",\"failed\",\"duplicates\",\n"
    "\"chunks_written\",\"errors\":[{\"id\",\"line\",\"error\"}],\"seconds\"}.\n"
    "Exit status 0 when every document landed, 3 when some failed, 2 when\n"
    "nothing could be written.\n";

typedef struct line_error {
  char *id;
  long line;
  char *error;
} line_error;

typedef struct ingest {
  cli *c;
  es_store *store;
  es_batch *batch;
  es_batch_options opts;
  const char *source, *workspace;
  /* the batch being read */
  es_doc_json **parsed;
  es_doc *docs;
  size_t *lines;
  size_t n;
  /* parse failures, found here rather than in the library */
  line_error *errors;
  size_t n_errors, cap_errors;
  /* progress */
  bool tty;
  double t0, last_draw;
  off_t file_size;
  size_t bytes_read, lines_read;
  es_status fatal; /* set when writing became impossible */
  char fatal_msg[1024];
} ingest;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void add_error(ingest *g, const char *id, long line, const char *msg) {
  if (g->n_errors == g->cap_errors) {
    size_t cap = g->cap_errors ? g->cap_errors * 2 : 16;
    line_error *e = realloc(g->errors, cap * sizeof *e);
    if (e == NULL)
      return;
    g->errors = e;
    g->cap_errors = cap;
  }
  line_error *e = &g->errors[g->n_errors++];
  e->id = id ? strdup(id) : NULL;
  e->line = line;
  e->error = strdup(msg);
}

/* The progress line: documents done, rate, and an ETA when the size of
 * the input is known. */
static void draw(size_t processed, size_t total, void *user) {
  ingest *g = user;
  double now = now_s();
  if (!g->tty || (now - g->last_draw < 0.2 && processed < total))
    return;
  g->last_draw = now;
  double secs = now - g->t0, rate = secs > 0 ? (double)processed / secs : 0;
  if (g->file_size > 0 && g->bytes_read > 0 && g->lines_read > 0) {
    double est = (double)g->file_size * (double)g->lines_read / (double)g->bytes_read;
    double left = est > (double)processed && rate > 0 ? (est - (double)processed) / rate : 0;
    double pct = est > 0 ? 100.0 * (double)processed / est : 0;
    fprintf(stderr, "\r  %zu docs (%.0f%%)  %.0f docs/s  ETA %.0f s   ", processed,
            pct > 100 ? 100 : pct, rate, left);
  } else {
    fprintf(stderr, "\r  %zu docs  %.0f docs/s   ", processed, rate);
  }
  (void)total;
}

/* Frees the documents of the current batch. */
static void clear_batch(ingest *g) {
  for (size_t i = 0; i < g->n; i++)
    es_doc_json_free(g->parsed[i]);
  g->n = 0;
}

/* Hands the current batch to the library. */
static void flush_batch(ingest *g) {
  if (g->n == 0)
    return;
  if (g->fatal == ES_OK && g->batch == NULL) {
    /* Started on the first batch, when the size of the input is known. */
    if (g->file_size > 0 && g->bytes_read > 0)
      g->opts.total = (size_t)((double)g->file_size * (double)g->lines_read /
                               (double)g->bytes_read);
    es_status rc = es_batch_begin(g->store, &g->opts, &g->batch);
    if (rc != ES_OK) {
      g->fatal = rc;
      snprintf(g->fatal_msg, sizeof g->fatal_msg, "%s", es_errmsg(g->store));
    }
  }
  if (g->fatal != ES_OK) {
    /* Nothing more can be written: say so for every document read. */
    char msg[1100];
    snprintf(msg, sizeof msg, "not written: %s", g->fatal_msg);
    for (size_t i = 0; i < g->n; i++)
      add_error(g, g->docs[i].id, (long)g->lines[i], msg);
  } else {
    es_status rc = es_batch_add(g->batch, g->docs, g->n, g->lines);
    if (rc != ES_OK && rc != ES_EPARTIAL) {
      g->fatal = rc;
      snprintf(g->fatal_msg, sizeof g->fatal_msg, "%s", es_errmsg(g->store));
    }
  }
  clear_batch(g);
}

/* Parses one line into the current batch (or records why not). */
static void take_line(ingest *g, const char *line, size_t len, long lineno) {
  char msg[1024];
  es_doc_json *d = NULL;
  if (es_doc_parse_json(line, len, &d, msg, sizeof msg) != ES_OK) {
    add_error(g, NULL, lineno, msg);
    return;
  }
  if (es_doc_json_set_defaults(d, g->source, g->workspace) != ES_OK) {
    add_error(g, es_doc_json_doc(d)->id, lineno, "out of memory");
    es_doc_json_free(d);
    return;
  }
  g->parsed[g->n] = d;
  g->docs[g->n] = *es_doc_json_doc(d);
  g->lines[g->n] = (size_t)lineno;
  g->n++;
  if (g->n == g->opts.batch_size)
    flush_batch(g);
}

static int cmp_error(const void *a, const void *b) {
  const line_error *x = a, *y = b;
  return x->line < y->line ? -1 : x->line > y->line;
}

/* Adds the library's failures to ours, in line order. */
static void merge_errors(ingest *g, const es_batch_result *r) {
  for (size_t i = 0; r && i < r->n_failures; i++)
    add_error(g, r->failures[i].id, (long)r->failures[i].position,
              r->failures[i].error);
  qsort(g->errors, g->n_errors, sizeof *g->errors, cmp_error);
}

static void print_summary(ingest *g, const es_batch_result *r, double seconds) {
  size_t inserted = r ? r->inserted : 0, updated = r ? r->updated : 0,
         unchanged = r ? r->unchanged : 0, dups = r ? r->duplicates : 0,
         chunks = r ? r->chunks_written : 0;
  size_t failed = g->n_errors;
  if (g->c->json) {
    jw w;
    jw_init(&w, stdout);
    jw_obj(&w);
    jw_key(&w, "inserted");
    jw_int(&w, (int64_t)inserted);
    jw_key(&w, "updated");
    jw_int(&w, (int64_t)updated);
    jw_key(&w, "unchanged");
    jw_int(&w, (int64_t)unchanged);
    jw_key(&w, "failed");
    jw_int(&w, (int64_t)failed);
    jw_key(&w, "duplicates");
    jw_int(&w, (int64_t)dups);
    jw_key(&w, "chunks_written");
    jw_int(&w, (int64_t)chunks);
    jw_key(&w, "errors");
    jw_arr(&w);
    for (size_t i = 0; i < g->n_errors; i++) {
      jw_obj(&w);
      jw_key(&w, "id");
      jw_str(&w, g->errors[i].id);
      jw_key(&w, "line");
      jw_int(&w, g->errors[i].line);
      jw_key(&w, "error");
      jw_str(&w, g->errors[i].error);
      jw_obj_end(&w);
    }
    jw_arr_end(&w);
    jw_key(&w, "seconds");
    jw_num(&w, seconds);
    jw_obj_end(&w);
    jw_done(&w);
    return;
  }
  for (size_t i = 0; i < g->n_errors; i++)
    fprintf(stderr, "line %ld%s%s%s: %s\n", g->errors[i].line,
            g->errors[i].id ? " (id \"" : "", g->errors[i].id ? g->errors[i].id : "",
            g->errors[i].id ? "\")" : "", g->errors[i].error);
  printf("%zu inserted, %zu updated, %zu unchanged, %zu failed, %zu duplicates "
         "folded, %zu chunks written in %.2f s\n",
         inserted, updated, unchanged, failed, dups, chunks, seconds);
}

static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"source", required_argument, NULL, 's'},
      {"workspace", required_argument, NULL, 'w'},
      {"max-line-bytes", required_argument, NULL, 'm'},
      {"batch-size", required_argument, NULL, 'b'},
      {"defer-index", required_argument, NULL, 'd'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  ingest g = {.c = c};
  long max_line = DEFAULT_MAX_LINE, batch = 1000;
  int code, opt;
  es_batch_options_init(&g.opts);
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_ingest, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 's': g.source = optarg; break;
    case 'w': g.workspace = optarg; break;
    case 'm':
      if (!cli_parse_int(optarg, 64, 1L << 30, &max_line))
        return cli_usage(c, "--max-line-bytes must be 64..1073741824");
      break;
    case 'b':
      if (!cli_parse_int(optarg, 1, 100000, &batch))
        return cli_usage(c, "--batch-size must be 1..100000, not '%s'", optarg);
      break;
    case 'd':
      if (strcmp(optarg, "auto") == 0)
        g.opts.defer_index = ES_DEFER_AUTO;
      else if (strcmp(optarg, "always") == 0)
        g.opts.defer_index = ES_DEFER_ALWAYS;
      else if (strcmp(optarg, "never") == 0)
        g.opts.defer_index = ES_DEFER_NEVER;
      else
        return cli_usage(c, "--defer-index must be auto, always or never");
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
  struct stat st;
  if (fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode))
    g.file_size = st.st_size;
  g.opts.batch_size = (size_t)batch;
  g.opts.progress = draw;
  g.opts.user = &g;
  g.tty = isatty(2) && !c->json;
  g.t0 = now_s();

  int exit_code = EXIT_OK;
  lines l = {0};
  es_batch_result *r = NULL;
  g.store = cli_open(c);
  if (g.store == NULL) {
    if (in != stdin)
      fclose(in);
    return EXIT_FAIL;
  }
  g.parsed = calloc((size_t)batch, sizeof *g.parsed);
  g.docs = calloc((size_t)batch, sizeof *g.docs);
  g.lines = calloc((size_t)batch, sizeof *g.lines);
  if (!g.parsed || !g.docs || !g.lines || lines_open(&l, in, (size_t)max_line) != 0) {
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
    g.bytes_read += l.len + 1;
    g.lines_read++;
    if (ls == LINES_TOO_LONG) {
      char msg[200];
      snprintf(msg, sizeof msg, "line is %zu bytes long; the limit is %ld "
               "(--max-line-bytes)", l.len, max_line);
      add_error(&g, NULL, l.lineno, msg);
      continue;
    }
    if (strspn(l.buf, " \t") == l.len)
      continue; /* a blank line is not a document */
    take_line(&g, l.buf, l.len, l.lineno);
  }
  flush_batch(&g);
  es_status end = es_batch_end(g.batch, &r);
  g.batch = NULL;
  if (g.tty)
    fprintf(stderr, "\r%60s\r", "");
  merge_errors(&g, r);
  print_summary(&g, r, now_s() - g.t0);
  size_t landed = r ? r->inserted + r->updated + r->unchanged + r->duplicates : 0;
  /* The summary (and --json object) is printed: further news goes to
   * stderr only. */
  if (g.n_errors > 0)
    exit_code = landed > 0 ? EXIT_PARTIAL : EXIT_FAIL;
  if (g.fatal != ES_OK)
    fprintf(stderr, "embstore ingest: stopped writing: %s\n", g.fatal_msg);
  if (end != ES_OK) {
    fprintf(stderr, "embstore ingest: %s\n", es_errmsg(g.store));
    if (exit_code == EXIT_OK)
      exit_code = EXIT_PARTIAL;
  }
done:
  es_batch_end(g.batch, NULL);
  es_batch_result_free(r);
  clear_batch(&g);
  lines_close(&l);
  for (size_t i = 0; i < g.n_errors; i++) {
    free(g.errors[i].id);
    free(g.errors[i].error);
  }
  free(g.errors);
  free(g.parsed);
  free(g.docs);
  free(g.lines);
  es_close(g.store);
  if (in != stdin)
    fclose(in);
  return exit_code;
}

const cli_command cli_cmd_ingest = {"ingest", run,
                                    "load documents from JSON Lines", usage};
