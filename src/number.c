/* number.c - numbers in text, read and written the same whatever locale
 * the host program chose.
 *
 * strtod() and printf("%g") follow LC_NUMERIC: a program that calls
 * setlocale(LC_ALL, "") in a German locale would read "0.5" as 0 and write
 * "0,5".  The library reads the server's output and JSON, and writes
 * vectors, so it uses the C locale explicitly, per call, without touching
 * the program's own locale (no setlocale, which is not thread-safe). */
#define _GNU_SOURCE
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static locale_t c_locale; /* (locale_t)0 when newlocale failed */

static void make_c_locale(void) {
  c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* The C locale object, created once; (locale_t)0 when out of memory. */
static locale_t c_numeric(void) {
  pthread_once(&once, make_c_locale);
  return c_locale;
}

double es__strtod(const char *s, char **end) {
  locale_t loc = c_numeric();
  return loc ? strtod_l(s, end, loc) : strtod(s, end);
}

float es__strtof(const char *s, char **end) {
  locale_t loc = c_numeric();
  return loc ? strtof_l(s, end, loc) : strtof(s, end);
}

int es__snprintf_c(char *buf, size_t cap, const char *fmt, ...) {
  locale_t loc = c_numeric(), old = loc ? uselocale(loc) : (locale_t)0;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, cap, fmt, ap);
  va_end(ap);
  if (loc)
    uselocale(old);
  return n;
}

/* ---- decimal to float: correctly rounded, fast in the common case --------
 *
 * es__float_from_decimal() turns w * 10^e10 into the nearest float (ties to
 * even), the value strtof gives for the same number, in three steps:
 *
 *  1. Eisel-Lemire (Daniel Lemire, "Number Parsing at a Gigabyte per
 *     Second", 2021; explained step by step in Nigel Tao's "The Eisel-Lemire
 *     ParseNumberF64 Algorithm", 2020): w is shifted so that its top bit is
 *     set and multiplied by a 128-bit truncated approximation of 10^e10;
 *     the top 25 bits of the product give the float's 24-bit significand
 *     and a rounding bit.  The approximation is below the true power by less
 *     than one unit in its last place, so the true product lies in a known
 *     small interval above the computed one; when the bits below the 25
 *     could carry into them (they are all ones), a second multiplication by
 *     the table's low half narrows the interval, and when even that cannot
 *     decide, or the result is exactly halfway (ties need the exact value),
 *     or subnormal, or out of range, the step gives up.  It never gives a
 *     wrong answer; it declines.
 *  2. More than 19 significant digits: w holds the first 19 and the value
 *     lies strictly between w * 10^e10 and (w + 1) * 10^e10; when both ends
 *     round to the same float (step 1), so does everything between them.
 *  3. Otherwise (rare: exact ties, subnormals, the edge of the range, long
 *     numbers close to a tie): strtof in the C locale, which is exact, on a
 *     short normalised copy of the number.  A float's ties and boundaries
 *     have at most 113 significant decimal digits (the longest are odd
 *     multiples of 2^-150, the halfway points between subnormals), so digits beyond the 200th count only as "is
 *     any of them nonzero": they are replaced by one '1' digit, which keeps
 *     the number on the same side of every tie, and the copy stays short
 *     whatever the input's length. */

#define POW10_MIN (-65) /* w < 10^19: w * 10^-65 < 10^-46 rounds to zero */
#define POW10_MAX 38    /* w >= 1: w * 10^39 overflows */

/* 10^e for e in POW10_MIN..POW10_MAX as {high, low} 64-bit halves of
 * floor(10^e * 2^s), where s puts the top bit at bit 127 (the truncated
 * 128-bit mantissa; exact for e >= 0).  tests/test_numbers.c recomputes
 * every entry with exact integer arithmetic. */
const uint64_t es__pow10_128[ES__POW10_COUNT][2] = {
    {0x86CCBB52EA94BAEAULL, 0x98E947129FC2B4E9ULL}, /* 1e-65 */
    {0xA87FEA27A539E9A5ULL, 0x3F2398D747B36224ULL}, /* 1e-64 */
    {0xD29FE4B18E88640EULL, 0x8EEC7F0D19A03AADULL}, /* 1e-63 */
    {0x83A3EEEEF9153E89ULL, 0x1953CF68300424ACULL}, /* 1e-62 */
    {0xA48CEAAAB75A8E2BULL, 0x5FA8C3423C052DD7ULL}, /* 1e-61 */
    {0xCDB02555653131B6ULL, 0x3792F412CB06794DULL}, /* 1e-60 */
    {0x808E17555F3EBF11ULL, 0xE2BBD88BBEE40BD0ULL}, /* 1e-59 */
    {0xA0B19D2AB70E6ED6ULL, 0x5B6ACEAEAE9D0EC4ULL}, /* 1e-58 */
    {0xC8DE047564D20A8BULL, 0xF245825A5A445275ULL}, /* 1e-57 */
    {0xFB158592BE068D2EULL, 0xEED6E2F0F0D56712ULL}, /* 1e-56 */
    {0x9CED737BB6C4183DULL, 0x55464DD69685606BULL}, /* 1e-55 */
    {0xC428D05AA4751E4CULL, 0xAA97E14C3C26B886ULL}, /* 1e-54 */
    {0xF53304714D9265DFULL, 0xD53DD99F4B3066A8ULL}, /* 1e-53 */
    {0x993FE2C6D07B7FABULL, 0xE546A8038EFE4029ULL}, /* 1e-52 */
    {0xBF8FDB78849A5F96ULL, 0xDE98520472BDD033ULL}, /* 1e-51 */
    {0xEF73D256A5C0F77CULL, 0x963E66858F6D4440ULL}, /* 1e-50 */
    {0x95A8637627989AADULL, 0xDDE7001379A44AA8ULL}, /* 1e-49 */
    {0xBB127C53B17EC159ULL, 0x5560C018580D5D52ULL}, /* 1e-48 */
    {0xE9D71B689DDE71AFULL, 0xAAB8F01E6E10B4A6ULL}, /* 1e-47 */
    {0x9226712162AB070DULL, 0xCAB3961304CA70E8ULL}, /* 1e-46 */
    {0xB6B00D69BB55C8D1ULL, 0x3D607B97C5FD0D22ULL}, /* 1e-45 */
    {0xE45C10C42A2B3B05ULL, 0x8CB89A7DB77C506AULL}, /* 1e-44 */
    {0x8EB98A7A9A5B04E3ULL, 0x77F3608E92ADB242ULL}, /* 1e-43 */
    {0xB267ED1940F1C61CULL, 0x55F038B237591ED3ULL}, /* 1e-42 */
    {0xDF01E85F912E37A3ULL, 0x6B6C46DEC52F6688ULL}, /* 1e-41 */
    {0x8B61313BBABCE2C6ULL, 0x2323AC4B3B3DA015ULL}, /* 1e-40 */
    {0xAE397D8AA96C1B77ULL, 0xABEC975E0A0D081AULL}, /* 1e-39 */
    {0xD9C7DCED53C72255ULL, 0x96E7BD358C904A21ULL}, /* 1e-38 */
    {0x881CEA14545C7575ULL, 0x7E50D64177DA2E54ULL}, /* 1e-37 */
    {0xAA242499697392D2ULL, 0xDDE50BD1D5D0B9E9ULL}, /* 1e-36 */
    {0xD4AD2DBFC3D07787ULL, 0x955E4EC64B44E864ULL}, /* 1e-35 */
    {0x84EC3C97DA624AB4ULL, 0xBD5AF13BEF0B113EULL}, /* 1e-34 */
    {0xA6274BBDD0FADD61ULL, 0xECB1AD8AEACDD58EULL}, /* 1e-33 */
    {0xCFB11EAD453994BAULL, 0x67DE18EDA5814AF2ULL}, /* 1e-32 */
    {0x81CEB32C4B43FCF4ULL, 0x80EACF948770CED7ULL}, /* 1e-31 */
    {0xA2425FF75E14FC31ULL, 0xA1258379A94D028DULL}, /* 1e-30 */
    {0xCAD2F7F5359A3B3EULL, 0x096EE45813A04330ULL}, /* 1e-29 */
    {0xFD87B5F28300CA0DULL, 0x8BCA9D6E188853FCULL}, /* 1e-28 */
    {0x9E74D1B791E07E48ULL, 0x775EA264CF55347DULL}, /* 1e-27 */
    {0xC612062576589DDAULL, 0x95364AFE032A819DULL}, /* 1e-26 */
    {0xF79687AED3EEC551ULL, 0x3A83DDBD83F52204ULL}, /* 1e-25 */
    {0x9ABE14CD44753B52ULL, 0xC4926A9672793542ULL}, /* 1e-24 */
    {0xC16D9A0095928A27ULL, 0x75B7053C0F178293ULL}, /* 1e-23 */
    {0xF1C90080BAF72CB1ULL, 0x5324C68B12DD6338ULL}, /* 1e-22 */
    {0x971DA05074DA7BEEULL, 0xD3F6FC16EBCA5E03ULL}, /* 1e-21 */
    {0xBCE5086492111AEAULL, 0x88F4BB1CA6BCF584ULL}, /* 1e-20 */
    {0xEC1E4A7DB69561A5ULL, 0x2B31E9E3D06C32E5ULL}, /* 1e-19 */
    {0x9392EE8E921D5D07ULL, 0x3AFF322E62439FCFULL}, /* 1e-18 */
    {0xB877AA3236A4B449ULL, 0x09BEFEB9FAD487C2ULL}, /* 1e-17 */
    {0xE69594BEC44DE15BULL, 0x4C2EBE687989A9B3ULL}, /* 1e-16 */
    {0x901D7CF73AB0ACD9ULL, 0x0F9D37014BF60A10ULL}, /* 1e-15 */
    {0xB424DC35095CD80FULL, 0x538484C19EF38C94ULL}, /* 1e-14 */
    {0xE12E13424BB40E13ULL, 0x2865A5F206B06FB9ULL}, /* 1e-13 */
    {0x8CBCCC096F5088CBULL, 0xF93F87B7442E45D3ULL}, /* 1e-12 */
    {0xAFEBFF0BCB24AAFEULL, 0xF78F69A51539D748ULL}, /* 1e-11 */
    {0xDBE6FECEBDEDD5BEULL, 0xB573440E5A884D1BULL}, /* 1e-10 */
    {0x89705F4136B4A597ULL, 0x31680A88F8953030ULL}, /* 1e-9 */
    {0xABCC77118461CEFCULL, 0xFDC20D2B36BA7C3DULL}, /* 1e-8 */
    {0xD6BF94D5E57A42BCULL, 0x3D32907604691B4CULL}, /* 1e-7 */
    {0x8637BD05AF6C69B5ULL, 0xA63F9A49C2C1B10FULL}, /* 1e-6 */
    {0xA7C5AC471B478423ULL, 0x0FCF80DC33721D53ULL}, /* 1e-5 */
    {0xD1B71758E219652BULL, 0xD3C36113404EA4A8ULL}, /* 1e-4 */
    {0x83126E978D4FDF3BULL, 0x645A1CAC083126E9ULL}, /* 1e-3 */
    {0xA3D70A3D70A3D70AULL, 0x3D70A3D70A3D70A3ULL}, /* 1e-2 */
    {0xCCCCCCCCCCCCCCCCULL, 0xCCCCCCCCCCCCCCCCULL}, /* 1e-1 */
    {0x8000000000000000ULL, 0x0000000000000000ULL}, /* 1e0 */
    {0xA000000000000000ULL, 0x0000000000000000ULL}, /* 1e1 */
    {0xC800000000000000ULL, 0x0000000000000000ULL}, /* 1e2 */
    {0xFA00000000000000ULL, 0x0000000000000000ULL}, /* 1e3 */
    {0x9C40000000000000ULL, 0x0000000000000000ULL}, /* 1e4 */
    {0xC350000000000000ULL, 0x0000000000000000ULL}, /* 1e5 */
    {0xF424000000000000ULL, 0x0000000000000000ULL}, /* 1e6 */
    {0x9896800000000000ULL, 0x0000000000000000ULL}, /* 1e7 */
    {0xBEBC200000000000ULL, 0x0000000000000000ULL}, /* 1e8 */
    {0xEE6B280000000000ULL, 0x0000000000000000ULL}, /* 1e9 */
    {0x9502F90000000000ULL, 0x0000000000000000ULL}, /* 1e10 */
    {0xBA43B74000000000ULL, 0x0000000000000000ULL}, /* 1e11 */
    {0xE8D4A51000000000ULL, 0x0000000000000000ULL}, /* 1e12 */
    {0x9184E72A00000000ULL, 0x0000000000000000ULL}, /* 1e13 */
    {0xB5E620F480000000ULL, 0x0000000000000000ULL}, /* 1e14 */
    {0xE35FA931A0000000ULL, 0x0000000000000000ULL}, /* 1e15 */
    {0x8E1BC9BF04000000ULL, 0x0000000000000000ULL}, /* 1e16 */
    {0xB1A2BC2EC5000000ULL, 0x0000000000000000ULL}, /* 1e17 */
    {0xDE0B6B3A76400000ULL, 0x0000000000000000ULL}, /* 1e18 */
    {0x8AC7230489E80000ULL, 0x0000000000000000ULL}, /* 1e19 */
    {0xAD78EBC5AC620000ULL, 0x0000000000000000ULL}, /* 1e20 */
    {0xD8D726B7177A8000ULL, 0x0000000000000000ULL}, /* 1e21 */
    {0x878678326EAC9000ULL, 0x0000000000000000ULL}, /* 1e22 */
    {0xA968163F0A57B400ULL, 0x0000000000000000ULL}, /* 1e23 */
    {0xD3C21BCECCEDA100ULL, 0x0000000000000000ULL}, /* 1e24 */
    {0x84595161401484A0ULL, 0x0000000000000000ULL}, /* 1e25 */
    {0xA56FA5B99019A5C8ULL, 0x0000000000000000ULL}, /* 1e26 */
    {0xCECB8F27F4200F3AULL, 0x0000000000000000ULL}, /* 1e27 */
    {0x813F3978F8940984ULL, 0x4000000000000000ULL}, /* 1e28 */
    {0xA18F07D736B90BE5ULL, 0x5000000000000000ULL}, /* 1e29 */
    {0xC9F2C9CD04674EDEULL, 0xA400000000000000ULL}, /* 1e30 */
    {0xFC6F7C4045812296ULL, 0x4D00000000000000ULL}, /* 1e31 */
    {0x9DC5ADA82B70B59DULL, 0xF020000000000000ULL}, /* 1e32 */
    {0xC5371912364CE305ULL, 0x6C28000000000000ULL}, /* 1e33 */
    {0xF684DF56C3E01BC6ULL, 0xC732000000000000ULL}, /* 1e34 */
    {0x9A130B963A6C115CULL, 0x3C7F400000000000ULL}, /* 1e35 */
    {0xC097CE7BC90715B3ULL, 0x4B9F100000000000ULL}, /* 1e36 */
    {0xF0BDC21ABB48DB20ULL, 0x1E86D40000000000ULL}, /* 1e37 */
    {0x96769950B50D88F4ULL, 0x1314448000000000ULL}, /* 1e38 */
};

/* The 128-bit product a * b as its two halves. */
static void mul64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo) {
#ifdef __SIZEOF_INT128__
  unsigned __int128 p = (unsigned __int128)a * b;
  *hi = (uint64_t)(p >> 64);
  *lo = (uint64_t)p;
#else
  uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
  uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
  uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
  *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
  *lo = (mid << 32) | (uint32_t)p00;
#endif
}

/* floor(e * log2(10)) for |e| < 2^14 (217706 / 2^16 is log2(10) to 6
 * digits, enough there), without shifting a negative number. */
static int64_t floor_log2_pow10(int64_t e) {
  int64_t x = 217706 * e;
  return x >= 0 ? x >> 16 : -((-x + 65535) >> 16);
}

/* The bits of the float nearest to w * 10^e10 (w != 0, e10 in
 * POW10_MIN..POW10_MAX) when the Eisel-Lemire step can tell; false when
 * it cannot (then the caller asks an exact method). */
static bool eisel_lemire(uint64_t w, int64_t e10, uint32_t *bits) {
  /* The 38 bits below the 25 that are kept. */
  const uint64_t low38 = (1ULL << 38) - 1;
  const uint64_t *pow = es__pow10_128[e10 - POW10_MIN];
  int clz = __builtin_clzll(w);
  w <<= clz;
  int64_t exp2 = floor_log2_pow10(e10) + 64 + 127 - clz;
  uint64_t hi, lo;
  mul64(w, pow[0], &hi, &lo);
  if ((hi & low38) == low38 && lo + w < lo) {
    /* The truncated table could hide a carry into the kept bits: add the
     * product with the low half of the power. */
    uint64_t hi2, lo2;
    mul64(w, pow[1], &hi2, &lo2);
    uint64_t merged = lo + hi2;
    if (merged < lo)
      hi++;
    if ((hi & low38) == low38 && merged + 1 == 0 && lo2 + w < lo2)
      return false; /* still undecided */
    lo = merged;
  }
  uint64_t msb = hi >> 63;
  uint64_t mant = hi >> (msb + 38); /* 25 bits: the float's 24 and a half */
  exp2 -= (int64_t)(1 ^ msb);
  if (lo == 0 && (hi & low38) == 0 && (mant & 3) == 1)
    return false; /* maybe exactly halfway: ties go to even, which needs
                     the exact value */
  mant += mant & 1;
  mant >>= 1;
  if (mant >> 24) { /* rounding carried into a new bit */
    mant >>= 1;
    exp2++;
  }
  if (exp2 <= 0 || exp2 >= 0xFF)
    return false; /* subnormal or overflowing: the exact method decides */
  *bits = (uint32_t)((uint64_t)exp2 << 23 | (mant & 0x7FFFFF));
  return true;
}

/* The float with the given bits, negated when neg. */
static float float_of_bits(uint32_t bits, bool neg) {
  float f;
  bits |= neg ? 0x80000000u : 0;
  memcpy(&f, &bits, sizeof f);
  return f;
}

#define SLOW_DIGITS 200 /* see step 3 above */

/* Step 3: the JSON number tok (len bytes, already checked) rounded by
 * strtof, from a short normalised copy: at most SLOW_DIGITS significant
 * digits (then '1' if a dropped digit was not 0) and an exponent. */
static float slow_float(const char *tok, size_t len) {
  char buf[SLOW_DIGITS + 40];
  const char *p = tok, *e = tok + len;
  size_t n = 0, kept = 0;
  int64_t e10 = 0, x = 0;
  bool sticky = false, frac = false, exp_neg = false;
  if (p < e && *p == '-')
    buf[n++] = *p++;
  for (; p < e && *p != 'e' && *p != 'E'; p++) {
    if (*p == '.') {
      frac = true;
    } else if (kept == 0 && *p == '0') {
      e10 -= frac; /* a leading zero */
    } else if (kept < SLOW_DIGITS) {
      buf[n++] = *p;
      kept++;
      e10 -= frac;
    } else {
      sticky |= *p != '0';
      e10 += !frac; /* a dropped digit before the point */
    }
  }
  if (kept == 0)
    return tok[0] == '-' ? -0.0f : 0.0f;
  if (sticky) {
    buf[n++] = '1';
    e10--;
  }
  if (p < e) { /* the exponent; beyond 10^15 only its sign matters */
    p++;
    if (*p == '+' || *p == '-')
      exp_neg = *p++ == '-';
    for (; p < e; p++)
      if (x < 1000000000000000LL)
        x = x * 10 + (*p - '0');
  }
  e10 += exp_neg ? -x : x;
  /* The value is below 10^(digits + e10) and at least 10^(digits - 1 + e10). */
  int64_t digits = (int64_t)(kept + sticky);
  if (digits + e10 <= -46)
    return tok[0] == '-' ? -0.0f : 0.0f; /* below half the smallest float */
  if (digits - 1 + e10 >= 39)
    return tok[0] == '-' ? -HUGE_VALF : HUGE_VALF;
  n += (size_t)snprintf(buf + n, sizeof buf - n, "e%lld", (long long)e10);
  buf[n] = '\0';
  return es__strtof(buf, NULL);
}

float es__float_from_decimal(uint64_t w, int64_t e10, bool truncated,
                             bool neg, const char *tok, size_t len) {
  uint32_t a, b;
  if (w == 0)
    return neg ? -0.0f : 0.0f;
  if (e10 < POW10_MIN)
    return neg ? -0.0f : 0.0f;
  if (e10 > POW10_MAX)
    return neg ? -HUGE_VALF : HUGE_VALF;
  if (eisel_lemire(w, e10, &a) &&
      (!truncated || (eisel_lemire(w + 1, e10, &b) && a == b)))
    return float_of_bits(a, neg);
  return slow_float(tok, len);
}
