/* auth.h - API tokens: the tokens file, roles and tenants. */
#ifndef EMBSTORE_AUTH_H
#define EMBSTORE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

typedef enum role { ROLE_READ = 1, ROLE_WRITE = 2, ROLE_ADMIN = 3 } role;

typedef struct token {
  uint8_t digest[SHA256_BYTES]; /* SHA-256 of the secret; never the secret */
  role role;
  bool all_workspaces;          /* "*" */
  char **workspaces;            /* else these (a tenant) */
  size_t n_workspaces;
  char name[80];                /* for logs: the line's NAME, else
                                   "token-" and 8 hex digits of the digest */
} token;

/* The tokens of one reading of the file; shared by the requests that use
 * them while a reload (SIGHUP) replaces them. */
typedef struct token_set token_set;

/* Reads the tokens file at path: one token a line, "TOKEN ROLE WORKSPACES
 * [NAME]", '#' starts a comment; TOKEN is the secret or "sha256:" and its
 * hex digest; ROLE read, write or admin; WORKSPACES "*" or a comma list.
 * Refuses a file that group or others may read.  NULL on failure, with
 * the reason (naming the line) in err. */
token_set *tokens_load(const char *path, char *err, size_t cap);
/* Another holder of set. */
token_set *tokens_ref(token_set *set);
/* Gives a holder's reference back; the last frees the set. */
void tokens_release(token_set *set);
size_t tokens_count(const token_set *set);

/* The token whose secret is presented (len bytes), or NULL: every entry is
 * compared, in constant time, whatever matches. */
const token *tokens_find(const token_set *set, const char *presented, size_t len);

/* Whether t may see documents of workspace ws (NULL: of none). */
bool token_sees(const token *t, const char *ws);
/* "read", "write" or "admin". */
const char *role_name(role r);
/* ROLE from its name; false when it is none. */
bool role_parse(const char *name, role *out);

/* A fresh random token (43 characters of base64url after "es_") into
 * out (at least 48 bytes), its hex digest into hex (65 bytes); false when
 * the system has no randomness to give. */
bool token_generate(char *out, size_t cap, char hex[65]);

#endif
