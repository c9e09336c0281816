/* locks.c - who holds the locks an operation waited for.
 *
 * When a lock wait hits lock_timeout or statement_timeout, "another session
 * may hold a lock" does not help anyone find it.  The sessions holding
 * locks on the store's tables (or the migration lock) are looked up on
 * another connection, since the failed one is inside an aborted
 * transaction, and named in the message: pid, application, user, state and
 * how long their transaction has been open. */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Every number leaves the server as an integer: nothing here depends on
 * DateStyle, IntervalStyle or extra_float_digits. */
static const char holders_sql[] =
    "SELECT l.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''), "
    "coalesce(a.state, ''), coalesce(extract(epoch FROM now() - a.xact_start)::bigint, 0), "
    "string_agg(DISTINCT l.mode || ' on ' || coalesce(c.relname::text, "
    "CASE l.objid WHEN " ES__MIGRATE_LOCK_LO " THEN 'the migration lock' "
    "ELSE 'the deferred index build' END), ', ') "
    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "LEFT JOIN pg_class c ON c.oid = l.relation "
    "WHERE l.granted AND l.pid <> $1::int AND l.pid <> pg_backend_pid() "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND (l.relation IN (to_regclass('embeddings'), to_regclass('chunks'), "
    "to_regclass('embstore_counts'), to_regclass('embstore_meta'), "
    "to_regclass('embstore_migrations'), to_regclass('performance_metrics')) "
    "OR (l.locktype = 'advisory' AND l.classid = " ES__MIGRATE_LOCK_HI
    " AND l.objid IN (" ES__MIGRATE_LOCK_LO ", " ES__DEFER_LOCK_LO ")))"
    "GROUP BY 1, 2, 3, 4, 5 ORDER BY 5 DESC, 1 LIMIT 3";

/* Appends "; held by pid N (...)" for up to three sessions to out.  The
 * calling thread's last failure is left as it was. */
static void describe_lock_holders(es_store *store, int waiter_pid, char *out,
                                  size_t cap) {
  es__err saved = *es__last_err(store);
  es__conn *c = NULL;
  if (es__acquire_quiet(store, &c) != ES_OK) {
    *es__last_err(store) = saved;
    return;
  }
  char pid[16];
  snprintf(pid, sizeof pid, "%d", waiter_pid);
  const char *v[1] = {pid};
  PGresult *r = PQexecParams(c->pg, holders_sql, 1, NULL, v, NULL, NULL, 0);
  size_t len = strlen(out);
  for (int i = 0; es__res_ok(r) && i < PQntuples(r) && len + 1 < cap; i++) {
    const char *app = PQgetvalue(r, i, 1), *state = PQgetvalue(r, i, 3);
    snprintf(out + len, cap - len,
             "%s pid %s (application '%s', user %s, %s, transaction open %s s, "
             "holding %s)",
             i == 0 ? "; held by" : ",", PQgetvalue(r, i, 0),
             app[0] ? app : "?", PQgetvalue(r, i, 2), state[0] ? state : "?",
             PQgetvalue(r, i, 4), PQgetvalue(r, i, 5));
    len = strlen(out);
  }
  PQclear(r);
  es__release(store, c);
  *es__last_err(store) = saved;
}

void es__explain_lock_wait(es_store *store, es__conn *conn) {
  es__err *e = es__last_err(store);
  if (strcmp(e->sqlstate, "57014") != 0 && strcmp(e->sqlstate, "55P03") != 0)
    return;
  char holders[sizeof e->msg] = "";
  describe_lock_holders(store, conn && conn->pg ? PQbackendPID(conn->pg) : 0,
                        holders, sizeof holders);
  e = es__last_err(store);
  size_t n = strlen(e->msg);
  snprintf(e->msg + n, sizeof e->msg - n, "%s", holders);
}

bool es__deferred_load_running(es_store *store, es__conn *conn) {
  (void)store;
  PGresult *r = PQexec(conn->pg, "SELECT pg_try_advisory_lock(" ES__DEFER_LOCK ")");
  bool free_now = es__res_ok(r) && PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  if (free_now)
    PQclear(PQexec(conn->pg, "SELECT pg_advisory_unlock(" ES__DEFER_LOCK ")"));
  return !free_now && PQstatus(conn->pg) == CONNECTION_OK;
}
