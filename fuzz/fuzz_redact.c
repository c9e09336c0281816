/* fuzz_redact.c - libFuzzer entry point for es_fuzz_redact (targets.h). */
#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called by libFuzzer once per input. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return es_fuzz_redact(data, size);
}
