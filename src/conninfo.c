/* conninfo.c - helpers for libpq connection strings, and the removal of the
 * secrets they carry from every message the library records.
 *
 * What is a secret: every option libpq itself marks as one (dispchar "*"
 * in PQconninfoOption: password and sslpassword in PostgreSQL 15, and any
 * option a later libpq adds), plus a fixed floor of names (password,
 * sslpassword, oauth_client_secret) in case the libpq at run time is older
 * or says less.  Not secrets, and shown: passfile and sslkey (paths: the
 * files' contents are never read or quoted by us), requirepeer (an
 * operating-system user name), user, service, host.  PGPASSWORD and a
 * passfile never enter our strings; libpq's own messages do not quote the
 * password from any source (checked for PostgreSQL 15: bad host, wrong
 * password, missing password, bad sslpassword, bad sslmode, bad port).
 *
 * Two kinds of text are cleaned:
 *  - a connection string that parses: rebuilt from libpq's parse with each
 *    secret's value replaced by "***" (es__conninfo_redact);
 *  - any message (es__redact_secrets): text that may quote a connection
 *    string, parsed or not, whole or cut short.  The value of every
 *    key=value pair whose key is a secret (quoted or not, any spacing
 *    around "=", any case, percent-encoded as in a URI query) and the
 *    user info (user:password) of every postgres:// or postgresql:// URI
 *    that holds a password are masked.
 *    When a rule cannot tell where a secret ends, it masks more. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The mask that replaces a secret's value. */
#define MASK "***"

/* Secrets by name even when libpq does not mark them: the two of
 * PostgreSQL 15, and PostgreSQL 18's OAuth client secret. */
static const char *const secret_floor[] = {"password", "sslpassword",
                                           "oauth_client_secret"};
#define FLOOR_COUNT (sizeof secret_floor / sizeof secret_floor[0])

/* The options libpq marks with dispchar "*", read once per process: libpq's
 * option table is fixed for the library loaded, so this is not state that
 * changes, only a cache of it. */
#define LIBPQ_SECRETS_MAX 16
#define KEYWORD_MAX 64
static char libpq_secrets[LIBPQ_SECRETS_MAX][KEYWORD_MAX];
static int libpq_secret_count;
static pthread_once_t libpq_secrets_once = PTHREAD_ONCE_INIT;

/* Fills libpq_secrets from an empty parse, which lists every option libpq
 * knows without reading the environment or a service file. */
static void load_libpq_secrets(void) {
  char *errmsg = NULL;
  PQconninfoOption *opts = PQconninfoParse("", &errmsg);
  PQfreemem(errmsg);
  if (opts == NULL)
    return; /* out of memory: the floor still holds */
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
    if (o->dispchar == NULL || strchr(o->dispchar, '*') == NULL ||
        strlen(o->keyword) >= KEYWORD_MAX ||
        libpq_secret_count == LIBPQ_SECRETS_MAX)
      continue;
    snprintf(libpq_secrets[libpq_secret_count++], KEYWORD_MAX, "%s", o->keyword);
  }
  PQconninfoFree(opts);
}

/* true when keyword (len bytes, compared without regard to case so that a
 * message's spelling cannot slip past) names a secret option. */
static bool is_secret_keyword(const char *keyword, size_t len) {
  for (size_t i = 0; i < FLOOR_COUNT; i++)
    if (strlen(secret_floor[i]) == len &&
        strncasecmp(secret_floor[i], keyword, len) == 0)
      return true;
  pthread_once(&libpq_secrets_once, load_libpq_secrets);
  for (int i = 0; i < libpq_secret_count; i++)
    if (strlen(libpq_secrets[i]) == len &&
        strncasecmp(libpq_secrets[i], keyword, len) == 0)
      return true;
  return false;
}

/* true when the parsed option o holds a secret. */
static bool is_secret_option(const PQconninfoOption *o) {
  return (o->dispchar != NULL && strchr(o->dispchar, '*') != NULL) ||
         is_secret_keyword(o->keyword, strlen(o->keyword));
}

/* Quotes value for a key=value connection string: 'it''s' style is not
 * libpq's; it wants backslash escapes inside single quotes. */
char *es__conninfo_quote(const char *value) {
  size_t n = strlen(value);
  char *out = malloc(2 * n + 3);
  if (out == NULL)
    return NULL;
  char *p = out;
  *p++ = '\'';
  for (const char *s = value; *s; s++) {
    if (*s == '\'' || *s == '\\')
      *p++ = '\\';
    *p++ = *s;
  }
  *p++ = '\'';
  *p = '\0';
  return out;
}

/* ---- bounded output ------------------------------------------------------ */

/* Where redacted text goes: like snprintf, len counts every byte the full
 * result needs while at most cap - 1 of them are stored. */
typedef struct sink {
  char *out;
  size_t cap;
  size_t len;
} sink;

/* Appends n bytes of s, storing what fits. */
static void put(sink *k, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++, k->len++)
    if (k->len + 1 < k->cap)
      k->out[k->len] = s[i];
}

/* Terminates the stored text and returns the full length. */
static size_t finish(sink *k) {
  if (k->cap > 0)
    k->out[k->len < k->cap ? k->len : k->cap - 1] = '\0';
  return k->len;
}

/* Runs f(in, &sink over buf) on a copy of the text in buf, so that f reads
 * all of its input before buf is written: the result may be longer than
 * the input.  When no copy can be made, buf is replaced by a notice, as
 * the text cannot be shown unredacted. */
static void in_place(char *buf, size_t cap, void (*f)(const char *, sink *)) {
  if (buf == NULL || cap == 0)
    return;
  buf[cap - 1] = '\0'; /* never read past the buffer, whatever it holds */
  char small[1024], *copy = small;
  size_t n = strlen(buf);
  if (n >= sizeof small && (copy = malloc(n + 1)) == NULL) {
    snprintf(buf, cap, "(message withheld: out of memory removing secrets)");
    return;
  }
  memcpy(copy, buf, n + 1);
  sink k = {buf, cap, 0};
  f(copy, &k);
  finish(&k);
  if (copy != small)
    free(copy);
}

/* ---- secrets in free text ------------------------------------------------- */

/* true for the bytes of a connection option's name, percent-encoded as a
 * URI query may spell it. */
static bool is_key_byte(char c) {
  return isalnum((unsigned char)c) || c == '_' || c == '%';
}

/* Value of hex digit c, or -1. */
static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = (char)tolower((unsigned char)c);
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* true when the n bytes of key, percent-decoded as libpq decodes URI query
 * keys, name a secret option. */
static bool is_secret_key_text(const char *key, size_t n) {
  char decoded[KEYWORD_MAX];
  size_t len = 0;
  for (size_t i = 0; i < n; i++) {
    char c = key[i];
    if (c == '%' && i + 2 < n && hex_value(key[i + 1]) >= 0 &&
        hex_value(key[i + 2]) >= 0) {
      c = (char)(hex_value(key[i + 1]) * 16 + hex_value(key[i + 2]));
      i += 2;
    }
    if (len == sizeof decoded)
      return false; /* longer than any keyword */
    decoded[len++] = c;
  }
  return is_secret_keyword(decoded, len);
}

/* End of the run of bytes from p to white space (backslash escaping the
 * next byte): where an unquoted value, or a URI, ends. */
static const char *token_end(const char *p) {
  while (*p && !isspace((unsigned char)*p))
    p += (p[0] == '\\' && p[1]) ? 2 : 1;
  return p;
}

/* End of a value as libpq reads it after "key=": a single-quoted value runs
 * to its closing quote (backslash escapes the next byte) or to the end of
 * the text when unterminated; any other runs to white space, where a
 * backslash also escapes the next byte. */
static const char *value_end(const char *v) {
  if (*v == '\'') {
    v++;
    while (*v && *v != '\'')
      v += (v[0] == '\\' && v[1]) ? 2 : 1;
    return *v == '\'' ? v + 1 : v;
  }
  return token_end(v);
}

/* A secret found in a text: the bytes [start, end) are masked, as '***'
 * when they are a quoted value. */
typedef struct secret_span {
  const char *start;
  const char *end;
  bool quoted;
} secret_span;

/* The text being redacted, and its last "@" (NULL when it has none). */
typedef struct text {
  const char *in;
  const char *last_at;
} text;

/* true when p starts a secret's pair: a word of t that names a secret
 * followed by "=" (white space around it allowed, as libpq allows) and a
 * value, which *sp receives. */
static bool pair_at(const text *t, const char *p, secret_span *sp) {
  if (!is_key_byte(*p) || (p > t->in && is_key_byte(p[-1])))
    return false;
  const char *key_end = p;
  while (is_key_byte(*key_end))
    key_end++;
  const char *r = key_end;
  while (isspace((unsigned char)*r))
    r++;
  if (*r != '=' || !is_secret_key_text(p, (size_t)(key_end - p)))
    return false;
  r++;
  while (isspace((unsigned char)*r))
    r++;
  *sp = (secret_span){.start = r, .end = value_end(r), .quoted = *r == '\''};
  return sp->end > r; /* an empty value hides nothing */
}

/* Length of the URI scheme at p ("postgresql://" or "postgres://", any
 * case), or 0. */
static size_t uri_prefix_length(const char *p) {
  static const char *const prefixes[] = {"postgresql://", "postgres://"};
  for (size_t i = 0; i < 2; i++)
    if (strncasecmp(p, prefixes[i], strlen(prefixes[i])) == 0)
      return strlen(prefixes[i]);
  return 0;
}

/* true when p starts a URI with a password, whose user info *sp
 * receives.  libpq takes the user info to be what comes before the first
 * "@" ahead of any "/", and the password what follows its first ":"; a
 * message may quote a URI that libpq could not parse, a password holding
 * "/" or "@", or a URI cut short, so the user info is taken to run from
 * the scheme to the last "@" of the whole text, or, when no "@" follows,
 * to the next white space, and to hold a password when it holds a ":".
 * The user name goes with it: masking from the scheme on leaves nothing
 * before the mask that a second reading could take for a secret. */
static bool uri_at(const text *t, const char *p, secret_span *sp) {
  size_t plen = uri_prefix_length(p);
  if (plen == 0)
    return false;
  const char *s = p + plen, *colon, *end;
  if (t->last_at != NULL && t->last_at >= s) {
    end = t->last_at;
  } else {
    end = token_end(s);
  }
  colon = memchr(s, ':', (size_t)(end - s));
  if (colon == NULL || colon + 1 == end)
    return false; /* a user name alone is no secret */
  *sp = (secret_span){.start = s, .end = end, .quoted = false};
  return true;
}

/* true when a secret starts at p. */
static bool secret_at(const text *t, const char *p, secret_span *sp) {
  return uri_at(t, p, sp) || pair_at(t, p, sp);
}

/* Extends sp over every secret that starts inside it: a malformed string
 * can be read more than one way (a quote may close a value, or belong to a
 * password= inside it), and what any reading takes for a secret is
 * masked. */
static void widen(const text *t, secret_span *sp) {
  for (const char *q = sp->start; q < sp->end; q++) {
    secret_span inner;
    if (secret_at(t, q, &inner) && inner.end > sp->end)
      sp->end = inner.end;
  }
}

/* Writes in to k with every secret masked (see the file's comment). */
static void redact_text(const char *in, sink *k) {
  text t = {.in = in, .last_at = strrchr(in, '@')};
  const char *p = in;
  while (*p) {
    secret_span sp;
    if (!secret_at(&t, p, &sp)) {
      put(k, p++, 1);
      continue;
    }
    widen(&t, &sp);
    put(k, p, (size_t)(sp.start - p));
    if (sp.quoted)
      put(k, "'" MASK "'", sizeof MASK + 1);
    else
      put(k, MASK, sizeof MASK - 1);
    p = sp.end;
  }
}

size_t es__redact_secrets_to(const char *in, char *out, size_t cap) {
  sink k = {out, cap, 0};
  redact_text(in, &k);
  return finish(&k);
}

void es__redact_secrets(char *msg, size_t cap) { in_place(msg, cap, redact_text); }

/* ---- libpq's parse errors --------------------------------------------------- */

/* Writes in to k with the contents of its double-quoted tokens hidden.
 * libpq's parse errors quote the user's text: a keyword, a token, the whole
 * URI, and that text may hold a quote itself.  libpq's own quoted literals
 * are one punctuation character ("=", "]", ":", "/"), and are kept; any
 * other quoted token is taken to run to the last quote of the message
 * (where libpq puts the user's text), and hidden, to the end when the
 * quote is never closed. */
static void scrub_text(const char *in, sink *k) {
  const char *p = in;
  while (*p) {
    if (*p != '"') {
      put(k, p++, 1);
      continue;
    }
    if (p[1] != '\0' && p[1] != '"' && ispunct((unsigned char)p[1]) && p[2] == '"') {
      put(k, p, 3);
      p += 3;
      continue;
    }
    const char *last = strrchr(p, '"');
    put(k, "\"...", 4);
    if (last == p)
      return; /* unterminated: everything after it is the user's */
    put(k, "\"", 1);
    p = last + 1;
  }
}

void es__scrub_quoted(char *msg, size_t cap) { in_place(msg, cap, scrub_text); }

/* ---- a printable connection string ------------------------------------------- */

/* Appends "keyword=quoted" to *out (len bytes used of *cap); false on out
 * of memory. */
static bool append_option(char **out, size_t *len, size_t *cap,
                          const char *keyword, const char *value) {
  char *q = es__conninfo_quote(value);
  if (q == NULL)
    return false;
  size_t need = *len + strlen(keyword) + strlen(q) + 3;
  if (need > *cap) {
    size_t grown_cap = *cap;
    while (grown_cap < need)
      grown_cap *= 2;
    char *grown = realloc(*out, grown_cap);
    if (grown == NULL) {
      free(q);
      return false;
    }
    *out = grown;
    *cap = grown_cap;
  }
  *len += (size_t)sprintf(*out + *len, "%s%s=%s", *len ? " " : "", keyword, q);
  free(q);
  return true;
}

/* Rebuilds conninfo as key=value pairs with every secret masked, so that it
 * can appear in messages and logs; a value that quotes a connection string
 * itself (dbname='postgresql://u:pw@h/db') is cleaned as free text. */
char *es__conninfo_redact(const char *conninfo) {
  char *errmsg = NULL, *out = NULL, *clean = NULL;
  PQconninfoOption *opts = PQconninfoParse(conninfo, &errmsg);
  PQfreemem(errmsg);
  if (opts == NULL)
    return NULL;
  size_t cap = 64, len = 0;
  if ((out = malloc(cap)) == NULL)
    goto done;
  out[0] = '\0';
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
    if (o->val == NULL)
      continue;
    if (!append_option(&out, &len, &cap, o->keyword,
                       is_secret_option(o) ? MASK : o->val))
      goto done;
  }
  size_t n = es__redact_secrets_to(out, NULL, 0);
  if ((clean = malloc(n + 1)) != NULL)
    es__redact_secrets_to(out, clean, n + 1);
done:
  free(out);
  PQconninfoFree(opts);
  return clean;
}
