/* targets.c - the fuzz targets (see targets.h).
 *
 * Besides "no crash, no leak, no undefined behaviour" (the sanitizers'
 * part), each target checks properties callers rely on and abort()s with
 * the property's name when one breaks.  Values that may legitimately change
 * on the way are compared for what they mean: a NaN's payload and sign are
 * not carried by the text form (pgvector refuses NaN anyway), so two NaNs
 * are equal; everything else, -0 included, must come back bit for bit. */
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "json.h"
#include "targets.h"

/* pgvector's largest dimension, and the ingest parser's. */
#define MAX_VALUES 16000

/* The workspace set_defaults writes into the metadata when the input does
 * not supply one: it needs escaping (a quote, a backslash, a control byte). */
#define FUZZ_WORKSPACE "w\"s\\\x01\xc3\xa9"

/* The input's last bytes serve as the workspace when they are a valid
 * --workspace value (UTF-8 without NUL), so the escaper sees anything. */
#define WORKSPACE_BYTES 12

/* Ends the process naming cond when it is false. */
#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond))                                                           \
      broken(#cond, __LINE__);                                             \
  } while (0)

/* Ends the process: a property that must hold for every input did not. */
static _Noreturn void broken(const char *what, int line) {
  fprintf(stderr, "fuzz/targets.c:%d: broken property: %s\n", line, what);
  fflush(stderr);
  abort();
}

/* true when a and b have the same bits. */
static bool same_bits(float a, float b) {
  uint32_t x, y;
  memcpy(&x, &a, sizeof x);
  memcpy(&y, &b, sizeof y);
  return x == y;
}

/* true when b is what a text round trip of a must give: the same bits, or
 * NaN for NaN. */
static bool same_value(float a, float b) {
  if (isnan(a) || isnan(b))
    return isnan(a) && isnan(b);
  return same_bits(a, b);
}

/* malloc that never returns NULL for a zero size (and aborts on out of
 * memory, which a fuzz input of a few KB cannot cause). */
static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL)
    broken("malloc", __LINE__);
  return p;
}

/* ---- the ingest-format document ------------------------------------------ */

/* A string field of a parsed document: valid UTF-8, no NUL inside (the
 * parser refuses both). */
static void check_parsed_text(const char *s) {
  if (s != NULL)
    CHECK(es__utf8_invalid_at(s, strlen(s)) < 0);
}

/* Metadata the parser kept: exactly one JSON object. */
static void check_parsed_metadata(const char *m) {
  char err[128];
  if (m != NULL)
    CHECK(es__json_check_object(m, strlen(m), "metadata", err, sizeof err));
}

/* What a successful parse promises about every field. */
static void check_parsed(const es_doc *doc) {
  check_parsed_text(doc->id);
  check_parsed_text(doc->text);
  check_parsed_text(doc->source_id);
  check_parsed_metadata(doc->metadata_json);
  CHECK(doc->embedding != NULL || doc->dim == 0);
  CHECK(doc->dim <= MAX_VALUES);
  CHECK(doc->n_chunks == 0 || (doc->has_chunks && doc->chunks != NULL));
  for (size_t i = 0; i < doc->n_chunks; i++) {
    const es_chunk *c = &doc->chunks[i];
    check_parsed_text(c->id);
    check_parsed_text(c->text);
    check_parsed_metadata(c->metadata_json);
    CHECK(c->embedding != NULL || c->dim == 0);
    CHECK(c->dim <= MAX_VALUES);
  }
}

/* true when the JSON text m holds a \u0000 escape. */
static bool has_nul_escape(const char *m) {
  for (const char *p = m; *p != '\0'; p++) {
    if (*p != '\\')
      continue;
    if (*++p == '\0')
      break;
    if (*p == 'u' && strncmp(p + 1, "0000", 4) == 0)
      return true;
  }
  return false;
}

/* Whether the JSON number s[0..n) fits PostgreSQL's numeric, as which jsonb
 * stores it: at most 16383 digits after the point once the exponent is
 * applied, zeros included (0e-16384 is refused), and a nonzero value below
 * 10^131072.  (Checked against PostgreSQL 15.) */
static bool numeric_storable(const char *s, size_t n) {
  size_t i = 0, int_len = 0, frac_len = 0;
  long first = -1, e10 = 0; /* first: index of the first nonzero digit */
  bool exp_neg = false;
  if (i < n && s[i] == '-')
    i++;
  for (; i < n && s[i] >= '0' && s[i] <= '9'; i++, int_len++)
    if (first < 0 && s[i] != '0')
      first = (long)int_len;
  if (i < n && s[i] == '.')
    for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, frac_len++)
      if (first < 0 && s[i] != '0')
        first = (long)(int_len + frac_len);
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-'))
      exp_neg = s[i++] == '-';
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
      if (e10 < 100000000)
        e10 = e10 * 10 + (s[i] - '0');
  }
  if (exp_neg)
    e10 = -e10;
  if ((long)frac_len - e10 > 16383)
    return false;
  return first < 0 || (long)int_len - 1 - first + e10 < 131072;
}

/* true when every number in the JSON text m is numeric_storable. */
static bool numbers_storable(const char *m) {
  bool in_string = false;
  for (const char *p = m; *p != '\0'; p++) {
    if (in_string) {
      if (*p == '\\') {
        if (*++p == '\0')
          break;
      } else if (*p == '"') {
        in_string = false;
      }
    } else if (*p == '"') {
      in_string = true;
    } else if (*p == '-' || (*p >= '0' && *p <= '9')) {
      size_t n = strspn(p, "+-0123456789.eE");
      if (!numeric_storable(p, n))
        return false;
      p += n - 1;
    }
  }
  return true;
}

/* Metadata the validator let through must be storable: PostgreSQL refuses
 * invalid UTF-8, and jsonb refuses \u0000 and numbers numeric cannot hold.
 * (README: such lines are "reported with their line and reason and never
 * sent".) */
static void check_sendable_metadata(const char *m) {
  if (m == NULL)
    return;
  if (es__utf8_invalid_at(m, strlen(m)) >= 0)
    broken("es__doc_check accepted metadata that is not valid UTF-8 "
           "(PostgreSQL refuses it)", __LINE__);
  if (has_nul_escape(m))
    broken("es__doc_check accepted metadata holding \\u0000 (jsonb "
           "refuses it)", __LINE__);
  if (!numbers_storable(m))
    broken("es__doc_check accepted metadata with a number PostgreSQL's "
           "numeric cannot store (jsonb refuses it)", __LINE__);
}

/* Runs the validator against dim; a failure must say why, and what passes
 * must be something the database accepts. */
static void validate(const es_doc *doc, int dim) {
  char err[256];
  err[0] = '\0';
  es_status rc = es__doc_check(doc, dim, ES_METRIC_COSINE, err, sizeof err);
  if (rc == ES_OK) {
    check_sendable_metadata(doc->metadata_json);
    for (size_t i = 0; i < doc->n_chunks; i++)
      check_sendable_metadata(doc->chunks[i].metadata_json);
    return;
  }
  CHECK(rc == ES_EINVAL || rc == ES_EDIM || rc == ES_ENOMEM);
  CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
}

/* Validates doc against its own dimension and against 3, and hashes it. */
static void validate_and_hash(const es_doc *doc,
                              uint8_t content[ES__HASH_BYTES],
                              uint8_t chunks[ES__HASH_BYTES]) {
  validate(doc, doc->embedding != NULL ? (int)doc->dim : 0);
  validate(doc, 3);
  es__doc_content_hash(doc, content);
  es__doc_chunks_hash(doc, chunks);
}

/* es_doc_json_set_defaults fills only what is missing and keeps the
 * metadata one JSON object that now has a workspace. */
static void fill_defaults(es_doc_json *d, const char *workspace) {
  const es_doc *doc = es_doc_json_doc(d);
  const char *m = doc->metadata_json;
  bool had_source = doc->source_id != NULL;
  bool had_workspace = m != NULL && es__json_object_has_key(m, strlen(m),
                                                            "workspace");
  uint8_t before[ES__HASH_BYTES], after[ES__HASH_BYTES], chunks[ES__HASH_BYTES];

  es__doc_content_hash(doc, before);
  es_status rc = es_doc_json_set_defaults(d, "fuzz-source", workspace);
  if (rc == ES_ENOMEM)
    return;
  CHECK(rc == ES_OK);
  doc = es_doc_json_doc(d);
  CHECK(doc->source_id != NULL);
  if (!had_source)
    CHECK(strcmp(doc->source_id, "fuzz-source") == 0);
  m = doc->metadata_json;
  CHECK(m != NULL);
  check_parsed_metadata(m);
  CHECK(es__json_object_has_key(m, strlen(m), "workspace"));
  check_parsed(doc);
  validate_and_hash(doc, after, chunks);
  if (had_source && had_workspace)
    CHECK(memcmp(before, after, sizeof before) == 0);
}

/* Writes the workspace for input data into out (WORKSPACE_BYTES + 1). */
static void pick_workspace(const uint8_t *data, size_t size, char *out) {
  size_t n = size < WORKSPACE_BYTES ? size : WORKSPACE_BYTES;
  if (n > 0)
    memcpy(out, data + size - n, n);
  out[n] = '\0';
  if (n == 0 || strlen(out) != n || es__utf8_invalid_at(out, n) >= 0)
    snprintf(out, WORKSPACE_BYTES + 1, "%s", FUZZ_WORKSPACE);
}

/* Parses, checks, validates, hashes and completes one document. */
int es_fuzz_doc_json(const uint8_t *data, size_t size) {
  const char *json = (const char *)data;
  char small[64];
  es_doc_json *d = NULL;
  uint8_t content[ES__HASH_BYTES], chunks[ES__HASH_BYTES];

  es__json_check_object(json, size, "document", small, sizeof small);
  CHECK(memchr(small, '\0', sizeof small) != NULL);

  /* The input picks the error buffer: none (the parser's fallback), or a
   * heap buffer of 1..128 bytes, so that an overrun is caught exactly. */
  size_t errlen = size > 0 && (data[size - 1] & 1) ? 0 : 1 + size % 128;
  char *err = errlen ? xmalloc(errlen) : NULL;
  es_status rc = es_doc_json_parse(json, size, &d, err, errlen);
  CHECK((rc == ES_OK) == (d != NULL));
  if (err != NULL) {
    CHECK(memchr(err, '\0', errlen) != NULL);
    CHECK(rc == ES_OK || errlen == 1 || err[0] != '\0');
  }
  free(err);
  if (rc != ES_OK) {
    CHECK(rc == ES_EINVAL || rc == ES_ENOMEM);
    return 0;
  }
  check_parsed(es_doc_json_doc(d));
  validate_and_hash(es_doc_json_doc(d), content, chunks);
  char workspace[WORKSPACE_BYTES + 1];
  pick_workspace(data, size, workspace);
  fill_defaults(d, workspace);
  es_doc_json_free(d);
  return 0;
}

/* ---- the vector codecs --------------------------------------------------- */

/* Offset of the first byte that does not start a valid UTF-8 sequence, or
 * -1; decodes every code point the long way, independently of utf8.c. */
static long utf8_reference(const uint8_t *s, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint32_t c = s[i], cp, min;
    size_t n;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
      min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
      min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
      min = 0x10000;
    } else {
      return (long)i;
    }
    if (len - i <= n)
      return (long)i;
    for (size_t k = 1; k <= n; k++) {
      if ((s[i + k] & 0xC0) != 0x80)
        return (long)i;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return (long)i;
    i += n + 1;
  }
  return -1;
}

/* es__utf8_invalid_at agrees with the reference decoder. */
static void fuzz_utf8(const uint8_t *data, size_t size) {
  long got = es__utf8_invalid_at((const char *)data, size);
  CHECK(got == utf8_reference(data, size));
}

/* es__vector_first_nonfinite names the first NaN or infinity. */
static void check_first_nonfinite(const float *v, size_t dim) {
  long bad = es__vector_first_nonfinite(v, dim);
  size_t end = bad < 0 ? dim : (size_t)bad;
  CHECK(bad < 0 || (size_t)bad < dim);
  for (size_t i = 0; i < end; i++)
    CHECK(isfinite(v[i]));
  CHECK(bad < 0 || !isfinite(v[bad]));
}

/* Binary form: whatever parses encodes back to the very same bytes, and a
 * buffer one value short is refused. */
static void fuzz_bin(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  size_t cap = size >= 4 ? (size - 4) / 4 : 0;
  float *v = xmalloc(cap * sizeof *v);
  long dim = es__vector_from_bin(in, size, v, cap);
  if (dim >= 0) {
    CHECK(size == es__vector_bin_size((size_t)dim));
    check_first_nonfinite(v, (size_t)dim);
    char *out = xmalloc(size);
    es__vector_to_bin(v, (size_t)dim, out);
    if (memcmp(out, in, 2) != 0)
      broken("binary round trip: the dimension changed", __LINE__);
    if (memcmp(out + 2, in + 2, 2) != 0)
      broken("binary round trip: es__vector_from_bin accepted a nonzero "
             "'unused' field, which es__vector_to_bin never writes and "
             "pgvector's vector_recv refuses", __LINE__);
    if (memcmp(out + 4, in + 4, size - 4) != 0)
      broken("binary round trip: a value's bits changed", __LINE__);
    free(out);
    if (dim > 0)
      CHECK(es__vector_from_bin(in, size, v, (size_t)dim - 1) == -1);
  }
  free(v);
}

/* Text form: parse, format, parse again gives the same values, and
 * formatting what was parsed back gives the same text.  A parse with a
 * small capacity agrees with the full one.  Returns the dimension parsed
 * (or -1, -2) with the values in v. */
static long fuzz_text(const char *text, float *v) {
  long n = es__vector_from_text(text, v, MAX_VALUES);
  CHECK(n >= -2);

  size_t k = strlen(text) % 4; /* 0..3 */
  float *few = xmalloc(k * sizeof *few);
  long m = es__vector_from_text(text, few, k);
  if (n >= 0 && (size_t)n <= k) {
    CHECK(m == n);
    for (long i = 0; i < n; i++)
      CHECK(same_bits(few[i], v[i]));
  } else if (n >= 0 || n == -2) {
    CHECK(m == -2);
  } else {
    CHECK(m == -1 || m == -2);
  }
  free(few);
  if (n < 0)
    return n;

  check_first_nonfinite(v, (size_t)n);
  char *t1 = es__vector_to_text(v, (size_t)n);
  if (t1 == NULL)
    return n;
  float *back = xmalloc((size_t)n * sizeof *back);
  long n2 = es__vector_from_text(t1, back, (size_t)n);
  if (n2 != n)
    broken("text round trip: the formatted vector does not parse to the "
           "same dimension", __LINE__);
  for (long i = 0; i < n; i++)
    if (!same_value(v[i], back[i]))
      broken("text round trip: a value changed", __LINE__);
  char *t2 = es__vector_to_text(back, (size_t)n);
  if (t2 != NULL && strcmp(t1, t2) != 0)
    broken("text round trip: formatting is not canonical", __LINE__);
  free(t2);
  free(back);
  free(t1);
  return n;
}

/* The float the JSON reader made of the len characters at token is the one
 * strtof makes of them.  len may exceed 399: json.c refuses such numbers
 * only when it needs strtof, and its fast path reads 0.0e-99...9 or
 * 1e00...01 at any length. */
static void check_number(const char *token, size_t len, float f) {
  char *copy = xmalloc(len + 1), *end;
  CHECK(len > 0);
  memcpy(copy, token, len);
  copy[len] = '\0';
  float want = strtof(copy, &end);
  CHECK(end == copy + len);
  if (!same_bits(f, want))
    broken("JSON number: es__json_float and strtof read different floats",
           __LINE__);
  free(copy);
}

/* Reads data as a JSON array of numbers the way the ingest parser reads an
 * embedding, checking every number against strtof on the same characters;
 * when the whole input is such an array and the text parser accepted it
 * too (n >= 0 values in v), both must have read the same floats. */
static void fuzz_json_numbers(const char *data, size_t size, long n,
                              const float *v) {
  es__json j;
  char err[128];
  size_t count = 0;
  bool same = n >= 0;

  es__json_init(&j, data, size, err, sizeof err);
  if (!es__json_eat(&j, '['))
    return;
  if (!es__json_eat(&j, ']')) {
    for (;;) {
      es__json_peek(&j);
      const char *token = j.p;
      float f;
      if (!es__json_float_at(&j, &f, "v", count))
        return;
      check_number(token, (size_t)(j.p - token), f);
      if (same && ((long)count >= n || !same_bits(f, v[count])))
        same = false;
      count++;
      if (es__json_eat(&j, ','))
        continue;
      if (es__json_eat(&j, ']'))
        break;
      return;
    }
  }
  if (es__json_peek(&j) != -1)
    return;
  if (n >= 0 && (!same || (long)count != n))
    broken("a vector read as JSON and as pgvector text differs", __LINE__);
}

/* Runs every vector codec over the same bytes. */
int es_fuzz_vector(const uint8_t *data, size_t size) {
  fuzz_utf8(data, size);
  fuzz_bin(data, size);

  char *text = xmalloc(size + 1);
  if (size > 0)
    memcpy(text, data, size);
  text[size] = '\0';
  float *v = xmalloc(MAX_VALUES * sizeof *v);
  long n = fuzz_text(text, v);
  fuzz_json_numbers((const char *)data, size, n, v);
  free(v);
  free(text);
  return 0;
}

/* ---- the redactor ------------------------------------------------------------ */

/* Bytes of a URI scheme at p that libpq (and the redactor) know, or 0. */
static size_t fuzz_uri_scheme(const char *p) {
  if (strncasecmp(p, "postgresql://", 13) == 0)
    return 13;
  return strncasecmp(p, "postgres://", 11) == 0 ? 11 : 0;
}

/* Checks that token (n bytes at t) is absent from out when it is a fair
 * test: at least 4 bytes, no '*' (the mask could make it), and once only
 * in the input (otherwise its other place may be shown). */
static void check_hidden(const char *in, const char *out, const char *t, size_t n,
                         const char *what) {
  if (n < 4 || memchr(t, '*', n) != NULL)
    return;
  char *token = xmalloc(n + 1);
  memcpy(token, t, n);
  token[n] = '\0';
  const char *first = strstr(in, token);
  if (first != NULL && strstr(first + 1, token) == NULL && strstr(out, token) != NULL) {
    fprintf(stderr, "%s \"%s\" is shown in \"%s\"\n", what, token, out);
    broken("a secret is masked in every message", __LINE__);
  }
  free(token);
}

/* check_hidden on every 8-byte piece of the token (n bytes at t, inside
 * in) at multiples of 8 and at its end: a mask that stops short of a
 * secret's end shows a piece of it. */
static void check_pieces_hidden(const char *in, const char *out, const char *t,
                                size_t n, const char *what) {
  enum { PIECE = 8 };
  check_hidden(in, out, t, n, what);
  if (n <= PIECE)
    return;
  for (size_t off = 0; off + PIECE <= n; off += PIECE)
    check_hidden(in, out, t + off, PIECE, what);
  check_hidden(in, out, t + n - PIECE, PIECE, what);
}

/* The password of every URI in in, found as libpq finds it: the user
 * info is what precedes the first "@" ahead of any "/", the password what
 * follows its first ":". */
static void check_uri_passwords(const char *in, const char *out) {
  for (const char *p = in; *p; p++) {
    size_t plen = fuzz_uri_scheme(p);
    if (plen == 0)
      continue;
    const char *s = p + plen, *at = s + strcspn(s, "@/");
    const char *colon = memchr(s, ':', (size_t)(at - s));
    if (*at == '@' && colon != NULL)
      check_pieces_hidden(in, out, colon + 1, (size_t)(at - colon - 1), "URI password");
  }
}

/* The value of every password= and sslpassword= pair of in, read as libpq
 * reads key=value text (keywords start after white space; a quoted value
 * runs to the next quote, others to white space), when it holds no
 * backslash (an escape: the raw token is not the value). */
static void check_pair_passwords(const char *in, const char *out) {
  static const char *const keys[] = {"password", "sslpassword"};
  for (const char *p = in; *p; p++) {
    if (p > in && !isspace((unsigned char)p[-1]))
      continue;
    for (size_t i = 0; i < 2; i++) {
      size_t klen = strlen(keys[i]);
      if (strncmp(p, keys[i], klen) != 0)
        continue;
      const char *v = p + klen;
      v += strspn(v, " \t\n\v\f\r");
      if (*v != '=')
        continue;
      v++;
      v += strspn(v, " \t\n\v\f\r");
      size_t n;
      if (*v == '\'') {
        v++;
        n = strcspn(v, "'");
        if (v[n] != '\'')
          continue;
      } else {
        n = strcspn(v, " \t\n\v\f\r");
      }
      if (memchr(v, '\\', n) == NULL)
        check_pieces_hidden(in, out, v, n, "key=value password");
    }
  }
}

/* true when secret's value is held by the value of an option that is not
 * a secret (an escaped password=ab\\cd can be host=abcd's value too). */
static bool shown_as_another_value(const PQconninfoOption *opts,
                                   const PQconninfoOption *secret) {
  for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
    if (o->val != NULL && strchr(o->dispchar, '*') == NULL &&
        strstr(o->val, secret->val) != NULL)
      return true;
  return false;
}

/* When libpq parses in, every secret value it reads (an option marked
 * dispchar "*") is absent from out. */
static void check_parsed_secrets(const char *in, const char *out) {
  char *errmsg = NULL;
  PQconninfoOption *opts = PQconninfoParse(in, &errmsg);
  PQfreemem(errmsg);
  if (opts == NULL)
    return;
  /* A value the text holds only inside a keyword ("ord=" in "password=")
   * is shown with the keyword. */
  size_t cap = 64;
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
    cap += strlen(o->keyword) + 2;
  char *keywords = xmalloc(cap);
  strcpy(keywords, "postgresql:// ");
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
    strcat(keywords, o->keyword);
    strcat(keywords, "= ");
  }
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
    if (o->val != NULL && strchr(o->dispchar, '*') != NULL &&
        strstr(keywords, o->val) == NULL && !shown_as_another_value(opts, o))
      check_hidden(in, out, o->val, strlen(o->val), o->keyword);
  free(keywords);
  PQconninfoFree(opts);
}

/* es__conninfo_redact: for a string libpq parses, no secret value is shown
 * unless the other options' printed form holds it anyway. */
static void check_conninfo_redact(const char *in) {
  char *errmsg = NULL;
  PQconninfoOption *opts = PQconninfoParse(in, &errmsg);
  PQfreemem(errmsg);
  if (opts == NULL) {
    CHECK(es__conninfo_redact(in) == NULL);
    return;
  }
  char *out = es__conninfo_redact(in);
  CHECK(out != NULL);
  /* Everything the output may show: each keyword, quoted value and mask. */
  size_t cap = 16;
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
    cap += strlen(o->keyword) + 2 * (o->val ? strlen(o->val) : 0) + 8;
  char *shown = xmalloc(cap);
  shown[0] = '\0';
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
    if (o->val == NULL)
      continue;
    char *q = es__conninfo_quote(strchr(o->dispchar, '*') ? "***" : o->val);
    CHECK(q != NULL);
    strcat(shown, o->keyword);
    strcat(shown, "=");
    strcat(shown, q);
    strcat(shown, " ");
    free(q);
  }
  for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
    if (o->val != NULL && strchr(o->dispchar, '*') != NULL && strlen(o->val) >= 4 &&
        strstr(shown, o->val) == NULL && strstr(out, o->val) != NULL) {
      fprintf(stderr, "%s \"%s\" is shown in \"%s\"\n", o->keyword, o->val, out);
      broken("es__conninfo_redact masks every secret option", __LINE__);
    }
  free(shown);
  free(out);
  PQconninfoFree(opts);
}

/* es__redact_secrets_to into cap bytes exactly (so that ASan sees a write
 * past them): the stored text is the first cap - 1 bytes of full. */
static void check_cut(const char *in, const char *full, size_t n, size_t cap) {
  char *out = cap ? xmalloc(cap) : NULL;
  CHECK(es__redact_secrets_to(in, out, cap) == n);
  if (cap > 0) {
    size_t stored = n < cap - 1 ? n : cap - 1;
    CHECK(strlen(out) == stored);
    CHECK(memcmp(out, full, stored) == 0);
  }
  free(out);
}

/* es__scrub_quoted: text without a double quote is kept as it is; in any
 * other, every quote opens "...", or is a one-punctuation literal. */
static void check_scrub(const char *in, size_t len) {
  size_t cap = 3 * len + 8;
  char *out = xmalloc(cap);
  memcpy(out, in, len + 1);
  es__scrub_quoted(out, cap);
  CHECK(strlen(out) < cap);
  if (strchr(in, '"') == NULL)
    CHECK(strcmp(out, in) == 0);
  for (const char *q = strchr(out, '"'); q != NULL; q = strchr(q, '"')) {
    if (q[1] != '\0' && q[1] != '"' && ispunct((unsigned char)q[1]) && q[2] == '"') {
      q += 3;
      continue;
    }
    CHECK(strncmp(q, "\"...", 4) == 0);
    CHECK(q[4] == '\0' || q[4] == '"');
    q += q[4] ? 5 : 4;
  }
  /* In a buffer of exactly the input's size: cut, never overrun. */
  char *exact = xmalloc(len + 1);
  memcpy(exact, in, len + 1);
  es__scrub_quoted(exact, len + 1);
  CHECK(strlen(exact) <= len);
  CHECK(strncmp(exact, out, strlen(exact)) == 0);
  free(exact);
  free(out);
}

/* The redactors on the input read as text (up to its first NUL). */
int es_fuzz_redact(const uint8_t *data, size_t size) {
  char *in = xmalloc(size + 1);
  if (size > 0)
    memcpy(in, data, size);
  in[size] = '\0';
  size_t len = strlen(in);

  size_t n = es__redact_secrets_to(in, NULL, 0);
  char *full = xmalloc(n + 1);
  CHECK(es__redact_secrets_to(in, full, n + 1) == n);
  CHECK(strlen(full) == n);
  check_cut(in, full, n, 1);
  check_cut(in, full, n, size > 0 ? data[0] % 48 : 2);
  check_cut(in, full, n, n);

  /* In place, in a buffer of the input's size. */
  char *buf = xmalloc(len + 1);
  memcpy(buf, in, len + 1);
  es__redact_secrets(buf, len + 1);
  CHECK(strlen(buf) == (n < len ? n : len));
  CHECK(memcmp(buf, full, strlen(buf)) == 0);
  free(buf);

  /* Redacting twice (a wrapped message is redacted again) is not the same
   * as once: a mask may swallow the white space that ended a URI, which
   * then runs further.  Its sizes still hold. */
  size_t n2 = es__redact_secrets_to(full, NULL, 0);
  char *again = xmalloc(n2 + 1);
  CHECK(es__redact_secrets_to(full, again, n2 + 1) == n2);
  CHECK(strlen(again) == n2);
  free(again);

  check_uri_passwords(in, full);
  check_pair_passwords(in, full);
  check_parsed_secrets(in, full);
  check_conninfo_redact(in);
  check_scrub(in, len);
  free(full);
  free(in);
  return 0;
}
