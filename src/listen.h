/* listen.h - hearing about other processes' writes (see listen.c).
 * Internal. */
#ifndef ES_LISTEN_H
#define ES_LISTEN_H

#include "internal.h"

typedef struct es__listener es__listener;

/* A listener for store s that invalidates cache (neither NULL); it
 * connects on first use.  NULL when out of memory. */
es__listener *es__listener_new(es_store *s, struct es__cache *cache);
/* Stops its thread, closes its connection, frees it.  NULL: nothing. */
void es__listener_free(es__listener *l);

/* Whether the cache may answer a search now (after es__listener_start,
 * which connects it when it does not listen).  While the listener
 * listens: sends one round trip over its connection (shared by concurrent
 * callers), so that every notification of a transaction that committed
 * before this call is applied to the cache first, and returns true.  While
 * it does not (connecting, or the connection lost): false, the cache must
 * not answer; it may still store, since listening again invalidates
 * everything.  A store without the notify triggers (sql/010) gives true:
 * its cache relies on the TTL. */
bool es__listener_sync(es__listener *l);

/* Connects when it does not listen (first use, or after losing its
 * connection; failed attempts back off from 50 ms to 5 s), in the
 * caller's thread, and starts its reader thread the first time. */
void es__listener_start(es__listener *l);

typedef struct es__listen_counts {
  int64_t notifications; /* received */
  int64_t reconnects;    /* connections lost and made again */
  int listening;         /* 1: listening now; 0: not (yet) */
} es__listen_counts;

void es__listener_counts(es__listener *l, es__listen_counts *out);

#endif
