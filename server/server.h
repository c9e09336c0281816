/* server.h - `embstore serve`: the HTTP JSON API over one store.  Uses
 * only the library's public header, as any other program would. */
#ifndef EMBSTORE_SERVER_H
#define EMBSTORE_SERVER_H

#include <stddef.h>
#include <stdio.h>

#include "embstore.h"

typedef struct serve_config {
  const char *listen;      /* "HOST:PORT" ("127.0.0.1:8750"); port 0 picks one */
  const char *tokens_path; /* the tokens file; NULL: none (loopback only) */
  int max_connections;     /* beyond them a quick 503 (256) */
  size_t max_body_bytes;   /* a larger request body is refused, 413 (64 MiB) */
  int idle_timeout_s;      /* a connection silent this long is closed (30) */
  int header_timeout_s;    /* a request's headers must arrive in this (10) */
  int drain_timeout_s;     /* on SIGTERM, in-flight requests get this (30) */
  size_t batch_size;       /* documents per ingest transaction (1000) */
  FILE *log;               /* the access log, one JSON line a request */
  const char *ready_file;  /* written with "HOST:PORT\n" once listening */
} serve_config;

/* Fills config with the defaults above (log stderr). */
void serve_config_init(serve_config *config);

/* Serves store until SIGTERM or SIGINT, then drains and returns 0; returns
 * 2 with the reason in err when it cannot start. */
int serve_run(es_store *store, const serve_config *config, char *err,
              size_t cap);

#endif
