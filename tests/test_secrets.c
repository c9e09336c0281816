/* test_secrets.c - no password, from the connection string or from the
 * environment, ever appears in a message, the metrics table or the tool's
 * output: the redactors of src/conninfo.c on their own, then through
 * es_open, a lost and re-opened connection, and a server that checks
 * passwords. */
#include <errno.h>
#include <sys/stat.h>

#include "internal.h"
#include "test.h"

/* ---- the redactors on their own --------------------------------------------- */

/* es__redact_secrets on a copy of in in a buffer of cap bytes: the result
 * must equal want.  Returns nothing; fails the test. */
static void expect_redacted(const char *in, const char *want) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", in);
  es__redact_secrets(buf, sizeof buf);
  ASSERT_STR_EQ(buf, want);
  /* The same through the copying form, whose length is the result's. */
  char out[1024];
  ASSERT_INT_EQ(es__redact_secrets_to(in, out, sizeof out), strlen(want));
  ASSERT_STR_EQ(out, want);
}

TEST(redaction_masks_password_and_sslpassword_in_key_value_text) {
  expect_redacted("host=db password=SECRETpw user=u", "host=db password=*** user=u");
  expect_redacted("sslpassword=SECRET2x host=db", "sslpassword=*** host=db");
  /* Quoted, with spaces and escaped quotes and backslashes inside. */
  expect_redacted("password = 'SEC \\' RET\\\\' sslpassword='K3Y pass' user=u",
                  "password = '***' sslpassword='***' user=u");
  /* Any spacing libpq allows around "=", which also skips white space
   * before the value. */
  expect_redacted("password\t=\n  SECRETpw host=h", "password\t=\n  *** host=h");
  /* A backslash escapes white space in an unquoted value, as in libpq. */
  expect_redacted("password=SEC\\ RET host=h", "password=*** host=h");
  /* Malformed: a trailing backslash, an unterminated quote. */
  expect_redacted("host=h password=SECRETpw\\", "host=h password=***");
  expect_redacted("host=h password='SECRET pw", "host=h password='***'");
  expect_redacted("host=h password='SECRETpw\\", "host=h password='***'");
  /* libpq's keywords are case-sensitive (it refuses "Password="), but a
   * message may spell one any way: masked all the same. */
  expect_redacted("PASSWORD=SECRETpw SslPassword='SECRET2x'", "PASSWORD=*** SslPassword='***'");
  /* A later libpq's secret option, named by the floor. */
  expect_redacted("oauth_client_secret=SECRET3x", "oauth_client_secret=***");
  /* Not secrets: paths, the peer's user name, other words with "=". */
  const char *kept = "passfile=/home/u/.pgpass sslkey=/k/client.key "
                     "requirepeer=postgres mypassword=x password";
  expect_redacted(kept, kept);
  expect_redacted("password authentication failed for user \"app\"",
                  "password authentication failed for user \"app\"");
  expect_redacted("password=", "password=");
}

TEST(redaction_masks_the_user_info_of_uris_malformed_ones_included) {
  expect_redacted("postgresql://app:SECRETpw@db:5433/es?sslmode=require",
                  "postgresql://***@db:5433/es?sslmode=require");
  expect_redacted("POSTGRES://app:SE%43RET%2Fpw@db/es", "POSTGRES://***@db/es");
  /* A user name alone is no secret. */
  expect_redacted("postgresql://app@db/es", "postgresql://app@db/es");
  /* Query parameters, the key percent-encoded too (libpq decodes it). */
  expect_redacted("postgresql://app@db/es?password=SECRETpw&sslpassword=SECRET2x",
                  "postgresql://app@db/es?password=***");
  expect_redacted("postgresql://db/es?pass%77ord=SECRETpw", "postgresql://db/es?pass%77ord=***");
  /* What libpq's parser says of a malformed IPv6 address. */
  expect_redacted("end of string reached when looking for matching \"]\" in IPv6 "
                  "host address in URI: \"postgresql://app:SECRETpw@[::1:5432/es\"",
                  "end of string reached when looking for matching \"]\" in IPv6 "
                  "host address in URI: \"postgresql://***@[::1:5432/es\"");
  /* A password holding "/" or "@" unencoded, and a URI cut short. */
  expect_redacted("postgresql://app:SEC/RETpw@db/es", "postgresql://***@db/es");
  expect_redacted("postgresql://app:SEC@RETpw@db/es", "postgresql://***@db/es");
  expect_redacted("cannot connect to postgresql://app:SECRE", "cannot connect to postgresql://***");
  /* A URI inside a value. */
  expect_redacted("dbname='postgresql://u:SECRETpw@h/db' host=h",
                  "dbname='postgresql://***@h/db' host=h");
  /* Read more than one way, masked for every reading: a URI inside an
   * unquoted password, a quote that closes a value or opens the password=
   * written inside it. */
  expect_redacted("password=xpostgresql://u:p@h/rest_of_value more", "password=*** more");
  expect_redacted("password='a password='SECRET pw' host=h", "password='***' host=h");
}

TEST(redaction_cuts_to_its_buffer_and_reports_the_whole_length) {
  const char *in = "password=ab";
  ASSERT_INT_EQ(es__redact_secrets_to(in, NULL, 0), strlen("password=***"));
  char *small = malloc(8); /* exactly 8 bytes: ASan and Valgrind see more */
  ASSERT_NOT_NULL(small);
  ASSERT_INT_EQ(es__redact_secrets_to(in, small, 8), strlen("password=***"));
  ASSERT_STR_EQ(small, "passwor");
  free(small);
  /* In place, a result longer than the input is cut to the buffer. */
  char *exact = strdup("password=ab");
  ASSERT_NOT_NULL(exact);
  es__redact_secrets(exact, strlen(exact) + 1);
  ASSERT_STR_EQ(exact, "password=**");
  free(exact);
}

TEST(conninfo_redaction_masks_every_secret_option_libpq_knows) {
  /* Every option libpq marks as secret, whatever its version calls it. */
  PQconninfoOption *all = PQconndefaults();
  ASSERT_NOT_NULL(all);
  int secrets = 0;
  for (PQconninfoOption *o = all; o->keyword != NULL; o++) {
    if (strchr(o->dispchar, '*') == NULL)
      continue;
    char ci[256];
    snprintf(ci, sizeof ci, "host=h %s='SECRET value'", o->keyword);
    char *r = es__conninfo_redact(ci);
    ASSERT_NOT_NULL(r);
    ASSERT_NOT_CONTAINS(r, "SECRET");
    free(r);
    secrets++;
  }
  PQconninfoFree(all);
  ASSERT_INT_GE(secrets, 2); /* password and sslpassword at least */

  char *r = es__conninfo_redact(
      "host=db user=u password=SECRETpw sslpassword=SECRET2x passfile=/p/.pgpass "
      "sslkey=/k/client.key requirepeer=pgowner dbname='postgresql://u:SECRET3x@h/d'");
  ASSERT_NOT_NULL(r);
  ASSERT_NOT_CONTAINS(r, "SECRET");
  ASSERT_CONTAINS(r, "password='***'");
  ASSERT_CONTAINS(r, "sslpassword='***'");
  /* Shown on purpose: paths and names, not secrets. */
  ASSERT_CONTAINS(r, "passfile='/p/.pgpass'");
  ASSERT_CONTAINS(r, "sslkey='/k/client.key'");
  ASSERT_CONTAINS(r, "requirepeer='pgowner'");
  ASSERT_CONTAINS(r, "user='u'");
  free(r);

  r = es__conninfo_redact("postgresql://app:SECRETpw@db/es?sslpassword=SECRET2x");
  ASSERT_NOT_NULL(r);
  ASSERT_NOT_CONTAINS(r, "SECRET");
  ASSERT_CONTAINS(r, "user='app'");
  free(r);
  ASSERT_NULL(es__conninfo_redact("postgresql://app:SECRETpw@[::1/es"));
}

/* es__scrub_quoted on in in a heap buffer of exactly its size (so that a
 * write or read past it is an ASan or Valgrind error) and in a large one,
 * where the result must equal want. */
static void expect_scrubbed(const char *in, const char *want) {
  size_t n = strlen(in);
  char *exact = malloc(n + 1);
  ASSERT_NOT_NULL(exact);
  memcpy(exact, in, n + 1);
  es__scrub_quoted(exact, n + 1);
  ASSERT_INT_LE(strlen(exact), n);
  ASSERT_MEM_EQ(exact, want, strlen(exact));
  free(exact);
  char big[1024];
  snprintf(big, sizeof big, "%s", in);
  es__scrub_quoted(big, sizeof big);
  ASSERT_STR_EQ(big, want);
}

TEST(scrub_quoted_hides_quoted_tokens_and_stays_inside_its_buffer) {
  /* Tokens of two characters or fewer at the end of the message: the old
   * scrubber wrote "... over bytes it had not read yet, the NUL among
   * them, and read on past the buffer. */
  expect_scrubbed("\"a\"", "\"...\"");
  expect_scrubbed("\"", "\"...");
  expect_scrubbed("x \"ab\"", "x \"...\"");
  expect_scrubbed("\"\"", "\"...\"");
  expect_scrubbed("", "");
  expect_scrubbed("no quotes at all", "no quotes at all");
  /* libpq's parse errors: its own one-character literals are kept. */
  expect_scrubbed("end of string reached when looking for matching \"]\" in IPv6 host "
                  "address in URI: \"postgresql://app:SECRETpw@[::1:5432/es\"",
                  "end of string reached when looking for matching \"]\" in IPv6 host "
                  "address in URI: \"...\"");
  expect_scrubbed("missing \"=\" after \"hunter2x\" in connection info string",
                  "missing \"=\" after \"...\" in connection info string");
  /* A quote inside the user's token does not end the hiding early. */
  expect_scrubbed("in URI: \"postgresql://app:SE\"CR\"ETpw@[x/es\"", "in URI: \"...\"");
  /* Unterminated: hidden to the end. */
  expect_scrubbed("invalid connection option \"SECRETpw", "invalid connection option \"...");
}

TEST(every_recorded_failure_message_is_redacted) {
  /* A store that failed to open still records failures. */
  es_store *s = NULL;
  ASSERT_INT_EQ(es_open_opts(NULL, &s), ES_EINVAL);
  ASSERT_NOT_NULL(s);
  es__fail(s, ES_EINVAL, "bad: %s", "host=h password=SECRETpw");
  ASSERT_STR_EQ(es_errmsg(s), "bad: host=h password=***");
  es__fail_wrap(s, ES_EINVAL, "postgresql://u:SECRETpw@h/d");
  ASSERT_STR_EQ(es_errmsg(s), "postgresql://***@h/d: bad: host=h password=***");
  es__fail_pg(s, NULL, NULL, "cannot connect to sslpassword='SECRET pw'");
  ASSERT_STR_EQ(es_errmsg(s), "cannot connect to sslpassword='***': no connection");
  es_close(s);
}

/* es_open with conninfo must fail with want and say nothing of secret. */
static void expect_open_hides(const char *conninfo, es_status want, const char *secret) {
  es_options o;
  es_options_init(&o);
  o.conninfo = conninfo;
  es_store *s = NULL;
  ASSERT_STATUS(s, es_open_opts(&o, &s), want);
  ASSERT_NOT_CONTAINS(es_errmsg(s), secret);
  es_close(s);
}

TEST(open_refuses_malformed_connection_strings_without_showing_the_password) {
  es_options o;
  es_options_init(&o);
  o.conninfo = "postgresql://app:SECRETpw@[::1:5432/es";
  es_store *s = NULL;
  ASSERT_STATUS(s, es_open_opts(&o, &s), ES_EINVAL);
  ASSERT_NOT_CONTAINS(es_errmsg(s), "SECRET");
  ASSERT_CONTAINS(es_errmsg(s), "invalid connection string");
  ASSERT_CONTAINS(es_errmsg(s), "IPv6 host address");
  es_close(s);

  expect_open_hides("postgresql://app:SE%zzCRETpw@db/es", ES_EINVAL, "CRETpw");
  expect_open_hides("postgresql://app:SE\"CR\"ETpw@[x/es", ES_EINVAL, "ETpw");
  expect_open_hides("postgresql://app:SECRETpw@db/es?passwrd=x", ES_EINVAL, "SECRET");
  expect_open_hides("host=x password='SECRETpw", ES_EINVAL, "SECRET");
  /* The password where a keyword belongs: libpq quotes it. */
  expect_open_hides("host=x SECRETpw", ES_EINVAL, "SECRET");
}

TEST(connection_failures_never_show_a_password_from_the_string_or_the_environment) {
  /* Forked per test: the environment is this test's own. */
  setenv("PGPASSWORD", "ENVSECRETpw", 1);
  const char *ci = "host=/nonexistent-dir port=1 user=u password=SECRETpw "
                   "sslpassword=SECRET2x dbname=x";
  es_options o;
  es_options_init(&o);
  o.conninfo = ci;
  o.max_retries = 0;
  es_store *s = NULL;
  ASSERT_STATUS(s, es_open_opts(&o, &s), ES_ECONNECT);
  ASSERT_CONTAINS(es_errmsg(s), "cannot connect to");
  ASSERT_CONTAINS(es_errmsg(s), "sslpassword='***'");
  ASSERT_NOT_CONTAINS(es_errmsg(s), "SECRET");
  es_close(s);

  /* The same string as a URI. */
  o.conninfo = "postgresql://u:SECRETpw@/x?host=/nonexistent-dir&port=1&sslpassword=SECRET2x";
  ASSERT_STATUS(s, es_open_opts(&o, &s), ES_ECONNECT);
  ASSERT_NOT_CONTAINS(es_errmsg(s), "SECRET");
  es_close(s);

  /* The command-line tool, plain and --json, inherits PGPASSWORD. */
  for (int json = 0; json < 2; json++) {
    const char *argv[] = {"--db", ci, json ? "--json" : "stats", json ? "stats" : NULL, NULL};
    th_proc pr = th_cli(NULL, argv);
    ASSERT_INT_EQ(pr.status, 2);
    ASSERT_NOT_CONTAINS(pr.out, "SECRET");
    ASSERT_NOT_CONTAINS(pr.err, "SECRET");
    if (strstr(pr.out, "sslpassword") == NULL && strstr(pr.err, "sslpassword") == NULL)
      FAIL("the tool's message names no connection string: %s%s", pr.out, pr.err);
    th_proc_free(&pr);
  }
}

/* ---- against servers ---------------------------------------------------------- */

/* Runs sql on conninfo's database; fails the test when it fails. */
static void exec_on(const char *conninfo, const char *sql) {
  PGconn *pg = PQconnectdb(conninfo);
  if (PQstatus(pg) != CONNECTION_OK)
    FAIL("connect: %s", PQerrorMessage(pg));
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    FAIL("%s: %s", sql, PQresultErrorMessage(r));
  PQclear(r);
  PQfinish(pg);
}

/* The first value of sql's first row on conninfo's database, as a number. */
static long long int_on(const char *conninfo, const char *sql) {
  PGconn *pg = PQconnectdb(conninfo);
  if (PQstatus(pg) != CONNECTION_OK)
    FAIL("connect: %s", PQerrorMessage(pg));
  PGresult *r = PQexec(pg, sql);
  if (PQresultStatus(r) != PGRES_TUPLES_OK)
    FAIL("%s: %s", sql, PQresultErrorMessage(r));
  long long v = atoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(pg);
  return v;
}

TEST(no_secret_appears_in_errors_or_metrics_after_a_reconnect) {
  es_cluster *cl = th_own_cluster();
  setenv("PGPASSWORD", "ENVSECRETpw", 1);
  char ci[1200];
  snprintf(ci, sizeof ci, "%s password=SECRETpw sslpassword='SECRET2x pass'",
           es_cluster_conninfo(cl));
  es_options o;
  es_options_init(&o);
  o.conninfo = ci;
  o.max_retries = 0;
  es_store *s = NULL;
  ASSERT_OK(s, es_open_opts(&o, &s)); /* trust: neither secret is needed */
  ASSERT_OK(s, es_init(s, 2, ES_METRIC_COSINE, NULL));
  ASSERT_INT_EQ(es_cluster_stop(cl), ES_OK);
  float v[2] = {1, 2};
  es_search_params p = {.vector = v, .dim = 2, .k = 1};
  es_results *r = NULL;
  /* The pooled connections are lost (the metrics writer may have opened
   * a second one), then reconnecting fails. */
  for (int i = 0; i < 5 && strstr(es_errmsg(s), "cannot connect") == NULL; i++) {
    ASSERT_STATUS(s, es_search(s, &p, &r), ES_ECONNECT);
    ASSERT_NOT_CONTAINS(es_errmsg(s), "SECRET");
  }
  ASSERT_CONTAINS(es_errmsg(s), "cannot connect");
  ASSERT_CONTAINS(es_errmsg(s), "sslpassword='***'");
  ASSERT_STATUS(s, es_search(s, &p, &r), ES_ECONNECT); /* and again */
  ASSERT_NOT_CONTAINS(es_errmsg(s), "SECRET");
  ASSERT_INT_EQ(es_cluster_start(cl), ES_OK);
  ASSERT_OK(s, es_search(s, &p, &r)); /* reconnected */
  es_results_free(r);
  es_close(s); /* the buffered metrics, failures included, are written */

  const char *admin = es_cluster_conninfo(cl);
  ASSERT_INT_GE(int_on(admin, "SELECT count(*) FROM performance_metrics "
                              "WHERE NOT success AND error_message LIKE '%sslpassword%'"),
                2);
  ASSERT_INT_EQ(int_on(admin, "SELECT count(*) FROM performance_metrics WHERE "
                              "error_message LIKE '%SECRET%' OR metadata::text LIKE '%SECRET%'"),
                0);

  /* The command-line tool says nothing of them either. */
  ASSERT_INT_EQ(es_cluster_stop(cl), ES_OK);
  const char *argv[] = {"--db", ci, "--json", "stats", NULL};
  th_proc pr = th_cli(NULL, argv);
  ASSERT_INT_EQ(pr.status, 2);
  ASSERT_NOT_CONTAINS(pr.out, "SECRET");
  ASSERT_NOT_CONTAINS(pr.err, "SECRET");
  th_proc_free(&pr);
  es_cluster_close(cl);
}

/* Makes the cluster ask role es_app for its password (SCRAM) on the Unix
 * socket, everyone else trusted, and waits until the server does. */
static void require_password_for_es_app(es_cluster *cl) {
  const char *admin = es_cluster_conninfo(cl);
  exec_on(admin, "CREATE ROLE es_app LOGIN PASSWORD 'RIGHTpw'");
  PGconn *pg = PQconnectdb(admin);
  PGresult *r = PQexec(pg, "SHOW hba_file");
  ASSERT_INT_EQ(PQresultStatus(r), PGRES_TUPLES_OK);
  FILE *f = fopen(PQgetvalue(r, 0, 0), "w");
  if (f == NULL)
    FAIL("%s: %s", PQgetvalue(r, 0, 0), strerror(errno));
  fprintf(f, "local all es_app scram-sha-256\nlocal all all trust\n");
  ASSERT_INT_EQ(fclose(f), 0);
  PQclear(r);
  PQfinish(pg);
  exec_on(admin, "SELECT pg_reload_conf()");
  /* The reload is asynchronous: poll until a password is asked for. */
  char ci[1200];
  snprintf(ci, sizeof ci, "%s user=es_app password=", admin);
  for (double deadline = th_now() + 30;;) {
    PGconn *c = PQconnectdb(ci);
    bool asked = PQstatus(c) != CONNECTION_OK;
    PQfinish(c);
    if (asked)
      break;
    if (th_now() > deadline)
      FAIL("the server never asked es_app for a password");
  }
}

/* es_open as es_app with extra conninfo must fail to authenticate and
 * show nothing of secret, nor must the command-line tool. */
static void expect_auth_failure_hides(es_cluster *cl, const char *extra,
                                      const char *secret) {
  char ci[1400];
  snprintf(ci, sizeof ci, "%s user=es_app %s", es_cluster_conninfo(cl), extra);
  es_options o;
  es_options_init(&o);
  o.conninfo = ci;
  o.max_retries = 0;
  es_store *s = NULL;
  ASSERT_STATUS(s, es_open_opts(&o, &s), ES_ECONNECT);
  ASSERT_CONTAINS(es_errmsg(s), "es_app");
  ASSERT_NOT_CONTAINS(es_errmsg(s), secret);
  es_close(s);
  const char *argv[] = {"--db", ci, "stats", NULL};
  th_proc pr = th_cli(NULL, argv);
  ASSERT_INT_EQ(pr.status, 2);
  ASSERT_NOT_CONTAINS(pr.out, secret);
  ASSERT_NOT_CONTAINS(pr.err, secret);
  th_proc_free(&pr);
}

TEST(wrong_passwords_from_any_source_are_never_shown) {
  es_cluster *cl = th_own_cluster();
  require_password_for_es_app(cl);
  unsetenv("PGPASSWORD");
  expect_auth_failure_hides(cl, "password=WRONGsecret1", "WRONGsecret1");
  expect_auth_failure_hides(cl, "password='WRONG secret2' sslpassword=SSLsecret3",
                            "secret");

  /* From the environment. */
  setenv("PGPASSWORD", "ENVsecret4", 1);
  expect_auth_failure_hides(cl, "", "ENVsecret4");
  unsetenv("PGPASSWORD");

  /* From a password file. */
  char passfile[700], extra[800];
  snprintf(passfile, sizeof passfile, "%s/pgpass", th_tmpdir());
  FILE *f = fopen(passfile, "w");
  ASSERT_NOT_NULL(f);
  fprintf(f, "*:*:*:es_app:FILEsecret5\n");
  ASSERT_INT_EQ(fclose(f), 0);
  ASSERT_INT_EQ(chmod(passfile, 0600), 0);
  snprintf(extra, sizeof extra, "passfile=%s", passfile);
  expect_auth_failure_hides(cl, extra, "FILEsecret5");

  /* And the right one works, so the failures above were the passwords'. */
  char ci[1400];
  snprintf(ci, sizeof ci, "%s user=es_app password=RIGHTpw", es_cluster_conninfo(cl));
  es_options o;
  es_options_init(&o);
  o.conninfo = ci;
  es_store *s = NULL;
  ASSERT_OK(s, es_open_opts(&o, &s));
  es_close(s);
  ASSERT_INT_EQ(es_cluster_stop(cl), ES_OK);
  es_cluster_close(cl);
}
