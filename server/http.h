/* http.h - what the server's parts share: the server, a request, the
 * routes, and how a request is answered. */
#ifndef EMBSTORE_HTTP_H
#define EMBSTORE_HTTP_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "auth.h"
#include "jsonw.h"
#include "server.h"

typedef struct request request;
typedef struct prom prom;

/* What a route does with a request body. */
typedef enum body_use {
  BODY_NONE,   /* none is read (a body is refused: 415 unless empty) */
  BODY_JSON,   /* application/json, read whole up to the limit */
  BODY_INGEST  /* application/x-ndjson streamed, or application/json whole */
} body_use;

typedef struct route {
  const char *method;
  const char *pattern; /* a path; "{}" at its end stands for one segment */
  role need;           /* 0: no token needed */
  body_use body;
  void (*handle)(request *rq);
  const char *name;    /* for logs and metrics: the pattern with "{id}" */
} route;

typedef struct server {
  es_store *store;
  const serve_config *cfg;
  struct MHD_Daemon *daemon;
  pthread_mutex_t mu;
  token_set *tokens;        /* NULL: no tokens file */
  int connections;          /* open connections */
  int in_flight;            /* requests being answered */
  pthread_cond_t idle_cv;   /* signalled when in_flight drops */
  uint64_t next_id;
  prom *metrics;
  int dim;                  /* the store's, 0 until known */
  struct mcp_sessions *mcp; /* /mcp's sessions (h_mcp.c) */
} server;

typedef struct ingest_stream ingest_stream;

struct request {
  server *sv;
  struct MHD_Connection *mc;
  const route *route;
  char *param;             /* the decoded {} segment, or NULL */
  char method[16];
  const char *url;         /* the raw path, whole (libmicrohttpd's, valid
                              for the request's life): what is routed */
  char path[256];          /* for messages (raw, cut) */
  char id[80];             /* X-Request-Id, echoed or generated */
  double t0;
  token_set *tokens;       /* held for the request's life */
  const token *tok;        /* NULL without tokens */
  bool is_ndjson;
  char *body;              /* BODY_JSON (and JSON ingest): the whole body */
  size_t len, cap;
  size_t received;         /* body bytes seen */
  ingest_stream *stream;   /* BODY_INGEST, NDJSON */
  bool answered;           /* a response is queued */
  bool counted;            /* counted in server.in_flight */
  int status;
  size_t bytes_out;
};

/* ---- answering (http.c) ---- */

/* A JSON body being written: jw over a growing buffer. */
typedef struct jout {
  FILE *f;
  char *buf;
  size_t len;
  jw w;
} jout;

/* Starts one; false when out of memory. */
bool jout_open(jout *o);
/* Answers rq with status and o's JSON (o is consumed). */
void reply_jout(request *rq, int status, jout *o);
/* Answers rq with status and body (malloc'd, taken) of type, with the
 * header name: value when name is not NULL. */
void reply_header(request *rq, int status, const char *type, char *body,
                  size_t len, const char *name, const char *value);
/* Answers rq with status and a body of the given content type (copied). */
void reply_raw(request *rq, int status, const char *type, const char *body,
               size_t len);
/* Answers rq with status and a body of unknown length that read produces
 * (chunked), ctx freed by done with the response, also when it cannot be
 * queued (then false). */
bool reply_stream(request *rq, int status, const char *type,
                  MHD_ContentReaderCallback read, void *ctx,
                  MHD_ContentReaderFreeCallback done);
/* {"error":{"status":code,"message":...}}; code is "ES_..." or one of the
 * server's own (ES_EAUTH, ES_EFORBIDDEN, ES_ETOOLARGE, ...). */
void reply_error(request *rq, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* 405 with Allow: allow. */
void reply_405(request *rq, const char *allow);
/* The library's failure st of the last call on the store, with its
 * message, at the HTTP status that fits it. */
void reply_failure(request *rq, es_status st);
/* HTTP status of a library status. */
int http_status_of(es_status st);

/* The query argument name, percent-decoded (malloc'd), or NULL when it is
 * absent; *bad is set when it is not valid UTF-8. */
char *query_arg(request *rq, const char *name, bool *bad);
/* A boolean query argument: true/false/1/0; false when absent.  Returns
 * -1 (and answers 400) when it is something else. */
int query_bool(request *rq, const char *name);
/* Percent-decodes s[0..len) into a new string; NULL when it holds a bad
 * escape, a NUL byte or invalid UTF-8. */
char *percent_decode(const char *s, size_t len, bool plus_is_space);

/* Whether the request's token may act on workspace ws (NULL: none);
 * without tokens every request may. */
bool may_see(const request *rq, const char *ws);
/* The workspace a tenant's request applies to when it names none: the
 * token's only one; NULL for an unlimited token (or none).  When the
 * token has several, answers 400 and sets *stop. */
const char *default_workspace(request *rq, bool *stop);

/* Whether the document id exists within the token's workspaces. */
bool document_visible(request *rq, const char *id);

/* Monotonic seconds. */
double now_s(void);

/* ---- routes (routes.c) and handlers (h_*.c) ---- */
extern const route routes[];
extern const size_t n_routes;
/* The route for method and path; *param gets the decoded segment.
 * Returns NULL with *status 404 (no such path), 405 (path known, method
 * not: *allow lists the methods) or 400 (a segment that does not decode). */
const route *route_find(const char *method, const char *path, char **param,
                        int *status, char *allow, size_t cap);

void h_healthz(request *rq);
void h_readyz(request *rq);
void h_openapi(request *rq);
void h_ingest(request *rq);
void h_get_document(request *rq);
void h_delete_document(request *rq);
void h_delete_source(request *rq);
void h_delete_filter(request *rq);
void h_list_documents(request *rq);
/* The documents GET /v1/documents and GET /v1/export read: ?source=,
 * ?workspace=, ?filter= and the token's workspaces, into p (its strings
 * owned by sel); false when rq was answered (400, 403). */
typedef struct selection {
  char *source, *ws, *filter;
} selection;
bool selection_read(request *rq, selection *sel, es_list_params *p);
void selection_free(selection *sel);
void h_export(request *rq);
void h_search(request *rq);
void h_stats(request *rq);
void h_cleanup(request *rq);
void h_metrics_json(request *rq);
void h_metrics_prom(request *rq);
/* MCP's Streamable HTTP transport (h_mcp.c). */
typedef struct mcp_sessions mcp_sessions;
mcp_sessions *mcp_sessions_new(void);
void mcp_sessions_free(mcp_sessions *t);
void h_mcp_post(request *rq);
void h_mcp_delete(request *rq);

/* Ingest streaming (h_ingest.c): the body as it arrives.  false when the
 * request was answered already (an error). */
bool ingest_begin(request *rq);
void ingest_feed(request *rq, const char *data, size_t len);
void ingest_free(ingest_stream *s);

/* ---- metrics (prom.c) ---- */
prom *prom_new(void);
void prom_free(prom *p);
void prom_observe(prom *p, const char *name, int status, double seconds);
/* Appends the exposition of the server's own figures to o->f. */
void prom_write(prom *p, FILE *f);

/* ---- the access log (http.c) ---- */
void access_log(request *rq);

#endif
