/* test_citus.c - embstore on a real Citus cluster: a coordinator and two
 * workers that the test starts in its temporary directory, each an
 * embedded cluster of its own with citus preloaded, joined over their
 * Unix sockets (nothing listens on TCP).  Skipped, saying why, where the
 * citus extension is not installed (Debian 12 does not package it). */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define DIM 4
#define NODES 3 /* the coordinator, then the workers */

typedef struct citus {
  es_cluster *node[NODES];
  char sock[NODES][PATH_MAX]; /* each node's socket directory */
  char conninfo[PATH_MAX + 160]; /* the coordinator's store database */
} citus;

/* Skips the test unless the servers here can load citus. */
static void need_citus(void) {
  PGconn *pg = th_connect(th_admin_conninfo());
  long long n = th_pg_int(pg, "SELECT count(*) FROM pg_available_extensions "
                              "WHERE name = 'citus'");
  PQfinish(pg);
  if (n == 0)
    th_skip("the citus extension is not installed for this PostgreSQL "
            "(Debian 12 does not package it; build Citus 13.2 from its "
            "source to run the Citus tests)");
}

/* Starts the nodes and joins the workers to the coordinator. */
static void citus_start(citus *c) {
  memset(c, 0, sizeof *c);
  need_citus();
  setenv("EMBSTORE_PG_OPTIONS", "-c shared_preload_libraries=citus", 1);
  for (int i = 0; i < NODES; i++) {
    char home[PATH_MAX];
    snprintf(home, sizeof home, "%s/citus%d", th_tmpdir(), i);
    if (es_cluster_open(home, &c->node[i]) != ES_OK ||
        es_cluster_start(c->node[i]) != ES_OK)
      FAIL("citus node %d: %s", i, es_cluster_errmsg(c->node[i]));
    const char *ci = es_cluster_conninfo(c->node[i]);
    char *host = th_conninfo_value(ci, "host");
    snprintf(c->sock[i], sizeof c->sock[i], "%s", host);
    free(host);
    PGconn *pg = th_connect(ci);
    th_pg_exec(pg, "CREATE EXTENSION IF NOT EXISTS citus");
    th_pg_exec(pg, "CREATE EXTENSION IF NOT EXISTS vector");
    PQfinish(pg);
  }
  snprintf(c->conninfo, sizeof c->conninfo, "%s",
           es_cluster_conninfo(c->node[0]));
  PGconn *co = th_connect(c->conninfo);
  char sql[PATH_MAX + 96];
  snprintf(sql, sizeof sql, "SELECT citus_set_coordinator_host('%s', 5432)",
           c->sock[0]);
  th_pg_exec(co, sql);
  for (int i = 1; i < NODES; i++) {
    snprintf(sql, sizeof sql, "SELECT citus_add_node('%s', 5432)", c->sock[i]);
    th_pg_exec(co, sql);
  }
  ASSERT_INT_EQ(th_pg_int(co, "SELECT count(*) FROM pg_dist_node WHERE "
                              "noderole = 'primary' AND isactive"),
                NODES);
  PQfinish(co);
}

/* Stops the nodes and frees them. */
static void citus_stop(citus *c) {
  for (int i = NODES - 1; i >= 0; i--) {
    if (es_cluster_stop(c->node[i]) != ES_OK)
      FAIL("stopping citus node %d: %s", i, es_cluster_errmsg(c->node[i]));
    es_cluster_close(c->node[i]);
  }
}

static void put_docs(es_store *s, int n) {
  es_doc d[64];
  char ids[64][16];
  float v[64][DIM];
  for (int i = 0; i < n && i < 64; i++) {
    snprintf(ids[i], sizeof ids[i], "d%02d", i);
    v[i][0] = 1;
    v[i][1] = (float)i / 10;
    v[i][2] = (float)(i % 3);
    v[i][3] = 0;
    d[i] = (es_doc){.id = ids[i], .embedding = v[i], .dim = DIM,
                    .source_id = i % 2 ? "odd" : "even", .text = "citus"};
  }
  es_batch_result_free(th_batch_upsert(s, d, (size_t)n, 16, ES_OK));
}

/* The ids of the 5 nearest to q, comma-separated (malloc'd). */
static char *top5(es_store *s, const float *q) {
  es_search_params p;
  es_search_params_init(&p);
  p.vector = q;
  p.dim = DIM;
  p.k = 5;
  p.exact = 1;
  es_results *r = NULL;
  ASSERT_OK(s, es_search(s, &p, &r));
  char buf[256] = "";
  for (size_t i = 0; i < r->n; i++)
    snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? "," : "",
             r->hits[i].id);
  es_results_free(r);
  return strdup(buf);
}

TEST(a_store_on_a_citus_coordinator_answers_as_on_postgresql) {
  citus c;
  citus_start(&c);
  es_store *cs = NULL, *ps = th_open_init(DIM, ES_METRIC_COSINE);
  ASSERT_OK(cs, es_open(c.conninfo, &cs));
  ASSERT_OK(cs, es_init(cs, DIM, ES_METRIC_COSINE, NULL));
  put_docs(cs, 40);
  put_docs(ps, 40);
  float q[DIM] = {1, 0.7f, 1, 0};
  char *a = top5(cs, q), *b = top5(ps, q);
  ASSERT_STR_EQ(a, b);
  free(a);
  free(b);
  es_stats *x = NULL, *y = NULL;
  ASSERT_OK(cs, es_stats_get(cs, NULL, &x));
  ASSERT_OK(ps, es_stats_get(ps, NULL, &y));
  ASSERT_INT_EQ(x->documents, 40);
  ASSERT_INT_EQ(x->documents, y->documents);
  ASSERT_INT_EQ(x->sources_total, y->sources_total);
  es_stats_free(x);
  es_stats_free(y);
  es_delete_result *dr = NULL;
  ASSERT_OK(cs, es_delete_by_source(cs, "odd", NULL, &dr));
  ASSERT_INT_EQ(dr->deleted, 20);
  es_delete_result_free(dr);
  es_close(cs);
  es_close(ps);
  citus_stop(&c);
}
