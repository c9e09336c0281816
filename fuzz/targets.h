/* targets.h - the fuzz targets as plain functions.
 *
 * Each function takes any bytes, runs them through embstore's hostile-input
 * code (the ingest-format parser, the validator, the hashes, the vector
 * codecs, UTF-8 validation, the redaction of secrets) and checks
 * properties that must hold for every input.  It returns 0; a broken property calls abort(), and a crash, leak
 * or undefined behaviour is left for the sanitizers to report.  The
 * libFuzzer wrappers (fuzz_*.c) and the replay test
 * (tests/test_fuzz_replay.c) call them, so every input in fuzz/corpus and
 * fuzz/regressions is also run by the ordinary test suite. */
#ifndef EMBSTORE_FUZZ_TARGETS_H
#define EMBSTORE_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

/* One ingest-format document of [in] size bytes at data (not
 * NUL-terminated): es_doc_json_parse, es_doc_json_set_defaults, the
 * validator against the document's own dimension and against 3, both
 * content hashes, and es__json_check_object on the raw bytes. */
int es_fuzz_doc_json(const uint8_t *data, size_t size);

/* The vector codecs on [in] size bytes at data: pgvector's text form
 * (parse, format, parse again: the same floats), its binary form (parse,
 * encode: the same bytes), the JSON number reader against strtof, and
 * es__utf8_invalid_at against an independent decoder. */
int es_fuzz_vector(const uint8_t *data, size_t size);

/* The secret redactors on [in] size bytes at data read as text (to its
 * first NUL): es__redact_secrets_to and es__redact_secrets (every output
 * NUL-terminated within its buffer, a cut output a prefix of the whole,
 * and no password shown: neither a URI's user:password@ nor a
 * password=/sslpassword= value, as a simple reading finds them, nor any
 * 8-byte piece of one, nor any secret option libpq itself parses from the
 * text),
 * es__conninfo_redact (no secret option libpq parses is shown) and
 * es__scrub_quoted (no quoted token kept but libpq's one-character
 * literals; never past its buffer). */
int es_fuzz_redact(const uint8_t *data, size_t size);

#endif
