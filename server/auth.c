/* auth.c - API tokens.  The file holds secrets or their SHA-256; only the
 * digest is kept in memory, and a presented token is hashed and compared
 * with every entry in constant time, so neither its value nor which entry
 * it matched shows in the time an answer takes. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"

struct token_set {
  pthread_mutex_t mu;
  int refs;
  token *t;
  size_t n;
};

const char *role_name(role r) {
  return r == ROLE_ADMIN ? "admin" : r == ROLE_WRITE ? "write" : "read";
}

bool role_parse(const char *name, role *out) {
  static const struct { const char *name; role r; } roles[] = {
      {"read", ROLE_READ}, {"write", ROLE_WRITE}, {"admin", ROLE_ADMIN}};
  for (size_t i = 0; i < 3; i++)
    if (strcmp(name, roles[i].name) == 0) {
      *out = roles[i].r;
      return true;
    }
  return false;
}

static void hex_encode(const uint8_t *b, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[b[i] >> 4];
    out[2 * i + 1] = digits[b[i] & 15];
  }
  out[2 * n] = '\0';
}

/* 64 hex digits into 32 bytes; false when they are not. */
static bool hex_decode(const char *s, uint8_t *out) {
  if (strlen(s) != 2 * SHA256_BYTES)
    return false;
  for (size_t i = 0; i < 2 * SHA256_BYTES; i++) {
    char c = s[i];
    int v = c >= '0' && c <= '9' ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (v < 0)
      return false;
    out[i / 2] = (uint8_t)(i % 2 ? out[i / 2] | v : v << 4);
  }
  return true;
}

static void token_free(token *t) {
  for (size_t i = 0; i < t->n_workspaces; i++)
    free(t->workspaces[i]);
  free(t->workspaces);
}

/* WORKSPACES of a line into t; false (err set) when malformed. */
static bool parse_workspaces(token *t, const char *list, long line, char *err,
                             size_t cap) {
  if (strcmp(list, "*") == 0) {
    t->all_workspaces = true;
    return true;
  }
  char *copy = strdup(list), *save = NULL;
  if (copy == NULL) {
    snprintf(err, cap, "out of memory");
    return false;
  }
  bool ok = true;
  for (char *w = strtok_r(copy, ",", &save); ok && w; w = strtok_r(NULL, ",", &save)) {
    char **grown = realloc(t->workspaces, (t->n_workspaces + 1) * sizeof *grown);
    ok = grown != NULL && (grown[t->n_workspaces] = strdup(w)) != NULL;
    if (grown)
      t->workspaces = grown;
    if (ok)
      t->n_workspaces++;
  }
  free(copy);
  if (ok && t->n_workspaces == 0) {
    snprintf(err, cap, "line %ld: WORKSPACES is \"*\" or a comma-separated "
             "list of names", line);
    return false;
  }
  if (!ok)
    snprintf(err, cap, "out of memory");
  return ok;
}

/* One line "TOKEN ROLE WORKSPACES [NAME]" into t.  Returns 1 for a token,
 * 0 for a blank or comment line, -1 (err set) when malformed. */
static int parse_line(char *text, long line, token *t, char *err, size_t cap) {
  char *hash = strchr(text, '#');
  if (hash)
    *hash = '\0';
  char *save = NULL, *f[5] = {0};
  int n = 0;
  for (char *w = strtok_r(text, " \t\r\n", &save); w && n < 5;
       w = strtok_r(NULL, " \t\r\n", &save))
    f[n++] = w;
  if (n == 0)
    return 0;
  if (n < 3 || n > 4) {
    snprintf(err, cap, "line %ld: expected TOKEN ROLE WORKSPACES [NAME], "
             "found %d field%s", line, n, n == 1 ? "" : "s");
    return -1;
  }
  memset(t, 0, sizeof *t);
  if (strncmp(f[0], "sha256:", 7) == 0) {
    if (!hex_decode(f[0] + 7, t->digest)) {
      snprintf(err, cap, "line %ld: sha256: must be followed by 64 hex digits",
               line);
      return -1;
    }
  } else if (strlen(f[0]) < 16) {
    snprintf(err, cap, "line %ld: a token must be at least 16 characters "
             "(`embstore token new` makes one)", line);
    return -1;
  } else {
    sha256(f[0], strlen(f[0]), t->digest);
  }
  if (!role_parse(f[1], &t->role)) {
    snprintf(err, cap, "line %ld: ROLE must be read, write or admin, not "
             "\"%.40s\"", line, f[1]);
    return -1;
  }
  if (!parse_workspaces(t, f[2], line, err, cap)) {
    token_free(t);
    return -1;
  }
  if (f[3]) {
    snprintf(t->name, sizeof t->name, "%s", f[3]);
  } else {
    char hex[65];
    hex_encode(t->digest, SHA256_BYTES, hex);
    snprintf(t->name, sizeof t->name, "token-%.8s", hex);
  }
  return 1;
}

/* Reads every line of f into set; false (err set) at the first bad one. */
static bool read_tokens(FILE *f, token_set *set, char *err, size_t cap) {
  char *text = NULL;
  size_t len = 0;
  long line = 0;
  bool ok = true;
  while (ok && getline(&text, &len, f) >= 0) {
    token t;
    int r = parse_line(text, ++line, &t, err, cap);
    if (r < 0) {
      ok = false;
    } else if (r > 0) {
      token *grown = realloc(set->t, (set->n + 1) * sizeof *grown);
      if (grown == NULL) {
        token_free(&t);
        snprintf(err, cap, "out of memory");
        ok = false;
      } else {
        set->t = grown;
        set->t[set->n++] = t;
      }
    }
  }
  free(text);
  return ok;
}

token_set *tokens_load(const char *path, char *err, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, cap, "cannot open the tokens file %s: %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, cap, "the tokens file %s is not a regular file", path);
    close(fd);
    return NULL;
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    snprintf(err, cap, "the tokens file %s may be read by group or others "
             "(mode %03o): it holds secrets; chmod 600 it", path,
             (unsigned)(st.st_mode & 0777));
    close(fd);
    return NULL;
  }
  FILE *f = fdopen(fd, "r");
  token_set *set = calloc(1, sizeof *set);
  if (f == NULL || set == NULL) {
    snprintf(err, cap, "out of memory");
    if (f)
      fclose(f);
    else
      close(fd);
    free(set);
    return NULL;
  }
  pthread_mutex_init(&set->mu, NULL);
  set->refs = 1;
  char why[256] = "";
  bool ok = read_tokens(f, set, why, sizeof why);
  fclose(f);
  if (ok && set->n == 0) {
    snprintf(why, sizeof why, "it holds no token");
    ok = false;
  }
  if (!ok) {
    snprintf(err, cap, "the tokens file %s: %s", path, why);
    tokens_release(set);
    return NULL;
  }
  return set;
}

token_set *tokens_ref(token_set *set) {
  if (set) {
    pthread_mutex_lock(&set->mu);
    set->refs++;
    pthread_mutex_unlock(&set->mu);
  }
  return set;
}

void tokens_release(token_set *set) {
  if (set == NULL)
    return;
  pthread_mutex_lock(&set->mu);
  int left = --set->refs;
  pthread_mutex_unlock(&set->mu);
  if (left > 0)
    return;
  for (size_t i = 0; i < set->n; i++)
    token_free(&set->t[i]);
  free(set->t);
  pthread_mutex_destroy(&set->mu);
  free(set);
}

size_t tokens_count(const token_set *set) { return set ? set->n : 0; }

const token *tokens_find(const token_set *set, const char *presented, size_t len) {
  uint8_t d[SHA256_BYTES];
  sha256(presented, len, d);
  const token *found = NULL;
  for (size_t i = 0; i < set->n; i++) {
    volatile uint8_t diff = 0;
    for (size_t k = 0; k < SHA256_BYTES; k++)
      diff |= (uint8_t)(d[k] ^ set->t[i].digest[k]);
    /* Every entry is compared; the match is chosen without a branch on
     * how its bytes compared. */
    uintptr_t mask = (uintptr_t)0 - (uintptr_t)(diff == 0);
    found = (const token *)(((uintptr_t)&set->t[i] & mask) |
                            ((uintptr_t)found & ~mask));
  }
  return found;
}

bool token_sees(const token *t, const char *ws) {
  if (t->all_workspaces)
    return true;
  if (ws == NULL)
    return false;
  for (size_t i = 0; i < t->n_workspaces; i++)
    if (strcmp(t->workspaces[i], ws) == 0)
      return true;
  return false;
}

bool token_generate(char *out, size_t cap, char hex[65]) {
  static const char b64[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  uint8_t raw[32];
  if (cap < 48 || getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
    return false;
  size_t n = 0;
  out[n++] = 'e';
  out[n++] = 's';
  out[n++] = '_';
  for (size_t i = 0; i < 32; i += 3) {
    uint32_t v = (uint32_t)raw[i] << 16 | (i + 1 < 32 ? (uint32_t)raw[i + 1] << 8 : 0) |
                 (i + 2 < 32 ? raw[i + 2] : 0);
    size_t chars = i + 2 < 32 ? 4 : 3; /* 32 bytes: 43 characters */
    for (size_t k = 0; k < chars; k++)
      out[n++] = b64[(v >> (18 - 6 * k)) & 63];
  }
  out[n] = '\0';
  uint8_t d[SHA256_BYTES];
  sha256(out, n, d);
  hex_encode(d, SHA256_BYTES, hex);
  return true;
}
