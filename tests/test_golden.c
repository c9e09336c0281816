/* test_golden.c - the shape of every --json output, against tests/golden. */
#include "test.h"
