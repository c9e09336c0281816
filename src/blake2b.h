/* blake2b.h - BLAKE2b (RFC 7693) for content hashes. Internal. */
#ifndef ES_BLAKE2B_H
#define ES_BLAKE2B_H

#include <stddef.h>
#include <stdint.h>

typedef struct es__blake2b {
  uint64_t h[8];
  uint64_t t[2];
  uint8_t buf[128];
  size_t buflen;
  size_t outlen;
} es__blake2b;

void es__blake2b_init(es__blake2b *s, size_t outlen);
void es__blake2b_update(es__blake2b *s, const void *data, size_t len);
void es__blake2b_final(es__blake2b *s, uint8_t *out);

#endif
