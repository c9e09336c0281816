/* body.h - reading a JSON request body: parsed by jansson (the structure,
 * the byte offset of an error), members checked by name and type. */
#ifndef EMBSTORE_BODY_H
#define EMBSTORE_BODY_H

#include <jansson.h>
#include <stdbool.h>

#include "http.h"
#include "json_spans.h"

/* The request body as a JSON object (an empty body is {}), or NULL when
 * it is not one: then rq is answered 400 naming the byte offset. */
json_t *body_object(request *rq);
/* As body_object(), but when the body is valid with the value of member
 * member a valid vector (es_vector_parse_json, every value finite),
 * jansson never reads that value: it parses the body with the value
 * replaced by null, and the vector is handed back in *vec (es_vector_free)
 * of *dim values.  Otherwise (*vec NULL) it is body_object() itself, its
 * answers and errors the same: a query vector of 384 numbers costs jansson
 * more than a cached search does. */
json_t *body_object_lifting(request *rq, const char *member, float **vec,
                            size_t *dim);
/* Answers 400 and returns false when obj has a member not in the
 * NULL-terminated list known. */
bool body_only(request *rq, json_t *obj, const char *const *known);
/* Member name as a string (NULL when absent); *ok false (rq answered 400)
 * when it is there but not a string. */
const char *body_string(request *rq, json_t *obj, const char *name, bool *ok);
/* Member name as an integer in lo..hi, def when absent. */
long long body_int(request *rq, json_t *obj, const char *name, long long lo,
                   long long hi, long long def, bool *ok);
/* Member name, a JSON object, as the client wrote it (a new string), for
 * the library's own reader (filters); NULL when absent or null, and then
 * *ok false (rq answered 400) when it is there but not an object. */
char *body_object_text(request *rq, json_t *obj, const char *name, bool *ok);
/* Member name as a boolean, def when absent. */
bool body_bool(request *rq, json_t *obj, const char *name, bool def, bool *ok);

#endif
