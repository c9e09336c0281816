/* test_integrity.c - what the store says is what it holds: every input
 * line accounted for, indexes restored after a killed load, counters exact
 * under any writer (or the drift found and repaired), content hashes that
 * plain SQL cannot make stale. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "test.h"

/* ---- helpers ------------------------------------------------------------ */

/* JSON Lines of n documents d<from>..d<from+n-1> of dimension 2. */
static char *lines(int from, int n) {
  size_t cap = (size_t)n * 80 + 1, len = 0;
  char *s = malloc(cap);
  for (int i = from; i < from + n; i++)
    len += (size_t)snprintf(s + len, cap - len,
                            "{\"id\":\"d%d\",\"text\":\"t\",\"embedding\":[1,%d]}\n",
                            i, i + 1); /* distinct directions: HNSW inserts stay fast */
  return s;
}

static json_t *parse_json(const char *out) {
  json_error_t e;
  json_t *j = json_loads(out, 0, &e);
  if (j == NULL)
    FAIL("not JSON (%s): %s", e.text, out);
  return j;
}

static long long jint(json_t *j, const char *key) {
  return json_integer_value(json_object_get(j, key));
}

/* inserted + updated + unchanged + failed + duplicates of an ingest. */
static long long accounted(json_t *j) {
  return jint(j, "inserted") + jint(j, "updated") + jint(j, "unchanged") +
         jint(j, "failed") + jint(j, "duplicates");
}

/* The server closes every connection embstore has to this test's database
 * (a restart, a failover, an idle timeout): the next operations must get
 * fresh ones.  Other tests' databases are left alone. */
static void drop_our_connections(void) {
  th_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
          "application_name = 'embstore' AND pid <> pg_backend_pid() "
          "AND datname = current_database()");
  th_wait_for("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
              "'embstore' AND pid <> pg_backend_pid() AND datname = "
              "current_database()", 0);
}

/* ---- item 2: accounting ----------------------------------------------------- */

TEST(ingest_lands_every_line_when_the_hnsw_index_cannot_be_dropped) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  es_close(s);
  /* A reader idle in its transaction: DROP INDEX cannot get its lock. */
  PGconn *reader = th_connect(th_conninfo());
  th_pg_exec(reader, "BEGIN");
  th_pg_exec(reader, "SELECT count(*) FROM embeddings");
  char *in = lines(0, 5);
  const char *always[] = {"--db", th_conninfo(), "--json", "ingest", "-",
                          "--defer-index", "always", NULL};
  th_proc p = th_cli(in, always);
  json_t *j = parse_json(p.out);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_INT_EQ(jint(j, "inserted"), 5);
  ASSERT_INT_EQ(accounted(j), 5);
  ASSERT_CONTAINS(p.err, "HNSW index was kept");
  json_decref(j);
  th_proc_free(&p);
  free(in);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 5);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_indexes WHERE indexname = "
                       "'embeddings_embedding_hnsw_idx'"), 1);

  /* auto with 10,000 lines of a file (so that the load's size is known and
   * the index worth deferring): the first batch is counted like the others. */
  in = lines(100, 10000);
  char path[700];
  snprintf(path, sizeof path, "%s/load.jsonl", th_tmpdir());
  FILE *f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  ASSERT_INT_GE(fputs(in, f), 0);
  ASSERT_INT_EQ(fclose(f), 0);
  const char *autom[] = {"--db", th_conninfo(), "--json", "ingest", path, NULL};
  p = th_cli(NULL, autom);
  j = parse_json(p.out);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_INT_EQ(accounted(j), 10000);
  ASSERT_INT_EQ(jint(j, "inserted"), 10000);
  json_decref(j);
  th_proc_free(&p);
  free(in);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 10005);
  th_pg_exec(reader, "ROLLBACK");
  PQfinish(reader);
}

TEST(batch_lands_its_first_batch_when_the_session_lost_its_connection) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  es_batch_options o;
  es_batch_options_init(&o);
  o.defer_index = ES_DEFER_ALWAYS;
  es_batch *b = NULL;
  ASSERT_OK(s, es_batch_begin(s, &o, &b));
  drop_our_connections(); /* a restart, a failover */
  float v[5][2] = {{1, 0}, {0, 1}, {1, 1}, {1, 2}, {2, 1}};
  es_doc d[5];
  char ids[5][8];
  for (int i = 0; i < 5; i++) {
    snprintf(ids[i], sizeof ids[i], "x%d", i);
    d[i] = (es_doc){.id = ids[i], .embedding = v[i], .dim = 2};
  }
  ASSERT_OK(s, es_batch_add(b, d, 5, NULL));
  const es_batch_result *t = es_batch_totals(b);
  ASSERT_INT_EQ(t->inserted + t->updated + t->unchanged + t->failed + t->duplicates, 5);
  ASSERT_INT_EQ(t->inserted, 5);
  ASSERT_OK(s, es_batch_end(b, NULL));
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 5);
  es_close(s);
}

/* ---- item 4: a killed deferred load ---------------------------------------- */

/* Starts `embstore ingest --defer-index always -` with a pipe on its
 * standard input; *in receives the pipe's write end. */
static pid_t start_ingest(int *in) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0)
    FAIL("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[0], 0);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execl(th_cli_path(), th_cli_path(), "--db", th_conninfo(), "ingest", "-",
          "--defer-index", "always", (char *)NULL);
    _exit(127);
  }
  close(p[0]);
  *in = p[1];
  return pid;
}

/* The health reasons of stats, joined. */
static char *reasons(es_store *s, es_health *health) {
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  size_t cap = 4096, len = 0;
  char *out = calloc(1, cap);
  for (size_t i = 0; i < st->n_health_reasons; i++)
    len += (size_t)snprintf(out + len, cap - len, "%s\n", st->health_reasons[i]);
  *health = st->index_health;
  es_stats_free(st);
  return out;
}

static const char hnsw_exists[] =
    "SELECT count(*) FROM pg_indexes WHERE indexname = 'embeddings_embedding_hnsw_idx'";

TEST(a_killed_deferred_load_leaves_an_index_that_the_next_ingest_or_migrate_builds) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  int in;
  pid_t pid = start_ingest(&in);
  /* More than the reader's first 256 KiB block: batches land, the rest
   * waits for input that never comes. */
  char *first = lines(0, 8000);
  ASSERT_INT_EQ(write(in, first, strlen(first)), strlen(first));
  free(first);
  th_wait_for("SELECT (count(*) >= 1000)::int FROM embeddings", 1);
  ASSERT_INT_EQ(th_int(hnsw_exists), 0);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  close(in);
  /* Its server session ends when it notices the client is gone. */
  th_wait_for("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
           "objid = 4253893520", 0);

  /* stats names a command that fixes it, and that command does. */
  es_health h;
  char *why = reasons(s, &h);
  ASSERT_INT_EQ(h, ES_HEALTH_CRITICAL);
  ASSERT_CONTAINS(why, "embeddings_embedding_hnsw_idx");
  ASSERT_CONTAINS(why, "run `embstore migrate`");
  ASSERT_CONTAINS(why, "text search index embeddings_text_idx is missing");
  free(why);
  const char *migrate[] = {"--db", th_conninfo(), "--json", "migrate", NULL};
  th_proc p = th_cli(NULL, migrate);
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_CONTAINS(p.out, "\"indexes_created\":2"); /* HNSW and text, both deferred */
  th_proc_free(&p);
  ASSERT_INT_EQ(th_int(hnsw_exists), 1);
  why = reasons(s, &h);
  ASSERT_NOT_CONTAINS(why, "missing");
  free(why);

  /* The same state again: an ordinary ingest (nothing deferred) builds it. */
  th_exec("DROP INDEX embeddings_embedding_hnsw_idx");
  char *more = lines(5000, 3);
  const char *ingest[] = {"--db", th_conninfo(), "ingest", "-", NULL};
  p = th_cli(more, ingest);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  ASSERT_INT_EQ(th_int(hnsw_exists), 1);

  /* A load still running with its index deferred is left to build it. */
  th_exec("DROP INDEX embeddings_embedding_hnsw_idx");
  PGconn *loader = th_connect(th_conninfo());
  th_pg_exec(loader, "SELECT pg_advisory_lock_shared(7013640520592)");
  why = reasons(s, &h);
  ASSERT_INT_EQ(h, ES_HEALTH_DEGRADED);
  ASSERT_CONTAINS(why, "being rebuilt by a load in progress");
  free(why);
  p = th_cli(more, ingest);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  ASSERT_INT_EQ(th_int(hnsw_exists), 0);
  PQfinish(loader); /* the load died: now it is missing for real */
  why = reasons(s, &h);
  ASSERT_INT_EQ(h, ES_HEALTH_CRITICAL);
  free(why);
  p = th_cli(more, ingest);
  ASSERT_INT_EQ(p.status, 0);
  th_proc_free(&p);
  ASSERT_INT_EQ(th_int(hnsw_exists), 1);
  free(more);
  es_close(s);
}

/* ---- item 6: counters under every writer ------------------------------------ */

/* Every counter agrees with COUNT(*) (the exact check says so). */
static void assert_counts_exact(es_store *s) {
  es_count_check *k = NULL;
  ASSERT_OK(s, es_check_counts(s, 0, &k));
  for (size_t i = 0; i < k->n_drift; i++)
    fprintf(stderr, "drift: source %s: chunks %lld counted, %lld actual\n",
            k->drift[i].source_id ? k->drift[i].source_id : "(none)",
            (long long)k->drift[i].chunks_counted,
            (long long)k->drift[i].chunks_actual);
  ASSERT_INT_EQ(k->n_drift, 0);
  ASSERT_INT_EQ(k->orphaned_counted, k->orphaned_chunks);
  es_count_check_free(k);
}

/* Finishes an asynchronous statement sent with PQsendQuery. */
static void finish(PGconn *pg) {
  PGresult *r;
  while ((r = PQgetResult(pg)) != NULL) {
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
      FAIL("async statement: %s", PQresultErrorMessage(r));
    PQclear(r);
  }
}

/* Whether pid waits on a lock, or has nothing left to run. */
static void wait_blocked_or_done(PGconn *pg, int pid) {
  char sql[200];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE pid = %d "
           "AND (wait_event_type = 'Lock' OR state <> 'active')", pid);
  th_wait_for(sql, 1);
  (void)pg;
}

TEST(counts_stay_exact_when_a_chunk_is_written_while_its_document_moves) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  th_exec("INSERT INTO embeddings (id, source_id, embedding) VALUES "
          "('D', 'S1', '[1,0]'), ('E', 'S1', '[0,1]')");
  th_exec("INSERT INTO chunks (id, document_id) VALUES ('D#0', 'D'), ('D#1', 'D'), "
          "('E#0', 'E')");
  PGconn *a = th_connect(th_conninfo()), *b = th_connect(th_conninfo());
  /* The chunk's writer first, the mover waits for it. */
  th_pg_exec(a, "BEGIN");
  th_pg_exec(a, "INSERT INTO chunks (id, document_id) VALUES ('D#2', 'D')");
  th_pg_exec(b, "BEGIN");
  ASSERT(PQsendQuery(b, "UPDATE embeddings SET source_id = 'S2' WHERE id = 'D'"));
  wait_blocked_or_done(b, PQbackendPID(b));
  th_pg_exec(a, "COMMIT");
  finish(b);
  th_pg_exec(b, "COMMIT");
  assert_counts_exact(s);
  /* The mover first, the chunk's writer waits for it. */
  th_pg_exec(b, "BEGIN");
  th_pg_exec(b, "UPDATE embeddings SET source_id = 'S3' WHERE id = 'E'");
  th_pg_exec(a, "BEGIN");
  ASSERT(PQsendQuery(a, "INSERT INTO chunks (id, document_id) VALUES ('E#1', 'E')"));
  wait_blocked_or_done(a, PQbackendPID(a));
  th_pg_exec(b, "COMMIT");
  finish(a);
  th_pg_exec(a, "COMMIT");
  /* And a chunk deleted while its document moves. */
  th_pg_exec(a, "BEGIN");
  th_pg_exec(a, "DELETE FROM chunks WHERE id = 'D#0'");
  th_pg_exec(b, "BEGIN");
  ASSERT(PQsendQuery(b, "UPDATE embeddings SET source_id = 'S4' WHERE id = 'D'"));
  wait_blocked_or_done(b, PQbackendPID(b));
  th_pg_exec(a, "COMMIT");
  finish(b);
  th_pg_exec(b, "COMMIT");
  assert_counts_exact(s);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->chunks, 4);
  for (size_t i = 0; i < st->sources_total; i++) {
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM chunks c JOIN embeddings e ON "
             "e.id = c.document_id WHERE e.source_id = '%s'", st->sources[i].source_id);
    ASSERT_INT_EQ(st->sources[i].chunks, th_int(sql));
  }
  es_stats_free(st);
  PQfinish(a);
  PQfinish(b);
  es_close(s);
}

typedef struct upsert_job {
  es_store *s;
  const es_doc *d;
  size_t n;
  es_status rc;
  es_batch_result *r;
} upsert_job;

static void *upsert_thread(void *arg) {
  upsert_job *j = arg;
  j->rc = es_batch_upsert(j->s, j->d, j->n, NULL, &j->r);
  return NULL;
}

TEST(a_document_another_writer_stores_as_it_is_here_meanwhile_is_unchanged_not_updated) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  float vx[2] = {1, 0}, vy[2] = {0, 1};
  es_chunk ch[1] = {{.id = "X#0", .text = "x chunk", .embedding = vx, .dim = 2}};
  es_doc d[2] = {{.id = "X", .text = "ex", .embedding = vx, .dim = 2,
                  .source_id = "S", .has_chunks = 1, .chunks = ch, .n_chunks = 1},
                 {.id = "Y", .text = "why", .embedding = vy, .dim = 2, .source_id = "S"}};
  es_batch_result *r = th_batch_upsert(s, d, 2, 10, ES_OK);
  ASSERT_INT_EQ(r->inserted, 2);
  es_batch_result_free(r);
  /* Another writer is storing X just as this batch has it, and has not
   * committed when the batch looks for the stored documents. */
  th_exec("CREATE TABLE x_doc AS SELECT * FROM embeddings WHERE id = 'X'");
  th_exec("CREATE TABLE x_chunks AS SELECT * FROM chunks WHERE document_id = 'X'");
  th_exec("DELETE FROM embeddings WHERE id = 'X'");
  PGconn *w = th_connect(th_conninfo());
  th_pg_exec(w, "BEGIN");
  th_pg_exec(w, "SET LOCAL embstore.writer = on"); /* as embstore writes */
  th_pg_exec(w, "INSERT INTO embeddings SELECT * FROM x_doc");
  th_pg_exec(w, "INSERT INTO chunks SELECT * FROM x_chunks");
  /* The batch: X as it is, Y changed (a stored document: the merge path). */
  d[1].text = "why not";
  upsert_job j = {s, d, 2, ES_OK, NULL};
  pthread_t t;
  ASSERT_INT_EQ(pthread_create(&t, NULL, upsert_thread, &j), 0);
  th_wait_for("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
              "'Lock' AND query LIKE 'WITH up AS (INSERT INTO embeddings%'", 1);
  th_pg_exec(w, "COMMIT");
  pthread_join(t, NULL);
  ASSERT_INT_EQ(j.rc, ES_OK);
  ASSERT_INT_EQ(j.r->inserted, 0);
  ASSERT_INT_EQ(j.r->updated, 1);   /* Y */
  ASSERT_INT_EQ(j.r->unchanged, 1); /* X: stored meanwhile, just so */
  ASSERT_INT_EQ(j.r->failed, 0);
  ASSERT_INT_EQ(j.r->chunks_written, 0); /* nor X's chunk rewritten */
  es_batch_result_free(j.r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks WHERE document_id = 'X'"), 1);
  /* and the stored hashes are right: the next run changes nothing */
  r = th_batch_upsert(s, d, 2, 10, ES_OK);
  ASSERT_INT_EQ(r->unchanged, 2);
  es_batch_result_free(r);
  PQfinish(w);
  es_close(s);
}

TEST(writes_under_replica_role_are_counted_and_their_orphans_found_and_cleaned) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  th_exec("INSERT INTO embeddings (id, source_id, embedding) VALUES "
          "('a', 's', '[1,0]'), ('b', 's', '[0,1]')");
  th_exec("INSERT INTO chunks (id, document_id) VALUES ('a#0', 'a'), ('b#0', 'b'), "
          "('b#1', 'b')");
  /* pg_restore --disable-triggers and logical replication apply run like
   * this: ordinary triggers and the foreign key's checks do not fire. */
  PGconn *r = th_connect(th_conninfo());
  th_pg_exec(r, "SET session_replication_role = replica");
  th_pg_exec(r, "INSERT INTO embeddings (id, source_id, embedding) VALUES ('c', 's', '[1,1]')");
  th_pg_exec(r, "DELETE FROM embeddings WHERE id = 'b'");  /* its chunks stay */
  th_pg_exec(r, "INSERT INTO chunks (id, document_id) VALUES ('z#0', 'nobody')");
  PQfinish(r);
  es_stats *st = NULL;
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->documents, th_int("SELECT count(*) FROM embeddings"));
  ASSERT_INT_EQ(st->chunks, 1);
  ASSERT_INT_EQ(st->orphaned_chunks, 3);
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_DEGRADED);
  bool said = false;
  for (size_t i = 0; i < st->n_health_reasons; i++)
    said = said || strstr(st->health_reasons[i], "a writer bypassed it") != NULL;
  ASSERT(said);
  es_stats_free(st);
  assert_counts_exact(s);
  /* cleanup does not trust the valid key: the orphans go. */
  es_cleanup_result *c = NULL;
  ASSERT_OK(s, es_cleanup_orphaned(s, NULL, &c));
  ASSERT_INT_EQ(c->orphaned_chunks, 3);
  ASSERT_INT_EQ(c->cleaned, 3);
  es_cleanup_result_free(c);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM chunks"), 1);
  th_exec("ANALYZE embeddings, chunks"); /* only a fact of its own in stats */
  ASSERT_OK(s, es_stats_get(s, NULL, &st));
  ASSERT_INT_EQ(st->orphaned_chunks, 0);
  ASSERT_INT_EQ(st->index_health, ES_HEALTH_HEALTHY);
  es_stats_free(st);
  assert_counts_exact(s);
  es_close(s);
}

TEST(stats_detect_bypassed_triggers_and_verify_and_repair_recount) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  /* A disabled trigger is seen at once, and migrate restores and recounts. */
  th_exec("ALTER TABLE embeddings DISABLE TRIGGER embstore_counts_docs_ins");
  th_exec("INSERT INTO embeddings (id, embedding) VALUES ('x', '[1,0]'), ('y', '[0,1]')");
  es_health h;
  char *why = reasons(s, &h);
  ASSERT_INT_EQ(h, ES_HEALTH_CRITICAL);
  ASSERT_CONTAINS(why, "1 of the 10 triggers that keep the counts exact");
  free(why);
  es_init_report *r = NULL;
  ASSERT_OK(s, es_migrate_report(s, &r));
  ASSERT_INT_EQ(r->counters_rebuilt, 1);
  th_exec("ANALYZE embeddings, chunks");
  why = reasons(s, &h);
  ASSERT_STR_EQ(why, "");
  free(why);
  assert_counts_exact(s);

  /* Rows that bypassed enabled triggers: stats sees the counters stray
   * from PostgreSQL's estimate, --verify finds the drift, --repair fixes. */
  PGconn *w = th_connect(th_conninfo());
  th_pg_exec(w, "ALTER TABLE embeddings DISABLE TRIGGER USER");
  /* without vectors: HNSW inserts would make this the slowest test */
  th_pg_exec(w, "INSERT INTO embeddings (id, source_id) SELECT 'g' || i, "
            "'bulk' FROM generate_series(1, 21000) i");
  /* re-enabled as they were, as a restore would leave them */
  static const char *const names[] = {
      "embstore_counts_docs_ins", "embstore_counts_docs_del", "embstore_counts_docs_upd",
      "embstore_counts_doc_chunks", "embstore_counts_truncate",
      "embstore_content_hash_stale"};
  for (size_t i = 0; i < 6; i++) {
    char sql[200];
    snprintf(sql, sizeof sql, "ALTER TABLE embeddings ENABLE ALWAYS TRIGGER %s", names[i]);
    th_pg_exec(w, sql);
  }
  PQfinish(w); /* its statistics reach pg_stat when it ends */
  th_wait_for("SELECT (n_live_tup >= 21002)::int FROM pg_stat_user_tables WHERE relname = "
           "'embeddings'", 1);
  why = reasons(s, &h);
  ASSERT_INT_EQ(h, ES_HEALTH_DEGRADED);
  ASSERT_CONTAINS(why, "run `embstore stats --verify`");
  free(why);
  const char *verify[] = {"--db", th_conninfo(), "--json", "stats", "--verify", NULL};
  th_proc p = th_cli(NULL, verify);
  ASSERT_INT_EQ(p.status, 0);
  json_t *j = parse_json(p.out);
  json_t *k = json_object_get(j, "counts_check");
  ASSERT_INT_EQ(json_array_size(json_object_get(k, "drift")), 1);
  json_t *d = json_array_get(json_object_get(k, "drift"), 0);
  ASSERT_STR_EQ(json_string_value(json_object_get(d, "source_id")), "bulk");
  ASSERT_INT_EQ(jint(d, "documents_counted"), 0);
  ASSERT_INT_EQ(jint(d, "documents_actual"), 21000);
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "index_health")), "critical");
  ASSERT_CONTAINS(p.out, "run `embstore stats --repair`");
  json_decref(j);
  th_proc_free(&p);
  th_exec("ANALYZE embeddings, chunks");
  const char *repair[] = {"--db", th_conninfo(), "--json", "stats", "--repair", NULL};
  p = th_cli(NULL, repair);
  ASSERT_INT_EQ(p.status, 0);
  j = parse_json(p.out);
  ASSERT(json_is_true(json_object_get(json_object_get(j, "counts_check"), "repaired")));
  ASSERT_INT_EQ(jint(j, "documents"), 21002);
  ASSERT_INT_EQ(jint(j, "without_vector"), 21000);
  /* only the documents without a vector are left to say */
  ASSERT_STR_EQ(json_string_value(json_object_get(j, "index_health")), "degraded");
  ASSERT_INT_EQ(json_array_size(json_object_get(j, "health_reasons")), 1);
  ASSERT_CONTAINS(json_string_value(json_array_get(json_object_get(j, "health_reasons"), 0)),
                  "have no vector");
  json_decref(j);
  th_proc_free(&p);
  assert_counts_exact(s);
  es_close(s);
  es_init_report_free(r);
}

/* ---- item 7: hashes that plain SQL cannot make stale -------------------------- */

TEST(reingest_repairs_every_plain_sql_edit_of_a_document_or_its_chunks) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  float v[2] = {1, 0}, cv[2] = {0, 1};
  es_chunk ch[2] = {{.id = "k#0", .text = "one", .embedding = cv, .dim = 2},
                    {.id = "k#1", .text = "two"}};
  es_doc d = {.id = "k", .text = "original", .embedding = v, .dim = 2,
              .metadata_json = "{\"a\": 1}", .source_id = "src",
              .has_chunks = 1, .chunks = ch, .n_chunks = 2};
  es_batch_result *r = th_batch_upsert(s, &d, 1, 10, ES_OK);
  ASSERT_INT_EQ(r->inserted, 1);
  es_batch_result_free(r);
  static const char *const state =
      "SELECT e.text || '|' || e.embedding::text || '|' || e.metadata::text || '|' "
      "|| e.source_id || '|' || (SELECT string_agg(c.id || ':' || c.text || ':' || "
      "coalesce(c.embedding::text, '-'), ',' ORDER BY c.id) FROM chunks c "
      "WHERE c.document_id = e.id) FROM embeddings e WHERE e.id = 'k'";
  char *want = th_text(state);
  static const char *const edits[] = {
      "UPDATE embeddings SET text = 'tampered' WHERE id = 'k'",
      "UPDATE embeddings SET embedding = '[0.5,0.5]' WHERE id = 'k'",
      "UPDATE embeddings SET metadata = '{\"a\": 2}' WHERE id = 'k'",
      "UPDATE embeddings SET source_id = 'other' WHERE id = 'k'",
      "UPDATE chunks SET text = 'tampered' WHERE id = 'k#1'",
      "UPDATE chunks SET embedding = NULL WHERE id = 'k#0'",
      "DELETE FROM chunks WHERE id = 'k#0'",
      "INSERT INTO chunks (id, document_id, text) VALUES ('k#9', 'k', 'extra')",
  };
  for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
    th_exec(edits[i]);
    r = th_batch_upsert(s, &d, 1, 10, ES_OK);
    if (r->updated != 1)
      FAIL("after \"%s\" the re-ingest was not a rewrite (%zu unchanged)",
           edits[i], r->unchanged);
    es_batch_result_free(r);
    char *got = th_text(state);
    ASSERT_STR_EQ(got, want);
    free(got);
    /* and the hashes are right again: the next run changes nothing */
    r = th_batch_upsert(s, &d, 1, 10, ES_OK);
    ASSERT_INT_EQ(r->unchanged, 1);
    es_batch_result_free(r);
  }
  free(want);
  es_close(s);
}

TEST(operations_after_the_server_closed_idle_connections_retry_on_fresh_ones) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  float v[2] = {1, 0};
  es_doc d = {.id = "a", .embedding = v, .dim = 2};
  ASSERT_OK(s, es_upsert(s, &d, NULL));
  drop_our_connections();
  es_batch_result *r = th_batch_upsert(s, &d, 1, 10, ES_OK); /* a batch session */
  ASSERT_INT_EQ(r->unchanged, 1);
  es_batch_result_free(r);
  es_close(s);
  /* A fresh handle whose shape is not known yet. */
  s = th_open();
  drop_our_connections();
  d.id = "b";
  ASSERT_OK(s, es_upsert(s, &d, NULL));
  es_close(s);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 2);
}

/* ---- item 12: lock waits after a load --------------------------------------------- */

TEST(the_index_build_and_analyze_after_a_load_wait_for_locks_no_longer_than_the_timeout) {
  es_store *s = th_open_init(2, ES_METRIC_COSINE);
  es_close(s);
  es_options o;
  es_options_init(&o);
  o.conninfo = th_conninfo();
  o.statement_timeout_ms = 500;
  ASSERT_OK(s, es_open_opts(&o, &s));
  /* ANALYZE waits behind this lock, and its wait is bounded too. */
  PGconn *other = th_connect(th_conninfo());
  th_pg_exec(other, "BEGIN");
  th_pg_exec(other, "LOCK TABLE chunks IN SHARE UPDATE EXCLUSIVE MODE");
  es_batch_options bo;
  es_batch_options_init(&bo);
  bo.defer_index = ES_DEFER_ALWAYS;
  es_batch *b = NULL;
  ASSERT_OK(s, es_batch_begin(s, &bo, &b));
  float v[3][2] = {{1, 0}, {0, 1}, {1, 1}};
  es_chunk ch = {.id = "c", .text = "x"};
  es_doc d[3] = {{.id = "a", .embedding = v[0], .dim = 2},
                 {.id = "b", .embedding = v[1], .dim = 2},
                 {.id = "c", .embedding = v[2], .dim = 2, .has_chunks = 1,
                  .chunks = &ch, .n_chunks = 1}};
  ASSERT_OK(s, es_batch_add(b, d, 3, NULL));
  ASSERT(es_batch_index_deferred(b));
  /* A writer idle in its transaction: CREATE INDEX cannot get its lock. */
  PGconn *writer = th_connect(th_conninfo());
  th_pg_exec(writer, "BEGIN");
  th_pg_exec(writer, "INSERT INTO embeddings (id) VALUES ('w')");
  char pid[32];
  snprintf(pid, sizeof pid, "pid %d", PQbackendPID(writer));
  double t0 = th_now();
  ASSERT_STATUS(s, es_batch_end(b, NULL), ES_ETIMEOUT);
  ASSERT_DBL_LT(th_now() - t0, 5.0); /* the index build and the ANALYZE together */
  ASSERT_CONTAINS(es_errmsg(s), "the load landed but its HNSW index is missing");
  ASSERT_CONTAINS(es_errmsg(s), "`embstore migrate` builds it");
  ASSERT_CONTAINS(es_errmsg(s), pid);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embeddings"), 3);
  th_pg_exec(writer, "ROLLBACK");
  th_pg_exec(other, "ROLLBACK");
  PQfinish(writer);
  PQfinish(other);
  es_init_report *r = NULL;
  ASSERT_OK(s, es_migrate_report(s, &r));
  ASSERT_INT_EQ(r->indexes_created, 2); /* HNSW and text, both deferred */
  es_close(s);
  es_init_report_free(r);
}
