/* test_api.c - the public API's contract: per-thread errors on many
 * stores, ownership of results, and the helpers the tool and the servers
 * use instead of the library's internals. */
#include <pthread.h>

#include "test.h"

/* A store handle whose es_open failed at once without a server: an
 * unreachable socket directory of its own (named after i), no retries.
 * es_open still hands out the handle, which must be closed. */
static es_store *open_unreachable(int i) {
  char ci[128];
  snprintf(ci, sizeof ci, "host=/nonexistent-es-api-%04d port=1 dbname=x", i);
  es_options o;
  es_options_init(&o);
  o.conninfo = ci;
  o.max_retries = 0;
  o.pool_size = 1;
  es_store *s = NULL;
  ASSERT_STATUS(s, es_open_opts(&o, &s), ES_ECONNECT);
  if (s == NULL)
    FAIL("store %d: es_open_opts handed out no handle", i);
  return s;
}

/* The message names the store's own socket directory. */
static void assert_own_error(es_store *s, int i) {
  char want[64];
  snprintf(want, sizeof want, "/nonexistent-es-api-%04d", i);
  ASSERT_CONTAINS(es_errmsg(s), want);
}

TEST(two_thousand_stores_open_at_once_keep_each_its_own_error) {
  enum { N = 2000 };
  es_store **s = calloc(N, sizeof *s);
  ASSERT(s != NULL);
  for (int i = 0; i < N; i++)
    s[i] = open_unreachable(i);
  /* Every handle still explains its own failure, also the first ones. */
  for (int i = 0; i < N; i++)
    assert_own_error(s[i], i);
  for (int i = 0; i < N; i++)
    es_close(s[i]);
  /* And again: nothing of the closed ones is in the way. */
  for (int i = 0; i < N / 10; i++)
    s[i] = open_unreachable(N + i);
  for (int i = N / 10 - 1; i >= 0; i--) {
    assert_own_error(s[i], N + i);
    es_close(s[i]);
  }
  free(s);
}

/* What the main thread and the worker hand each other. */
typedef struct outliver {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int step;         /* 1: the worker recorded its error on a; 2: a is closed */
  es_store *a, *b;  /* b: opened after a was closed */
  char msg_a[1024]; /* the worker's message on a */
  char msg_b_before[1024], msg_b_after[1024];
} outliver;

static void wait_step(outliver *o, int step) {
  pthread_mutex_lock(&o->mu);
  while (o->step < step)
    pthread_cond_wait(&o->cv, &o->mu);
  pthread_mutex_unlock(&o->mu);
}

static void set_step(outliver *o, int step) {
  pthread_mutex_lock(&o->mu);
  o->step = step;
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
}

/* Records an error on a, waits until a is closed and b opened, then looks
 * at b: its own last failure on b is none until it fails on b. */
static void *outlive(void *arg) {
  outliver *o = arg;
  es_store_shape(o->a, NULL, NULL); /* fails: nothing listens */
  snprintf(o->msg_a, sizeof o->msg_a, "%s", es_errmsg(o->a));
  set_step(o, 1);
  wait_step(o, 2);
  snprintf(o->msg_b_before, sizeof o->msg_b_before, "%s", es_errmsg(o->b));
  es_store_shape(o->b, NULL, NULL);
  snprintf(o->msg_b_after, sizeof o->msg_b_after, "%s", es_errmsg(o->b));
  return NULL;
}

/* Under Valgrind (the CI's unit run) or LeakSanitizer: the worker's
 * record on the closed store is freed when the worker exits. */
TEST(a_thread_that_outlives_its_store_leaks_nothing_and_sees_no_stale_error) {
  outliver o = {.step = 0};
  pthread_mutex_init(&o.mu, NULL);
  pthread_cond_init(&o.cv, NULL);
  o.a = open_unreachable(1);
  pthread_t t;
  ASSERT_INT_EQ(pthread_create(&t, NULL, outlive, &o), 0);
  wait_step(&o, 1);
  es_close(o.a); /* the worker is alive and holds a record on a */
  /* Often at a's address: a record kept by address would show a's error. */
  o.b = open_unreachable(2);
  set_step(&o, 2);
  ASSERT_INT_EQ(pthread_join(t, NULL), 0);
  ASSERT_CONTAINS(o.msg_a, "/nonexistent-es-api-0001");
  ASSERT_STR_EQ(o.msg_b_before, "no error");
  ASSERT_CONTAINS(o.msg_b_after, "/nonexistent-es-api-0002");
  assert_own_error(o.b, 2); /* the main thread's own failure on b */
  es_close(o.b);
  pthread_cond_destroy(&o.cv);
  pthread_mutex_destroy(&o.mu);
}
