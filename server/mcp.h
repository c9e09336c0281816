/* mcp.h - the Model Context Protocol over one store: JSON-RPC 2.0
 * messages in, messages out, whatever carries them (embstore mcp's stdio
 * today).  Uses only the library's public header, as any other program
 * would.
 *
 *   mcp.c        the protocol: framing-free message handling, the
 *                session's lifecycle (initialize, version negotiation),
 *                JSON-RPC errors, resources, the stdio loop
 *   mcp_tools.c  the tools, as a table: name, description, input and
 *                output schemas, annotations, whether it writes, handler */
#ifndef EMBSTORE_MCP_H
#define EMBSTORE_MCP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "embstore.h"

#define MCP_MAX_MESSAGE_DEFAULT ((size_t)8 << 20) /* bytes of one message */

typedef struct mcp_config {
  bool read_only;        /* only the tools that never write (read tokens) */
  bool admin;            /* the tools that need the admin role too
                            (cleanup_orphaned); stdio: true */
  const char *const *workspaces; /* a tenant's: every tool acts within
                                    these n_workspaces only; NULL: all */
  size_t n_workspaces;
  size_t max_message;    /* a longer message is refused, the rest skipped */
  size_t batch_size;     /* documents per transaction of `store` (1000) */
  FILE *log;             /* diagnostics, one line each (stderr) */
} mcp_config;

void mcp_config_init(mcp_config *config);

/* One MCP session over a store (borrowed). */
typedef struct mcp mcp;

mcp *mcp_new(es_store *store, const mcp_config *config);
void mcp_free(mcp *m);

/* Handles one message, msg[0..len) (need not be NUL-terminated); returns
 * the answer, malloc'd and without a newline, or NULL when none is due (a
 * notification, or a response from the client). */
char *mcp_handle(mcp *m, const char *msg, size_t len);

/* 128 random bits as 32 hex digits into out (ids of generated documents
 * and of sessions: nobody can guess one); false when the system gives no
 * randomness. */
bool mcp_random_id(char out[33]);

/* Whether revision v ("2025-06-18") is one this server speaks. */
bool mcp_version_supported(const char *v);

/* mcp_handle() with the tools config allows (its role) instead of the
 * session's own: over HTTP each request's token decides, so that a token
 * whose role was lowered (SIGHUP) gets the lower one at once. */
char *mcp_handle_as(mcp *m, const mcp_config *config, const char *msg, size_t len);

/* The answer to a message too large to read: an Invalid Request error. */
char *mcp_too_large(const mcp *m);

/* Makes s valid UTF-8 where a length limit cut a character in two
 * (jansson refuses strings that are not UTF-8). */
void mcp_utf8_trim(char *s);

/* Serves the stdio transport: one message a line on in, answers on out,
 * until in ends.  Returns 0. */
int mcp_run_stdio(mcp *m, FILE *in, FILE *out);

/* ---- mcp_tools.c ---------------------------------------------------------- */

/* A tool's outcome: structured (an object, the tool's outputSchema) or
 * an error message (isError). */
typedef struct mcp_result {
  json_t *structured; /* owned; NULL on error */
  char *text;         /* the same as the tool's --json writes it (numbers
                         in their shortest form), malloc'd; NULL: dump
                         structured */
  char *error;        /* malloc'd; NULL on success */
} mcp_result;

/* The tools/list answer's "tools" array (new reference) for a session of
 * config. */
json_t *mcp_tools_list(const mcp_config *config);
/* Calls tool name with arguments args (an object or NULL) taken from the
 * raw message raw[0..len) (so that vectors and documents are read from
 * the client's very bytes); false when there is no such tool (for this
 * session), a protocol error. */
bool mcp_tools_call(es_store *store, const mcp_config *config, const char *name,
                    json_t *args, const char *raw, size_t len, mcp_result *out);
/* The statistics and the sources as resources' JSON texts (malloc'd), or
 * NULL with the library's message in err. */
char *mcp_resource_text(es_store *store, const mcp_config *config,
                        const char *uri, char *err, size_t cap, bool *unknown);

#endif
