/* embed.c - the embedding provider: a client of the OpenAI-compatible
 * embeddings protocol over libcurl (POST {url}/embeddings, {"model",
 * "input":[...]} -> {"data":[{"index","embedding"}]}), which OpenAI,
 * Ollama, llama.cpp's server, vLLM and Hugging Face TEI all serve.
 *
 * A call's texts go in requests of batch_size, at most concurrency in
 * flight (one curl multi handle, no threads).  A request answered 429 or
 * 5xx, timed out or not connected is tried again after a backoff that
 * doubles, or after the Retry-After the service sent when that is longer;
 * anything else is final.  A request that fails for good fails only its
 * own texts, each with the service's message.  The API key goes in one
 * header and nowhere else: every message is masked for it. */
#include <assert.h>
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"
#include "json.h"

#define MAX_RETRY_AFTER_MS 60000  /* a longer Retry-After is cut to this */
#define MAX_BACKOFF_MS 30000
#define MAX_ANSWER_BYTES (256u << 20) /* an answer larger than this is cut */
#define MESSAGE_MAX 300              /* bytes of a service's message kept */
#define SKIP_DEPTH 2 /* es__json_skip's depth for a member's value */

struct es__embedder {
  char *endpoint; /* {url}/embeddings */
  char *shown;    /* url without user:password@, for messages */
  char *model;
  char *key;      /* NULL: no Authorization header */
  char *auth;     /* "Authorization: Bearer KEY" */
  int timeout_ms, max_retries, backoff_ms, batch, concurrency;
};

/* One request: texts [lo, lo + n) of the call. */
typedef struct request {
  size_t lo, n;
  int attempts;
  int64_t not_before_ms; /* monotonic: when it may be (re)sent */
  CURL *h;
  struct curl_slist *headers;
  es__buf body, answer;
  long retry_after_ms;   /* from the last answer, or -1 */
  bool running, done;
  char curl_err[CURL_ERROR_SIZE];
} request;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* A copy of url without a user:password@ part, for messages. */
static char *shown_url(const char *url) {
  const char *scheme = strstr(url, "://");
  const char *host = scheme ? scheme + 3 : url;
  const char *slash = strchr(host, '/'), *at = strchr(host, '@');
  if (at == NULL || (slash != NULL && at > slash))
    return strdup(url);
  size_t head = (size_t)(host - url);
  char *out = malloc(strlen(url) + 1);
  if (out == NULL)
    return NULL;
  memcpy(out, url, head);
  strcpy(out + head, at + 1);
  return out;
}

void es__embedder_free(es__embedder *e) {
  if (e == NULL)
    return;
  if (e->key)
    memset(e->key, 0, strlen(e->key));
  if (e->auth)
    memset(e->auth, 0, strlen(e->auth));
  free(e->endpoint);
  free(e->shown);
  free(e->model);
  free(e->key);
  free(e->auth);
  free(e);
}

es_status es__embedder_new(es_store *s, const es_options *o,
                           es__embedder **out) {
  *out = NULL;
  if (o->embed_url == NULL || o->embed_url[0] == '\0')
    return ES_OK;
  if (strncmp(o->embed_url, "http://", 7) != 0 &&
      strncmp(o->embed_url, "https://", 8) != 0)
    return es__fail(s, ES_EINVAL, "embed_url must start with http:// or "
                    "https://");
  if (strpbrk(o->embed_url, "?#") != NULL)
    return es__fail(s, ES_EINVAL, "embed_url must be the service's base URL "
                    "(\"/embeddings\" is appended), without a query or a "
                    "fragment");
  for (const char *k = o->embed_api_key; k && *k; k++)
    if ((unsigned char)*k < 0x20 || *k == 0x7f) /* it goes into a header */
      return es__fail(s, ES_EINVAL, "embed_api_key holds a control character "
                      "(a line break copied with it?)");
  if (o->embed_model == NULL || o->embed_model[0] == '\0' ||
      strlen(o->embed_model) > ES__MODEL_MAX)
    return es__fail(s, ES_EINVAL, "embed_url needs embed_model (1..%d bytes): "
                    "the model the service is asked for and every vector "
                    "records", ES__MODEL_MAX);
  if (o->embed_timeout_ms < 1 || o->embed_max_retries < 0 ||
      o->embed_max_retries > 100 || o->embed_retry_backoff_ms < 0 ||
      o->embed_batch_size < 1 || o->embed_batch_size > 4096 ||
      o->embed_concurrency < 1 || o->embed_concurrency > 64)
    return es__fail(s, ES_EINVAL, "embed options: timeout at least 1 ms, "
                    "retries 0..100, backoff not negative, batch size "
                    "1..4096, concurrency 1..64");
  pthread_once(&curl_once, curl_init);
  if (curl_init_rc != CURLE_OK)
    return es__fail(s, ES_EPROVIDER, "libcurl could not start: %s",
                    curl_easy_strerror(curl_init_rc));
  es__embedder *e = calloc(1, sizeof *e);
  if (e == NULL)
    return es__fail(s, ES_ENOMEM, "out of memory");
  size_t ulen = strlen(o->embed_url);
  while (ulen > 0 && o->embed_url[ulen - 1] == '/')
    ulen--;
  bool keyed = o->embed_api_key && o->embed_api_key[0];
  e->endpoint = malloc(ulen + sizeof "/embeddings");
  e->shown = shown_url(o->embed_url);
  e->model = strdup(o->embed_model);
  if (keyed) {
    e->key = strdup(o->embed_api_key);
    e->auth = malloc(strlen(o->embed_api_key) + sizeof "Authorization: Bearer ");
  }
  if (!e->endpoint || !e->shown || !e->model || (keyed && (!e->key || !e->auth))) {
    es__embedder_free(e);
    return es__fail(s, ES_ENOMEM, "out of memory");
  }
  memcpy(e->endpoint, o->embed_url, ulen);
  strcpy(e->endpoint + ulen, "/embeddings");
  if (keyed)
    sprintf(e->auth, "Authorization: Bearer %s", e->key);
  e->timeout_ms = o->embed_timeout_ms;
  e->max_retries = o->embed_max_retries;
  e->backoff_ms = o->embed_retry_backoff_ms;
  e->batch = o->embed_batch_size;
  e->concurrency = o->embed_concurrency;
  *out = e;
  return ES_OK;
}

const char *es__embedder_model(const es__embedder *e) { return e ? e->model : NULL; }

/* ---- one request ------------------------------------------------------------ */

static size_t on_body(char *p, size_t size, size_t n, void *user) {
  es__buf *b = user;
  size_t len = size * n;
  if (b->len + len > MAX_ANSWER_BYTES || !es__buf_append(b, p, len))
    return 0; /* curl reports CURLE_WRITE_ERROR */
  return len;
}

/* Clamps a wait in milliseconds to 0..MAX_RETRY_AFTER_MS. */
static long clamp_wait(double ms) {
  return ms < 0 ? 0 : ms > MAX_RETRY_AFTER_MS ? MAX_RETRY_AFTER_MS : (long)ms;
}

/* Reads Retry-After: delta-seconds or an HTTP date. */
static size_t on_header(char *p, size_t size, size_t n, void *user) {
  request *q = user;
  size_t len = size * n;
  static const char name[] = "retry-after:";
  if (len <= sizeof name - 1 || strncasecmp(p, name, sizeof name - 1) != 0)
    return len;
  char v[64];
  size_t vl = len - (sizeof name - 1);
  if (vl >= sizeof v)
    vl = sizeof v - 1;
  memcpy(v, p + sizeof name - 1, vl);
  v[vl] = '\0';
  char *s = v + strspn(v, " \t"), *end;
  s[strcspn(s, "\r\n")] = '\0';
  double secs = es__strtod(s, &end);
  if (end != s && *end == '\0' && isfinite(secs)) {
    q->retry_after_ms = clamp_wait(secs * 1000);
  } else {
    time_t when = curl_getdate(s, NULL);
    if (when > 0)
      q->retry_after_ms = clamp_wait(difftime(when, time(NULL)) * 1000);
  }
  return len;
}

/* The JSON body of request q: {"model": ..., "input": [texts]}. */
static bool build_body(const es__embedder *e, const char *const *texts,
                       request *q) {
  es__buf *b = &q->body;
  b->len = 0;
  if (!es__buf_append(b, "{\"model\":", 9) ||
      !es__json_append_string(b, e->model, strlen(e->model)) ||
      !es__buf_append(b, ",\"input\":[", 10))
    return false;
  for (size_t i = 0; i < q->n; i++) {
    const char *t = texts[q->lo + i];
    if ((i > 0 && !es__buf_append(b, ",", 1)) ||
        !es__json_append_string(b, t, strlen(t)))
      return false;
  }
  return es__buf_append(b, "]}", 2);
}

/* Sends request q (again); false when out of memory. */
static bool start(const es__embedder *e, CURLM *multi, const char *const *texts,
                  request *q) {
  if (q->body.len == 0 && !build_body(e, texts, q))
    return false;
  q->answer.len = 0;
  q->retry_after_ms = -1;
  q->curl_err[0] = '\0';
  if (q->h == NULL) {
    q->h = curl_easy_init();
    if (q->h == NULL)
      return false;
    q->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (q->headers == NULL)
      return false;
    if (e->auth) {
      struct curl_slist *h = curl_slist_append(q->headers, e->auth);
      if (h == NULL)
        return false;
      q->headers = h;
    }
  }
  CURL *h = q->h;
  curl_easy_setopt(h, CURLOPT_URL, e->endpoint);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, q->headers);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body.data);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body.len);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &q->answer);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, q);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, q->curl_err);
  curl_easy_setopt(h, CURLOPT_PRIVATE, q);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_USERAGENT, "embstore/" ES_VERSION);
  if (curl_multi_add_handle(multi, h) != CURLM_OK)
    return false;
  q->running = true;
  q->attempts++;
  return true;
}

/* ---- answers ---------------------------------------------------------------- */

/* Copies src[0..len) into out (cap bytes, NUL-terminated, cut on a
 * character boundary) with the key written as "***" wherever it appears,
 * and also where a piece of its start does (a service that cut its own
 * message in the middle of the key it echoes): MASK_PREFIX bytes or more
 * of it.  Masking comes before cutting, so a cut never leaves a piece of
 * the key either. */
#define MASK_PREFIX 12
static void mask_into(const es__embedder *e, const char *src, size_t len,
                      char *out, size_t cap) {
  size_t kl = e->key ? strlen(e->key) : 0, o = 0;
  size_t least = kl < MASK_PREFIX ? kl : MASK_PREFIX;
  for (size_t i = 0; i < len && o + 1 < cap;) {
    size_t same = 0;
    while (same < kl && i + same < len && src[i + same] == e->key[same])
      same++;
    if (kl > 0 && (same == kl || same >= least)) {
      for (int k = 0; k < 3 && o + 1 < cap; k++)
        out[o++] = '*';
      i += same;
      continue;
    }
    out[o++] = src[i++];
  }
  out[o] = '\0';
  es__utf8_scrub(out); /* a character cut in two at the end */
}

/* Reads the members of the object at j, looking for a string member
 * named one of names (NULL-terminated); one level of {"error": {...}}
 * is looked into.  true with the value in out. */
static bool find_message(es__json *j, es__buf *key, es__buf *out, int depth) {
  if (!es__json_eat(j, '{'))
    return false;
  while (es__json_peek(j) == '"') {
    if (!es__json_string(j, key, "key") || !es__json_eat(j, ':'))
      return false;
    bool named = !strcmp(key->data, "error") || !strcmp(key->data, "message") ||
                 !strcmp(key->data, "detail");
    int c = es__json_peek(j);
    if (named && c == '"')
      return es__json_string(j, out, "message");
    if (named && c == '{' && depth == 0) {
      if (find_message(j, key, out, 1))
        return true;
      return false; /* the object was not read to its end */
    }
    if (!es__json_skip(j, SKIP_DEPTH, "value"))
      return false;
    if (es__json_peek(j) != ',')
      return false;
    es__json_eat(j, ',');
  }
  return false;
}

/* The message a service put in an error answer: {"error":{"message"}},
 * {"error":"..."}, {"message"} or {"detail"}; else the start of the body;
 * masked for the key, then cut to cap. */
static void answer_message(const es__embedder *e, const es__buf *a, char *out,
                           size_t cap) {
  char err[64];
  es__json j;
  es__json_init(&j, a->data ? a->data : "", a->len, err, sizeof err);
  es__buf key = {0}, val = {0};
  if (a->len > 0 && find_message(&j, &key, &val, 0))
    mask_into(e, val.data, val.len, out, cap);
  else
    mask_into(e, a->data ? a->data : "", a->len, out, cap);
  es__buf_free(&key);
  es__buf_free(&val);
  for (char *p = out; *p; p++)
    if ((unsigned char)*p < 0x20)
      *p = ' ';
}

/* Reads one element of "data": {"index": i, "embedding": [...]}, into
 * *index (-1 when absent), the first dim values into row and their count
 * into *count.  false on a syntax error (j says where). */
static bool read_item(es__json *j, es__buf *key, size_t n, size_t dim,
                      float *row, long *index, size_t *count, bool *has_vector,
                      char *msg, size_t cap) {
  *index = -1;
  *count = 0;
  *has_vector = false;
  if (!es__json_eat(j, '{'))
    return false;
  while (es__json_peek(j) == '"') {
    if (!es__json_string(j, key, "key") || !es__json_eat(j, ':'))
      return false;
    if (!strcmp(key->data, "index")) {
      float f;
      if (!es__json_float(j, &f, "index"))
        return false;
      if (!(f >= 0) || f != floorf(f) || f >= (float)n) {
        snprintf(msg, cap, "an \"index\" that is not one of the %zu inputs", n);
        return false;
      }
      *index = (long)f;
    } else if (!strcmp(key->data, "embedding")) {
      if (!es__json_eat(j, '['))
        return false;
      *has_vector = true;
      if (es__json_peek(j) != ']')
        for (;;) {
          float f;
          if (!es__json_float_at(j, &f, "embedding", *count))
            return false;
          if (*count < dim)
            row[*count] = f;
          (*count)++;
          if (es__json_peek(j) != ',')
            break;
          es__json_eat(j, ',');
        }
      if (!es__json_eat(j, ']'))
        return false;
    } else if (!es__json_skip(j, SKIP_DEPTH, key->data)) {
      return false;
    }
    if (es__json_peek(j) != ',')
      break;
    es__json_eat(j, ',');
  }
  return es__json_eat(j, '}');
}

/* Parses a 200 answer into out for texts [q->lo, q->lo + q->n); records
 * in errs/st an item of the wrong dimension or missing.  false when the
 * answer is not an embeddings response (msg says why). */
static bool parse_answer(const es__embedder *e, request *q, size_t dim,
                         float *out, char **errs, es_status *st, char *msg,
                         size_t cap) {
  char err[256] = "";
  es__json j;
  es__json_init(&j, q->answer.data ? q->answer.data : "", q->answer.len, err,
                sizeof err);
  es__buf key = {0};
  bool ok = false, data_seen = false;
  bool *got = calloc(q->n, sizeof *got);
  size_t *dims = calloc(q->n, sizeof *dims), pos = 0;
  float *row = malloc(dim * sizeof *row);
  msg[0] = '\0';
  if (got == NULL || dims == NULL || row == NULL) {
    snprintf(msg, cap, "out of memory");
    goto done;
  }
  if (!es__json_eat(&j, '{'))
    goto bad;
  while (es__json_peek(&j) == '"') {
    if (!es__json_string(&j, &key, "key") || !es__json_eat(&j, ':'))
      goto bad;
    if (strcmp(key.data, "data") != 0) {
      if (!es__json_skip(&j, SKIP_DEPTH, key.data))
        goto bad;
    } else {
      data_seen = true;
      if (!es__json_eat(&j, '['))
        goto bad;
      while (es__json_peek(&j) == '{') {
        long index;
        size_t count;
        bool has_vector;
        if (!read_item(&j, &key, q->n, dim, row, &index, &count, &has_vector,
                       msg, cap))
          goto bad;
        if (index < 0)
          index = (long)pos; /* no index: in input order */
        if (index >= (long)q->n || !has_vector) {
          snprintf(msg, cap, "data[%zu] has no embedding for one of the %zu "
                   "inputs", pos, q->n);
          goto bad;
        }
        got[index] = true;
        dims[index] = count;
        if (count == dim)
          memcpy(out + (q->lo + (size_t)index) * dim, row, dim * sizeof *row);
        pos++;
        if (es__json_peek(&j) != ',')
          break;
        es__json_eat(&j, ',');
      }
      if (!es__json_eat(&j, ']'))
        goto bad;
    }
    if (es__json_peek(&j) != ',')
      break;
    es__json_eat(&j, ',');
  }
  if (!es__json_eat(&j, '}') || es__json_peek(&j) != -1 || !data_seen)
    goto bad;
  for (size_t i = 0; i < q->n; i++) {
    size_t at = q->lo + i;
    char m[512];
    if (!got[i])
      snprintf(m, sizeof m, "embedding provider %s (model %s) returned no "
               "embedding for this text", e->shown, e->model);
    else if (dims[i] != dim)
      snprintf(m, sizeof m, "model %s returned a vector of %zu dimensions; "
               "the store's have %zu", e->model, dims[i], dim);
    else
      continue;
    st[at] = got[i] ? ES_EDIM : ES_EPROVIDER;
    errs[at] = strdup(m);
    if (errs[at] == NULL)
      st[at] = ES_ENOMEM;
  }
  ok = true;
  goto done;
bad:
  if (msg[0] == '\0')
    snprintf(msg, cap, "its answer is not an embeddings response (%s)",
             err[0] ? err : "no \"data\" array");
done:
  es__buf_free(&key);
  free(got);
  free(dims);
  free(row);
  return ok;
}

/* Fails texts [q->lo, q->lo + q->n) with msg, masked for the key. */
static void fail_request(const es__embedder *e, request *q, es_status code,
                         const char *msg, char **errs, es_status *st) {
  char m[1024];
  mask_into(e, msg, strlen(msg), m, sizeof m);
  for (size_t i = q->lo; i < q->lo + q->n; i++) {
    free(errs[i]);
    errs[i] = strdup(m);
    st[i] = errs[i] ? code : ES_ENOMEM;
  }
  q->done = true;
}

/* A request that finished with rc: done (answered, or failed for good),
 * or scheduled again. */
static void finish(const es__embedder *e, request *q, CURLcode rc, size_t dim,
                   float *out, char **errs, es_status *st) {
  long http = 0;
  curl_easy_getinfo(q->h, CURLINFO_RESPONSE_CODE, &http);
  char what[MESSAGE_MAX + 32], msg[900];
  bool transient;
  if (rc != CURLE_OK) {
    /* Worth another try: no answer in time, no connection, a connection
     * dropped.  Not: TLS refused, a bad address, an answer too large. */
    transient = rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_COULDNT_CONNECT ||
                rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
                rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE;
    if (rc == CURLE_OPERATION_TIMEDOUT)
      snprintf(what, sizeof what, "no answer within %d ms", e->timeout_ms);
    else if (rc == CURLE_WRITE_ERROR)
      snprintf(what, sizeof what, "its answer is larger than %u MiB",
               MAX_ANSWER_BYTES >> 20);
    else
      snprintf(what, sizeof what, "%s", q->curl_err[0] ? q->curl_err
                                                       : curl_easy_strerror(rc));
  } else if (http == 200) {
    if (parse_answer(e, q, dim, out, errs, st, what, sizeof what)) {
      q->done = true;
      return;
    }
    snprintf(msg, sizeof msg, "embedding provider %s (model %s): %s", e->shown,
             e->model, what);
    fail_request(e, q, ES_EPROVIDER, msg, errs, st);
    return;
  } else {
    char text[MESSAGE_MAX + 1];
    answer_message(e, &q->answer, text, sizeof text);
    snprintf(what, sizeof what, "HTTP %ld%s%s", http, text[0] ? ": " : "", text);
    transient = http == 429 || http >= 500;
  }
  if (transient && q->attempts <= e->max_retries) {
    int shift = q->attempts - 1 < 20 ? q->attempts - 1 : 20;
    int64_t wait = (int64_t)e->backoff_ms << shift;
    if (wait > MAX_BACKOFF_MS)
      wait = MAX_BACKOFF_MS;
    if (q->retry_after_ms > wait)
      wait = q->retry_after_ms;
    q->not_before_ms = es__now_ms() + wait;
    return;
  }
  snprintf(msg, sizeof msg, "embedding provider %s (model %s): %s (%d attempt%s)",
           e->shown, e->model, what, q->attempts, q->attempts == 1 ? "" : "s");
  fail_request(e, q, ES_EPROVIDER, msg, errs, st);
}

es_status es__embed_texts(const es__embedder *e, const char *const *texts,
                          size_t n, size_t dim, float *out, char **errs,
                          es_status *st) {
  assert(e != NULL && (n == 0 || (texts && out && errs && st)));
  for (size_t i = 0; i < n; i++) {
    errs[i] = NULL;
    st[i] = ES_OK;
  }
  if (n == 0)
    return ES_OK;
  size_t nreq = (n + (size_t)e->batch - 1) / (size_t)e->batch;
  request *rq = calloc(nreq, sizeof *rq);
  CURLM *multi = curl_multi_init();
  es_status rc = ES_OK;
  if (rq == NULL || multi == NULL) {
    rc = ES_ENOMEM;
    goto done;
  }
  for (size_t r = 0; r < nreq; r++) {
    rq[r].lo = r * (size_t)e->batch;
    rq[r].n = n - rq[r].lo < (size_t)e->batch ? n - rq[r].lo : (size_t)e->batch;
  }
  size_t left = nreq;
  while (left > 0) {
    /* Start what may start: due, and room among the requests in flight. */
    int64_t now = es__now_ms();
    int running = 0;
    for (size_t r = 0; r < nreq; r++)
      running += rq[r].running;
    for (size_t r = 0; r < nreq && running < e->concurrency; r++) {
      request *q = &rq[r];
      if (q->done || q->running || q->not_before_ms > now)
        continue;
      if (!start(e, multi, texts, q)) {
        fail_request(e, q, ES_ENOMEM, "out of memory (embedding request)",
                     errs, st);
        left--;
        continue;
      }
      running++;
    }
    if (left == 0)
      break;
    int still = 0;
    curl_multi_perform(multi, &still);
    CURLMsg *m;
    int queued;
    while ((m = curl_multi_info_read(multi, &queued)) != NULL) {
      if (m->msg != CURLMSG_DONE)
        continue;
      request *q = NULL;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&q);
      CURLcode res = m->data.result;
      curl_multi_remove_handle(multi, m->easy_handle);
      q->running = false;
      finish(e, q, res, dim, out, errs, st);
      if (q->done)
        left--;
    }
    if (left == 0)
      break;
    /* Sleep until a socket (or curl's own timer) wakes us, or the next
     * request waiting for its time is due, when a slot is free for it:
     * with every slot busy only an answer frees one. */
    int64_t next = INT64_MAX;
    int busy = 0;
    for (size_t r = 0; r < nreq; r++)
      busy += rq[r].running;
    for (size_t r = 0; busy < e->concurrency && r < nreq; r++)
      if (!rq[r].done && !rq[r].running && rq[r].not_before_ms < next)
        next = rq[r].not_before_ms;
    int wait_ms = 1000;
    if (next != INT64_MAX) {
      int64_t d = next - es__now_ms();
      wait_ms = d < 0 ? 0 : d > 1000 ? 1000 : (int)d;
    }
    curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
  }
  for (size_t i = 0; i < n; i++) {
    if (st[i] == ES_ENOMEM) {
      rc = ES_ENOMEM;
      break;
    }
    if (st[i] != ES_OK)
      rc = ES_EPROVIDER;
  }
done:
  if (rq)
    for (size_t r = 0; r < nreq; r++) {
      if (rq[r].h) {
        if (rq[r].running)
          curl_multi_remove_handle(multi, rq[r].h);
        curl_easy_cleanup(rq[r].h);
      }
      curl_slist_free_all(rq[r].headers);
      es__buf_free(&rq[r].body);
      es__buf_free(&rq[r].answer);
    }
  free(rq);
  if (multi)
    curl_multi_cleanup(multi);
  return rc;
}

/* ---- the public call --------------------------------------------------------- */

const char *es_embed_model(const es_store *s) {
  return s ? es__embedder_model(s->embedder) : NULL;
}

es_status es_embed(es_store *s, const char *const *texts, size_t n,
                   float **vectors) {
  if (vectors)
    *vectors = NULL;
  if (s == NULL || vectors == NULL || (texts == NULL && n > 0))
    return ES_EINVAL;
  es__clear_err(s);
  if (s->embedder == NULL)
    return es__fail(s, ES_EINVAL, "no embedding provider: set embed_url and "
                    "embed_model (embstore: --embed-url, --embed-model)");
  for (size_t i = 0; i < n; i++)
    if (texts[i] == NULL || texts[i][0] == '\0' ||
        es__utf8_invalid_at(texts[i], strlen(texts[i])) >= 0)
      return es__fail(s, ES_EINVAL, "texts[%zu] is %s", i,
                      texts[i] == NULL ? "NULL" : texts[i][0] ? "not UTF-8"
                                                              : "empty");
  int dim;
  es_status rc = es_store_shape(s, &dim, NULL);
  if (rc != ES_OK)
    return rc;
  float *out = malloc((n ? n : 1) * (size_t)dim * sizeof *out);
  char **errs = calloc(n ? n : 1, sizeof *errs);
  es_status *st = calloc(n ? n : 1, sizeof *st);
  if (out == NULL || errs == NULL || st == NULL) {
    rc = es__fail(s, ES_ENOMEM, "out of memory");
    goto done;
  }
  rc = es__embed_texts(s->embedder, texts, n, (size_t)dim, out, errs, st);
  if (rc == ES_ENOMEM) {
    rc = es__fail(s, ES_ENOMEM, "out of memory");
    goto done;
  }
  for (size_t i = 0; i < n; i++)
    if (st[i] != ES_OK) {
      rc = n == 1 ? es__fail(s, st[i], "%s", errs[i] ? errs[i] : "not embedded")
                  : es__fail(s, st[i], "texts[%zu]: %s", i,
                             errs[i] ? errs[i] : "not embedded");
      goto done;
    }
  *vectors = out;
  out = NULL;
done:
  if (errs)
    for (size_t i = 0; i < n; i++)
      free(errs[i]);
  free(errs);
  free(st);
  free(out);
  return rc;
}
