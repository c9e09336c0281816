/* cache.c - the in-process search cache.
 *
 * Results are cached under their exact query (vector bytes or like-id, k,
 * filters) in a hash table with LRU eviction under a memory cap.
 * Invalidation never scans entries: each entry remembers generation
 * counters taken before its query ran, and is valid only while they are
 * unchanged:
 *   - a global generation, bumped to invalidate everything;
 *   - an "any source" generation, bumped by every write, for searches not
 *     limited to one source;
 *   - one generation per source, for searches limited to that source.
 * A write bumps its sources' generations and the "any" generation after
 * its transaction commits, so a search that read the old data before the
 * commit stores an entry that is already stale. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"

typedef struct entry {
  uint64_t hash;
  void *key;
  size_t keylen;
  char *source;          /* the source filter, or NULL */
  uint64_t gen_global, gen_any, gen_source;
  int64_t born_ms;
  es_results *res;
  size_t bytes;
  struct entry *chain;           /* hash bucket */
  struct entry *newer, *older;   /* LRU list */
} entry;

typedef struct source_gen {
  char *source;
  uint64_t gen;
  struct source_gen *next;
} source_gen;

#define SOURCE_BUCKETS 256
#define MAX_SOURCES 10000

struct es__cache {
  pthread_mutex_t mu;
  size_t cap, bytes;
  int ttl_ms;
  entry **buckets;
  size_t n_buckets, n_entries;
  entry *newest, *oldest;
  uint64_t gen_global, gen_any;
  source_gen *sources[SOURCE_BUCKETS];
  size_t n_sources;
  uint64_t hits, misses; /* lookups answered, and not */
};

/* FNV-1a: cheap and good enough to spread keys over buckets. */
static uint64_t fnv(const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ULL;
  }
  return h;
}

/* A cache of at most cap_bytes whose entries live ttl_ms (0: until
 * invalidated); NULL when cap_bytes is 0 or out of memory. */
es__cache *es__cache_new(size_t cap_bytes, int ttl_ms) {
  if (cap_bytes == 0)
    return NULL;
  es__cache *c = calloc(1, sizeof *c);
  if (c == NULL)
    return NULL;
  c->n_buckets = 256;
  c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
  if (c->buckets == NULL) {
    free(c);
    return NULL;
  }
  pthread_mutex_init(&c->mu, NULL);
  c->cap = cap_bytes;
  c->ttl_ms = ttl_ms;
  return c;
}

/* Takes e out of the LRU list. */
static void unlink_lru(es__cache *c, entry *e) {
  if (e->newer)
    e->newer->older = e->older;
  else
    c->newest = e->older;
  if (e->older)
    e->older->newer = e->newer;
  else
    c->oldest = e->newer;
  e->newer = e->older = NULL;
}

/* Puts e at the recently-used end of the LRU list. */
static void push_newest(es__cache *c, entry *e) {
  e->older = c->newest;
  e->newer = NULL;
  if (c->newest)
    c->newest->newer = e;
  c->newest = e;
  if (c->oldest == NULL)
    c->oldest = e;
}

/* Frees an entry and what it owns (also one never linked in). */
static void entry_free(entry *e) {
  es_results_free(e->res);
  free(e->key);
  free(e->source);
  free(e);
}

/* Removes e from its bucket and the LRU list, and frees it. */
static void drop(es__cache *c, entry *e) {
  entry **pp = &c->buckets[e->hash & (c->n_buckets - 1)];
  while (*pp && *pp != e)
    pp = &(*pp)->chain;
  if (*pp)
    *pp = e->chain;
  unlink_lru(c, e);
  c->bytes -= e->bytes;
  c->n_entries--;
  entry_free(e);
}

/* Forgets every source's generation. */
static void free_sources(es__cache *c) {
  for (size_t i = 0; i < SOURCE_BUCKETS; i++) {
    source_gen *g = c->sources[i];
    while (g) {
      source_gen *next = g->next;
      free(g->source);
      free(g);
      g = next;
    }
    c->sources[i] = NULL;
  }
  c->n_sources = 0;
}

/* Frees the cache and every entry (NULL: nothing). */
void es__cache_free(es__cache *c) {
  if (c == NULL)
    return;
  while (c->newest)
    drop(c, c->newest);
  free_sources(c);
  free(c->buckets);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* The generation of a source (0 for one never written). */
static source_gen *find_source(es__cache *c, const char *source, bool create) {
  size_t b = fnv(source, strlen(source)) % SOURCE_BUCKETS;
  for (source_gen *g = c->sources[b]; g; g = g->next)
    if (strcmp(g->source, source) == 0)
      return g;
  if (!create)
    return NULL;
  if (c->n_sources >= MAX_SOURCES) {
    /* Too many to remember: start over, and invalidate everything so that
     * no entry relies on a forgotten generation. */
    free_sources(c);
    c->gen_global++;
  }
  source_gen *g = calloc(1, sizeof *g);
  if (g == NULL || (g->source = strdup(source)) == NULL) {
    free(g);
    return NULL;
  }
  g->gen = c->gen_global; /* fresh, and distinct from any forgotten value */
  g->next = c->sources[b];
  c->sources[b] = g;
  c->n_sources++;
  return g;
}

/* Reads the generations a query's answer will depend on, before it runs. */
void es__cache_take_ticket(es__cache *c, const char *source_filter,
                      es__cache_ticket *t) {
  memset(t, 0, sizeof *t);
  if (c == NULL)
    return;
  pthread_mutex_lock(&c->mu);
  t->gen_global = c->gen_global;
  t->gen_any = c->gen_any;
  if (source_filter) {
    source_gen *g = find_source(c, source_filter, false);
    t->gen_source = g ? g->gen : c->gen_global;
  }
  pthread_mutex_unlock(&c->mu);
}

/* Whether e is still valid: no generation it depends on moved and its
 * time to live has not passed.  Under the lock. */
static bool fresh(es__cache *c, const entry *e) {
  if (e->gen_global != c->gen_global)
    return false;
  if (c->ttl_ms > 0 && es__now_ms() - e->born_ms > c->ttl_ms)
    return false;
  if (e->source == NULL)
    return e->gen_any == c->gen_any;
  source_gen *g = find_source(c, e->source, false);
  return (g ? g->gen : c->gen_global) == e->gen_source;
}

/* The entry for key (of hash h), fresh or not, or NULL.  Under the lock. */
static entry *find(es__cache *c, uint64_t h, const void *key, size_t keylen) {
  for (entry *e = c->buckets[h & (c->n_buckets - 1)]; e; e = e->chain)
    if (e->hash == h && e->keylen == keylen && memcmp(e->key, key, keylen) == 0)
      return e;
  return NULL;
}

/* A copy of the fresh entry for key, or NULL (a stale one is dropped). */
es_results *es__cache_get(es__cache *c, const void *key, size_t keylen) {
  if (c == NULL)
    return NULL;
  assert(key != NULL && keylen > 0);
  uint64_t h = fnv(key, keylen);
  es_results *out = NULL;
  pthread_mutex_lock(&c->mu);
  entry *e = find(c, h, key, keylen);
  if (e && !fresh(c, e)) {
    drop(c, e);
  } else if (e) {
    unlink_lru(c, e);
    push_newest(c, e);
    out = es__results_copy(e->res, NULL);
  }
  if (out)
    c->hits++;
  else
    c->misses++;
  pthread_mutex_unlock(&c->mu);
  return out;
}

bool es__cache_peek(es__cache *c, const void *key, size_t keylen) {
  if (c == NULL)
    return false;
  pthread_mutex_lock(&c->mu);
  entry *e = find(c, fnv(key, keylen), key, keylen);
  bool found = e != NULL && fresh(c, e);
  if (!found)
    c->misses++;
  pthread_mutex_unlock(&c->mu);
  return found;
}

void es__cache_count_miss(es__cache *c) {
  if (c == NULL)
    return;
  pthread_mutex_lock(&c->mu);
  c->misses++;
  pthread_mutex_unlock(&c->mu);
}

void es__cache_counts(es__cache *c, int64_t *hits, int64_t *misses,
                      int64_t *entries, int64_t *bytes) {
  *hits = *misses = *entries = *bytes = 0;
  if (c == NULL)
    return;
  pthread_mutex_lock(&c->mu);
  *hits = (int64_t)c->hits;
  *misses = (int64_t)c->misses;
  *entries = (int64_t)c->n_entries;
  *bytes = (int64_t)c->bytes;
  pthread_mutex_unlock(&c->mu);
}

/* Doubles the hash table (kept as it is when out of memory). */
static void grow(es__cache *c) {
  size_t n = c->n_buckets * 2;
  entry **b = calloc(n, sizeof *b);
  if (b == NULL)
    return;
  for (size_t i = 0; i < c->n_buckets; i++) {
    entry *e = c->buckets[i];
    while (e) {
      entry *next = e->chain;
      e->chain = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(c->buckets);
  c->buckets = b;
  c->n_buckets = n;
}

/* Stores a copy of res under key, unless one answer would take more than
 * a quarter of the cache; evicts the least recently used to make room. */
void es__cache_put(es__cache *c, const void *key, size_t keylen,
                   const char *source_filter, const es__cache_ticket *t,
                   const es_results *res) {
  if (c == NULL)
    return;
  assert(key != NULL && keylen > 0 && t != NULL && res != NULL);
  size_t bytes = 0;
  entry *e = calloc(1, sizeof *e);
  if (e == NULL)
    return;
  e->res = es__results_copy(res, &bytes);
  e->key = malloc(keylen);
  e->source = source_filter ? strdup(source_filter) : NULL;
  if (e->res == NULL || e->key == NULL || (source_filter && e->source == NULL)) {
    entry_free(e);
    return;
  }
  memcpy(e->key, key, keylen);
  e->keylen = keylen;
  e->hash = fnv(key, keylen);
  e->bytes = bytes + sizeof *e + keylen;
  e->gen_global = t->gen_global;
  e->gen_any = t->gen_any;
  e->gen_source = t->gen_source;
  e->born_ms = es__now_ms();

  pthread_mutex_lock(&c->mu);
  if (e->bytes > c->cap / 4) { /* one answer may not crowd out the rest */
    pthread_mutex_unlock(&c->mu);
    entry_free(e);
    return;
  }
  /* Replace an entry for the same key. */
  entry *old = find(c, e->hash, key, keylen);
  if (old)
    drop(c, old);
  while (c->bytes + e->bytes > c->cap && c->oldest)
    drop(c, c->oldest);
  if (c->n_entries >= c->n_buckets)
    grow(c);
  size_t b = e->hash & (c->n_buckets - 1);
  e->chain = c->buckets[b];
  c->buckets[b] = e;
  push_newest(c, e);
  c->bytes += e->bytes;
  c->n_entries++;
  pthread_mutex_unlock(&c->mu);
}

/* Moves the generations that a write of source_id makes stale. */
void es__cache_invalidate_source(es__cache *c, const char *source_id) {
  if (c == NULL)
    return;
  pthread_mutex_lock(&c->mu);
  c->gen_any++;
  if (source_id) {
    source_gen *g = find_source(c, source_id, true);
    if (g)
      g->gen++; /* a new source starts at gen_global: one more is new */
    else
      c->gen_global++; /* out of memory: be safe */
  }
  pthread_mutex_unlock(&c->mu);
}

void es__cache_invalidate_all(es__cache *c) {
  if (c == NULL)
    return;
  pthread_mutex_lock(&c->mu);
  c->gen_global++;
  c->gen_any++;
  pthread_mutex_unlock(&c->mu);
}
