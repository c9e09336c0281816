/* test_golden.c - the shape of every --json output, against the golden
 * files in tests/golden/<name>.json.
 *
 * The fields of --json output are a promise to scripts.  A golden file
 * holds the shape of one command's output: its keys, nested, with every
 * value replaced by its type ("string", "integer", "number", "boolean",
 * "null"; user metadata is "object", its inside is the user's).  An array
 * holds the distinct shapes of its elements.  A field that goes missing,
 * is renamed, changes type or appears fails the test with a diff by path.
 * Values are the behaviour tests' business.
 *
 * "number" is a floating-point field: it accepts output that happens to be
 * whole ("0"), which the writer prints without a decimal point.
 *
 * After a deliberate change of the output, regenerate the files with
 *
 *   EMBSTORE_GOLDEN_UPDATE=1 build/tests/embstore-tests cli_json_output_shapes
 *
 * and review the diff.  Regenerating keeps "number" where the file says so
 * and the new output is whole; a new floating-point field that came out
 * whole must be marked "number" by hand. */
#include <jansson.h>

#include "test.h"

#ifndef EMBSTORE_GOLDEN_DIR
#error "EMBSTORE_GOLDEN_DIR must name tests/golden (tests/CMakeLists.txt)"
#endif

/* Whether shape s is the type name. */
static bool is_type(json_t *s, const char *name) {
  return json_is_string(s) && strcmp(json_string_value(s), name) == 0;
}

/* Whether shapes a and b are the same but for "integer" in one where the
 * other has "number" (a whole floating-point value); with upgrade, a then
 * takes "number" there. */
static bool alike(json_t *a, json_t *b, bool upgrade) {
  if (json_is_string(a) && json_is_string(b)) {
    if (json_equal(a, b))
      return true;
    if (is_type(a, "number") && is_type(b, "integer"))
      return true;
    if (is_type(a, "integer") && is_type(b, "number")) {
      if (upgrade)
        json_string_set(a, "number");
      return true;
    }
    return false;
  }
  if (json_typeof(a) != json_typeof(b))
    return false;
  if (json_is_object(a)) {
    if (json_object_size(a) != json_object_size(b))
      return false;
    const char *k;
    json_t *child;
    json_object_foreach(a, k, child) {
      json_t *o = json_object_get(b, k);
      if (o == NULL || !alike(child, o, false))
        return false;
    }
    if (upgrade)
      json_object_foreach(a, k, child) alike(child, json_object_get(b, k), true);
    return true;
  }
  if (json_is_array(a)) {
    if (json_array_size(a) != json_array_size(b))
      return false;
    for (size_t i = 0; i < json_array_size(a); i++)
      if (!alike(json_array_get(a, i), json_array_get(b, i), false))
        return false;
    for (size_t i = 0; upgrade && i < json_array_size(a); i++)
      alike(json_array_get(a, i), json_array_get(b, i), true);
    return true;
  }
  return json_equal(a, b);
}

/* The shape of value v (found under key, or NULL); a new reference. */
static json_t *shape_of(json_t *v, const char *key) {
  if (key != NULL && strcmp(key, "metadata") == 0 && json_is_object(v))
    return json_string("object");
  if (json_is_object(v)) {
    json_t *o = json_object();
    const char *k;
    json_t *child;
    json_object_foreach(v, k, child) json_object_set_new(o, k, shape_of(child, k));
    return o;
  }
  if (json_is_array(v)) {
    json_t *a = json_array();
    size_t i;
    json_t *el;
    json_array_foreach(v, i, el) {
      json_t *s = shape_of(el, NULL);
      bool seen = false; /* elements alike but for whole numbers are one */
      for (size_t j = 0; j < json_array_size(a) && !seen; j++)
        seen = alike(json_array_get(a, j), s, true);
      if (seen)
        json_decref(s);
      else
        json_array_append_new(a, s);
    }
    return a;
  }
  return json_string(json_is_string(v)    ? "string"
                     : json_is_integer(v) ? "integer"
                     : json_is_real(v)    ? "number"
                     : json_is_boolean(v) ? "boolean"
                                          : "null");
}

/* Where old says "number" and new "integer", new says "number" too. */
static void keep_numbers(json_t *new_shape, json_t *old) {
  if (old == NULL || alike(new_shape, old, true))
    return;
  if (json_is_object(new_shape) && json_is_object(old)) {
    const char *k;
    json_t *child;
    json_object_foreach(new_shape, k, child) keep_numbers(child,
                                                          json_object_get(old, k));
  } else if (json_is_array(new_shape) && json_is_array(old)) {
    for (size_t i = 0; i < json_array_size(new_shape); i++)
      for (size_t j = 0; j < json_array_size(old); j++)
        if (alike(json_array_get(new_shape, i), json_array_get(old, j), true))
          break;
  }
}

/* The differences found, as lines of text. */
typedef struct diff {
  char text[8192];
  size_t len;
} diff;

/* Appends a line to d (cut at its size). */
__attribute__((format(printf, 2, 3))) static void note(diff *d, const char *fmt,
                                                       ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(d->text + d->len, sizeof d->text - d->len, fmt, ap);
  va_end(ap);
  if (n > 0)
    d->len += (size_t)n < sizeof d->text - d->len ? (size_t)n
                                                   : sizeof d->text - d->len - 1;
}

/* A type name, or the kind of a nested shape, for messages. */
static const char *kind(json_t *s) {
  return json_is_string(s) ? json_string_value(s)
         : json_is_object(s) ? "object"
         : json_is_array(s) ? "array"
                            : "?";
}

/* Records every difference between golden g and output shape o at path. */
static void compare(diff *d, const char *path, json_t *g, json_t *o) {
  if (json_is_string(g) && json_is_string(o)) {
    const char *gs = json_string_value(g), *os = json_string_value(o);
    if (strcmp(gs, os) != 0 &&
        !(strcmp(gs, "number") == 0 && strcmp(os, "integer") == 0))
      note(d, "  %s: %s in the golden file, %s in the output\n", path, gs, os);
    return;
  }
  if (json_typeof(g) != json_typeof(o)) {
    note(d, "  %s: %s in the golden file, %s in the output\n", path, kind(g),
         kind(o));
    return;
  }
  char sub[512];
  if (json_is_object(g)) {
    const char *k;
    json_t *child;
    json_object_foreach(g, k, child) {
      snprintf(sub, sizeof sub, "%s.%s", path, k);
      json_t *oc = json_object_get(o, k);
      if (oc == NULL)
        note(d, "  %s: missing (the golden file has %s)\n", sub, kind(child));
      else
        compare(d, sub, child, oc);
    }
    json_object_foreach(o, k, child) {
      if (json_object_get(g, k) == NULL) {
        snprintf(sub, sizeof sub, "%s.%s", path, k);
        note(d, "  %s: not in the golden file (%s in the output)\n", sub,
             kind(child));
      }
    }
    return;
  }
  /* Arrays: the same set of element shapes.  One of each on both sides is
   * compared field by field, for a precise message. */
  if (json_array_size(g) == 1 && json_array_size(o) == 1) {
    snprintf(sub, sizeof sub, "%s[]", path);
    compare(d, sub, json_array_get(g, 0), json_array_get(o, 0));
    return;
  }
  for (int side = 0; side < 2; side++) {
    json_t *from = side ? g : o, *in = side ? o : g;
    for (size_t i = 0; i < json_array_size(from); i++) {
      bool found = false;
      for (size_t j = 0; j < json_array_size(in) && !found; j++)
        found = side ? alike(json_array_get(from, i), json_array_get(in, j), false)
                     : alike(json_array_get(in, j), json_array_get(from, i), false);
      if (!found) {
        char *es = json_dumps(json_array_get(from, i), JSON_COMPACT);
        note(d, "  %s[]: element %s %s\n", path, es,
             side ? "of the golden file is not in the output"
                  : "of the output is not in the golden file");
        free(es);
      }
    }
  }
}

/* Compares the shape of output (one JSON document) with golden file name,
 * or rewrites the file under EMBSTORE_GOLDEN_UPDATE=1. */
static void assert_golden(const char *name, const char *output) {
  json_error_t e;
  json_t *doc = json_loads(output, 0, &e);
  if (doc == NULL)
    FAIL("%s: the output is not JSON (%s): %s", name, e.text, output);
  json_t *shape = shape_of(doc, NULL);
  json_decref(doc);
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.json", EMBSTORE_GOLDEN_DIR, name);
  json_t *golden = json_load_file(path, 0, &e);
  const char *update = getenv("EMBSTORE_GOLDEN_UPDATE");
  if (update != NULL && strcmp(update, "1") == 0) {
    keep_numbers(shape, golden);
    char *text = json_dumps(shape, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    FILE *f = fopen(path, "w");
    if (text == NULL || f == NULL || fprintf(f, "%s\n", text) < 0 ||
        fclose(f) != 0)
      FAIL("cannot write %s", path);
    free(text);
    printf("updated %s\n", path);
  } else if (golden == NULL) {
    FAIL("%s: no golden file (%s); create it with EMBSTORE_GOLDEN_UPDATE=1",
         path, e.text);
  } else {
    diff d = {.len = 0};
    d.text[0] = '\0';
    compare(&d, name, golden, shape);
    if (d.len > 0) {
      char *got = json_dumps(shape, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
      FAIL("the --json output of %s differs from %s:\n%s"
           "(the output's shape:\n%s)\nIf the change is deliberate, run with "
           "EMBSTORE_GOLDEN_UPDATE=1 and review the diff.",
           name, path, d.text, got);
    }
  }
  json_decref(golden);
  json_decref(shape);
}

/* Runs the tool with args (and stdin in); it must exit with want; the
 * shape of its stdout must match golden file name. */
static void golden_run(const char *name, int want, const char *in,
                       const char *const *args) {
  th_proc p = th_cli(in, args);
  if (p.status != want)
    FAIL("%s: exit %d, want %d\n%s%s", name, p.status, want, p.out, p.err);
  assert_golden(name, p.out);
  th_proc_free(&p);
}

/* embstore --db <the test's database> args... */
#define DB_RUN(name, want, in, ...)                                          \
  golden_run(name, want, in,                                               \
             (const char *const[]){"--db", th_conninfo(), __VA_ARGS__, NULL})
#define RUN(name, want, in, ...)                                             \
  golden_run(name, want, in, (const char *const[]){__VA_ARGS__, NULL})

TEST(cli_json_output_shapes_match_the_golden_files) {
  /* The error object, of a usage error and of a failed operation. */
  RUN("error", 1, NULL, "--json", "frobnicate");
  RUN("error", 2, NULL, "--db", "host=/nonexistent port=1", "--json", "stats");

  DB_RUN("init", 0, NULL, "--json", "init", "--dim", "3");
  DB_RUN("migrate", 0, NULL, "--json", "migrate");
  DB_RUN("migrate-status", 0, NULL, "--json", "migrate", "--status");
  /* Documents with and without a source, chunks and metadata; a line with
   * an id that fails and one without. */
  DB_RUN("ingest", 3,
         "{\"id\":\"a\",\"text\":\"alpha\",\"embedding\":[1,0,0],\"source_id\":"
         "\"s1\",\"metadata\":{\"workspace\":\"w\",\"n\":[1]},\"chunks\":[{\"id\":"
         "\"a#0\",\"text\":\"x\",\"embedding\":[0,1,0]}]}\n"
         "{\"id\":\"b\",\"text\":\"beta\",\"embedding\":[0,1,0]}\n"
         "{\"id\":\"c\",\"embedding\":[0,1]}\n"
         "garbage\n",
         "--json", "ingest", "-");
  DB_RUN("search", 0, NULL, "--json", "search", "--vector", "[1,0.1,0]", "-k", "5");
  DB_RUN("search-like", 0, NULL, "--json", "search", "--like", "b");
  /* Documents without a vector: a health reason in the store and in the
   * workspace (whatever other reasons come and go), and cleanup's work. */
  th_exec("INSERT INTO embeddings (id, source_id, metadata) VALUES "
          "('novec', 's2', '{}'), ('novec-w', 's2', '{\"workspace\": \"w\"}')");
  DB_RUN("stats", 0, NULL, "--json", "stats");
  DB_RUN("stats-workspace", 0, NULL, "--json", "stats", "--workspace", "w");
  /* Counters that drifted: --verify lists the drift, --repair too. */
  th_exec("INSERT INTO embstore_counts (source_id, workspace, documents) "
          "VALUES ('s1', 'w', 2)");
  DB_RUN("stats-verify", 0, NULL, "--json", "stats", "--verify");
  DB_RUN("stats-repair", 0, NULL, "--json", "stats", "--repair");
  /* One document: with a source, metadata and a chunk; with the vectors
   * (the chunk's is null), and missing (the error object). */
  th_exec("INSERT INTO chunks (id, document_id, chunk_index, text) VALUES "
          "('a#1', 'a', 1, 'no vector')");
  DB_RUN("get", 0, NULL, "--json", "get", "a");
  DB_RUN("get-embedding", 0, NULL, "--json", "get", "--embedding", "a");
  DB_RUN("error", 2, NULL, "--json", "get", "nope");
  /* By id, one of them not found (exit 3). */
  DB_RUN("delete-ids", 3, NULL, "--json", "delete", "--id", "a", "--id", "nope",
         "--id", "a", "--dry-run");
  DB_RUN("delete", 0, NULL, "--json", "delete", "--source", "s1", "--dry-run");
  DB_RUN("delete", 0, NULL, "--json", "delete", "--source", "s1");
  DB_RUN("cleanup", 0, NULL, "--json", "cleanup", "--min-age", "0s");
  DB_RUN("metrics", 0, NULL, "--json", "metrics", "--since", "1h");

  /* The embedded cluster: the run's own (running), and an absent one. */
  char absent[600];
  snprintf(absent, sizeof absent, "%s/absent", th_tmpdir());
  RUN("db-status", 0, NULL, "--home", th_cluster_home(), "--json", "db", "status");
  RUN("db-status-absent", 0, NULL, "--home", absent, "--json", "db", "status");
  RUN("db-url", 0, NULL, "--home", absent, "--json", "db", "url");
}
