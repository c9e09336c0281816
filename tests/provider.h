/* provider.h - an OpenAI-compatible embeddings service for the tests: the
 * protocol of POST /v1/embeddings over a real socket (libmicrohttpd), with
 * a deterministic embedding function of the text (texts that share words
 * are near) and the faults a real service has: 429 with Retry-After, 5xx,
 * a request that never answers, vectors of the wrong dimension, a missing
 * or wrong API key.  Only the remote service is simulated; the store the
 * tests write to is the real PostgreSQL. */
#ifndef EMBSTORE_TEST_PROVIDER_H
#define EMBSTORE_TEST_PROVIDER_H

#include <stddef.h>

typedef struct th_provider th_provider;

/* Starts a service making vectors of dim dimensions on 127.0.0.1 (an
 * ephemeral port); with key not NULL, requests must carry "Authorization:
 * Bearer KEY" (else 401 with an OpenAI-style error).  Fails the test when
 * it cannot start. */
th_provider *th_provider_start(int dim, const char *key);
/* Stops it (releasing hung requests first) and frees it.  NULL: no-op. */
void th_provider_stop(th_provider *p);
/* Its base URL, "http://127.0.0.1:PORT/v1". */
const char *th_provider_url(const th_provider *p);

/* The next n requests are answered with HTTP status (and a Retry-After
 * header of retry_after when not NULL) and an error body. */
void th_provider_fail_next(th_provider *p, int n, int status,
                           const char *retry_after);
/* Every request holding a text that contains word is answered with HTTP
 * status and an error body ("" or NULL: none). */
void th_provider_fail_for(th_provider *p, const char *word, int status);
/* The next n requests are never answered (until the service stops). */
void th_provider_hang_next(th_provider *p, int n);
/* Texts containing word get a vector of dim + 1 dimensions. */
void th_provider_wrong_dim_for(th_provider *p, const char *word);

/* Requests received so far (answered or not). */
int th_provider_requests(th_provider *p);
/* Monotonic seconds (th_now) at which request i (0-based) arrived. */
double th_provider_request_at(th_provider *p, int i);
/* The most inputs one request carried, and all inputs received. */
int th_provider_max_inputs(th_provider *p);
int th_provider_inputs(th_provider *p);
/* The model named by the last request (borrowed; "" before any). */
const char *th_provider_last_model(th_provider *p);

/* The service's embedding of text: dim floats of unit length. */
void th_provider_embed(const char *text, int dim, float *out);

#endif
