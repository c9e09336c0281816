/* http.c - one request's life on libmicrohttpd: route, token, limits and
 * content type decided when the headers are in (so that a request refused
 * is refused before its body is read), the body buffered or streamed, the
 * handler run, the answer queued and logged. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "http.h"
#include "tool_utf8.h"

double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- answering ----------------------------------------------------------- */

bool jout_open(jout *o) {
  memset(o, 0, sizeof *o);
  o->f = open_memstream(&o->buf, &o->len);
  if (o->f == NULL)
    return false;
  jw_init(&o->w, o->f);
  return true;
}

/* Queues body (malloc'd, taken) as the answer, with the header name:
 * value when name is not NULL. */
static void queue_with(request *rq, int status, const char *type, char *body,
                       size_t len, const char *allow, const char *name,
                       const char *value) {
  if (rq->answered) {
    free(body);
    return;
  }
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (r == NULL) {
    free(body);
    return;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, "X-Request-Id", rq->id);
  if (allow)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  if (name)
    MHD_add_response_header(r, name, value);
  if (status == MHD_HTTP_SERVICE_UNAVAILABLE || status == MHD_HTTP_CONTENT_TOO_LARGE)
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
  if (status == MHD_HTTP_UNAUTHORIZED)
    MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
  if (MHD_queue_response(rq->mc, (unsigned)status, r) == MHD_YES) {
    rq->answered = true;
    rq->status = status;
    rq->bytes_out = len;
  }
  MHD_destroy_response(r);
}

static void queue(request *rq, int status, const char *type, char *body,
                  size_t len, const char *allow) {
  queue_with(rq, status, type, body, len, allow, NULL, NULL);
}

void reply_header(request *rq, int status, const char *type, char *body,
                  size_t len, const char *name, const char *value) {
  queue_with(rq, status, type, body, len, NULL, name, value);
}

void reply_jout(request *rq, int status, jout *o) {
  fputc('\n', o->f);
  if (fclose(o->f) != 0 || o->buf == NULL) {
    free(o->buf);
    o->buf = NULL;
    reply_error(rq, 500, "ES_ENOMEM", "out of memory for the answer");
    return;
  }
  queue(rq, status, "application/json", o->buf, o->len, NULL);
  o->buf = NULL;
}

bool reply_stream(request *rq, int status, const char *type,
                  MHD_ContentReaderCallback read, void *ctx,
                  MHD_ContentReaderFreeCallback done) {
  struct MHD_Response *r = rq->answered ? NULL
      : MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, read, ctx,
                                          done);
  if (r == NULL) {
    done(ctx);
    return false;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, "X-Request-Id", rq->id);
  bool ok = MHD_queue_response(rq->mc, (unsigned)status, r) == MHD_YES;
  if (ok) {
    rq->answered = true;
    rq->status = status;
  }
  MHD_destroy_response(r); /* ctx is freed with it (done) */
  return ok;
}

void reply_raw(request *rq, int status, const char *type, const char *body,
               size_t len) {
  char *copy = malloc(len ? len : 1);
  if (copy == NULL)
    return;
  memcpy(copy, body, len);
  queue(rq, status, type, copy, len, NULL);
}

/* The error object, with Allow for a 405. */
static void error_with(request *rq, int status, const char *code,
                       const char *allow, const char *fmt, va_list ap) {
  char msg[1200];
  vsnprintf(msg, sizeof msg, fmt, ap);
  jout o;
  if (!jout_open(&o))
    return;
  jw_obj(&o.w);
  jw_key(&o.w, "error");
  jw_obj(&o.w);
  jw_key(&o.w, "status");
  jw_str(&o.w, code);
  jw_key(&o.w, "message");
  jw_str(&o.w, msg);
  jw_obj_end(&o.w);
  jw_obj_end(&o.w);
  fputc('\n', o.f);
  if (fclose(o.f) != 0 || o.buf == NULL) {
    free(o.buf);
    return;
  }
  queue(rq, status, "application/json", o.buf, o.len, allow);
}

void reply_error(request *rq, int status, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  error_with(rq, status, code, NULL, fmt, ap);
  va_end(ap);
}

/* An error answer with an Allow header (a 405). */
static void reply_error_allow(request *rq, int status, const char *code,
                              const char *allow, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void reply_error_allow(request *rq, int status, const char *code,
                              const char *allow, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  error_with(rq, status, code, allow, fmt, ap);
  va_end(ap);
}

void reply_405(request *rq, const char *allow) {
  reply_error_allow(rq, 405, "ES_EMETHOD", allow, "%s is not allowed here; "
                    "allowed: %s", rq->method, allow);
}

int http_status_of(es_status st) {
  switch (st) {
  case ES_OK:
  case ES_EPARTIAL:
    return 200;
  case ES_EINVAL:
  case ES_EDIM:
    return 400;
  case ES_ENOTFOUND:
    return 404;
  case ES_ECONFLICT:
    return 409;
  case ES_EPROVIDER: /* the embedding service failed us: a gateway's error */
    return 502;
  case ES_ECONNECT:
  case ES_ENOSTORE:
  case ES_ETIMEOUT:
  case ES_ECLUSTER:
    return 503;
  default:
    return 500;
  }
}

void reply_failure(request *rq, es_status st) {
  reply_error(rq, http_status_of(st), es_status_name(st), "%s",
              es_errmsg(rq->sv->store));
}

/* ---- the request's arguments ---------------------------------------------- */

static int hexval(char c) {
  return c >= '0' && c <= '9' ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

char *percent_decode(const char *s, size_t len, bool plus_is_space) {
  char *out = malloc(len + 1);
  if (out == NULL)
    return NULL;
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '%') {
      if (len - i < 3) {
        free(out);
        return NULL;
      }
      int a = hexval(s[i + 1]), b = hexval(s[i + 2]);
      if (a < 0 || b < 0 || (a == 0 && b == 0)) {
        free(out);
        return NULL;
      }
      out[n++] = (char)(a << 4 | b);
      i += 2;
    } else {
      out[n++] = plus_is_space && s[i] == '+' ? ' ' : s[i];
    }
  }
  out[n] = '\0';
  if (es__utf8_invalid_at(out, n) >= 0) {
    free(out);
    return NULL;
  }
  return out;
}

char *query_arg(request *rq, const char *name, bool *bad) {
  const char *raw = MHD_lookup_connection_value(rq->mc, MHD_GET_ARGUMENT_KIND, name);
  if (raw == NULL)
    return NULL;
  char *v = percent_decode(raw, strlen(raw), true);
  if (v == NULL && bad)
    *bad = true;
  return v;
}

int query_bool(request *rq, const char *name) {
  bool bad = false;
  char *v = query_arg(rq, name, &bad);
  int r = 0;
  if (bad || (v && strcmp(v, "true") && strcmp(v, "false") && strcmp(v, "1") &&
              strcmp(v, "0"))) {
    reply_error(rq, 400, "ES_EINVAL", "query argument %s must be true or false",
                name);
    r = -1;
  } else if (v) {
    r = strcmp(v, "true") == 0 || strcmp(v, "1") == 0;
  }
  free(v);
  return r;
}

bool may_see(const request *rq, const char *ws) {
  return rq->tok == NULL || token_sees(rq->tok, ws);
}

const char *default_workspace(request *rq, bool *stop) {
  *stop = false;
  if (rq->tok == NULL || rq->tok->all_workspaces)
    return NULL;
  if (rq->tok->n_workspaces == 1)
    return rq->tok->workspaces[0];
  reply_error(rq, 400, "ES_EINVAL", "this token may use several workspaces: "
              "name one with ?workspace= (or \"workspace\")");
  *stop = true;
  return NULL;
}

/* ---- the access log ---------------------------------------------------------- */

void access_log(request *rq) {
  FILE *f = rq->sv->cfg->log;
  if (f == NULL)
    return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[40];
  snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
           tm.tm_sec, ts.tv_nsec / 1000000);
  char *line = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&line, &len);
  if (m == NULL)
    return;
  jw w;
  jw_init(&w, m);
  jw_obj(&w);
  jw_key(&w, "time");
  jw_str(&w, when);
  jw_key(&w, "request_id");
  jw_str(&w, rq->id);
  jw_key(&w, "method");
  jw_str(&w, rq->method);
  jw_key(&w, "route");
  jw_str(&w, rq->route ? rq->route->name : "unknown");
  jw_key(&w, "status");
  jw_int(&w, rq->status);
  jw_key(&w, "bytes");
  jw_int(&w, (int64_t)rq->bytes_out);
  jw_key(&w, "ms");
  jw_num(&w, (double)(long)((now_s() - rq->t0) * 1e6) / 1000.0);
  jw_key(&w, "token");
  jw_str(&w, rq->tok ? rq->tok->name : NULL);
  jw_obj_end(&w);
  fputc('\n', m);
  if (fclose(m) == 0) {
    flockfile(f);
    fwrite(line, 1, len, f);
    fflush(f);
    funlockfile(f);
  }
  free(line);
}
