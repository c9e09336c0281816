/* render.c - the JSON shapes of the library's results, shared by the
 * tool's --json output and the HTTP API (server/), so that both say the
 * same thing in the same fields. */
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include "render.h"

/* Whether the check found counters that disagree with the tables (and did
 * not repair them). */
bool render_drifted(const es_count_check *k) {
  return k && !k->repaired &&
         (k->n_drift > 0 || k->orphaned_chunks != k->orphaned_counted);
}

/* The "counts_check" member of stats. */
static void check_json(jw *w, const es_count_check *k) {
  jw_key(w, "counts_check");
  jw_obj(w);
  jw_key(w, "documents");
  jw_int(w, k->documents);
  jw_key(w, "chunks");
  jw_int(w, k->chunks);
  jw_key(w, "orphaned_chunks");
  jw_int(w, k->orphaned_chunks);
  jw_key(w, "orphaned_counted");
  jw_int(w, k->orphaned_counted);
  jw_key(w, "drift");
  jw_arr(w);
  for (size_t i = 0; i < k->n_drift; i++) {
    const es_count_drift *d = &k->drift[i];
    jw_obj(w);
    jw_key(w, "source_id");
    jw_str(w, d->source_id);
    jw_key(w, "workspace");
    jw_str(w, d->workspace);
    jw_key(w, "documents_counted");
    jw_int(w, d->documents_counted);
    jw_key(w, "documents_actual");
    jw_int(w, d->documents_actual);
    jw_key(w, "chunks_counted");
    jw_int(w, d->chunks_counted);
    jw_key(w, "chunks_actual");
    jw_int(w, d->chunks_actual);
    jw_key(w, "without_vector_counted");
    jw_int(w, d->without_vector_counted);
    jw_key(w, "without_vector_actual");
    jw_int(w, d->without_vector_actual);
    jw_obj_end(w);
  }
  jw_arr_end(w);
  jw_key(w, "repaired");
  jw_bool(w, k->repaired);
  jw_obj_end(w);
}

void render_stats(jw *w, const es_stats *st, const es_count_check *k,
                  const es_runtime *rt) {
  jw_obj(w);
  jw_key(w, "workspace");
  jw_str(w, st->workspace);
  jw_key(w, "documents");
  jw_int(w, st->documents);
  jw_key(w, "chunks");
  jw_int(w, st->chunks);
  jw_key(w, "without_vector");
  jw_int(w, st->without_vector);
  jw_key(w, "orphaned_chunks");
  jw_int(w, st->orphaned_chunks);
  jw_key(w, "sources");
  jw_arr(w);
  for (size_t i = 0; i < st->sources_total; i++) {
    jw_obj(w);
    jw_key(w, "source_id");
    jw_str(w, st->sources[i].source_id);
    jw_key(w, "documents");
    jw_int(w, st->sources[i].documents);
    jw_key(w, "chunks");
    jw_int(w, st->sources[i].chunks);
    jw_obj_end(w);
  }
  jw_arr_end(w);
  jw_key(w, "sources_total");
  jw_int(w, (int64_t)st->sources_total);
  jw_key(w, "storage_mb");
  jw_num(w, st->storage_mb);
  jw_key(w, "storage_attribution");
  jw_str(w, st->workspace ? "share of the store's rows" : "store");
  jw_key(w, "reclaimable_mb");
  jw_num(w, st->reclaimable_mb);
  jw_key(w, "index_health");
  jw_str(w, es_health_name(render_drifted(k) ? ES_HEALTH_CRITICAL : st->index_health));
  jw_key(w, "health_reasons");
  jw_arr(w);
  for (size_t i = 0; i < st->n_health_reasons; i++)
    jw_str(w, st->health_reasons[i]);
  if (render_drifted(k))
    jw_str(w, RENDER_DRIFT_REASON);
  jw_arr_end(w);
  jw_key(w, "performance");
  jw_obj(w);
  jw_key(w, "avg_search_ms");
  jw_num(w, st->avg_search_ms); /* NaN (no data) prints null */
  jw_key(w, "avg_insert_ms");
  jw_num(w, st->avg_insert_ms);
  jw_key(w, "cache_hit_rate");
  jw_num(w, st->cache_hit_rate);
  jw_obj_end(w);
  jw_key(w, "models");
  jw_arr(w);
  for (size_t i = 0; i < st->n_models; i++) {
    jw_obj(w);
    jw_key(w, "model");
    jw_str(w, st->models[i].model);
    jw_key(w, "documents");
    jw_int(w, st->models[i].documents);
    jw_key(w, "chunks");
    jw_int(w, st->models[i].chunks);
    jw_obj_end(w);
  }
  jw_arr_end(w);
  jw_key(w, "served_by");
  jw_str(w, st->served_by_replica ? "replica" : "primary");
  jw_key(w, "replica");
  if (st->replica) {
    jw_obj(w);
    jw_key(w, "state");
    jw_str(w, es_replica_state_name(st->replica_state));
    jw_key(w, "lag_ms");
    if (st->replica_lag_ms >= 0)
      jw_int(w, st->replica_lag_ms);
    else
      jw_null(w);
    jw_obj_end(w);
  } else {
    jw_null(w);
  }
  if (k)
    check_json(w, k);
  if (rt && rt->replica) {
    jw_key(w, "server_replica");
    jw_obj(w);
    jw_key(w, "reads");
    jw_int(w, rt->replica_reads);
    jw_key(w, "fallbacks");
    jw_int(w, rt->replica_fallbacks);
    jw_key(w, "state");
    jw_str(w, es_replica_state_name(rt->replica_state));
    jw_key(w, "pool_open");
    jw_int(w, rt->replica_pool_open);
    jw_obj_end(w);
  }
  if (rt) {
    jw_key(w, "server_cache");
    jw_obj(w);
    jw_key(w, "listening");
    jw_bool(w, rt->cache_listening != 0);
    jw_key(w, "invalidations");
    jw_int(w, rt->cache_invalidations);
    jw_key(w, "listener_reconnects");
    jw_int(w, rt->cache_listener_reconnects);
    jw_key(w, "hits");
    jw_int(w, rt->cache_hits);
    jw_key(w, "misses");
    jw_int(w, rt->cache_misses);
    jw_key(w, "entries");
    jw_int(w, rt->cache_entries);
    jw_obj_end(w);
  }
  jw_obj_end(w);
}


void render_results(jw *w, const es_results *r) {
  jw_obj(w);
  jw_key(w, "results");
  jw_arr(w);
  for (size_t i = 0; i < r->n; i++) {
    const es_hit *h = &r->hits[i];
    jw_obj(w);
    jw_key(w, "id");
    jw_str(w, h->id);
    if (h->document_id) { /* a chunk */
      jw_key(w, "chunk_index");
      jw_int(w, h->chunk_index);
      jw_key(w, "document_id");
      jw_str(w, h->document_id);
    }
    jw_key(w, "distance");
    jw_num(w, h->distance);
    jw_key(w, "text");
    jw_str(w, h->text);
    jw_key(w, "source_id");
    jw_str(w, h->source_id);
    jw_key(w, "metadata");
    jw_raw(w, h->metadata_json);
    if (r->mode == ES_SEARCH_TEXT || r->mode == ES_SEARCH_HYBRID) {
      jw_key(w, "score");
      jw_num(w, h->score);
      jw_key(w, "vector_rank"); /* null: not in the vector pool */
      if (h->vector_rank)
        jw_int(w, h->vector_rank);
      else
        jw_null(w);
      jw_key(w, "text_rank");
      if (h->text_rank)
        jw_int(w, h->text_rank);
      else
        jw_null(w);
    }
    jw_obj_end(w);
  }
  jw_arr_end(w);
  jw_obj_end(w);
}

void render_cleanup(jw *w, const es_cleanup_result *r) {
  jw_obj(w);
  jw_key(w, "orphaned_chunks");
  jw_int(w, r->orphaned_chunks);
  jw_key(w, "orphaned_embeddings");
  jw_int(w, r->orphaned_embeddings);
  jw_key(w, "cleaned");
  jw_int(w, r->cleaned);
  jw_key(w, "dry_run");
  jw_bool(w, r->dry_run);
  jw_key(w, "details");
  jw_arr(w);
  for (size_t i = 0; i < r->n_details; i++)
    jw_str(w, r->details[i]);
  jw_arr_end(w);
  jw_obj_end(w);
}

void render_metrics(jw *w, const es_metrics_report *r, int64_t since) {
  jw_obj(w);
  jw_key(w, "since_s");
  if (since)
    jw_int(w, since);
  else
    jw_null(w);
  jw_key(w, "operations");
  jw_arr(w);
  for (size_t i = 0; i < r->n; i++) {
    const es_op_metrics *m = &r->ops[i];
    jw_obj(w);
    jw_key(w, "operation");
    jw_str(w, m->operation);
    jw_key(w, "count");
    jw_int(w, m->count);
    jw_key(w, "p50_ms");
    jw_num(w, m->p50_ms);
    jw_key(w, "p95_ms");
    jw_num(w, m->p95_ms);
    jw_key(w, "p99_ms");
    jw_num(w, m->p99_ms);
    jw_key(w, "error_rate");
    jw_num(w, m->error_rate);
    jw_obj_end(w);
  }
  jw_arr_end(w);
  jw_obj_end(w);
}

void render_delete(jw *w, const es_delete_result *r, bool by_id) {
  jw_obj(w);
  jw_key(w, "deleted");
  jw_int(w, r->deleted);
  jw_key(w, "chunks_removed");
  jw_int(w, r->chunks_removed);
  jw_key(w, "dry_run");
  jw_bool(w, r->dry_run);
  if (by_id) {
    jw_key(w, "not_found");
    jw_int(w, r->not_found);
    jw_key(w, "not_found_ids");
    jw_arr(w);
    for (int64_t i = 0; i < r->not_found; i++)
      jw_str(w, r->not_found_ids[i]);
    jw_arr_end(w);
    jw_key(w, "duplicates");
    jw_int(w, r->duplicates);
  }
  jw_obj_end(w);
}

void render_index(jw *w, const es_index_build *x) {
  static const es_index_build none;
  if (x == NULL)
    x = &none;
  jw_obj(w);
  jw_key(w, "built");
  jw_bool(w, x->built);
  jw_key(w, "vectors");
  jw_int(w, x->vectors);
  jw_key(w, "memory_mb");
  jw_int(w, x->memory_mb);
  jw_key(w, "workers");
  jw_int(w, x->workers);
  jw_key(w, "workers_launched");
  jw_int(w, x->workers_launched);
  jw_key(w, "seconds");
  jw_num(w, x->seconds);
  jw_key(w, "graph_fit");
  jw_bool(w, !x->built || x->graph_fit);
  jw_key(w, "notice");
  jw_str(w, x->notice);
  jw_key(w, "note");
  jw_str(w, x->note);
  jw_obj_end(w);
}

/* Formats microseconds since the Unix epoch as RFC 3339 UTC into buf. */
void render_time(int64_t us, char *buf, size_t cap) {
  int64_t secs = us / 1000000, frac = us % 1000000;
  if (frac < 0) { /* floor, for times before 1970 */
    frac += 1000000;
    secs--;
  }
  time_t t = (time_t)secs;
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL) {
    snprintf(buf, cap, "%lld", (long long)us);
    return;
  }
  snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (long long)frac);
}

/* A vector as a JSON array (or null). */
static void json_vector(jw *w, const float *v, size_t dim) {
  if (v == NULL) {
    jw_null(w);
    return;
  }
  jw_arr(w);
  for (size_t i = 0; i < dim; i++)
    jw_float(w, v[i]);
  jw_arr_end(w);
}

/* "chunks":[{"id",("chunk_index",)"text","metadata"(,"embedding")}]. */
static void chunk_list(jw *w, const es_document *d, bool with_index,
                       bool embedding) {
  jw_key(w, "chunks");
  jw_arr(w);
  for (size_t i = 0; i < d->n_chunks; i++) {
    const es_document_chunk *ch = &d->chunks[i];
    jw_obj(w);
    jw_key(w, "id");
    jw_str(w, ch->id);
    if (with_index) {
      jw_key(w, "chunk_index");
      jw_int(w, ch->chunk_index);
    }
    jw_key(w, "text");
    jw_str(w, ch->text);
    jw_key(w, "metadata");
    jw_raw(w, ch->metadata_json);
    if (embedding) {
      jw_key(w, "embedding");
      json_vector(w, ch->embedding, ch->dim);
    }
    jw_obj_end(w);
  }
  jw_arr_end(w);
}

/* A document's members; its chunks too when chunks. */
static void document(jw *w, const es_document *d, bool chunks, bool embedding) {
  char t[48];
  jw_obj(w);
  jw_key(w, "id");
  jw_str(w, d->id);
  jw_key(w, "text");
  jw_str(w, d->text);
  jw_key(w, "metadata");
  jw_raw(w, d->metadata_json);
  jw_key(w, "source_id");
  jw_str(w, d->source_id);
  render_time(d->created_at_us, t, sizeof t);
  jw_key(w, "created_at");
  jw_str(w, t);
  render_time(d->updated_at_us, t, sizeof t);
  jw_key(w, "updated_at");
  jw_str(w, t);
  if (embedding) {
    jw_key(w, "embedding");
    json_vector(w, d->embedding, d->dim);
  }
  if (!chunks) {
    jw_obj_end(w);
    return;
  }
  chunk_list(w, d, true, embedding);
  jw_obj_end(w);
}

void render_document(jw *w, const es_document *d, bool embedding) {
  document(w, d, true, embedding);
}

void render_document_list(jw *w, const es_document_list *l, bool chunks,
                          bool embedding) {
  jw_obj(w);
  jw_key(w, "documents");
  jw_arr(w);
  for (size_t i = 0; i < l->n; i++)
    document(w, &l->documents[i], chunks, embedding);
  jw_arr_end(w);
  jw_key(w, "next_after");
  jw_str(w, l->next_after);
  jw_obj_end(w);
}

void render_export(jw *w, const es_document *d, bool embedding) {
  jw_obj(w);
  jw_key(w, "id");
  jw_str(w, d->id);
  jw_key(w, "text");
  jw_str(w, d->text);
  if (embedding) {
    jw_key(w, "embedding");
    json_vector(w, d->embedding, d->dim);
  }
  jw_key(w, "metadata");
  jw_raw(w, d->metadata_json);
  jw_key(w, "source_id");
  jw_str(w, d->source_id);
  if (!d->chunk_set && d->n_chunks == 0) { /* written without "chunks" */
    jw_obj_end(w);
    return;
  }
  chunk_list(w, d, false, embedding); /* chunk i gets chunk_index i */
  jw_obj_end(w);
}

void render_ingest(jw *w, const es_batch_result *r,
                   const render_item_error *errors, size_t n_errors,
                   double seconds) {
  jw_obj(w);
  jw_key(w, "inserted");
  jw_int(w, r ? (int64_t)r->inserted : 0);
  jw_key(w, "updated");
  jw_int(w, r ? (int64_t)r->updated : 0);
  jw_key(w, "unchanged");
  jw_int(w, r ? (int64_t)r->unchanged : 0);
  jw_key(w, "failed");
  jw_int(w, (int64_t)n_errors);
  jw_key(w, "duplicates");
  jw_int(w, r ? (int64_t)r->duplicates : 0);
  jw_key(w, "chunks_written");
  jw_int(w, r ? (int64_t)r->chunks_written : 0);
  jw_key(w, "errors");
  jw_arr(w);
  for (size_t i = 0; i < n_errors; i++) {
    jw_obj(w);
    jw_key(w, "id");
    jw_str(w, errors[i].id);
    jw_key(w, "line");
    jw_int(w, errors[i].line);
    jw_key(w, "error");
    jw_str(w, errors[i].error);
    jw_obj_end(w);
  }
  jw_arr_end(w);
  jw_key(w, "seconds");
  jw_num(w, seconds);
  jw_key(w, "index");
  render_index(w, r ? &r->index : NULL);
  jw_obj_end(w);
}
