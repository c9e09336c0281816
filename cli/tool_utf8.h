/* tool_utf8.h - UTF-8 validation for the tool.
 *
 * The tool uses only include/embstore.h of the library.  The one helper it
 * shares, UTF-8 validation, it compiles in as its own copy of src/utf8.c
 * (see the CLI's source list in CMakeLists.txt), the way curl's tool
 * compiles curlx: one implementation, no private symbol reached through
 * the library (a shared libembstore exports none).  src/utf8.c depends on
 * libc alone. */
#ifndef EMBSTORE_TOOL_UTF8_H
#define EMBSTORE_TOOL_UTF8_H

#include "../src/utf8.h"

#endif
