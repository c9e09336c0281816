/* h_mcp.c - MCP's Streamable HTTP transport at /mcp (server/mcp.c does
 * the protocol): POST carries one JSON-RPC message and is answered with
 * one (application/json), or 202 for a notification or a response;
 * initialize opens a session whose id comes back in Mcp-Session-Id and
 * must come with every later message; DELETE ends it; GET (a stream from
 * the server) is not offered: 405.  Behind the same tokens as the API: a
 * read token's session lists only the read-only tools, cleanup needs
 * admin, a tenant's token acts within its workspaces (mcp_tools.c), and a
 * session belongs to the token that opened it.  The Origin
 * header, when sent, must be this server's own or a loopback one (DNS
 * rebinding). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "mcp.h"

#define MAX_SESSIONS 1024
#define SESSION_IDLE_S 3600.0 /* a session unused this long may be dropped */

/* A session's protocol state, shared by the requests that use it: freed
 * by the last of them once the session has ended. */
typedef struct held {
  mcp *m;
  int users;  /* requests using it now, and 1 while it is in the table */
} held;

typedef struct session {
  char id[33];
  held *h;
  bool tokened;                 /* opened with a token (tokens in use) */
  uint8_t digest[SHA256_BYTES]; /* that token's */
  double last;
} session;

struct mcp_sessions {
  pthread_mutex_t mu;
  session s[MAX_SESSIONS];
  size_t n;
};

mcp_sessions *mcp_sessions_new(void) {
  mcp_sessions *t = calloc(1, sizeof *t);
  if (t)
    pthread_mutex_init(&t->mu, NULL);
  return t;
}

void mcp_sessions_free(mcp_sessions *t) {
  if (t == NULL)
    return;
  for (size_t i = 0; i < t->n; i++) { /* no request runs any more */
    mcp_free(t->s[i].h->m);
    free(t->s[i].h);
  }
  pthread_mutex_destroy(&t->mu);
  free(t);
}

/* Whether the request's token is the one that opened s. */
static bool same_token(const request *rq, const session *s) {
  if (rq->tok == NULL)
    return !s->tokened;
  return s->tokened && memcmp(rq->tok->digest, s->digest, SHA256_BYTES) == 0;
}

/* Gives a use of h back (under t->mu); the last frees it. */
static void release(held *h) {
  if (--h->users == 0) {
    mcp_free(h->m);
    free(h);
  }
}

/* The session named by Mcp-Session-Id (under t->mu); NULL after answering
 * (400 without one, 404 for one unknown or another token's). */
static session *find(request *rq, mcp_sessions *t, bool *present) {
  const char *id = MHD_lookup_connection_value(rq->mc, MHD_HEADER_KIND, "Mcp-Session-Id");
  *present = id != NULL;
  if (id == NULL) {
    reply_error(rq, 400, "ES_EINVAL", "this request needs the Mcp-Session-Id "
                "header that initialize answered with");
    return NULL;
  }
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->s[i].id, id) == 0 && same_token(rq, &t->s[i])) {
      t->s[i].last = now_s();
      return &t->s[i];
    }
  reply_error(rq, 404, "ES_ENOTFOUND", "no MCP session with that id (ended, "
              "expired, or opened with another token): initialize again");
  return NULL;
}

/* The loopback hosts and this server's own Host: the Origins allowed. */
static bool origin_allowed(request *rq) {
  const char *origin = MHD_lookup_connection_value(rq->mc, MHD_HEADER_KIND, "Origin");
  if (origin == NULL)
    return true; /* not a browser */
  const char *host = MHD_lookup_connection_value(rq->mc, MHD_HEADER_KIND, "Host");
  const char *rest = strncmp(origin, "http://", 7) == 0 ? origin + 7
                     : strncmp(origin, "https://", 8) == 0 ? origin + 8 : NULL;
  if (rest == NULL)
    return false;
  if (host && strcasecmp(rest, host) == 0)
    return true;
  static const char *const loopback[] = {"localhost", "127.0.0.1", "[::1]"};
  for (size_t i = 0; i < 3; i++) {
    size_t n = strlen(loopback[i]);
    if (strncasecmp(rest, loopback[i], n) == 0 && (rest[n] == '\0' || rest[n] == ':'))
      return true;
  }
  return false;
}

/* Checks what every /mcp request must satisfy; false after answering. */
static bool admissible(request *rq) {
  if (!origin_allowed(rq)) {
    reply_error(rq, 403, "ES_EFORBIDDEN", "Origin not allowed: only this "
                "server's own origin and loopback ones may use /mcp");
    return false;
  }
  const char *v = MHD_lookup_connection_value(rq->mc, MHD_HEADER_KIND,
                                              "MCP-Protocol-Version");
  if (v && !mcp_version_supported(v)) {
    reply_error(rq, 400, "ES_EINVAL", "unsupported MCP-Protocol-Version \"%.40s\"", v);
    return false;
  }
  return true;
}

/* A session's configuration from the request's token. */
static void config_of(request *rq, mcp_config *cfg) {
  mcp_config_init(cfg);
  cfg->batch_size = rq->sv->cfg->batch_size;
  cfg->max_message = rq->sv->cfg->max_body_bytes;
  cfg->log = rq->sv->cfg->log;
  role r = rq->tok ? rq->tok->role : ROLE_ADMIN; /* no tokens: loopback only */
  cfg->read_only = r < ROLE_WRITE;
  cfg->admin = r >= ROLE_ADMIN;
  if (rq->tok && !rq->tok->all_workspaces) { /* a tenant */
    cfg->workspaces = (const char *const *)rq->tok->workspaces;
    cfg->n_workspaces = rq->tok->n_workspaces;
  }
}

/* initialize: a new session, answered with its id. */
static void open_session(request *rq, mcp_sessions *t) {
  mcp_config cfg;
  config_of(rq, &cfg);
  char id[33];
  held *h = calloc(1, sizeof *h);
  /* The session keeps no token's memory (a reload frees it): every
   * request brings its own configuration (mcp_handle_as). */
  mcp_config kept = cfg;
  kept.workspaces = NULL;
  kept.n_workspaces = 0;
  mcp *m = h ? mcp_new(rq->sv->store, &kept) : NULL;
  char *answer = m ? mcp_handle_as(m, &cfg, rq->body, rq->len) : NULL;
  if (answer == NULL || !mcp_random_id(id)) {
    mcp_free(m);
    free(h);
    free(answer);
    reply_error(rq, 500, "ES_ENOMEM", "cannot open an MCP session (memory, or "
                "no randomness for its id)");
    return;
  }
  h->m = m;
  h->users = 1;
  pthread_mutex_lock(&t->mu);
  if (t->n == MAX_SESSIONS) { /* make room: the least recently used */
    size_t old = 0;
    for (size_t i = 1; i < t->n; i++)
      if (t->s[i].last < t->s[old].last)
        old = i;
    if (now_s() - t->s[old].last >= SESSION_IDLE_S) {
      release(t->s[old].h);
      t->s[old] = t->s[--t->n];
    }
  }
  bool room = t->n < MAX_SESSIONS;
  if (room) {
    session *s = &t->s[t->n++];
    memset(s, 0, sizeof *s);
    memcpy(s->id, id, sizeof s->id);
    s->h = h;
    s->last = now_s();
    s->tokened = rq->tok != NULL;
    if (rq->tok)
      memcpy(s->digest, rq->tok->digest, SHA256_BYTES);
  }
  pthread_mutex_unlock(&t->mu);
  if (!room) {
    mcp_free(m);
    free(h);
    free(answer);
    reply_error(rq, 503, "ES_EBUSY", "too many MCP sessions (%d) in use", MAX_SESSIONS);
    return;
  }
  reply_header(rq, 200, "application/json", answer, strlen(answer),
               "Mcp-Session-Id", id);
}

void h_mcp_post(request *rq) {
  mcp_sessions *t = rq->sv->mcp;
  if (!admissible(rq))
    return;
  json_error_t je;
  json_t *j = json_loadb(rq->body ? rq->body : "", rq->len, 0, &je);
  const char *method = json_string_value(json_object_get(j, "method"));
  bool init = method && strcmp(method, "initialize") == 0;
  json_decref(j);
  const char *sid = MHD_lookup_connection_value(rq->mc, MHD_HEADER_KIND, "Mcp-Session-Id");
  if (init && sid == NULL) {
    open_session(rq, t);
    return;
  }
  if (init) {
    reply_error(rq, 400, "ES_EINVAL", "this session is initialized already");
    return;
  }
  /* A message of a session: handled outside the table's lock (the
   * session's state is only read after initialize). */
  pthread_mutex_lock(&t->mu);
  bool present;
  session *s = find(rq, t, &present);
  held *h = s ? s->h : NULL;
  if (h)
    h->users++;
  pthread_mutex_unlock(&t->mu);
  if (h == NULL)
    return;
  mcp_config cfg;
  config_of(rq, &cfg); /* this request's token's role, not the opener's */
  char *answer = mcp_handle_as(h->m, &cfg, rq->body ? rq->body : "", rq->len);
  pthread_mutex_lock(&t->mu);
  release(h);
  pthread_mutex_unlock(&t->mu);
  if (answer == NULL) { /* a notification or a response */
    reply_raw(rq, 202, "application/json", "", 0);
    return;
  }
  reply_header(rq, 200, "application/json", answer, strlen(answer), NULL, NULL);
}

void h_mcp_delete(request *rq) {
  mcp_sessions *t = rq->sv->mcp;
  if (!admissible(rq))
    return;
  pthread_mutex_lock(&t->mu);
  bool present;
  session *s = find(rq, t, &present);
  bool found = s != NULL;
  if (found) {
    release(s->h); /* freed now, or by the last request still using it */
    *s = t->s[--t->n];
  }
  pthread_mutex_unlock(&t->mu);
  if (found)
    reply_raw(rq, 200, "application/json", "{}\n", 3);
}
