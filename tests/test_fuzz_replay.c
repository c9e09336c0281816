/* test_fuzz_replay.c - every fuzz seed, and every input a fuzz run ever
 * failed on, replayed through the fuzz targets (fuzz/targets.c) in the
 * ordinary test binary, so also under ASan+UBSan and Valgrind: a fixed
 * crash stays fixed.  EMBSTORE_FUZZ_DIR is the source tree's fuzz/. */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#include "../fuzz/targets.h"
#include "test.h"

#ifndef EMBSTORE_FUZZ_DIR
#error "EMBSTORE_FUZZ_DIR must name the source tree's fuzz/ directory"
#endif

typedef int (*fuzz_target)(const uint8_t *data, size_t size);

/* Reads the file at path into a malloc'd buffer (never NULL, even when the
 * file is empty, as libFuzzer never passes NULL either); fails the test
 * when it cannot. */
static uint8_t *slurp(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    FAIL("%s: %s", path, strerror(errno));
  size_t cap = 4096, n = 0, got;
  uint8_t *data = malloc(cap);
  ASSERT_NOT_NULL(data);
  while ((got = fread(data + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      cap *= 2;
      uint8_t *bigger = realloc(data, cap);
      ASSERT_NOT_NULL(bigger);
      data = bigger;
    }
  }
  if (ferror(f))
    FAIL("%s: read error", path);
  fclose(f);
  *size = n;
  return data;
}

/* qsort order of file names. */
static int cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs target over every regular file in dir, in name order, skipping dot
 * files (.keep holds an empty directory in git); returns how many ran.  A
 * missing directory fails the test. */
static size_t replay_dir(const char *dir, fuzz_target target) {
  DIR *d = opendir(dir);
  if (d == NULL)
    FAIL("%s: %s", dir, strerror(errno));
  char **names = NULL;
  size_t n = 0, cap = 0, ran = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 32;
      char **bigger = realloc(names, cap * sizeof *names);
      ASSERT_NOT_NULL(bigger);
      names = bigger;
    }
    names[n] = strdup(e->d_name);
    ASSERT_NOT_NULL(names[n]);
    n++;
  }
  closedir(d);
  if (n > 0)
    qsort(names, n, sizeof *names, cmp_names);
  for (size_t i = 0; i < n; i++) {
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (stat(path, &st) != 0)
      FAIL("%s: %s", path, strerror(errno));
    if (S_ISREG(st.st_mode)) {
      size_t size;
      uint8_t *data = slurp(path, &size);
      /* Named before the call: if the target crashes, the log says which
       * input did it. */
      fprintf(stderr, "replaying %s (%zu bytes)\n", path, size);
      fflush(stderr);
      target(data, size);
      free(data);
      ran++;
    }
    free(names[i]);
  }
  free(names);
  return ran;
}

/* Replays fuzz/corpus/<name> (which must hold seeds) and
 * fuzz/regressions/<name> (which must exist; empty while no fuzz run has
 * ever failed on this target). */
static void replay_target(const char *name, fuzz_target target) {
  char dir[512];
  snprintf(dir, sizeof dir, "%s/corpus/%s", EMBSTORE_FUZZ_DIR, name);
  size_t seeds = replay_dir(dir, target);
  if (seeds == 0)
    FAIL("%s holds no seed files: the replay would prove nothing", dir);
  snprintf(dir, sizeof dir, "%s/regressions/%s", EMBSTORE_FUZZ_DIR, name);
  size_t regressions = replay_dir(dir, target);
  printf("%s: %zu seeds and %zu regression inputs replayed\n", name, seeds,
         regressions);
}

TEST(fuzz_doc_json_corpus_and_regressions_replay_cleanly) {
  replay_target("doc_json", es_fuzz_doc_json);
}

TEST(fuzz_vector_corpus_and_regressions_replay_cleanly) {
  replay_target("vector", es_fuzz_vector);
}

TEST(fuzz_redact_corpus_and_regressions_replay_cleanly) {
  replay_target("redact", es_fuzz_redact);
}
