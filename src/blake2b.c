/* blake2b.c - BLAKE2b (RFC 7693), unkeyed, for content hashes.
 *
 * Written from the RFC; checked against its Appendix A test vector in the
 * unit tests. */
#include <string.h>

#include "blake2b.h"

static const uint64_t iv[8] = {
    0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL,
    0xA54FF53A5F1D36F1ULL, 0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL,
    0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL};

static const uint8_t sigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0}};

static inline uint64_t rotr64(uint64_t x, unsigned n) {
  return (x >> n) | (x << (64 - n));
}

static inline uint64_t load64(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint64_t v;
  memcpy(&v, p, sizeof v); /* BLAKE2 words are little-endian */
  return v;
#else
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
#endif
}

#define G(a, b, c, d, x, y)      \
  do {                           \
    v[a] = v[a] + v[b] + (x);    \
    v[d] = rotr64(v[d] ^ v[a], 32); \
    v[c] = v[c] + v[d];          \
    v[b] = rotr64(v[b] ^ v[c], 24); \
    v[a] = v[a] + v[b] + (y);    \
    v[d] = rotr64(v[d] ^ v[a], 16); \
    v[c] = v[c] + v[d];          \
    v[b] = rotr64(v[b] ^ v[c], 63); \
  } while (0)

/* Mixes one 128-byte block into the state. */
static void compress(es__blake2b *s, const uint8_t block[128], int last) {
  uint64_t m[16], v[16];
  for (int i = 0; i < 16; i++)
    m[i] = load64(block + 8 * i);
  for (int i = 0; i < 8; i++) {
    v[i] = s->h[i];
    v[i + 8] = iv[i];
  }
  v[12] ^= s->t[0];
  v[13] ^= s->t[1];
  if (last)
    v[14] = ~v[14];
  for (int r = 0; r < 12; r++) {
    const uint8_t *x = sigma[r % 10];
    G(0, 4, 8, 12, m[x[0]], m[x[1]]);
    G(1, 5, 9, 13, m[x[2]], m[x[3]]);
    G(2, 6, 10, 14, m[x[4]], m[x[5]]);
    G(3, 7, 11, 15, m[x[6]], m[x[7]]);
    G(0, 5, 10, 15, m[x[8]], m[x[9]]);
    G(1, 6, 11, 12, m[x[10]], m[x[11]]);
    G(2, 7, 8, 13, m[x[12]], m[x[13]]);
    G(3, 4, 9, 14, m[x[14]], m[x[15]]);
  }
  for (int i = 0; i < 8; i++)
    s->h[i] ^= v[i] ^ v[i + 8];
}

/* Starts an unkeyed hash of outlen (1..64) bytes. */
void es__blake2b_init(es__blake2b *s, size_t outlen) {
  memset(s, 0, sizeof *s);
  for (int i = 0; i < 8; i++)
    s->h[i] = iv[i];
  s->h[0] ^= 0x01010000ULL ^ (uint64_t)outlen;
  s->outlen = outlen;
}

static void add_counter(es__blake2b *s, uint64_t n) {
  s->t[0] += n;
  if (s->t[0] < n)
    s->t[1]++;
}

/* Feeds len bytes. */
void es__blake2b_update(es__blake2b *s, const void *data, size_t len) {
  const uint8_t *in = data;
  while (len > 0) {
    if (s->buflen == 128) { /* a full buffer is compressed only once more
                               data proves it is not the last block */
      add_counter(s, 128);
      compress(s, s->buf, 0);
      s->buflen = 0;
    }
    size_t take = 128 - s->buflen;
    if (take > len)
      take = len;
    memcpy(s->buf + s->buflen, in, take);
    s->buflen += take;
    in += take;
    len -= take;
  }
}

/* Finishes the hash into out (outlen bytes). */
void es__blake2b_final(es__blake2b *s, uint8_t *out) {
  add_counter(s, s->buflen);
  memset(s->buf + s->buflen, 0, 128 - s->buflen);
  compress(s, s->buf, 1);
  for (size_t i = 0; i < s->outlen; i++)
    out[i] = (uint8_t)(s->h[i / 8] >> (8 * (i % 8)));
}
