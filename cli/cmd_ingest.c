/* cmd_ingest.c - `embstore ingest FILE|-`: JSON Lines documents, in
 * batches, with exact per-line accounting.
 *
 * A reader thread reads and parses lines into batches while the main
 * thread writes the previous batch, so JSON parsing overlaps the
 * database's work.  Memory is bounded by three batches of documents (one
 * being filled, one queued, one being written), whatever the input's
 * length. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "lines.h"
#include "tool_utf8.h"

#define DEFAULT_MAX_LINE (64L * 1024 * 1024)

static const char usage[] =
    "usage: embstore ingest FILE|- [--batch-size N] [--source S] [--workspace W]\n"
    "                       [--max-line-bytes N] [--defer-index auto|always|never]\n"
    "                       [--index-memory MB] [--json]\n"
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
    "  --index-memory MB   maintenance_work_mem of the HNSW index build\n"
    "                      (default: sized from the data, at most the smaller\n"
    "                      of 1 GiB and a quarter of the server's memory)\n"
    "\n"
    "On a terminal a progress line names the phase (loading: documents/s,\n"
    "ETA; building index N%; analysing) on stderr.  When the HNSW graph did\n"
    "not fit in the build's memory, a note on stderr says so.\n"
    "--json prints {\"inserted\",\"updated\",\"unchanged\",\"failed\",\"duplicates\",\n"
    "\"chunks_written\",\"errors\":[{\"id\",\"line\",\"error\"}],\"seconds\",\n"
    "\"index\":{\"built\",\"vectors\",\"memory_mb\",\"workers\",\"workers_launched\",\n"
    "\"seconds\",\"graph_fit\",\"notice\",\"note\"}}.\n"
    "Exit status 0 when every document landed, 3 when some failed, 2 when\n"
    "nothing could be written.\n";

typedef render_item_error line_error;

#define SLOTS 3 /* batch buffers: filling, queued, writing */

typedef struct slot {
  es_doc_json **parsed;
  es_doc *docs;
  size_t *lines;
  size_t n;
} slot;

typedef struct ingest {
  cli *c;
  es_store *store;
  es_batch *batch;
  es_batch_options opts;
  const char *source, *workspace;
  size_t batch_size;
  long max_line;
  const char *path;
  lines in;
  /* the hand-over between the reader thread and the writer (main) */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  slot slots[SLOTS];
  int free_slots[SLOTS], n_free; /* empty buffers for the reader */
  int queue[SLOTS], q_head, q_len; /* filled buffers for the writer */
  bool reader_done;
  int read_error; /* errno of a failed read */
  /* parse failures (reader) and not-written documents (writer) */
  line_error *errors;
  size_t n_errors, cap_errors;
  /* progress */
  bool tty;
  double t0, last_draw;
  int last_phase; /* the phase the progress line shows, -1 before any */
  off_t file_size;
  size_t bytes_read, lines_read; /* written by the reader, atomically */
  es_status fatal; /* set when writing became impossible */
  char fatal_msg[1024];
} ingest;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Records a failure; called by both threads, so under the lock. */
static void add_error(ingest *g, const char *id, long line, const char *msg) {
  pthread_mutex_lock(&g->mu);
  if (g->n_errors == g->cap_errors) {
    size_t cap = g->cap_errors ? g->cap_errors * 2 : 16;
    line_error *e = realloc(g->errors, cap * sizeof *e);
    if (e == NULL) {
      pthread_mutex_unlock(&g->mu);
      return;
    }
    g->errors = e;
    g->cap_errors = cap;
  }
  line_error *e = &g->errors[g->n_errors++];
  e->id = id ? strdup(id) : NULL;
  e->line = line;
  e->error = strdup(msg);
  pthread_mutex_unlock(&g->mu);
}

/* Draws the progress line, padded to clear the one before. */
static void put_progress(const char *line) {
  fprintf(stderr, "\r  %-70s", line);
}

/* The loading phase's line: documents done, rate, and an ETA when the
 * size of the input is known. */
static void draw_loading(ingest *g, size_t processed, double now) {
  char line[160];
  double secs = now - g->t0, rate = secs > 0 ? (double)processed / secs : 0;
  size_t bytes = __atomic_load_n(&g->bytes_read, __ATOMIC_RELAXED);
  size_t nlines = __atomic_load_n(&g->lines_read, __ATOMIC_RELAXED);
  if (g->file_size > 0 && bytes > 0 && nlines > 0) {
    double est = (double)g->file_size * (double)nlines / (double)bytes;
    double left = est > (double)processed && rate > 0 ? (est - (double)processed) / rate : 0;
    double pct = est > 0 ? 100.0 * (double)processed / est : 0;
    snprintf(line, sizeof line, "loading: %zu docs (%.0f%%)  %.0f docs/s  ETA %.0f s",
             processed, pct > 100 ? 100 : pct, rate, left);
  } else {
    snprintf(line, sizeof line, "loading: %zu docs  %.0f docs/s", processed, rate);
  }
  put_progress(line);
}

/* The progress line on a terminal, for every phase of the session: at
 * most five times a second, and at once when the phase changes or ends. */
static void on_phase(const es_phase_info *p, void *user) {
  ingest *g = user;
  double now = now_s();
  bool change = (int)p->phase != g->last_phase || p->fraction >= 1;
  if (!g->tty || (!change && now - g->last_draw < 0.2))
    return;
  g->last_draw = now;
  g->last_phase = (int)p->phase;
  char line[160];
  switch (p->phase) {
  case ES_PHASE_LOADING:
    draw_loading(g, p->done, now);
    return;
  case ES_PHASE_INDEXING:
    snprintf(line, sizeof line, "building index %.0f%%  (%d MB, %d worker%s)  %.0f s",
             100.0 * (p->fraction > 0 ? p->fraction : 0),
             p->index ? p->index->memory_mb : 0, p->index ? p->index->workers : 0,
             p->index && p->index->workers == 1 ? "" : "s", now - g->t0);
    break;
  case ES_PHASE_ANALYSING:
    snprintf(line, sizeof line, "analysing  %.0f s", now - g->t0);
    break;
  default:
    return;
  }
  put_progress(line);
}

/* Frees the documents of a batch buffer. */
static void clear_slot(slot *sl) {
  for (size_t i = 0; i < sl->n; i++)
    es_doc_json_free(sl->parsed[i]);
  sl->n = 0;
}

/* Writes one batch buffer (main thread). */
static void write_slot(ingest *g, slot *sl) {
  if (sl->n == 0)
    return;
  if (g->fatal == ES_OK && g->batch == NULL) {
    /* Started on the first batch, when the size of the input is known. */
    size_t bytes = __atomic_load_n(&g->bytes_read, __ATOMIC_RELAXED);
    size_t nlines = __atomic_load_n(&g->lines_read, __ATOMIC_RELAXED);
    if (g->file_size > 0 && bytes > 0)
      g->opts.total = (size_t)((double)g->file_size * (double)nlines / (double)bytes);
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
    for (size_t i = 0; i < sl->n; i++)
      add_error(g, sl->docs[i].id, (long)sl->lines[i], msg);
    return;
  }
  es_status rc = es_batch_add(g->batch, sl->docs, sl->n, sl->lines);
  if (rc != ES_OK && rc != ES_EPARTIAL) {
    g->fatal = rc;
    snprintf(g->fatal_msg, sizeof g->fatal_msg, "%s", es_errmsg(g->store));
  }
}

/* Reader: takes an empty buffer, waiting for the writer if needed. */
static slot *take_free(ingest *g) {
  pthread_mutex_lock(&g->mu);
  while (g->n_free == 0)
    pthread_cond_wait(&g->cv, &g->mu);
  slot *sl = &g->slots[g->free_slots[--g->n_free]];
  pthread_mutex_unlock(&g->mu);
  return sl;
}

/* Reader: queues a filled buffer for the writer. */
static void queue_filled(ingest *g, slot *sl) {
  pthread_mutex_lock(&g->mu);
  g->queue[(g->q_head + g->q_len++) % SLOTS] = (int)(sl - g->slots);
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

/* Parses one line into sl (or records why not). */
static void take_line(ingest *g, slot *sl, const char *line, size_t len,
                      long lineno) {
  char msg[1024];
  es_doc_json *d = NULL;
  if (es_doc_json_parse(line, len, &d, msg, sizeof msg) != ES_OK) {
    char id[ES_MAX_ID_BYTES + 1];
    bool known = es_doc_json_find_id(line, len, id, sizeof id) > 0;
    add_error(g, known ? id : NULL, lineno, msg);
    return;
  }
  if (es_doc_json_set_defaults(d, g->source, g->workspace) != ES_OK) {
    add_error(g, es_doc_json_doc(d)->id, lineno, "out of memory");
    es_doc_json_free(d);
    return;
  }
  sl->parsed[sl->n] = d;
  sl->docs[sl->n] = *es_doc_json_doc(d);
  sl->lines[sl->n] = (size_t)lineno;
  sl->n++;
}

/* The reader thread: lines to parsed batches. */
static void *reader(void *arg) {
  ingest *g = arg;
  slot *sl = take_free(g);
  for (;;) {
    lines_status ls = lines_next(&g->in);
    if (ls == LINES_EOF)
      break;
    if (ls == LINES_ERROR) {
      g->read_error = g->in.error ? g->in.error : EIO;
      break;
    }
    __atomic_add_fetch(&g->bytes_read, g->in.len + 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&g->lines_read, 1, __ATOMIC_RELAXED);
    if (ls == LINES_TOO_LONG) {
      char msg[200];
      snprintf(msg, sizeof msg, "line is %zu bytes long; the limit is %ld "
               "(--max-line-bytes)", g->in.len, g->max_line);
      add_error(g, NULL, g->in.lineno, msg);
      continue;
    }
    const char *text = g->in.buf;
    size_t len = g->in.len;
    if (g->in.lineno == 1 && len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
      text += 3; /* a UTF-8 byte-order mark is not part of the document */
      len -= 3;
    }
    if (strspn(text, " \t\r") == len)
      continue; /* a blank line is not a document */
    take_line(g, sl, text, len, g->in.lineno);
    if (sl->n == g->batch_size) {
      queue_filled(g, sl);
      sl = take_free(g);
    }
  }
  queue_filled(g, sl); /* the last, maybe partial, maybe empty */
  pthread_mutex_lock(&g->mu);
  g->reader_done = true;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
  return NULL;
}

/* The writer (main thread): batches to the database, until the reader is
 * done and the queue empty. */
static void write_all(ingest *g) {
  for (;;) {
    pthread_mutex_lock(&g->mu);
    while (g->q_len == 0 && !g->reader_done)
      pthread_cond_wait(&g->cv, &g->mu);
    if (g->q_len == 0) {
      pthread_mutex_unlock(&g->mu);
      return;
    }
    int idx = g->queue[g->q_head];
    g->q_head = (g->q_head + 1) % SLOTS;
    g->q_len--;
    pthread_mutex_unlock(&g->mu);

    write_slot(g, &g->slots[idx]);
    clear_slot(&g->slots[idx]);
    pthread_mutex_lock(&g->mu);
    g->free_slots[g->n_free++] = idx;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
  }
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
  if (g->n_errors > 1)
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
    render_ingest(&w, r, g->errors, g->n_errors, seconds);
    jw_done(&w);
    return;
  }
  for (size_t i = 0; i < g->n_errors; i++) {
    fprintf(stderr, "line %ld", g->errors[i].line);
    if (g->errors[i].id) {
      fputs(" (id \"", stderr);
      cli_put_printable(stderr, g->errors[i].id);
      fputs("\")", stderr);
    }
    fputs(": ", stderr);
    cli_put_message(stderr, g->errors[i].error);
    fputc('\n', stderr);
  }
  printf("%zu inserted, %zu updated, %zu unchanged, %zu failed, %zu duplicates "
         "folded, %zu chunks written in %.2f s\n",
         inserted, updated, unchanged, failed, dups, chunks, seconds);
}

/* Allocates the batch buffers and opens the line reader; false when out
 * of memory. */
static bool alloc_slots(ingest *g, FILE *in) {
  if (lines_open(&g->in, in, (size_t)g->max_line) != 0)
    return false;
  for (int i = 0; i < SLOTS; i++) {
    slot *sl = &g->slots[i];
    sl->parsed = calloc(g->batch_size, sizeof *sl->parsed);
    sl->docs = calloc(g->batch_size, sizeof *sl->docs);
    sl->lines = calloc(g->batch_size, sizeof *sl->lines);
    g->free_slots[g->n_free++] = i;
    if (!sl->parsed || !sl->docs || !sl->lines)
      return false;
  }
  return true;
}

/* Ends the batch session and reports: the summary (or --json object) on
 * stdout, then notes and warnings on stderr.  Returns the exit status. */
static int finish(ingest *g) {
  cli *c = g->c;
  int exit_code = EXIT_OK;
  es_batch_result *r = NULL;
  char note[1200] = "";
  if (es_batch_note(g->batch))
    snprintf(note, sizeof note, "%s", es_batch_note(g->batch));
  es_status end = es_batch_end(g->batch, &r);
  g->batch = NULL;
  if (g->tty)
    fprintf(stderr, "\r%60s\r", "");
  merge_errors(g, r);
  print_summary(g, r, now_s() - g->t0);
  size_t landed = r ? r->inserted + r->updated + r->unchanged + r->duplicates : 0;
  es_index_build ix = {0};
  if (r)
    ix = r->index;
  es_batch_result_free(r);
  /* The summary (and --json object) is printed: further news goes to
   * stderr only. */
  if (g->n_errors > 0)
    exit_code = landed > 0 ? EXIT_PARTIAL : EXIT_FAIL;
  if (note[0])
    cli_warn(c, "note: %s", note);
  cli_note_index(c, &ix);
  if (g->fatal != ES_OK)
    cli_warn(c, "stopped writing: %s", g->fatal_msg);
  if (end != ES_OK) {
    cli_warn(c, "%s", es_errmsg(g->store));
    if (exit_code == EXIT_OK)
      exit_code = EXIT_PARTIAL;
  }
  return exit_code;
}

/* Loads the input: a reader thread parses lines into batches while this
 * thread writes them.  Returns the exit status. */
static int load(ingest *g, FILE *in) {
  pthread_t thread;
  g->store = cli_open(g->c);
  if (g->store == NULL)
    return EXIT_FAIL;
  if (!alloc_slots(g, in) || pthread_create(&thread, NULL, reader, g) != 0)
    return cli_fail(g->c, EXIT_FAIL, ES_ENOMEM, "out of memory");
  write_all(g);
  pthread_join(thread, NULL);
  if (g->read_error)
    return cli_fail(g->c, EXIT_FAIL, ES_EIO, "reading %s: %s", g->path,
                    strerror(g->read_error));
  return finish(g);
}

/* Frees what a load left: the session (if still open), the buffers, the
 * errors, the store. */
static void teardown(ingest *g) {
  es_batch_end(g->batch, NULL);
  for (int i = 0; i < SLOTS; i++) {
    clear_slot(&g->slots[i]);
    free(g->slots[i].parsed);
    free(g->slots[i].docs);
    free(g->slots[i].lines);
  }
  lines_close(&g->in);
  for (size_t i = 0; i < g->n_errors; i++) {
    free(g->errors[i].id);
    free(g->errors[i].error);
  }
  free(g->errors);
  es_close(g->store);
  pthread_cond_destroy(&g->cv);
  pthread_mutex_destroy(&g->mu);
}

/* `embstore ingest`: options, then the load. */
static int run(cli *c, int argc, char **argv) {
  static const struct option lo[] = {
      {"source", required_argument, NULL, 's'},
      {"workspace", required_argument, NULL, 'w'},
      {"max-line-bytes", required_argument, NULL, 'm'},
      {"batch-size", required_argument, NULL, 'b'},
      {"defer-index", required_argument, NULL, 'd'},
      {"index-memory", required_argument, NULL, 'i'},
      CLI_COMMON_LONGOPTS,
      {0, 0, 0, 0}};
  ingest g = {.c = c, .max_line = DEFAULT_MAX_LINE};
  long batch = 1000;
  int code, opt;
  es_batch_options_init(&g.opts);
  optind = 0;
  while ((opt = cli_next_opt(c, &cli_cmd_ingest, argc, argv, "", lo, &code)) != -1) {
    switch (opt) {
    case CLI_STOP:
      return code;
    case 's':
    case 'w': {
      const char *name = opt == 's' ? "--source" : "--workspace";
      size_t len = strlen(optarg);
      if (opt == 's' && (len == 0 || len > ES_MAX_ID_BYTES))
        return cli_usage(c, "--source must be 1..%d bytes", ES_MAX_ID_BYTES);
      if (es__utf8_invalid_at(optarg, len) >= 0)
        return cli_usage(c, "%s is not valid UTF-8", name);
      *(opt == 's' ? &g.source : &g.workspace) = optarg;
      break;
    }
    case 'm':
      if (!cli_parse_int(optarg, 64, 1L << 30, &g.max_line))
        return cli_usage(c, "--max-line-bytes must be 64..1073741824, not '%s'",
                         optarg);
      break;
    case 'b':
      if (!cli_parse_int(optarg, 1, 100000, &batch))
        return cli_usage(c, "--batch-size must be 1..100000, not '%s'", optarg);
      break;
    case 'i':
      if (!cli_parse_index_memory(c, optarg))
        return cli_usage(c, "--index-memory must be 1..2097151 (MB), not '%s'",
                         optarg);
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
  g.path = argv[optind];
  FILE *in = strcmp(g.path, "-") == 0 ? stdin : fopen(g.path, "r");
  if (in == NULL)
    return cli_fail(c, EXIT_FAIL, ES_EIO, "cannot open %s: %s", g.path,
                    strerror(errno));
  struct stat st;
  if (fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode))
    g.file_size = st.st_size;
  g.batch_size = (size_t)batch;
  g.opts.batch_size = (size_t)batch;
  g.opts.phase = on_phase;
  g.opts.user = &g;
  g.tty = isatty(2) && !c->json;
  g.last_phase = -1;
  g.t0 = now_s();
  pthread_mutex_init(&g.mu, NULL);
  pthread_cond_init(&g.cv, NULL);
  int exit_code = load(&g, in);
  teardown(&g);
  if (in != stdin)
    fclose(in);
  return exit_code;
}

const cli_command cli_cmd_ingest = {"ingest", run,
                                    "load documents from JSON Lines", usage};
