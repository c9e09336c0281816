/* cache.h - the in-process search cache (see cache.c).  Internal. */
#ifndef ES_CACHE_H
#define ES_CACHE_H

#include "internal.h"

typedef struct es__cache es__cache;

/* Generations read before a query runs; an entry stored with them is
 * stale as soon as any of them moves. */
typedef struct es__cache_ticket {
  uint64_t gen_global, gen_any, gen_source;
} es__cache_ticket;

/* NULL when cap_bytes is 0 (no cache); every function accepts NULL. */
es__cache *es__cache_new(size_t cap_bytes, int ttl_ms);
void es__cache_free(es__cache *cache);

void es__cache_take_ticket(es__cache *cache, const char *source_filter,
                      es__cache_ticket *ticket);
/* A copy of the cached results (freed with es_results_free), or NULL. */
es_results *es__cache_get(es__cache *cache, const void *key, size_t keylen);
/* Whether a fresh entry for key exists, without copying it; counts a
 * miss when not (so that a lookup is counted once: a peek that found one
 * is followed by es__cache_get or es__cache_count_miss). */
bool es__cache_peek(es__cache *cache, const void *key, size_t keylen);
void es__cache_count_miss(es__cache *cache);
/* source_filter: the search is limited to that source (and depends on it
 * alone); NULL: it depends on every source. */
void es__cache_put(es__cache *cache, const void *key, size_t keylen,
                   const char *source_filter, const es__cache_ticket *ticket,
                   const es_results *results);
/* Lookups answered and not since the cache was made, its entries and
 * bytes (all 0 without a cache). */
void es__cache_counts(es__cache *cache, int64_t *hits, int64_t *misses,
                      int64_t *entries, int64_t *bytes);
/* After a commit that wrote documents of source_id (NULL: of no source). */
void es__cache_invalidate_source(es__cache *cache, const char *source_id);
/* After a commit that may have touched documents of any source. */
void es__cache_invalidate_all(es__cache *cache);

#endif
