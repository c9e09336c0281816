/* http.h - the HTTP tests' harness: `embstore serve` started as a real
 * process on a real port, and a real client (libcurl). */
#ifndef EMBSTORE_TEST_HTTP_H
#define EMBSTORE_TEST_HTTP_H

#include <stddef.h>
#include <sys/types.h>

typedef struct th_server {
  pid_t pid;
  char base[64];    /* "http://127.0.0.1:PORT" */
  char addr[48];    /* "127.0.0.1:PORT" */
  char log[4096];   /* its stderr (the access log): a file */
} th_server;

/* Starts `embstore --db CONNINFO serve --listen 127.0.0.1:0 ARGS...` on
 * this test's database (conninfo NULL) or conninfo, and waits until it
 * listens.  Killed at exit if the test does not stop it. */
th_server th_serve_start(const char *conninfo, const char *const *args);
/* SIGTERM, then its exit status (128 + signal when killed). */
int th_serve_stop(th_server *s);
/* Waits for it to exit by itself; its exit status as th_serve_stop's. */
int th_serve_wait(th_server *s);
/* Its peak resident set so far (VmHWM), in KiB. */
long th_serve_peak_rss_kib(const th_server *s);
/* A raw TCP connection to it (a blocking socket), or -1 with errno set
 * when it refuses. */
int th_serve_socket(const th_server *s);
/* Everything it wrote to stderr so far (malloc'd). */
char *th_serve_log(const th_server *s);

typedef struct th_http {
  long status;      /* 0 when the request failed at the transport */
  char *body;       /* malloc'd, NUL-terminated */
  size_t len;
  char *headers;    /* the response's header lines */
  char error[256];  /* the transport's error, when status is 0 */
} th_http;

/* One request.  headers: NULL-terminated "Name: value" lines, or NULL;
 * body may be NULL (no body). */
th_http th_request(const th_server *s, const char *method, const char *path,
                   const char *const *headers, const char *body, size_t len);
/* Fills buf (up to cap bytes) with the body's next bytes; 0 at its end. */
typedef size_t (*th_reader)(char *buf, size_t cap, void *user);
/* One request whose body comes from fn, never held whole: len bytes
 * declared in Content-Length, or chunked when len is -1. */
th_http th_request_from(const th_server *s, const char *method, const char *path,
                        const char *const *headers, th_reader fn, void *user,
                        long long len);
/* Shorthands: a GET; a JSON POST; with a bearer token (token may be NULL). */
th_http th_get(const th_server *s, const char *path, const char *token);
/* The value of the line "name value" of s's /metrics; fails the test
 * when there is none. */
long long th_metric(const th_server *s, const char *name);
th_http th_post_json(const th_server *s, const char *path, const char *json,
                     const char *token);
void th_http_free(th_http *r);
/* The value of response header name (malloc'd), or NULL. */
char *th_http_header(const th_http *r, const char *name);

/* r must have answered status want (else fails, showing the body or the
 * transport's error). */
#define ASSERT_HTTP(r, want)                                               \
  do {                                                                     \
    if ((r).status != (want))                                              \
      FAIL("HTTP %ld, want %d: %.400s%s", (r).status, (want),              \
           (r).body ? (r).body : "", (r).error);                           \
  } while (0)

#endif
