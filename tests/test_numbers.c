/* test_numbers.c - the JSON number reader: the float of every number is
 * the one strtof gives (round to nearest, ties to even), at any length. */
#include <float.h>
#include <math.h>

#include "../src/internal.h"
#include "../src/json.h"
#include "test.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* Random inputs per class: Valgrind runs the same classes with fewer
 * (EMBSTORE_TEST_NUMBERS=N overrides both). */
static long rounds(long native) {
  const char *env = getenv("EMBSTORE_TEST_NUMBERS");
  if (env != NULL && atol(env) > 0)
    return atol(env);
  return RUNNING_ON_VALGRIND ? native / 50 : native;
}

static uint64_t rng = 0x243F6A8885A308D3ULL;

/* xorshift64: the same sequence every run. */
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* A uniform draw from 0..n-1. */
static unsigned below(unsigned n) { return (unsigned)(next() % n); }

/* Reads s (len bytes, a JSON number) as the ingest parser reads an
 * embedding value and fails the test unless it is strtof's float, bit for
 * bit.  s need not be NUL-terminated; strtof reads a copy. */
static void check_as_strtof(const char *s, size_t len) {
  static char copy[1 << 16];
  es__json j;
  char err[128];
  float got;
  ASSERT(len < sizeof copy);
  memcpy(copy, s, len);
  copy[len] = '\0';
  es__json_init(&j, s, len, err, sizeof err);
  if (!es__json_float(&j, &got, "v"))
    FAIL("%.80s%s: refused: %s", copy, len > 80 ? "..." : "", err);
  if (j.p != s + len)
    FAIL("%.80s: read %ld of %zu bytes", copy, (long)(j.p - s), len);
  float want = strtof(copy, NULL);
  uint32_t g, w;
  memcpy(&g, &got, 4);
  memcpy(&w, &want, 4);
  if (g != w)
    FAIL("%.80s%s: got %.9g (0x%08x), strtof says %.9g (0x%08x)", copy,
         len > 80 ? "..." : "", (double)got, g, (double)want, w);
}

static void check_str(const char *s) { check_as_strtof(s, strlen(s)); }

/* A random JSON number: sign, 1..25 significant digits (sometimes long
 * runs of 0 or 9), the point anywhere (or none, or after "0.000..."), and
 * an exponent that puts the value anywhere from below the smallest
 * subnormal to above the largest float. */
static size_t random_number(char *buf) {
  char dig[32];
  size_t n = 0;
  unsigned nd = 1 + below(25), pattern = below(8);
  for (unsigned i = 0; i < nd; i++) {
    if (pattern == 0)
      dig[i] = i == 0 ? (char)('1' + below(9)) : '0';
    else if (pattern == 1)
      dig[i] = '9';
    else
      dig[i] = (char)('0' + below(10));
  }
  if (dig[0] == '0')
    dig[0] = '1';
  if (next() & 1)
    buf[n++] = '-';
  unsigned form = below(4);
  if (form == 0) { /* 0.000ddd */
    buf[n++] = '0';
    buf[n++] = '.';
    for (unsigned z = below(12); z > 0; z--)
      buf[n++] = '0';
    memcpy(buf + n, dig, nd);
    n += nd;
  } else if (form == 1 || nd == 1) { /* ddd */
    memcpy(buf + n, dig, nd);
    n += nd;
  } else { /* dd.ddd */
    unsigned at = 1 + below(nd - 1);
    memcpy(buf + n, dig, at);
    n += at;
    buf[n++] = '.';
    memcpy(buf + n, dig + at, nd - at);
    n += nd - at;
  }
  if (below(4) != 0) {
    int e = (int)below(100) - 70; /* 10^-70 .. 10^29, times the digits */
    n += (size_t)snprintf(buf + n, 16, "%s%d", below(2) ? "e" : "E", e);
  }
  buf[n] = '\0';
  return n;
}

/* The exact decimal expansion of d (glibc prints every digit) in
 * scientific form, trailing zeros of the significand dropped: "1.5e-03". */
static size_t exact_decimal(char *buf, size_t cap, double d) {
  char tmp[200];
  snprintf(tmp, sizeof tmp, "%.120e", d);
  char *e = strchr(tmp, 'e'), *z = e;
  while (z[-1] == '0')
    z--;
  if (z[-1] == '.')
    z--;
  size_t head = (size_t)(z - tmp);
  ASSERT(head + strlen(e) < cap);
  memcpy(buf, tmp, head);
  strcpy(buf + head, e);
  return strlen(buf);
}

/* Numbers at and next to the point halfway between a random float and the
 * next one up (every such point is a double, printed exactly): the tie
 * itself, the tie with a 1 added far behind it, the tie cut to 9..40
 * digits (just below), and cut with its last digit raised (above). */
static void check_near_halfway(float f) {
  char tie[200], buf[300];
  float up = nextafterf(f, INFINITY);
  if (!isfinite(up))
    return;
  double mid = ((double)f + (double)up) / 2;
  size_t n = exact_decimal(tie, sizeof tie, mid);
  check_as_strtof(tie, n);
  char *e = strchr(tie, 'e');
  size_t sig = (size_t)(e - tie); /* "d.ddd" */
  /* above: one more digit, far behind */
  snprintf(buf, sizeof buf, "%.*s%s%0*d1%s", (int)sig, tie,
           sig == 1 ? "." : "", (int)below(60), 0, e);
  check_str(buf);
  if (sig > 10) { /* below and above, cut short */
    size_t cut = 10 + below((unsigned)(sig - 10 < 32 ? sig - 10 : 32));
    snprintf(buf, sizeof buf, "%.*s%s", (int)cut, tie, e);
    check_str(buf);
    if (buf[cut - 1] != '9') {
      buf[cut - 1]++;
      check_str(buf);
    }
  }
}

/* A random float's bits: any sign, exponent and significand, subnormals
 * included; NaN and infinity skipped. */
static float random_float(void) {
  for (;;) {
    uint32_t bits = (uint32_t)next();
    if (below(8) == 0)
      bits &= 0x807FFFFFu | (below(3) << 23); /* subnormal and tiny normals */
    float v;
    memcpy(&v, &bits, 4);
    if (isfinite(v))
      return v;
  }
}

TEST(json_numbers_convert_to_the_same_float_as_strtof) {
  /* Hard cases: halfway points, long mantissas, exponents, tiny and huge
   * values, the edges of the subnormal and normal ranges. */
  static const char *const hard[] = {
      "0", "-0", "0.0", "-0.0e-7", "0e999999999999999999999", "1", "-1",
      "0.1", "1e-7", "1E+3", "3.4028235e38", "3.5e38", "3.4028234663852886e38",
      "3.4028235677973362e38", "3.4028235677973366e38", "3.40282356779733661637539395458142568447e38",
      "340282356779733661637539395458142568448", "1.17549435e-38",
      "1.1754942e-38", "1.17549421069244107548702944484928734882705242874589333385717453057158887047561890426550235133618116378784179687e-38",
      "1e-45", "1.4e-45", "7e-46", "7.006492321624085e-46",
      "7.00649232162408535461864791644958065640130970938257885878534141944895541342930300743319094181060791015625e-46",
      "7.00649232162408535461864791644958065640130970938257885878534141944895541342930300743319094181060791015626e-46",
      "7.00649232162408535461864791644958065640130970938257885878534141944895541342930300743319094181060791015624e-46",
      "1e-46", "2.1019476964872256e-45", "0.000000000000001",
      "123456789012345678901234567890", "0.30000001192092896",
      "16777217", "16777216.5", "16777217.000000000000000000001", "33554433",
      "0.100000001490116119384765625", "2.00000011920928955078125",
      "1.00000005960464477539062500001", "1.000000059604644775390625",
      "1.0000000596046447753906249999999999999999999999", "9007199254740993",
      "1e22", "1e23", "1e38", "1e39", "9.9999999e38", "-2.5e-3",
      "4.9406564584124654e-324", "0.1234567890123456789012345",
      "1234567890123456789", "12345678901234567890", "18446744073709551615",
      "18446744073709551616", "9999999999999999999", "10000000000000000000",
      "99999999999999999999e-20", "0.9999999999999999999999999",
      "1.00000000000000000000000000", "0.00000000000000000000000001e26",
      "7.038531e-26", "1.5e-45", "2e-45", "3e-45", "1.1754943e-38",
      "1.17549435082228750797e-38", "8388608.5", "8388609.5"};
  for (size_t i = 0; i < sizeof hard / sizeof hard[0]; i++)
    check_str(hard[i]);

  /* every float class, written with 6..9 significant digits (how tools
   * print float32) and with 17 (how they print doubles) */
  char buf[256];
  long n = rounds(300000);
  for (long i = 0; i < n; i++) {
    float v = random_float();
    static const int prec[] = {6, 7, 8, 9, 17};
    snprintf(buf, sizeof buf, below(2) ? "%.*g" : "%.*e", prec[below(5)],
             (double)v);
    check_str(buf);
  }
  /* random decimal strings of 1..25 digits and any exponent */
  for (long i = 0; i < n * 3; i++) {
    size_t len = random_number(buf);
    check_as_strtof(buf, len);
  }
  /* ties between floats, and numbers a hair either side of them */
  for (long i = 0; i < n / 3; i++)
    check_near_halfway(random_float());
  /* every power of two a float holds, and its neighbours */
  for (int e = -149; e <= 127; e++) {
    float p = ldexpf(1.0f, e);
    check_near_halfway(p);
    check_near_halfway(nextafterf(p, 0));
  }
  check_near_halfway(FLT_MAX); /* the tie rounds up to infinity */
}

/* Builds the JSON number "<head><zeros 0s><tail>" in a new buffer. */
static char *long_number(const char *head, size_t zeros, const char *tail) {
  size_t h = strlen(head), t = strlen(tail);
  char *s = malloc(h + zeros + t + 1);
  ASSERT_NOT_NULL(s);
  memcpy(s, head, h);
  memset(s + h, '0', zeros);
  memcpy(s + h + zeros, tail, t + 1);
  return s;
}

/* A number's float, read with es_vector_parse_json (as "[number]"). */
static float vector_of_one(const char *number) {
  size_t n = strlen(number);
  char *json = malloc(n + 3);
  ASSERT_NOT_NULL(json);
  json[0] = '[';
  memcpy(json + 1, number, n);
  memcpy(json + 1 + n, "]", 2);
  float *v = NULL;
  size_t dim = 0;
  char err[200];
  es_status rc = es_vector_parse_json(json, n + 2, "v", &v, &dim, err, sizeof err);
  free(json);
  if (rc != ES_OK)
    FAIL("a %zu-character number is refused: %s", n, err);
  ASSERT_INT_EQ(dim, 1);
  float f = v[0];
  es_vector_free(v);
  return f;
}

TEST(json_numbers_of_any_length_round_exactly) {
  /* The tie between 1 and the next float, 1 + 2^-23, is 1 + 2^-24: exactly
   * on it rounds to even (1), a nonzero digit anywhere after it rounds
   * up.  Hundreds or a million digits long, the digit far away decides. */
  const float one_up = nextafterf(1.0f, 2.0f);
  struct {
    const char *head;
    size_t zeros;
    const char *tail;
    float want;
  } cases[] = {
      {"1.000000059604644775390625", 500, "", 1.0f},
      {"1.000000059604644775390625", 500, "1", one_up},
      {"1.000000059604644775390625", 1000000, "1", one_up},
      {"1.000000059604644775390625", 1000000, "1e0", one_up},
      {"1.0000000596046447753906249", 1000, "9", 1.0f},
      /* 10^-200001 * 10^200001: the exponent cancels the leading zeros */
      {"0.", 200000, "1e200001", 1.0f},
      {"1", 100000, "e-100000", 1.0f},
      {"-1", 100000, "e-100000", -1.0f},
      /* far beyond either end of the range */
      {"0.", 100000, "1e100000", 0.1f},
      {"1", 1000, "", INFINITY},
      {"0.", 1000, "1", 0.0f},
      {"-0.", 1000, "1", -0.0f},
      {"0.", 1000, "", 0.0f},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *s = long_number(cases[i].head, cases[i].zeros, cases[i].tail);
    th_set_fail_context("case %zu: %s<%zu zeros>%s", i, cases[i].head,
                        cases[i].zeros, cases[i].tail);
    float got = vector_of_one(s);
    uint32_t g, w;
    memcpy(&g, &got, 4);
    memcpy(&w, &cases[i].want, 4);
    if (g != w)
      FAIL("got %.9g (0x%08x), want %.9g (0x%08x)", (double)got, g,
           (double)cases[i].want, w);
    if (strlen(s) < (1 << 16))
      check_str(s); /* and strtof agrees */
    free(s);
  }
  th_set_fail_context(NULL);
}

/* ---- the 128-bit powers of ten (number.c), checked with exact integers -- */

#define LIMBS 20 /* 640 bits: 2^128 * 10^65 < 2^345 */

typedef struct big {
  uint32_t d[LIMBS]; /* little-endian 32-bit limbs */
} big;

static big big_of(uint64_t hi, uint64_t lo) {
  big b = {{0}};
  b.d[0] = (uint32_t)lo;
  b.d[1] = (uint32_t)(lo >> 32);
  b.d[2] = (uint32_t)hi;
  b.d[3] = (uint32_t)(hi >> 32);
  return b;
}

static void big_mul10(big *b) {
  uint64_t carry = 0;
  for (int i = 0; i < LIMBS; i++) {
    uint64_t v = (uint64_t)b->d[i] * 10 + carry;
    b->d[i] = (uint32_t)v;
    carry = v >> 32;
  }
  ASSERT_INT_EQ(carry, 0);
}

/* Number of bits of b (0 for zero). */
static int big_bits(const big *b) {
  for (int i = LIMBS - 1; i >= 0; i--)
    if (b->d[i])
      return i * 32 + 32 - __builtin_clz(b->d[i]);
  return 0;
}

/* Whether b is exactly 2^k. */
static bool big_is_pow2(const big *b, int k) {
  for (int i = 0; i < LIMBS; i++)
    if (b->d[i] != (i == k / 32 ? 1u << (k % 32) : 0u))
      return false;
  return true;
}

TEST(json_float_table_holds_the_truncated_128_bit_powers_of_ten) {
  for (int k = 0; k < ES__POW10_COUNT; k++) {
    int e = k - 65;
    uint64_t hi = es__pow10_128[k][0], lo = es__pow10_128[k][1];
    th_set_fail_context("10^%d: {0x%016llx, 0x%016llx}", e,
                        (unsigned long long)hi, (unsigned long long)lo);
    ASSERT(hi >> 63 == 1); /* normalised: the top bit is bit 127 */
    if (e >= 0) {
      /* exact: 10^e shifted left, so T / 2^s is 10^e for the s that
       * leaves no bits below it */
      big p = big_of(0, 1), t = big_of(hi, lo);
      for (int i = 0; i < e; i++)
        big_mul10(&p);
      int s = 128 - big_bits(&p);
      big shifted = {{0}}; /* p << s */
      for (int bit = 0; bit < big_bits(&p); bit++)
        if (p.d[bit / 32] >> (bit % 32) & 1)
          shifted.d[(bit + s) / 32] |= 1u << ((bit + s) % 32);
      ASSERT(memcmp(&shifted, &t, sizeof t) == 0);
    } else {
      /* truncated: T * 10^-e < 2^j < (T + 1) * 10^-e for j the bit just
       * above T * 10^-e, i.e. T = floor(2^j / 10^-e) */
      big a = big_of(hi, lo), b = big_of(lo == UINT64_MAX ? hi + 1 : hi, lo + 1);
      for (int i = 0; i < -e; i++) {
        big_mul10(&a);
        big_mul10(&b);
      }
      int j = big_bits(&a);
      ASSERT(big_bits(&b) > j + 1 || (big_bits(&b) == j + 1 && !big_is_pow2(&b, j)));
    }
  }
  th_set_fail_context(NULL);
}
