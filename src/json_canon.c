/* json_canon.c - a JSON object as PostgreSQL's jsonb prints it.
 *
 * Content hashes are taken over this form, so that a document whose
 * metadata comes back from the store (`embstore export`, then ingest) has
 * the hash it had when it went in, whatever order or spelling the first
 * writer used.  The rules are jsonb's (PostgreSQL 13-17, jsonb.c and
 * numeric.c), and a test holds them against the server's own output:
 *
 *   - object keys sorted by byte length, then bytewise; of a key given
 *     twice the last value is kept;
 *   - ", " between members and elements, ": " after a key, {} and [];
 *   - strings decoded, then written with \" \\ \b \f \n \r \t escaped,
 *     other bytes below 0x20 as \u00XX (lower-case hex), all else as it
 *     is (UTF-8, '/', DEL);
 *   - numbers as numeric_out writes numeric_in's value: no exponent,
 *     max(0, fraction digits - exponent) digits after the point, no
 *     leading zeros, no sign on zero.
 *
 * Input must be valid JSON (validate.c checked it); anything else, and a
 * number whose exponent would add more than MAX_PADDING zeros, returns
 * false and the caller falls back. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "json.h"

/* Most zeros a number's exponent may add: beyond, the form is not built
 * (the caller hashes the text minified instead), so that an 8-byte
 * 1e131071 cannot cost 128 KiB of canonical text. */
#define MAX_PADDING 1000

static bool value(es__json *j, es__buf *out, int depth);

static bool put(es__buf *out, const char *s, size_t n) {
  return es__buf_append(out, s, n);
}

/* s[0..n) as jsonb writes a string. */
static bool put_string(es__buf *out, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (!put(out, "\"", 1))
    return false;
  size_t run = 0; /* bytes written as they are, not yet appended */
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[7];
    size_t len = 0;
    switch (c) {
    case '"': memcpy(esc, "\\\"", len = 2); break;
    case '\\': memcpy(esc, "\\\\", len = 2); break;
    case '\b': memcpy(esc, "\\b", len = 2); break;
    case '\f': memcpy(esc, "\\f", len = 2); break;
    case '\n': memcpy(esc, "\\n", len = 2); break;
    case '\r': memcpy(esc, "\\r", len = 2); break;
    case '\t': memcpy(esc, "\\t", len = 2); break;
    default:
      if (c < 0x20) {
        memcpy(esc, "\\u00", 4);
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        len = 6;
      }
    }
    if (len == 0) {
      run++;
      continue;
    }
    if (!put(out, s + i - run, run) || !put(out, esc, len))
      return false;
    run = 0;
  }
  return put(out, s + n - run, run) && put(out, "\"", 1);
}

/* A number token at j->p, as numeric_out writes it. */
static bool number(es__json *j, es__buf *out) {
  const char *p = j->p, *end = j->end;
  bool neg = false;
  if (p < end && *p == '-') {
    neg = true;
    p++;
  }
  es__buf digits = {0};
  long int_digits = 0, frac_digits = 0, exp = 0;
  bool ok = true;
  for (; ok && p < end && *p >= '0' && *p <= '9'; p++, int_digits++)
    ok = put(&digits, p, 1);
  if (ok && p < end && *p == '.')
    for (p++; ok && p < end && *p >= '0' && *p <= '9'; p++, frac_digits++)
      ok = put(&digits, p, 1);
  if (ok && p < end && (*p == 'e' || *p == 'E')) {
    bool eneg = false;
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      eneg = *p++ == '-';
    for (; p < end && *p >= '0' && *p <= '9'; p++)
      if (exp < 10000000)
        exp = exp * 10 + (*p - '0');
    if (eneg)
      exp = -exp;
  }
  if (!ok || int_digits == 0 || exp >= 10000000 || exp <= -10000000) {
    es__buf_free(&digits);
    return false;
  }
  long n = (long)digits.len, point = int_digits + exp; /* of the digits */
  long scale = frac_digits - exp > 0 ? frac_digits - exp : 0;
  if (point - n > MAX_PADDING || scale - frac_digits > MAX_PADDING) {
    es__buf_free(&digits); /* 1e100000: not worth writing out */
    return false;
  }
  j->p = p;
  bool zero = true;
  for (long i = 0; i < n; i++)
    zero &= digits.data[i] == '0';
  /* Integer part: digits[0..point), zeros beyond n; without leading zeros. */
  ok = !(neg && !zero) || put(out, "-", 1);
  long first = 0;
  while (first < point && first < n && digits.data[first] == '0')
    first++;
  if (first >= point || first >= n) { /* no nonzero digit before the point */
    ok = ok && put(out, "0", 1);
  } else {
    long upto = point < n ? point : n;
    ok = ok && put(out, digits.data + first, (size_t)(upto - first));
    for (long i = n; ok && i < point; i++)
      ok = put(out, "0", 1);
  }
  if (ok && scale > 0) {
    /* Fraction: digit positions point..point+scale (point may be < 0). */
    ok = put(out, ".", 1);
    for (long i = point; ok && i < point + scale; i++)
      ok = put(out, i >= 0 && i < n ? digits.data + i : "0", 1);
  }
  es__buf_free(&digits);
  return ok;
}

typedef struct member {
  es__buf key;
  es__buf val;
  size_t order; /* place in the input: of equal keys the last wins */
} member;

static int by_key(const void *a, const void *b) {
  const member *x = a, *y = b;
  if (x->key.len != y->key.len)
    return x->key.len < y->key.len ? -1 : 1;
  int c = memcmp(x->key.data, y->key.data, x->key.len);
  if (c != 0)
    return c;
  return x->order < y->order ? -1 : x->order > y->order;
}

static bool object(es__json *j, es__buf *out, int depth) {
  member *m = NULL;
  size_t n = 0, cap = 0;
  bool ok = es__json_eat(j, '{');
  if (ok && es__json_peek(j) != '}') {
    do {
      if (n == cap) {
        size_t ncap = cap ? 2 * cap : 8;
        member *grown = realloc(m, ncap * sizeof *m);
        if (grown == NULL) {
          ok = false;
          break;
        }
        m = grown;
        cap = ncap;
      }
      memset(&m[n], 0, sizeof m[n]);
      m[n].order = n;
      n++;
      ok = es__json_string(j, &m[n - 1].key, "key") && es__json_eat(j, ':') &&
           value(j, &m[n - 1].val, depth + 1);
    } while (ok && es__json_eat(j, ','));
  }
  ok = ok && es__json_eat(j, '}');
  if (ok && n > 1)
    qsort(m, n, sizeof *m, by_key);
  ok = ok && put(out, "{", 1);
  bool first = true;
  for (size_t i = 0; ok && i < n; i++) {
    if (i + 1 < n && m[i + 1].key.len == m[i].key.len &&
        memcmp(m[i + 1].key.data, m[i].key.data, m[i].key.len) == 0)
      continue; /* a later one of the same key wins */
    ok = (first || put(out, ", ", 2)) &&
         put_string(out, m[i].key.data, m[i].key.len) && put(out, ": ", 2) &&
         put(out, m[i].val.data, m[i].val.len);
    first = false;
  }
  ok = ok && put(out, "}", 1);
  for (size_t i = 0; i < n; i++) {
    es__buf_free(&m[i].key);
    es__buf_free(&m[i].val);
  }
  free(m);
  return ok;
}

static bool array(es__json *j, es__buf *out, int depth) {
  bool ok = es__json_eat(j, '[') && put(out, "[", 1);
  if (ok && es__json_peek(j) != ']') {
    bool first = true;
    do {
      ok = (first || put(out, ", ", 2)) && value(j, out, depth + 1);
      first = false;
    } while (ok && es__json_eat(j, ','));
  }
  return ok && es__json_eat(j, ']') && put(out, "]", 1);
}

static bool value(es__json *j, es__buf *out, int depth) {
  if (depth > ES__JSON_MAX_DEPTH)
    return false;
  int c = es__json_peek(j);
  if (c == '{')
    return object(j, out, depth);
  if (c == '[')
    return array(j, out, depth);
  if (c == '"') {
    es__buf s = {0};
    bool ok = es__json_string(j, &s, "string") && put_string(out, s.data, s.len);
    es__buf_free(&s);
    return ok;
  }
  if (c == '-' || (c >= '0' && c <= '9'))
    return number(j, out);
  static const char *const lits[] = {"true", "false", "null"};
  for (size_t i = 0; i < 3; i++)
    if (es__json_literal(j, lits[i]))
      return put(out, lits[i], strlen(lits[i]));
  return false;
}

bool es__json_canonical(const char *s, size_t len, es__buf *out) {
  char err[8];
  es__json j;
  es__json_init(&j, s, len, err, sizeof err);
  out->len = 0;
  bool ok = es__json_peek(&j) == '{' && value(&j, out, 1) &&
            es__json_peek(&j) == -1;
  return ok && es__buf_append(out, "", 0);
}
