/* mcp.c - the Model Context Protocol's message handling (see mcp.h):
 * JSON-RPC 2.0, the session's lifecycle, tools and resources dispatched
 * to mcp_tools.c, and the stdio transport (one message a line; nothing
 * but messages on stdout). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "json_spans.h"
#include "mcp.h"
#include "tool_utf8.h"

/* JSON-RPC's codes. */
enum {
  PARSE_ERROR = -32700,
  INVALID_REQUEST = -32600,
  METHOD_NOT_FOUND = -32601,
  INVALID_PARAMS = -32602
};

/* The revisions answered, newest first: the client's when it is one of
 * them, else the newest. */
static const char *const versions[] = {"2025-11-25", "2025-06-18", "2025-03-26",
                                       "2024-11-05"};

struct mcp {
  es_store *store;
  mcp_config cfg;
  bool initialized; /* initialize answered */
  char version[16]; /* the negotiated revision */
};

bool mcp_version_supported(const char *v) {
  for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++)
    if (strcmp(v, versions[i]) == 0)
      return true;
  return false;
}

bool mcp_random_id(char out[33]) {
  unsigned char b[16];
  if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
    return false;
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    out[2 * i] = hex[b[i] >> 4];
    out[2 * i + 1] = hex[b[i] & 15];
  }
  out[32] = '\0';
  return true;
}

void mcp_config_init(mcp_config *c) {
  memset(c, 0, sizeof *c);
  c->admin = true;
  c->max_message = MCP_MAX_MESSAGE_DEFAULT;
  c->batch_size = 1000;
  c->log = stderr;
}

mcp *mcp_new(es_store *store, const mcp_config *config) {
  mcp *m = calloc(1, sizeof *m);
  if (m == NULL)
    return NULL;
  m->store = store;
  if (config)
    m->cfg = *config;
  else
    mcp_config_init(&m->cfg);
  return m;
}

void mcp_free(mcp *m) { free(m); }

/* Makes s valid UTF-8 where a length limit cut a character in two
 * (replacing what is left of it), so that jansson takes it. */
void mcp_utf8_trim(char *s) { es__utf8_scrub(s); }

/* Serialises a message compactly, taking msg; an answer that could not be
 * built (NULL) becomes a fixed internal error, so that no request goes
 * unanswered. */
static char *dump(json_t *msg) {
  char *s = msg ? json_dumps(msg, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
  json_decref(msg);
  return s ? s : strdup("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":"
                        "-32603,\"message\":\"the answer could not be encoded\"}}");
}

/* {"jsonrpc":"2.0","id":id,"error":{"code","message"}}; id borrowed
 * (NULL: null). */
static char *error_reply(json_t *id, int code, const char *message) {
  char m[1024];
  snprintf(m, sizeof m, "%s", message);
  mcp_utf8_trim(m);
  message = m;
  json_t *e = json_pack("{s:s,s:O?,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id,
                        "error", "code", code, "message", message);
  if (id == NULL)
    json_object_set_new(e, "id", json_null());
  return dump(e);
}

/* {"jsonrpc":"2.0","id":id,"result":result}, taking result. */
static char *result_reply(json_t *id, json_t *result) {
  json_t *r = json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id, "result",
                        result);
  return dump(r);
}

char *mcp_too_large(const mcp *m) {
  char msg[128];
  snprintf(msg, sizeof msg, "message larger than %zu bytes: refused",
           m->cfg.max_message);
  return error_reply(NULL, INVALID_REQUEST, msg);
}

/* ---- the methods ------------------------------------------------------------ */

static json_t *initialize(mcp *m, json_t *params) {
  const char *asked = json_string_value(json_object_get(params, "protocolVersion"));
  const char *chosen = versions[0];
  for (size_t i = 0; asked && i < sizeof versions / sizeof versions[0]; i++)
    if (strcmp(asked, versions[i]) == 0)
      chosen = versions[i];
  snprintf(m->version, sizeof m->version, "%s", chosen);
  m->initialized = true;
  const char *model = es_embed_model(m->store);
  char instructions[512];
  snprintf(instructions, sizeof instructions,
           "embstore: documents with chunks and vectors in PostgreSQL. %s "
           "Deletes by id or by source and cleanup report exact counts; "
           "get_statistics says what is stored and how healthy the indexes are.",
           model ? "Texts are embedded by the configured provider: store needs "
                   "no embedding, search with query runs hybrid."
                 : "No embedding provider is configured: store needs an "
                   "embedding per document, search with query alone is a "
                   "full-text search.");
  return json_pack("{s:s,s:{s:{s:b},s:{s:b}},s:{s:s,s:s},s:s}", "protocolVersion",
                   chosen, "capabilities", "tools", "listChanged", 0,
                   "resources", "listChanged", 0, "serverInfo", "name",
                   "embstore", "version", es_version(), "instructions",
                   instructions);
}

static json_t *resources_list(void) {
  return json_pack(
      "{s:[{s:s,s:s,s:s,s:s},{s:s,s:s,s:s,s:s}]}", "resources", "uri",
      "embstore://stats", "name", "stats", "description",
      "exact counts, storage and index health (as get_statistics)", "mimeType",
      "application/json", "uri", "embstore://sources", "name", "sources",
      "description", "every source with its document and chunk counts",
      "mimeType", "application/json");
}

/* tools/call: a tool's failure is a result with isError; only an unknown
 * tool or malformed arguments are protocol errors. */
static char *tools_call(mcp *m, const mcp_config *cfg, json_t *id,
                        json_t *params, const char *raw, size_t len) {
  const char *name = json_string_value(json_object_get(params, "name"));
  json_t *args = json_object_get(params, "arguments");
  if (name == NULL)
    return error_reply(id, INVALID_PARAMS, "tools/call needs params.name");
  if (args && !json_is_object(args))
    return error_reply(id, INVALID_PARAMS, "params.arguments must be an object");
  /* The arguments' own bytes, for the library's readers. */
  span ps = {0}, as = {0};
  bool spanned = json_member_span(raw, len, "params", &ps) &&
                 json_member_span(ps.p, ps.len, "arguments", &as);
  mcp_result r = {0};
  if (!mcp_tools_call(m->store, cfg, name, args, spanned ? as.p : NULL,
                      spanned ? as.len : 0, &r)) {
    char msg[200];
    snprintf(msg, sizeof msg, "unknown tool \"%.100s\"", name);
    return error_reply(id, INVALID_PARAMS, msg);
  }
  json_t *result;
  if (r.error) {
    result = json_pack("{s:[{s:s,s:s}],s:b}", "content", "type", "text", "text",
                       r.error, "isError", 1);
    free(r.error);
  } else {
    char *text = r.text ? r.text : json_dumps(r.structured, JSON_COMPACT);
    result = json_pack("{s:[{s:s,s:s}],s:o,s:b}", "content", "type", "text",
                       "text", text ? text : "{}", "structuredContent",
                       r.structured, "isError", 0);
    free(text);
  }
  return result_reply(id, result);
}

static char *resources_read(mcp *m, const mcp_config *cfg, json_t *id,
                            json_t *params) {
  const char *uri = json_string_value(json_object_get(params, "uri"));
  if (uri == NULL)
    return error_reply(id, INVALID_PARAMS, "resources/read needs params.uri");
  char err[1024];
  bool unknown = false;
  char *text = mcp_resource_text(m->store, cfg, uri, err, sizeof err, &unknown);
  if (unknown) {
    char msg[200];
    snprintf(msg, sizeof msg, "unknown resource \"%.100s\"", uri);
    return error_reply(id, -32002, msg); /* the specification's "not found" */
  }
  if (text == NULL)
    return error_reply(id, -32603, err);
  json_t *r = json_pack("{s:[{s:s,s:s,s:s}]}", "contents", "uri", uri, "mimeType",
                        "application/json", "text", text);
  free(text);
  return result_reply(id, r);
}

char *mcp_handle(mcp *m, const char *msg, size_t len) {
  return mcp_handle_as(m, &m->cfg, msg, len);
}

char *mcp_handle_as(mcp *m, const mcp_config *cfg, const char *msg, size_t len) {
  json_error_t je;
  json_t *j = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &je);
  if (j == NULL) {
    char e[256];
    snprintf(e, sizeof e, "not JSON: %s (at byte %d)", je.text, je.position);
    return error_reply(NULL, PARSE_ERROR, e);
  }
  char *out = NULL;
  json_t *id = json_object_get(j, "id"), *params = json_object_get(j, "params");
  const char *method = json_string_value(json_object_get(j, "method"));
  const char *rpc = json_string_value(json_object_get(j, "jsonrpc"));
  bool valid_id = id == NULL || json_is_string(id) || json_is_integer(id);
  if (!json_is_object(j) || rpc == NULL || strcmp(rpc, "2.0") != 0 || !valid_id) {
    out = error_reply(valid_id ? id : NULL, INVALID_REQUEST,
                      "not a JSON-RPC 2.0 message (an object with "
                      "\"jsonrpc\":\"2.0\", a method, an id that is a string "
                      "or an integer)");
    goto done;
  }
  json_t *mv = json_object_get(j, "method");
  if (mv != NULL && method == NULL) {
    out = error_reply(id, INVALID_REQUEST, "\"method\" must be a string");
    goto done;
  }
  if (method == NULL) { /* a response to us (we send no requests), or junk */
    if (id != NULL && !json_object_get(j, "result") && !json_object_get(j, "error"))
      out = error_reply(id, INVALID_REQUEST, "a message with an id needs a method "
                        "(a request) or a result or error (a response)");
    goto done;
  }
  if (id == NULL) /* a notification (initialized, cancelled): no answer */
    goto done;
  if (params && !json_is_object(params)) {
    out = error_reply(id, INVALID_PARAMS, "params must be an object");
    goto done;
  }
  if (strcmp(method, "initialize") == 0) {
    out = result_reply(id, initialize(m, params));
  } else if (strcmp(method, "ping") == 0) {
    out = result_reply(id, json_object());
  } else if (!m->initialized) {
    out = error_reply(id, INVALID_REQUEST, "the session is not initialized: "
                      "send initialize first");
  } else if (strcmp(method, "tools/list") == 0) {
    out = result_reply(id, json_pack("{s:o}", "tools",
                                     mcp_tools_list(cfg)));
  } else if (strcmp(method, "tools/call") == 0) {
    out = tools_call(m, cfg, id, params, msg, len);
  } else if (strcmp(method, "resources/list") == 0) {
    out = result_reply(id, resources_list());
  } else if (strcmp(method, "resources/read") == 0) {
    out = resources_read(m, cfg, id, params);
  } else {
    char e[200];
    snprintf(e, sizeof e, "unknown method \"%.100s\"", method);
    out = error_reply(id, METHOD_NOT_FOUND, e);
  }
done:
  json_decref(j);
  return out;
}

/* ---- stdio -------------------------------------------------------------------- */

int mcp_run_stdio(mcp *m, FILE *in, FILE *out) {
  char *line = NULL;
  size_t cap = 0, len = 0;
  bool too_long = false;
  int c;
  /* Read byte-wise into a bounded buffer: a message longer than the bound
   * is answered once and skipped to its newline, never held. */
  for (;;) {
    c = getc(in);
    if (c == EOF || c == '\n') {
      char *answer = NULL;
      if (too_long)
        answer = mcp_too_large(m);
      else if (len > 0 && !(len == 1 && line[0] == '\r'))
        answer = mcp_handle(m, line, len);
      if (answer) {
        fputs(answer, out);
        fputc('\n', out);
        fflush(out);
        free(answer);
      }
      len = 0;
      too_long = false;
      if (c == EOF)
        break;
      continue;
    }
    if (too_long)
      continue;
    if (len + 1 > m->cfg.max_message) {
      too_long = true;
      continue;
    }
    if (len + 1 >= cap) {
      size_t ncap = cap ? cap * 2 : 4096;
      char *g = realloc(line, ncap);
      if (g == NULL) {
        too_long = true; /* answered as too large: memory is the bound */
        continue;
      }
      line = g;
      cap = ncap;
    }
    line[len++] = (char)c;
  }
  free(line);
  return 0;
}
