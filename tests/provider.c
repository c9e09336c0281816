/* provider.c - the tests' OpenAI-compatible embeddings service (see
 * provider.h).  One thread per connection, so a hung request does not
 * hold up the others; the test asks what it saw through a mutex. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider.h"
#include "test.h"

#define MAX_SEEN 1024

struct th_provider {
  struct MHD_Daemon *d;
  int dim;
  char key[128];
  char url[64];
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool stopping;
  int fail_n, fail_status;
  char retry_after[64];
  int hang_n;
  char wrong_word[64];
  char fail_word[64];
  int fail_word_status;
  int requests, max_inputs, inputs;
  double at[MAX_SEEN];
  char last_model[128];
};

/* Feature hashing of the lowercased words: two signed buckets a word. */
void th_provider_embed(const char *text, int dim, float *out) {
  for (int i = 0; i < dim; i++)
    out[i] = 0;
  const unsigned char *p = (const unsigned char *)text;
  while (*p) {
    while (*p && !isalnum(*p))
      p++;
    uint32_t h = 2166136261u;
    int len = 0;
    for (; *p && isalnum(*p); p++, len++)
      h = (h ^ (uint32_t)tolower(*p)) * 16777619u;
    if (len == 0)
      continue;
    for (int j = 0; j < 2; j++) {
      int idx = (int)((h >> (j * 11)) % (uint32_t)dim);
      out[idx] += ((h >> (24 + j)) & 1) ? 1.0f : -1.0f;
    }
  }
  double norm = 0;
  for (int i = 0; i < dim; i++)
    norm += (double)out[i] * out[i];
  if (norm == 0) {
    out[0] = 1;
    return;
  }
  for (int i = 0; i < dim; i++)
    out[i] = (float)(out[i] / sqrt(norm));
}

typedef struct upload {
  char *data;
  size_t len;
} upload;

static enum MHD_Result reply(struct MHD_Connection *c, int status,
                             const char *body, const char *retry_after) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
  MHD_add_response_header(r, "Content-Type", "application/json");
  if (retry_after)
    MHD_add_response_header(r, "Retry-After", retry_after);
  enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
  MHD_destroy_response(r);
  return ok;
}

static enum MHD_Result error(struct MHD_Connection *c, int status,
                             const char *msg, const char *retry_after) {
  json_t *o = json_pack("{s:{s:s,s:s}}", "error", "message", msg, "type",
                        "test_error");
  char *body = json_dumps(o, JSON_COMPACT);
  enum MHD_Result ok = reply(c, status, body, retry_after);
  free(body);
  json_decref(o);
  return ok;
}

/* Answers one complete request. */
static enum MHD_Result answer(th_provider *p, struct MHD_Connection *c,
                              const upload *u) {
  pthread_mutex_lock(&p->mu);
  if (p->requests < MAX_SEEN)
    p->at[p->requests] = th_now();
  p->requests++;
  if (p->hang_n > 0) {
    p->hang_n--;
    while (!p->stopping)
      pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return MHD_NO; /* the connection is dropped */
  }
  if (p->fail_n > 0) {
    p->fail_n--;
    int status = p->fail_status;
    char ra[64];
    snprintf(ra, sizeof ra, "%s", p->retry_after);
    pthread_mutex_unlock(&p->mu);
    return error(c, status, status == 429 ? "Rate limit reached, slow down"
                                          : "The server had an error", ra[0] ? ra : NULL);
  }
  char wrong[64];
  snprintf(wrong, sizeof wrong, "%s", p->wrong_word);
  pthread_mutex_unlock(&p->mu);

  if (p->key[0]) {
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                   "Authorization");
    char want[160];
    snprintf(want, sizeof want, "Bearer %s", p->key);
    if (auth == NULL)
      return error(c, 401, "You didn't provide an API key.", NULL);
    if (strcmp(auth, want) != 0) {
      char msg[256];
      snprintf(msg, sizeof msg, "Incorrect API key provided: %s", auth + 7);
      return error(c, 401, msg, NULL); /* echoes it, as careless services do */
    }
  }
  json_error_t je;
  json_t *in = json_loadb(u->data ? u->data : "", u->len, 0, &je);
  json_t *model = json_object_get(in, "model"), *input = json_object_get(in, "input");
  if (!json_is_string(model) || !json_is_array(input)) {
    json_decref(in);
    return error(c, 400, "body must have model and input", NULL);
  }
  size_t n = json_array_size(input);
  pthread_mutex_lock(&p->mu);
  for (size_t k = 0; p->fail_word[0] && k < n; k++) {
    const char *t = json_string_value(json_array_get(input, k));
    if (t && strstr(t, p->fail_word)) {
      int status = p->fail_word_status;
      pthread_mutex_unlock(&p->mu);
      json_decref(in);
      return error(c, status, "The server had an error", NULL);
    }
  }
  snprintf(p->last_model, sizeof p->last_model, "%s", json_string_value(model));
  if ((int)n > p->max_inputs)
    p->max_inputs = (int)n;
  p->inputs += (int)n;
  pthread_mutex_unlock(&p->mu);
  json_t *data = json_array();
  float *v = malloc(((size_t)p->dim + 1) * sizeof *v);
  /* Answered in reverse order: clients must place by "index". */
  for (size_t k = n; k-- > 0;) {
    const char *t = json_string_value(json_array_get(input, k));
    int dim = p->dim + (wrong[0] && t && strstr(t, wrong) ? 1 : 0);
    th_provider_embed(t ? t : "", dim, v);
    json_t *e = json_array();
    for (int i = 0; i < dim; i++)
      json_array_append_new(e, json_real(v[i]));
    json_array_append_new(data, json_pack("{s:s,s:I,s:o}", "object", "embedding",
                                          "index", (json_int_t)k, "embedding", e));
  }
  free(v);
  json_t *out = json_pack("{s:s,s:o,s:O,s:{s:i,s:i}}", "object", "list", "data",
                          data, "model", model, "usage", "prompt_tokens", 1,
                          "total_tokens", 1);
  char *body = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(9));
  enum MHD_Result ok = reply(c, 200, body, NULL);
  free(body);
  json_decref(out);
  json_decref(in);
  return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *data,
                              size_t *size, void **state) {
  (void)version;
  th_provider *p = cls;
  upload *u = *state;
  if (u == NULL) {
    u = calloc(1, sizeof *u);
    *state = u;
    return u ? MHD_YES : MHD_NO;
  }
  if (*size > 0) {
    char *g = realloc(u->data, u->len + *size);
    if (g == NULL)
      return MHD_NO;
    memcpy(g + u->len, data, *size);
    u->data = g;
    u->len += *size;
    *size = 0;
    return MHD_YES;
  }
  if (strcmp(method, "POST") != 0 || strcmp(url, "/v1/embeddings") != 0)
    return error(c, 404, "no such route", NULL);
  return answer(p, c, u);
}

static void done(void *cls, struct MHD_Connection *c, void **state,
                 enum MHD_RequestTerminationCode code) {
  (void)cls;
  (void)c;
  (void)code;
  upload *u = *state;
  if (u) {
    free(u->data);
    free(u);
  }
  *state = NULL;
}

th_provider *th_provider_start(int dim, const char *key) {
  th_provider *p = calloc(1, sizeof *p);
  ASSERT_NOT_NULL(p);
  p->dim = dim;
  snprintf(p->key, sizeof p->key, "%s", key ? key : "");
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  p->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
                              MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                          0, NULL, NULL, handle, p, MHD_OPTION_SOCK_ADDR, &a,
                          MHD_OPTION_NOTIFY_COMPLETED, done, p, MHD_OPTION_END);
  if (p->d == NULL)
    FAIL("the test embedding service did not start");
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(p->d, MHD_DAEMON_INFO_BIND_PORT);
  snprintf(p->url, sizeof p->url, "http://127.0.0.1:%u/v1", (unsigned)info->port);
  return p;
}

void th_provider_stop(th_provider *p) {
  if (p == NULL)
    return;
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  MHD_stop_daemon(p->d);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

const char *th_provider_url(const th_provider *p) { return p->url; }

void th_provider_fail_next(th_provider *p, int n, int status,
                           const char *retry_after) {
  pthread_mutex_lock(&p->mu);
  p->fail_n = n;
  p->fail_status = status;
  snprintf(p->retry_after, sizeof p->retry_after, "%s", retry_after ? retry_after : "");
  pthread_mutex_unlock(&p->mu);
}

void th_provider_fail_for(th_provider *p, const char *word, int status) {
  pthread_mutex_lock(&p->mu);
  snprintf(p->fail_word, sizeof p->fail_word, "%s", word ? word : "");
  p->fail_word_status = status;
  pthread_mutex_unlock(&p->mu);
}

void th_provider_hang_next(th_provider *p, int n) {
  pthread_mutex_lock(&p->mu);
  p->hang_n = n;
  pthread_mutex_unlock(&p->mu);
}

void th_provider_wrong_dim_for(th_provider *p, const char *word) {
  pthread_mutex_lock(&p->mu);
  snprintf(p->wrong_word, sizeof p->wrong_word, "%s", word ? word : "");
  pthread_mutex_unlock(&p->mu);
}

#define GETTER(type, name, expr)                                           \
  type name(th_provider *p) {                                              \
    pthread_mutex_lock(&p->mu);                                            \
    type v_ = (expr);                                                      \
    pthread_mutex_unlock(&p->mu);                                          \
    return v_;                                                             \
  }
GETTER(int, th_provider_requests, p->requests)
GETTER(int, th_provider_max_inputs, p->max_inputs)
GETTER(int, th_provider_inputs, p->inputs)
GETTER(const char *, th_provider_last_model, p->last_model)

double th_provider_request_at(th_provider *p, int i) {
  pthread_mutex_lock(&p->mu);
  double t = i >= 0 && i < MAX_SEEN && i < p->requests ? p->at[i] : -1;
  pthread_mutex_unlock(&p->mu);
  return t;
}
