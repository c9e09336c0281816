/* status.c - status codes, their names and messages, metric names. */
#include <string.h>

#include "embstore.h"

/* Returns the static description of a status code. */
const char *es_strerror(es_status status) {
  switch (status) {
#define ES__STRERROR(name, num, msg) \
  case ES_##name:                    \
    return msg;
    ES_ERRNO_MAP(ES__STRERROR)
#undef ES__STRERROR
  }
  return "unknown status";
}

/* Returns the static symbolic name of a status code. */
const char *es_status_name(es_status status) {
  switch (status) {
#define ES__STATUS_NAME(name, num, msg) \
  case ES_##name:                       \
    return "ES_" #name;
    ES_ERRNO_MAP(ES__STATUS_NAME)
#undef ES__STATUS_NAME
  }
  return "ES_UNKNOWN";
}

static const char *const replica_state_names[] = {"ok", "behind", "lagging",
                                                  "down", "invalid"};

const char *es_replica_state_name(es_replica_state state) {
  if ((unsigned)state >= sizeof replica_state_names / sizeof replica_state_names[0])
    return "unknown";
  return replica_state_names[state];
}

static const char *const metric_names[] = {"cosine", "l2", "ip"};

/* Returns "cosine", "l2" or "ip". */
const char *es_metric_name(es_metric metric) {
  if ((unsigned)metric >= sizeof metric_names / sizeof metric_names[0])
    return "unknown";
  return metric_names[metric];
}

/* Parses a metric name. */
es_status es_metric_parse(const char *name, es_metric *metric) {
  if (name == NULL || metric == NULL)
    return ES_EINVAL;
  for (size_t i = 0; i < sizeof metric_names / sizeof metric_names[0]; i++) {
    if (strcmp(name, metric_names[i]) == 0) {
      *metric = (es_metric)i;
      return ES_OK;
    }
  }
  return ES_EINVAL;
}

static const char *const mode_names[] = {"auto", "vector", "text", "hybrid"};

const char *es_search_mode_name(es_search_mode mode) {
  if ((unsigned)mode >= sizeof mode_names / sizeof mode_names[0])
    return "unknown";
  return mode_names[mode];
}

es_status es_search_mode_parse(const char *name, es_search_mode *mode) {
  if (name == NULL || mode == NULL)
    return ES_EINVAL;
  for (size_t i = 0; i < sizeof mode_names / sizeof mode_names[0]; i++) {
    if (strcmp(name, mode_names[i]) == 0) {
      *mode = (es_search_mode)i;
      return ES_OK;
    }
  }
  return ES_EINVAL;
}
