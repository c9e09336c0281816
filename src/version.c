/* version.c - the library's version at run time. */
#include "embstore.h"

/* ES_VERSION as this library was built: a program linked with the shared
 * library may run with another version than its embstore.h names. */
const char *es_version(void) { return ES_VERSION; }
