/* server.c - the server's life: listen, answer each request (see the
 * access handler below), reload the tokens on SIGHUP, and on SIGTERM or
 * SIGINT stop accepting, let the requests in flight finish (bounded),
 * and return.
 *
 * libmicrohttpd runs a thread per connection: a handler blocks while the
 * library talks to the database, and a slow upload on one connection
 * never holds up another.  What bounds the database's work is the store's
 * pool (es_options.pool_size): a request waits there for a connection. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http.h"

void serve_config_init(serve_config *c) {
  memset(c, 0, sizeof *c);
  c->listen = "127.0.0.1:8750";
  c->max_connections = 256;
  c->max_body_bytes = (size_t)64 << 20;
  c->idle_timeout_s = 30;
  c->header_timeout_s = 10;
  c->drain_timeout_s = 30;
  c->batch_size = 1000;
  c->log = stderr;
}

/* ---- connections: counted, and cut when their headers dawdle ------------- */

typedef struct conn {
  struct conn *next, *prev;
  int fd;
  double waiting_since; /* for the next request's headers; 0 while one runs */
  bool first;           /* no request yet on it */
} conn;

static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static conn *conns;

static void on_connection(void *cls, struct MHD_Connection *mc, void **ctx,
                          enum MHD_ConnectionNotificationCode code) {
  server *sv = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    conn *c = calloc(1, sizeof *c);
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (c) {
      c->fd = info ? info->connect_fd : -1;
      c->waiting_since = now_s();
      c->first = true;
      pthread_mutex_lock(&conns_mu);
      c->next = conns;
      if (conns)
        conns->prev = c;
      conns = c;
      pthread_mutex_unlock(&conns_mu);
    }
    *ctx = c;
    pthread_mutex_lock(&sv->mu);
    sv->connections++;
    pthread_mutex_unlock(&sv->mu);
  } else {
    conn *c = *ctx;
    if (c) {
      pthread_mutex_lock(&conns_mu);
      if (c->prev)
        c->prev->next = c->next;
      else
        conns = c->next;
      if (c->next)
        c->next->prev = c->prev;
      pthread_mutex_unlock(&conns_mu);
      free(c);
    }
    pthread_mutex_lock(&sv->mu);
    sv->connections--;
    pthread_mutex_unlock(&sv->mu);
  }
}

/* The connection's record (its headers arrived: stop the clock). */
static void headers_arrived(struct MHD_Connection *mc, bool arrived) {
  const union MHD_ConnectionInfo *info =
      MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  if (info == NULL || info->socket_context == NULL)
    return;
  conn *c = info->socket_context;
  pthread_mutex_lock(&conns_mu);
  c->waiting_since = arrived ? 0 : now_s();
  c->first = false;
  pthread_mutex_unlock(&conns_mu);
}

/* The watchdog: a connection whose request headers have not all arrived
 * header_timeout_s after it opened (or, between requests, idle plus
 * header timeout after the last answer) is shut down: a client sending a
 * byte now and then never reaches libmicrohttpd's idle timeout. */
static void *watchdog(void *arg) {
  server *sv = arg;
  for (;;) {
    struct timespec tick = {0, 250 * 1000 * 1000};
    nanosleep(&tick, NULL);
    pthread_testcancel();
    double now = now_s();
    pthread_mutex_lock(&conns_mu);
    for (conn *c = conns; c; c = c->next) {
      double limit = c->first ? sv->cfg->header_timeout_s
                              : sv->cfg->idle_timeout_s + sv->cfg->header_timeout_s;
      if (c->waiting_since > 0 && now - c->waiting_since > limit && c->fd >= 0) {
        shutdown(c->fd, SHUT_RDWR); /* libmicrohttpd then closes it */
        c->waiting_since = 0;
      }
    }
    pthread_mutex_unlock(&conns_mu);
  }
  return NULL;
}

/* ---- one request ------------------------------------------------------------ */

static volatile int stopping;

/* A new request: its id, route, token and limits.  Answers it at once when
 * it is refused. */
static request *request_start(server *sv, struct MHD_Connection *mc,
                              const char *url, const char *method) {
  request *rq = calloc(1, sizeof *rq);
  if (rq == NULL)
    return NULL;
  rq->sv = sv;
  rq->mc = mc;
  rq->t0 = now_s();
  snprintf(rq->method, sizeof rq->method, "%s", method);
  rq->url = url;
  snprintf(rq->path, sizeof rq->path, "%s", url);
  headers_arrived(mc, true);
  const char *given = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-Request-Id");
  if (given && given[0] && strlen(given) < sizeof rq->id &&
      strspn(given, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789-_.:") == strlen(given)) {
    snprintf(rq->id, sizeof rq->id, "%s", given);
  } else {
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
      r = (uint64_t)(rq->t0 * 1e9);
    pthread_mutex_lock(&sv->mu);
    uint64_t n = ++sv->next_id;
    pthread_mutex_unlock(&sv->mu);
    snprintf(rq->id, sizeof rq->id, "%016llx-%llu", (unsigned long long)r,
             (unsigned long long)n);
  }
  pthread_mutex_lock(&sv->mu);
  bool full = sv->connections > sv->cfg->max_connections;
  bool closing = stopping;
  rq->tokens = tokens_ref(sv->tokens);
  if (!full && !closing) {
    sv->in_flight++;
    rq->counted = true;
  }
  pthread_mutex_unlock(&sv->mu);
  if (closing) {
    reply_error(rq, 503, "ES_ESHUTDOWN", "the server is shutting down");
    return rq;
  }
  if (full) {
    reply_error(rq, 503, "ES_EBUSY", "more than %d connections are open; try "
                "again shortly", sv->cfg->max_connections);
    return rq;
  }
  return rq;
}

/* Whether the request's token lets it through (answers 401/403 if not). */
static bool authorised(request *rq) {
  if (rq->tokens == NULL || rq->route->need == 0)
    return true;
  const char *h = MHD_lookup_connection_value(rq->mc, MHD_HEADER_KIND,
                                              MHD_HTTP_HEADER_AUTHORIZATION);
  if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || h[7] == '\0') {
    reply_error(rq, 401, "ES_EAUTH", "send a token: Authorization: Bearer TOKEN");
    return false;
  }
  rq->tok = tokens_find(rq->tokens, h + 7, strlen(h + 7));
  if (rq->tok == NULL) {
    reply_error(rq, 401, "ES_EAUTH", "unknown token");
    return false;
  }
  if (rq->tok->role < rq->route->need) {
    reply_error(rq, 403, "ES_EFORBIDDEN", "this token's role is %s; %s %s "
                "needs %s", role_name(rq->tok->role), rq->method,
                rq->route->name, role_name(rq->route->need));
    return false;
  }
  return true;
}

/* The media type of the request body, without parameters, lower case. */
static void media_type(request *rq, char *out, size_t cap) {
  const char *ct = MHD_lookup_connection_value(rq->mc, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_TYPE);
  size_t n = 0;
  for (; ct && ct[n] && ct[n] != ';' && ct[n] != ' ' && n + 1 < cap; n++)
    out[n] = (char)(ct[n] >= 'A' && ct[n] <= 'Z' ? ct[n] + 32 : ct[n]);
  out[n] = '\0';
}

/* Checks what can be checked before the body: route, method, token,
 * content type, declared length.  false when rq was answered. */
static bool admit(request *rq) {
  char allow[64];
  int status = 404;
  /* The whole path, never rq->path: cut at 256 bytes, a long id would
   * name the document of its prefix. */
  rq->route = route_find(rq->method, rq->url, &rq->param, &status, allow,
                         sizeof allow);
  if (rq->route == NULL) {
    if (status == 405)
      reply_405(rq, allow);
    else if (status == 400)
      reply_error(rq, 400, "ES_EINVAL", "the path holds a bad percent escape, "
                  "a NUL byte or invalid UTF-8");
    else
      reply_error(rq, 404, "ES_ENOROUTE", "no such path: %s%s", rq->path,
                  strlen(rq->url) >= sizeof rq->path ? "..." : "");
    return false;
  }
  if (!authorised(rq))
    return false;
  const char *cl = MHD_lookup_connection_value(rq->mc, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_CONTENT_LENGTH);
  const char *te = MHD_lookup_connection_value(rq->mc, MHD_HEADER_KIND,
                                               MHD_HTTP_HEADER_TRANSFER_ENCODING);
  unsigned long long declared = cl ? strtoull(cl, NULL, 10) : 0;
  bool has_body = declared > 0 || te != NULL;
  char type[64];
  media_type(rq, type, sizeof type);
  if (rq->route->body == BODY_NONE) {
    if (has_body) {
      reply_error(rq, 415, "ES_EMEDIA", "%s %s takes no body", rq->method,
                  rq->route->name);
      return false;
    }
    return true;
  }
  if (!has_body && rq->route->body == BODY_JSON)
    return true; /* no body at all: {} (cleanup with its defaults) */
  bool json = strcmp(type, "application/json") == 0;
  rq->is_ndjson = rq->route->body == BODY_INGEST &&
                  (strcmp(type, "application/x-ndjson") == 0 ||
                   strcmp(type, "application/jsonl") == 0);
  if (!json && !rq->is_ndjson) {
    reply_error(rq, 415, "ES_EMEDIA", "the body must be %s, not \"%s\"",
                rq->route->body == BODY_INGEST
                    ? "application/x-ndjson or application/json"
                    : "application/json",
                type[0] ? type : "(no Content-Type)");
    return false;
  }
  if (declared > rq->sv->cfg->max_body_bytes) {
    reply_error(rq, 413, "ES_ETOOLARGE", "the body is %llu bytes; the limit is "
                "%zu (--max-body-mb)", declared, rq->sv->cfg->max_body_bytes);
    return false;
  }
  if (rq->is_ndjson)
    return ingest_begin(rq);
  return true;
}

/* A chunk of the body; false when the connection must be closed: a body
 * without a declared length passed the limit, and libmicrohttpd cannot
 * answer in the middle of an upload, so it stops reading there. */
static bool take_body(request *rq, const char *data, size_t len) {
  rq->received += len;
  if (rq->answered) /* refused before its body: discarded, up to the limit */
    return rq->received <= rq->sv->cfg->max_body_bytes;
  if (rq->received > rq->sv->cfg->max_body_bytes) {
    reply_error(rq, 413, "ES_ETOOLARGE", "the body is over the limit of %zu "
                "bytes (--max-body-mb)", rq->sv->cfg->max_body_bytes);
    if (!rq->answered)
      rq->status = 413; /* for the log: the connection is cut */
    return rq->answered;
  }
  if (rq->is_ndjson) {
    ingest_feed(rq, data, len);
    return true;
  }
  if (rq->len + len + 1 > rq->cap) {
    size_t cap = rq->cap ? rq->cap : 4096;
    while (cap < rq->len + len + 1)
      cap *= 2;
    char *grown = realloc(rq->body, cap);
    if (grown == NULL) {
      reply_error(rq, 500, "ES_ENOMEM", "out of memory for the request body");
      return true;
    }
    rq->body = grown;
    rq->cap = cap;
  }
  memcpy(rq->body + rq->len, data, len);
  rq->len += len;
  rq->body[rq->len] = '\0';
  return true;
}

/* Paths and arguments reach the handlers as the client sent them: a
 * segment is decoded only once it is split off, so that "%2F" in an id
 * stays part of the id. */
static size_t keep_escaped(void *cls, struct MHD_Connection *mc, char *s) {
  (void)cls;
  (void)mc;
  return strlen(s);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **ctx) {
  (void)version;
  server *sv = cls;
  request *rq = *ctx;
  if (rq == NULL) {
    rq = request_start(sv, mc, url, method);
    if (rq == NULL)
      return MHD_NO;
    *ctx = rq;
    if (!rq->answered)
      admit(rq);
    return MHD_YES;
  }
  if (*upload_size > 0) {
    bool go_on = take_body(rq, upload, *upload_size);
    *upload_size = 0;
    return go_on ? MHD_YES : MHD_NO;
  }
  if (!rq->answered)
    rq->route->handle(rq);
  if (!rq->answered)
    reply_error(rq, 500, "ES_EINTERNAL", "the handler gave no answer");
  return MHD_YES;
}

/* After the answer went out (or the connection broke): log, count, free. */
static void on_completed(void *cls, struct MHD_Connection *mc, void **ctx,
                         enum MHD_RequestTerminationCode code) {
  server *sv = cls;
  request *rq = *ctx;
  headers_arrived(mc, false);
  if (rq == NULL)
    return;
  if (!rq->answered && rq->status == 0)
    rq->status = code == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? 408 : 499;
  access_log(rq);
  prom_observe(sv->metrics, rq->route ? rq->route->name : "unknown", rq->status,
               now_s() - rq->t0);
  ingest_free(rq->stream);
  tokens_release(rq->tokens);
  free(rq->param);
  free(rq->body);
  pthread_mutex_lock(&sv->mu);
  if (rq->counted && --sv->in_flight == 0)
    pthread_cond_broadcast(&sv->idle_cv);
  pthread_mutex_unlock(&sv->mu);
  free(rq);
  *ctx = NULL;
}

/* ---- the listener -------------------------------------------------------------- */

/* HOST:PORT into an address; false (err set) when it is not one. */
static bool parse_listen(const char *spec, struct sockaddr_storage *ss,
                         socklen_t *len, bool *loopback, char *err, size_t cap) {
  char host[256];
  const char *colon = strrchr(spec, ':');
  if (colon == NULL || colon == spec || (size_t)(colon - spec) >= sizeof host) {
    snprintf(err, cap, "--listen must be HOST:PORT, not \"%s\"", spec);
    return false;
  }
  memcpy(host, spec, (size_t)(colon - spec));
  host[colon - spec] = '\0';
  if (host[0] == '[' && host[strlen(host) - 1] == ']') {
    memmove(host, host + 1, strlen(host));
    host[strlen(host) - 1] = '\0';
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_NUMERICSERV}, *res = NULL;
  int rc = getaddrinfo(host, colon + 1, &hints, &res);
  if (rc != 0) {
    snprintf(err, cap, "--listen %s: %s", spec, gai_strerror(rc));
    return false;
  }
  memcpy(ss, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const void *)ss;
    *loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  } else {
    const struct sockaddr_in6 *in6 = (const void *)ss;
    *loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
  }
  return true;
}

/* Writes "HOST:PORT\n" to path, whole or not at all. */
static void write_ready(const char *path, const char *host, unsigned port) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (f == NULL)
    return;
  fprintf(f, "%s:%u\n", host, port);
  if (fclose(f) == 0)
    rename(tmp, path);
}

/* Reloads the tokens file; the old tokens stay when it is bad. */
static void reload_tokens(server *sv) {
  char err[512];
  token_set *fresh = tokens_load(sv->cfg->tokens_path, err, sizeof err);
  if (fresh == NULL) {
    fprintf(stderr, "embstore serve: SIGHUP: %s; the tokens loaded before "
            "stay in use\n", err);
    return;
  }
  pthread_mutex_lock(&sv->mu);
  token_set *old = sv->tokens;
  sv->tokens = fresh;
  pthread_mutex_unlock(&sv->mu);
  tokens_release(old);
  fprintf(stderr, "embstore serve: SIGHUP: %zu tokens loaded\n", tokens_count(fresh));
}

/* Waits for requests in flight to end, at most drain_timeout_s. */
static void drain(server *sv) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += sv->cfg->drain_timeout_s;
  pthread_mutex_lock(&sv->mu);
  while (sv->in_flight > 0 &&
         pthread_cond_timedwait(&sv->idle_cv, &sv->mu, &until) == 0)
    ;
  int left = sv->in_flight;
  pthread_mutex_unlock(&sv->mu);
  if (left > 0)
    fprintf(stderr, "embstore serve: %d requests still running after %d s; "
            "stopping anyway\n", left, sv->cfg->drain_timeout_s);
}

int serve_run(es_store *store, const serve_config *cfg, char *err, size_t cap) {
  struct sockaddr_storage ss;
  socklen_t sslen;
  bool loopback = false;
  if (!parse_listen(cfg->listen, &ss, &sslen, &loopback, err, cap))
    return 2;
  server sv = {.store = store, .cfg = cfg};
  if (cfg->tokens_path) {
    sv.tokens = tokens_load(cfg->tokens_path, err, cap);
    if (sv.tokens == NULL)
      return 2;
  } else if (!loopback) {
    snprintf(err, cap, "without --tokens the server listens only on a loopback "
             "address (127.0.0.1, ::1), not %s: anyone who reaches it could "
             "read and delete everything", cfg->listen);
    return 2;
  }
  pthread_mutex_init(&sv.mu, NULL);
  pthread_cond_init(&sv.idle_cv, NULL);
  sv.metrics = prom_new();
  sv.mcp = mcp_sessions_new();

  /* Signals are taken by this thread alone (sigwait below): every thread
   * started from here on inherits them blocked. */
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  sigaddset(&sigs, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);

  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                   MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                   (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
  sv.daemon = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, &sv,
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)(cfg->max_connections + 64),
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout_s,
      MHD_OPTION_NOTIFY_COMPLETED, on_completed, &sv,
      MHD_OPTION_NOTIFY_CONNECTION, on_connection, &sv,
      MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped, NULL,
      MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
      MHD_OPTION_END);
  if (sv.daemon == NULL) {
    snprintf(err, cap, "cannot listen on %s: %s", cfg->listen,
             errno ? strerror(errno) : "libmicrohttpd refused to start");
    tokens_release(sv.tokens);
    prom_free(sv.metrics);
    mcp_sessions_free(sv.mcp);
    return 2;
  }
  pthread_t dog;
  bool dog_running = pthread_create(&dog, NULL, watchdog, &sv) == 0;
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(sv.daemon, MHD_DAEMON_INFO_BIND_PORT);
  unsigned port = di ? di->port : 0;
  char host[64];
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof host);
  else
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof host);
  fprintf(stderr, "embstore serve: listening on %s%s%s:%u%s\n",
          ss.ss_family == AF_INET6 ? "[" : "", host,
          ss.ss_family == AF_INET6 ? "]" : "", port,
          sv.tokens ? "" : " (no tokens: loopback only)");
  const char *model = es_embed_model(store);
  fprintf(stderr, "embstore serve: MCP at /mcp (%s%s)\n",
          model ? "texts are embedded by model " : "no embedding provider: "
                                                   "store needs embeddings, "
                                                   "query searches text",
          model ? model : "");
  if (cfg->ready_file)
    write_ready(cfg->ready_file, host, port);

  for (;;) {
    int sig = 0;
    if (sigwait(&sigs, &sig) != 0)
      continue;
    if (sig == SIGHUP && cfg->tokens_path) {
      reload_tokens(&sv);
      continue;
    }
    if (sig == SIGTERM || sig == SIGINT)
      break;
  }
  fprintf(stderr, "embstore serve: stopping: no new connections; finishing "
          "the requests in flight\n");
  stopping = 1;
  MHD_socket fd = MHD_quiesce_daemon(sv.daemon);
  if (fd != MHD_INVALID_SOCKET)
    close(fd);
  drain(&sv);
  MHD_stop_daemon(sv.daemon);
  if (dog_running) {
    pthread_cancel(dog);
    pthread_join(dog, NULL);
  }
  tokens_release(sv.tokens);
  prom_free(sv.metrics);
  mcp_sessions_free(sv.mcp);
  pthread_cond_destroy(&sv.idle_cv);
  pthread_mutex_destroy(&sv.mu);
  fprintf(stderr, "embstore serve: stopped\n");
  return 0;
}
