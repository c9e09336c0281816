/* harness.h - state shared by the runner and the harness. */
#ifndef EMBSTORE_HARNESS_H
#define EMBSTORE_HARNESS_H

typedef struct th_state {
  char conninfo[1024];     /* this test's database ("" for unit tests) */
  char admin[1024];        /* the cluster's maintenance database */
  char cluster_home[512];
  char tmpdir[512];        /* this test's temporary directory */
} th_state;

extern th_state th__state;

#endif
