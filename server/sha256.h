/* sha256.h - SHA-256 (FIPS 180-4), for hashing API tokens. */
#ifndef EMBSTORE_SHA256_H
#define EMBSTORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

/* The digest of data[0..len) into out. */
void sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES]);

#endif
