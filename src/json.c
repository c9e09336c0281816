/* json.c - a small strict JSON reader (RFC 8259). */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "json.h"

/* Grows b so that extra more bytes (and a NUL) fit. */
bool es__buf_reserve(es__buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap)
    return true;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1)
    cap *= 2;
  char *d = realloc(b->data, cap);
  if (d == NULL)
    return false;
  b->data = d;
  b->cap = cap;
  return true;
}

bool es__buf_append(es__buf *b, const char *s, size_t n) {
  if (!es__buf_reserve(b, n))
    return false;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return true;
}

void es__buf_free(es__buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void es__json_init(es__json *j, const char *s, size_t len, char *err,
                   size_t errlen) {
  j->start = j->p = s;
  j->end = s + len;
  j->err = err;
  j->errlen = errlen;
  j->oom = false;
  if (errlen > 0)
    err[0] = '\0';
}

/* An allocation failure: recorded like an error, and flagged. */
bool es__json_oom(es__json *j, const char *ctx) {
  j->oom = true;
  return es__json_error(j, "%s: out of memory", ctx);
}

bool es__json_error(es__json *j, const char *fmt, ...) {
  if (j->errlen == 0 || j->err[0] != '\0')
    return false;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(j->err, j->errlen, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < j->errlen)
    snprintf(j->err + n, j->errlen - (size_t)n, " (at byte %ld)",
             (long)(j->p - j->start) + 1);
  es__utf8_scrub(j->err);
  return false;
}

int es__json_peek(es__json *j) {
  while (j->p < j->end &&
         (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
  return j->p < j->end ? (unsigned char)*j->p : -1;
}

bool es__json_eat(es__json *j, char c) {
  if (es__json_peek(j) != (unsigned char)c)
    return false;
  j->p++;
  return true;
}

bool es__json_literal(es__json *j, const char *lit) {
  size_t n = strlen(lit);
  es__json_peek(j);
  if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
    return false;
  j->p += n;
  return true;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Reads the 4 hex digits of a \u escape. */
static long read_u4(es__json *j) {
  if (j->end - j->p < 4)
    return -1;
  long v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval(j->p[i]);
    if (h < 0)
      return -1;
    v = v * 16 + h;
  }
  j->p += 4;
  return v;
}

static size_t put_utf8(char *o, unsigned long cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

bool es__json_string(es__json *j, es__buf *out, const char *ctx) {
  if (!es__json_eat(j, '"'))
    return es__json_error(j, "%s: expected a string", ctx);
  if (out)
    out->len = 0;
  const char *run = j->p, *open = j->p;
  for (;;) {
    if (j->p >= j->end)
      return es__json_error(j, "%s: unterminated string", ctx);
    unsigned char c = (unsigned char)*j->p;
    if (c == '"' || c == '\\') {
      if (out && !es__buf_append(out, run, (size_t)(j->p - run)))
        return es__json_oom(j, ctx);
      if (c == '"') {
        j->p++;
        break;
      }
      j->p++;
      if (j->p >= j->end)
        return es__json_error(j, "%s: unterminated escape", ctx);
      char e = *j->p++, tmp[4];
      size_t n = 1;
      switch (e) {
      case '"': tmp[0] = '"'; break;
      case '\\': tmp[0] = '\\'; break;
      case '/': tmp[0] = '/'; break;
      case 'b': tmp[0] = '\b'; break;
      case 'f': tmp[0] = '\f'; break;
      case 'n': tmp[0] = '\n'; break;
      case 'r': tmp[0] = '\r'; break;
      case 't': tmp[0] = '\t'; break;
      case 'u': {
        long cp = read_u4(j);
        if (cp < 0)
          return es__json_error(j, "%s: invalid \\u escape", ctx);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          long lo = -1;
          if (j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
            j->p += 2;
            lo = read_u4(j);
          }
          if (lo < 0xDC00 || lo > 0xDFFF)
            return es__json_error(j, "%s: lone UTF-16 surrogate in \\u escape", ctx);
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return es__json_error(j, "%s: lone UTF-16 surrogate in \\u escape", ctx);
        }
        if (cp == 0 && out == NULL) /* kept as JSON: stored as jsonb */
          return es__json_error(j, "%s: contains a NUL character (\\u0000), "
                                "which PostgreSQL's jsonb cannot store", ctx);
        n = put_utf8(tmp, (unsigned long)cp);
        break;
      }
      default:
        j->p--;
        return es__json_error(j, "%s: invalid escape \\%c", ctx,
                              (e >= 0x20 && e < 0x7f) ? e : '?');
      }
      if (out && !es__buf_append(out, tmp, n))
        return es__json_oom(j, ctx);
      run = j->p;
      continue;
    }
    if (c == 0)
      return es__json_error(j, "%s: a raw NUL byte (0x00) in a string", ctx);
    if (c < 0x20)
      return es__json_error(j, "%s: control character 0x%02x in a string "
                            "(escape it)", ctx, c);
    j->p++;
  }
  /* Raw bytes were copied (or skipped) as they were: check them once,
   * here.  Escapes are ASCII, so the raw text must be valid UTF-8 too. */
  if (out == NULL) {
    long bad = es__utf8_invalid_at(open, (size_t)(j->p - 1 - open));
    if (bad >= 0)
      return es__json_error(j, "%s: a string that is not valid UTF-8 (byte %ld "
                            "of the string)", ctx, bad + 1);
  } else {
    long bad = es__utf8_invalid_at(out->data ? out->data : "", out->len);
    if (bad >= 0)
      return es__json_error(j, "%s: not valid UTF-8 (byte %ld of the value)",
                            ctx, bad + 1);
    if (out->data == NULL && !es__buf_append(out, "", 0))
      return es__json_oom(j, ctx);
  }
  return true;
}

/* Consumes a number token per the JSON grammar; returns its length. */
static size_t number_span(es__json *j) {
  const char *s = j->p, *p = s, *e = j->end;
  if (p < e && *p == '-')
    p++;
  if (p < e && *p == '0') {
    p++;
  } else if (p < e && *p >= '1' && *p <= '9') {
    while (p < e && *p >= '0' && *p <= '9')
      p++;
  } else {
    return 0;
  }
  if (p < e && *p == '.') {
    p++;
    if (p >= e || *p < '0' || *p > '9')
      return 0;
    while (p < e && *p >= '0' && *p <= '9')
      p++;
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < e && (*p == '+' || *p == '-'))
      p++;
    if (p >= e || *p < '0' || *p > '9')
      return 0;
    while (p < e && *p >= '0' && *p <= '9')
      p++;
  }
  return (size_t)(p - s);
}

/* The 8 bytes at p as a little-endian integer (byte 0 lowest). */
static inline uint64_t load8(const char *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

/* Whether all 8 bytes of v are ASCII digits: no byte is below '0' (the
 * subtraction borrows into bit 7) nor above '9' (adding 0x46 reaches it). */
static inline bool all_digits8(uint64_t v) {
  return (((v + 0x4646464646464646ULL) | (v - 0x3030303030303030ULL)) &
          0x8080808080808080ULL) == 0;
}

/* The value of 8 ASCII digits (first digit in the lowest byte), combined
 * in pairs, then fours, then eights by three multiplications. */
static inline uint32_t value8(uint64_t v) {
  const uint64_t mask = 0x000000FF000000FFULL;
  const uint64_t mul1 = 100 + (1000000ULL << 32);
  const uint64_t mul2 = 1 + (10000ULL << 32);
  v -= 0x3030303030303030ULL;
  v = v * 10 + (v >> 8);
  v = ((v & mask) * mul1 + ((v >> 16) & mask) * mul2) >> 32;
  return (uint32_t)v;
}

/* Exact powers of ten in double precision. */
static const double pow10_exact[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The exponent is read up to this value; beyond it the number is zero or
 * infinite whatever its digits (a line holds fewer than 2^31 of them). */
#define EXP_CAP 1000000000000000LL

/* Reads one JSON number at s (up to end) in a single pass that both checks
 * the grammar and gathers its first 19 significant digits and decimal
 * exponent, then converts it to the correctly rounded float (number.c).
 * Returns its length, or 0 when it is malformed.  Fraction digits are read
 * eight at a time while eight bytes remain: embedding values are mostly
 * "-0." and 7 to 9 digits. */
static size_t read_number(const char *s, const char *end, float *out) {
  const char *p = s, *digits;
  bool neg = false, truncated = false;
  uint64_t w = 0;
  int64_t e10 = 0;
  size_t n_digits;
  if (p < end && *p == '-') {
    neg = true;
    p++;
  }
  if (p >= end || (unsigned)(*p - '0') >= 10)
    return 0;
  digits = p;
  if (*p == '0')
    p++;
  else
    for (; p < end && (unsigned)(*p - '0') < 10; p++)
      w = w * 10 + (uint64_t)(*p - '0');
  n_digits = (size_t)(p - digits);
  if (p < end && *p == '.') {
    const char *frac = ++p;
    while (end - p >= 8 && all_digits8(load8(p))) {
      w = w * 100000000 + value8(load8(p));
      p += 8;
    }
    for (; p < end && (unsigned)(*p - '0') < 10; p++)
      w = w * 10 + (uint64_t)(*p - '0');
    if (p == frac)
      return 0;
    n_digits += (size_t)(p - frac);
    e10 = -(int64_t)(p - frac);
  }
  const char *digits_end = p;
  if (p < end && (*p == 'e' || *p == 'E')) {
    bool eneg = false;
    int64_t x = 0;
    p++;
    if (p < end && (*p == '+' || *p == '-'))
      eneg = *p++ == '-';
    if (p >= end || (unsigned)(*p - '0') >= 10)
      return 0;
    for (; p < end && (unsigned)(*p - '0') < 10; p++)
      if (x < EXP_CAP)
        x = x * 10 + (*p - '0');
    e10 += eneg ? -x : x;
  }
  if (n_digits > 19) {
    /* w overflowed: take the first 19 significant digits again; each
     * later one raises the exponent, and a nonzero one truncates. */
    size_t kept = 0;
    w = 0;
    for (const char *q = digits; q < digits_end; q++) {
      if (*q == '.' || (kept == 0 && *q == '0'))
        continue;
      if (kept < 19) {
        w = w * 10 + (uint64_t)(*q - '0');
        kept++;
      } else {
        e10++;
        truncated |= *q != '0';
      }
    }
  }
  size_t n = (size_t)(p - s);
  if (!truncated && w <= (1ULL << 53) && e10 >= -22 && e10 <= 22) {
    /* Clinger's fast path: w and 10^|e10| are exact doubles, so one
     * division or multiplication gives the correctly rounded double d.
     * The float nearest to d is the float nearest to the exact value
     * unless d lies exactly halfway between two floats (then the exact
     * value may be on either side), or outside the normal range. */
    double d = (double)w;
    d = e10 < 0 ? d / pow10_exact[-e10] : d * pow10_exact[e10];
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    if (d >= 1.1754943508222875e-38 && d <= 3.4028234663852886e+38 &&
        (bits & 0x1FFFFFFFULL) != 0x10000000ULL) {
      *out = neg ? -(float)d : (float)d;
      return n;
    }
  }
  *out = es__float_from_decimal(w, e10, truncated, neg, s, n);
  return n;
}

bool es__json_float_at(es__json *j, float *out, const char *ctx, size_t index) {
  int c = es__json_peek(j);
  size_t n = read_number(j->p, j->end, out);
  if (n > 0) {
    j->p += n;
    return true;
  }
  /* The error path alone pays for naming the element. */
  char name[96];
  if (index == (size_t)-1)
    snprintf(name, sizeof name, "%s", ctx);
  else
    snprintf(name, sizeof name, "%s[%zu]", ctx, index);
  bool minus_inf = c == '-' && j->end - j->p > 1 && j->p[1] == 'I';
  if (!minus_inf && (c == '-' || (c >= '0' && c <= '9')))
    return es__json_error(j, "%s: malformed number", name);
  if (c == 'N' || c == 'I' || minus_inf)
    return es__json_error(j, "%s: NaN and Infinity are not JSON numbers; "
                          "values must be finite", name);
  return es__json_error(j, "%s: expected a number", name);
}

bool es__json_float(es__json *j, float *out, const char *ctx) {
  return es__json_float_at(j, out, ctx, (size_t)-1);
}

/* Whether the number token s[0..n) fits PostgreSQL's numeric (as jsonb
 * stores it): below 10^131072, at most 16383 digits after the point. */
static bool fits_numeric(const char *s, size_t n) {
  const char *p = s, *e = s + n;
  long int_digits = 0, frac_digits = 0, lead_frac_zeros = 0, exp = 0;
  bool nonzero = false;
  if (p < e && *p == '-')
    p++;
  for (; p < e && *p >= '0' && *p <= '9'; p++)
    if (nonzero || *p != '0') {
      nonzero = true;
      int_digits++;
    }
  if (p < e && *p == '.')
    for (p++; p < e && *p >= '0' && *p <= '9'; p++) {
      if (!nonzero && *p == '0')
        lead_frac_zeros++;
      else
        nonzero = true;
      frac_digits++;
    }
  if (p < e && (*p == 'e' || *p == 'E')) {
    bool neg = false;
    p++;
    if (p < e && (*p == '+' || *p == '-'))
      neg = *p++ == '-';
    for (; p < e && *p >= '0' && *p <= '9'; p++)
      if (exp < 10000000)
        exp = exp * 10 + (*p - '0');
    if (neg)
      exp = -exp;
  }
  long scale = frac_digits - exp;
  if (!nonzero) /* zero: only its written scale can overflow */
    return scale <= 16383;
  long weight = int_digits > 0 ? int_digits - 1 + exp : -(lead_frac_zeros + 1) + exp;
  return weight < 131072 && scale <= 16383;
}

bool es__json_skip(es__json *j, int depth, const char *ctx) {
  int c = es__json_peek(j);
  if (depth > ES__JSON_MAX_DEPTH)
    return es__json_error(j, "%s: nested deeper than %d levels", ctx,
                          ES__JSON_MAX_DEPTH);
  switch (c) {
  case '{':
    j->p++;
    if (es__json_eat(j, '}'))
      return true;
    for (;;) {
      if (!es__json_string(j, NULL, ctx))
        return false;
      if (!es__json_eat(j, ':'))
        return es__json_error(j, "%s: expected ':' after an object key", ctx);
      if (!es__json_skip(j, depth + 1, ctx))
        return false;
      if (es__json_eat(j, ','))
        continue;
      if (es__json_eat(j, '}'))
        return true;
      return es__json_error(j, "%s: expected ',' or '}' in an object", ctx);
    }
  case '[':
    j->p++;
    if (es__json_eat(j, ']'))
      return true;
    for (;;) {
      if (!es__json_skip(j, depth + 1, ctx))
        return false;
      if (es__json_eat(j, ','))
        continue;
      if (es__json_eat(j, ']'))
        return true;
      return es__json_error(j, "%s: expected ',' or ']' in an array", ctx);
    }
  case '"':
    return es__json_string(j, NULL, ctx);
  case 't':
    if (es__json_literal(j, "true"))
      return true;
    break;
  case 'f':
    if (es__json_literal(j, "false"))
      return true;
    break;
  case 'n':
    if (es__json_literal(j, "null"))
      return true;
    break;
  case -1:
    return es__json_error(j, "%s: unexpected end of input", ctx);
  default:
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t n = number_span(j);
      if (n == 0)
        return es__json_error(j, "%s: malformed number", ctx);
      if (!fits_numeric(j->p, n))
        return es__json_error(j, "%s: the number %.*s%s is outside the range "
                              "PostgreSQL can store", ctx, n > 40 ? 40 : (int)n,
                              j->p, n > 40 ? "..." : "");
      j->p += n;
      return true;
    }
    break;
  }
  if (c == 'N' || c == 'I')
    return es__json_error(j, "%s: NaN and Infinity are not JSON", ctx);
  return es__json_error(j, "%s: unexpected character '%c'", ctx,
                        (c >= 0x20 && c < 0x7f) ? c : '?');
}

bool es__json_check_object(const char *s, size_t len, const char *ctx,
                           char *err, size_t errlen) {
  es__json j;
  es__json_init(&j, s, len, err, errlen);
  if (es__json_peek(&j) != '{')
    return es__json_error(&j, "%s: not a JSON object", ctx);
  if (!es__json_skip(&j, 1, ctx))
    return false;
  if (es__json_peek(&j) != -1)
    return es__json_error(&j, "%s: trailing characters after the object", ctx);
  return true;
}

bool es__json_object_has_key(const char *s, size_t len, const char *key) {
  es__json j;
  char err[8];
  es__buf k = {0};
  bool found = false;
  es__json_init(&j, s, len, err, sizeof err);
  if (!es__json_eat(&j, '{') || es__json_eat(&j, '}'))
    return false;
  for (;;) {
    if (!es__json_string(&j, &k, "key") || !es__json_eat(&j, ':'))
      break;
    if (k.len == strlen(key) && memcmp(k.data, key, k.len) == 0) {
      found = true;
      break;
    }
    if (!es__json_skip(&j, 1, "value") || !es__json_eat(&j, ','))
      break;
  }
  es__buf_free(&k);
  return found;
}

bool es__json_append_string(es__buf *out, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (!es__buf_reserve(out, n + 2))
    return false;
  out->data[out->len++] = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[7];
    size_t m = 0;
    if (c == '"' || c == '\\') {
      esc[m++] = '\\';
      esc[m++] = (char)c;
    } else if (c < 0x20) {
      esc[m++] = '\\';
      switch (c) {
      case '\n': esc[m++] = 'n'; break;
      case '\r': esc[m++] = 'r'; break;
      case '\t': esc[m++] = 't'; break;
      default:
        esc[m++] = 'u';
        esc[m++] = '0';
        esc[m++] = '0';
        esc[m++] = hex[c >> 4];
        esc[m++] = hex[c & 15];
      }
    } else {
      esc[m++] = (char)c;
    }
    if (!es__buf_append(out, esc, m))
      return false;
  }
  return es__buf_append(out, "\"", 1);
}
