/* test_migrations.c - the migrations are the files in sql/: the build
 * derives their list from the files (cmake/embed_sql.cmake) and refuses
 * files out of sequence; the store's shape has one reader. */
#include <glob.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

/* The sql/NNN_name.sql files of the source tree, sorted. */
static void sql_files(glob_t *g) {
  char pattern[1024];
  snprintf(pattern, sizeof pattern, "%s/sql/*.sql", EMBSTORE_SOURCE_DIR);
  ASSERT_INT_EQ(glob(pattern, 0, NULL, g), 0);
}

/* Writes text to dir/name. */
static void write_file(const char *dir, const char *name, const char *text) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  ASSERT_NOT_NULL(f);
  fputs(text, f);
  ASSERT_INT_EQ(fclose(f), 0);
}

/* Reads dir/name into a malloc'd string. */
static char *read_file(const char *dir, const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "r");
  ASSERT_NOT_NULL(f);
  char *text = calloc(1, 1 << 20);
  ASSERT_NOT_NULL(text);
  size_t n = fread(text, 1, (1 << 20) - 1, f);
  text[n] = '\0';
  fclose(f);
  return text;
}

/* Runs cmake/embed_sql.cmake, as the build does, over the .sql files of
 * dir/sql into dir/o.c and dir/o.h; returns its exit status, its messages
 * in *out (malloc'd). */
static int embed(const char *dir, char **out) {
  char pattern[1024], files[8192] = "", cmd[12288];
  snprintf(pattern, sizeof pattern, "%s/sql/*.sql", dir);
  glob_t g;
  if (glob(pattern, 0, NULL, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; i++)
      snprintf(files + strlen(files), sizeof files - strlen(files), "%s%s",
               i ? "|" : "", g.gl_pathv[i]);
    globfree(&g);
  }
  snprintf(cmd, sizeof cmd,
           "'%s' '-DOUT_C=%s/o.c' '-DOUT_H=%s/o.h' '-DSQL_FILES=%s' "
           "-P '%s/cmake/embed_sql.cmake' 2>&1",
           EMBSTORE_CMAKE, dir, dir, files, EMBSTORE_SOURCE_DIR);
  FILE *p = popen(cmd, "r");
  ASSERT_NOT_NULL(p);
  *out = calloc(1, 65536);
  ASSERT_NOT_NULL(*out);
  size_t n = fread(*out, 1, 65535, p);
  (*out)[n] = '\0';
  int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Moves dir/sql/from to dir/sql/to. */
static void rename_sql(const char *dir, const char *from, const char *to) {
  char a[1024], b[1024];
  snprintf(a, sizeof a, "%s/sql/%s", dir, from);
  snprintf(b, sizeof b, "%s/sql/%s", dir, to);
  ASSERT_INT_EQ(rename(a, b), 0);
}

TEST(a_new_migration_file_is_embedded_and_one_out_of_sequence_fails_the_build) {
  const char *dir = th_tmpdir();
  char sql[1024], *out = NULL;
  snprintf(sql, sizeof sql, "%s/sql", dir);
  ASSERT_INT_EQ(mkdir(sql, 0700), 0);
  write_file(sql, "001_base.sql", "-- 001_base: base tables\nSELECT 1;\n");
  write_file(sql, "002_two.sql", "-- 002_two: the second; with a semicolon.\n");
  ASSERT_INT_EQ(embed(dir, &out), 0);
  free(out);

  /* A file added next in sequence is in the table, with no C to change. */
  write_file(sql, "003_three.sql", "-- 003_three: a third\nSELECT 3;\n");
  ASSERT_INT_EQ(embed(dir, &out), 0);
  free(out);
  char *h = read_file(dir, "o.h"), *c = read_file(dir, "o.c");
  ASSERT_CONTAINS(h, "#define ES__N_SQL_FILES 3");
  ASSERT_CONTAINS(h, "extern const char es__sql_003_three[];");
  ASSERT_CONTAINS(c, "{1, name_001_base, es__sql_001_base},");
  ASSERT_CONTAINS(c, "{3, name_003_three, es__sql_003_three},");
  /* "a third", then the NUL */
  ASSERT_CONTAINS(c, "name_003_three[] = {0x61,0x20,0x74,0x68,0x69,0x72,0x64,0x00}");
  free(h);
  free(c);

  /* A gap fails, naming the file and the number expected. */
  rename_sql(dir, "003_three.sql", "004_three.sql");
  ASSERT_INT_EQ(embed(dir, &out), 1); /* cmake: FATAL_ERROR */
  ASSERT_CONTAINS(out, "sql/004_three.sql: migration 4 where 3 was expected");
  free(out);

  /* A repeated number fails. */
  rename_sql(dir, "004_three.sql", "003_three.sql");
  write_file(sql, "002_again.sql", "-- 002_again: the second again\n");
  ASSERT_INT_EQ(embed(dir, &out), 1); /* cmake: FATAL_ERROR */
  ASSERT_CONTAINS(out, "sql/002_two.sql: migration 2 where 3 was expected");
  free(out);
  char again[1024];
  snprintf(again, sizeof again, "%s/002_again.sql", sql);
  ASSERT_INT_EQ(unlink(again), 0);

  /* The first line must name the migration after the file's own stem. */
  write_file(sql, "003_three.sql", "-- 003_tree: typo\nSELECT 3;\n");
  ASSERT_INT_EQ(embed(dir, &out), 1); /* cmake: FATAL_ERROR */
  ASSERT_CONTAINS(out, "sql/003_three.sql: the first line must be");
  free(out);

  /* A name that is not NNN_name.sql fails. */
  write_file(sql, "003_three.sql", "-- 003_three: a third\n");
  write_file(sql, "4_four.sql", "-- 4_four: x\n");
  ASSERT_INT_EQ(embed(dir, &out), 1); /* cmake: FATAL_ERROR */
  ASSERT_CONTAINS(out, "sql/4_four.sql: a migration file is named NNN_name.sql");
  free(out);
}

TEST(migrations_are_the_sql_files_in_order_named_by_their_first_line) {
  glob_t g;
  sql_files(&g);
  es_store *s = th_open();
  es_migration_list *l = NULL;
  ASSERT_OK(s, es_migration_list_get(s, &l));
  ASSERT_INT_EQ(l->n, g.gl_pathc);
  for (size_t i = 0; i < l->n; i++) {
    const char *base = strrchr(g.gl_pathv[i], '/') + 1;
    char first[512] = "", want[512];
    FILE *f = fopen(g.gl_pathv[i], "r");
    ASSERT_NOT_NULL(f);
    ASSERT_NOT_NULL(fgets(first, sizeof first, f));
    fclose(f);
    first[strcspn(first, "\n")] = '\0';
    snprintf(want, sizeof want, "-- %.*s: %s", (int)(strlen(base) - 4), base,
             l->items[i].name);
    ASSERT_INT_EQ(l->items[i].version, (int)i + 1);
    ASSERT_INT_EQ(atoi(base), (int)i + 1);
    /* The name is the first line's text (without a final full stop). */
    ASSERT_INT_EQ(strncmp(first, want, strlen(want)), 0);
  }
  es_migration_list_free(l);

  es_init_report *r = NULL;
  ASSERT_OK(s, es_init(s, 3, ES_METRIC_COSINE, &r));
  ASSERT_INT_EQ(r->migrations_applied, (int)g.gl_pathc);
  es_init_report_free(r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM embstore_migrations"), g.gl_pathc);
  globfree(&g);
  es_close(s);
}

TEST(migrate_restores_a_dropped_chunks_key_from_its_migration_file) {
  es_store *s = th_open_init(3, ES_METRIC_COSINE);
  th_exec("ALTER TABLE chunks DROP CONSTRAINT chunks_document_id_fkey");
  es_init_report *r = NULL;
  ASSERT_OK(s, es_migrate_report(s, &r));
  ASSERT_INT_EQ(r->migrations_applied, 0);
  ASSERT_INT_EQ(r->fk_validated, 1);
  ASSERT_INT_EQ(r->fk_valid, 1);
  es_init_report_free(r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                       "AND conname = 'chunks_document_id_fkey' AND convalidated "
                       "AND confdeltype = 'c'"),
                1);
  /* Migration 3 applied again keeps the key it finds. */
  th_exec("DELETE FROM embstore_migrations WHERE version = 3");
  ASSERT_OK(s, es_migrate_report(s, &r));
  ASSERT_INT_EQ(r->migrations_applied, 1);
  es_init_report_free(r);
  ASSERT_INT_EQ(th_int("SELECT count(*) FROM pg_constraint WHERE contype = 'f' "
                       "AND conrelid = 'chunks'::regclass"),
                1);
  es_close(s);
}

TEST(a_store_whose_meta_holds_an_unknown_metric_is_refused_by_every_reader) {
  es_store *s = th_open_init(4, ES_METRIC_COSINE);
  es_close(s);
  th_exec("ALTER TABLE embstore_meta DROP CONSTRAINT embstore_meta_metric_check");
  th_exec("UPDATE embstore_meta SET metric = 'dot'");
  s = th_open();
  ASSERT_STATUS(s, es_migrate(s, NULL), ES_EDB);
  ASSERT_CONTAINS(es_errmsg(s), "embstore_meta holds an unknown metric 'dot'");
  ASSERT_STATUS(s, es_init(s, 4, ES_METRIC_COSINE, NULL), ES_EDB);
  ASSERT_CONTAINS(es_errmsg(s), "unknown metric 'dot'");
  int dim = 0;
  ASSERT_STATUS(s, es_store_shape(s, &dim, NULL), ES_EDB);
  ASSERT_CONTAINS(es_errmsg(s), "unknown metric 'dot'");
  /* Nothing was changed on the way. */
  ASSERT_SQL_STR("SELECT metric FROM embstore_meta", "dot");
  es_close(s);
}
