/* render.h - the JSON shapes of the library's results, written with jw:
 * one definition for the tool's --json and the HTTP API's bodies. */
#ifndef EMBSTORE_RENDER_H
#define EMBSTORE_RENDER_H

#include <stdbool.h>
#include <stdint.h>

#include "embstore.h"
#include "jsonw.h"

#define RENDER_DRIFT_REASON                                                   \
  "the counters disagree with COUNT(*) of the tables: run `embstore stats " \
  "--repair` to recount"

/* Whether a count check found counters that disagree with the tables (and
 * did not repair them); k may be NULL. */
bool render_drifted(const es_count_check *k);

/* {"workspace","documents",...} of `stats --json`; k (may be NULL) adds
 * "counts_check", rt (may be NULL) "server_cache": a long-running
 * process's cache, {"listening","invalidations","listener_reconnects",
 * "hits","misses","entries"}. */
void render_stats(jw *w, const es_stats *st, const es_count_check *k,
                  const es_runtime *rt);
/* {"results":[{"id","distance","text","source_id","metadata"}]} */
void render_results(jw *w, const es_results *r);
/* {"orphaned_chunks","orphaned_embeddings","cleaned","dry_run","details"} */
void render_cleanup(jw *w, const es_cleanup_result *r);
/* {"since_s","operations":[...]}; since 0 writes null. */
void render_metrics(jw *w, const es_metrics_report *r, int64_t since);
/* {"deleted","chunks_removed","dry_run"}; by_id adds "not_found",
 * "not_found_ids", "duplicates" (es_delete_documents). */
void render_delete(jw *w, const es_delete_result *r, bool by_id);
/* Microseconds since the Unix epoch as RFC 3339 in UTC with microseconds
 * (2025-01-02T03:04:05.000006Z) into buf. */
void render_time(int64_t us, char *buf, size_t cap);
/* {"id","text","metadata","source_id","created_at","updated_at",
 * ["embedding",] "chunks":[{"id","chunk_index","text","metadata"
 * [,"embedding"]}]}; times in UTC, ISO 8601 with microseconds. */
void render_document(jw *w, const es_document *d, bool embedding);
/* {"documents":[...],"next_after"}: each document as render_document()
 * writes it, its "chunks" only when chunks ("embedding" only when
 * embedding); next_after null on the last page. */
void render_document_list(jw *w, const es_document_list *l, bool chunks,
                          bool embedding);
/* One document in the ingest format (one line of `embstore export`, of
 * GET /v1/export): {"id","text","embedding" (only when embedding),
 * "metadata","source_id","chunks":[{"id","text","metadata","embedding"}]},
 * chunks in their order, so ingesting it writes the same document;
 * "chunks" left out when it was written without them (chunk_set 0, none
 * stored), so that its copy has no chunk set recorded either. */
void render_export(jw *w, const es_document *d, bool embedding);
/* A document that did not land: its id (NULL when unknown), its line (or
 * place in the body) and why. */
typedef struct render_item_error {
  char *id;
  long line;
  char *error;
} render_item_error;

/* `ingest --json`'s summary: {"inserted","updated","unchanged","failed",
 * "duplicates","chunks_written","errors":[{"id","line","error"}],
 * "seconds","index"}; r may be NULL (nothing landed), failed is
 * n_errors. */
void render_ingest(jw *w, const es_batch_result *r,
                   const render_item_error *errors, size_t n_errors,
                   double seconds);
/* The "index" object: an HNSW index build (NULL: none). */
void render_index(jw *w, const es_index_build *build);

#endif
