/* http.c - the HTTP tests' harness (see http.h). */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http.h"
#include "test.h"

static pid_t running[16];

/* Kills the servers a failing test left behind. */
static void kill_leftovers(void) {
  for (int i = 0; i < 16; i++)
    if (running[i] > 0)
      kill(running[i], SIGKILL);
}

th_server th_serve_start(const char *conninfo, const char *const *args) {
  static bool registered;
  if (!registered) {
    atexit(kill_leftovers);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    registered = true;
  }
  th_server s = {0};
  static int nth;
  char ready[4096];
  snprintf(ready, sizeof ready, "%s/ready.%d", th_tmpdir(), nth);
  snprintf(s.log, sizeof s.log, "%s/serve.%d.log", th_tmpdir(), nth++);
  unlink(ready);
  const char *argv[64] = {th_cli_path(), "--db", conninfo ? conninfo : th_conninfo(),
                          "serve", "--listen", "127.0.0.1:0", "--ready-file", ready};
  size_t n = 8;
  for (size_t i = 0; args && args[i] && n < 63; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  fflush(NULL);
  s.pid = fork();
  if (s.pid < 0)
    FAIL("fork: %s", strerror(errno));
  if (s.pid == 0) {
    /* A test that fails ends with _exit (no atexit): the server must not
     * outlive it, holding the test's database. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(s.log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    unsetenv("EMBSTORE_DB");
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  for (int i = 0; i < 16; i++)
    if (running[i] == 0) {
      running[i] = s.pid;
      break;
    }
  /* Waits for the ready file (the condition), or for the server's exit. */
  double deadline = th_now() + 30;
  for (;;) {
    FILE *f = fopen(ready, "r");
    if (f) {
      bool got = fgets(s.addr, sizeof s.addr, f) != NULL;
      fclose(f);
      if (got) {
        s.addr[strcspn(s.addr, "\n")] = '\0';
        snprintf(s.base, sizeof s.base, "http://%s", s.addr);
        return s;
      }
    }
    int st;
    if (waitpid(s.pid, &st, WNOHANG) == s.pid) {
      char *log = th_serve_log(&s);
      FAIL("embstore serve exited before listening: %s", log);
    }
    if (th_now() > deadline)
      FAIL("embstore serve did not listen within 30 s");
    struct timespec t = {0, 10 * 1000 * 1000};
    nanosleep(&t, NULL); /* polling the file: the condition, not a delay */
  }
}

int th_serve_stop(th_server *s) {
  if (s->pid <= 0)
    return -1;
  kill(s->pid, SIGTERM);
  return th_serve_wait(s);
}

int th_serve_wait(th_server *s) {
  if (s->pid <= 0)
    return -1;
  int st = 0;
  while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR)
    ;
  for (int i = 0; i < 16; i++)
    if (running[i] == s->pid)
      running[i] = 0;
  s->pid = 0;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

long th_serve_peak_rss_kib(const th_server *s) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
  FILE *f = fopen(path, "r");
  ASSERT(f != NULL);
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmHWM:", 6) == 0)
      kib = strtol(line + 6, NULL, 10);
  fclose(f);
  ASSERT(kib > 0);
  return kib;
}

int th_serve_socket(const th_server *s) {
  const char *colon = strrchr(s->addr, ':');
  ASSERT(colon != NULL);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)atoi(colon + 1)),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT(fd >= 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

char *th_serve_log(const th_server *s) {
  FILE *f = fopen(s->log, "r");
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  if (f) {
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
      fwrite(chunk, 1, n, m);
    fclose(f);
  }
  fclose(m);
  return buf;
}

typedef struct sink {
  char *buf;
  size_t len;
} sink;

static size_t take(char *p, size_t size, size_t n, void *user) {
  sink *s = user;
  char *g = realloc(s->buf, s->len + size * n + 1);
  if (g == NULL)
    return 0;
  memcpy(g + s->len, p, size * n);
  s->len += size * n;
  g[s->len] = '\0';
  s->buf = g;
  return size * n;
}

/* libcurl's read callback over a th_reader. */
typedef struct reader_ctx {
  th_reader fn;
  void *user;
} reader_ctx;

static size_t give(char *buf, size_t size, size_t n, void *user) {
  reader_ctx *r = user;
  return r->fn(buf, size * n, r->user);
}

/* One request; the body from body[0..len), or from rd when rd is set
 * (len -1: chunked). */
static th_http perform(const th_server *s, const char *method, const char *path,
                       const char *const *headers, const char *body,
                       long long len, reader_ctx *rd) {
  th_http r = {0};
  CURL *c = curl_easy_init();
  ASSERT(c != NULL);
  char url[8192];
  snprintf(url, sizeof url, "%s%s", s->base, path);
  sink b = {calloc(1, 1), 0}, h = {calloc(1, 1), 0};
  struct curl_slist *list = NULL;
  bool expect = false; /* the caller asks for 100-continue */
  for (size_t i = 0; headers && headers[i]; i++) {
    list = curl_slist_append(list, headers[i]);
    expect |= strncasecmp(headers[i], "Expect:", 7) == 0;
  }
  if (!expect) /* else libcurl adds it past 1 MiB and waits a second */
    list = curl_slist_append(list, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, take);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, take);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
  curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* safe from many threads */
  if (rd) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, give);
    curl_easy_setopt(c, CURLOPT_READDATA, rd);
    if (len >= 0)
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  } else if (body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  }
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  if (strcmp(method, "HEAD") == 0)
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L); /* the answer has none */
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  else
    snprintf(r.error, sizeof r.error, "%s", curl_easy_strerror(rc));
  curl_slist_free_all(list);
  curl_easy_cleanup(c);
  r.body = b.buf;
  r.len = b.len;
  r.headers = h.buf;
  return r;
}

th_http th_request(const th_server *s, const char *method, const char *path,
                   const char *const *headers, const char *body, size_t len) {
  return perform(s, method, path, headers, body, (long long)len, NULL);
}

th_http th_request_from(const th_server *s, const char *method, const char *path,
                        const char *const *headers, th_reader fn, void *user,
                        long long len) {
  reader_ctx rd = {fn, user};
  return perform(s, method, path, headers, NULL, len, &rd);
}

th_http th_get(const th_server *s, const char *path, const char *token) {
  char auth[512];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
  const char *h[] = {auth, NULL};
  return th_request(s, "GET", path, token ? h : NULL, NULL, 0);
}

th_http th_post_json(const th_server *s, const char *path, const char *json,
                     const char *token) {
  char auth[512];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
  const char *h[] = {"Content-Type: application/json", token ? auth : NULL, NULL};
  return th_request(s, "POST", path, h, json, strlen(json));
}

void th_http_free(th_http *r) {
  free(r->body);
  free(r->headers);
  r->body = r->headers = NULL;
}

char *th_http_header(const th_http *r, const char *name) {
  size_t n = strlen(name);
  for (const char *p = r->headers; p && *p;) {
    const char *eol = strchr(p, '\n');
    if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
      const char *v = p + n + 1;
      while (*v == ' ')
        v++;
      size_t len = (size_t)((eol ? eol : p + strlen(p)) - v);
      while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n'))
        len--;
      return strndup(v, len);
    }
    p = eol ? eol + 1 : NULL;
  }
  return NULL;
}

long long th_metric(const th_server *s, const char *name) {
  th_http r = th_get(s, "/metrics", NULL);
  ASSERT_HTTP(r, 200);
  char pat[128];
  snprintf(pat, sizeof pat, "\n%s ", name);
  const char *p = strstr(r.body, pat);
  if (p == NULL)
    FAIL("/metrics has no %s", name);
  long long v = strtoll(p + strlen(pat), NULL, 10);
  th_http_free(&r);
  return v;
}
