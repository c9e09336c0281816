/* test_install.c - embstore as others get it: `cmake --install` into a
 * temporary prefix gives a shared library that exports only the es_ API,
 * the static library, the header, the tool and a pkg-config file that a
 * program outside the tree builds with; and the source tree builds as part
 * of another CMake project (add_subdirectory) without jansson and without
 * its flags reaching that project's targets.
 *
 * Everything here is real: this build tree is installed with the cmake
 * that configured it, the programs are compiled with the compiler (and
 * sanitizer flags) of this build and run against the test's database. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

/* A program of a third party's: the version, a message, and a store with
 * one document that a search finds (argv[1] is the conninfo). */
static const char consumer_c[] =
    "#include <embstore.h>\n"
    "#include <stdio.h>\n"
    "#include <string.h>\n"
    "\n"
    "int main(int argc, char **argv) {\n"
    "  es_store *s = NULL;\n"
    "  es_results *r = NULL;\n"
    "  float v[3] = {1, 0, 0};\n"
    "  es_doc d = {.id = \"doc-1\", .text = \"hello\", .embedding = v, .dim = 3};\n"
    "  es_search_params p;\n"
    "  if (argc != 2 || strcmp(es_version(), ES_VERSION) != 0)\n"
    "    return 1;\n"
    "  es_search_params_init(&p);\n"
    "  p.vector = v;\n"
    "  p.dim = 3;\n"
    "  p.k = 5;\n"
    "  printf(\"version %s %d.%d.%d\\n\", es_version(), ES_VERSION_MAJOR,\n"
    "         ES_VERSION_MINOR, ES_VERSION_PATCH);\n"
    "  printf(\"strerror %s\\n\", es_strerror(ES_EINVAL));\n"
    "  es_status rc = es_open(argv[1], &s);\n"
    "  if (rc == ES_OK)\n"
    "    rc = es_init(s, 3, ES_METRIC_COSINE, NULL);\n"
    "  if (rc == ES_OK)\n"
    "    rc = es_upsert(s, &d, NULL);\n"
    "  if (rc == ES_OK)\n"
    "    rc = es_search(s, &p, &r);\n"
    "  if (rc != ES_OK) {\n"
    "    fprintf(stderr, \"%s: %s\\n\", es_status_name(rc), es_errmsg(s));\n"
    "    es_close(s);\n"
    "    return 1;\n"
    "  }\n"
    "  printf(\"hits %zu %s\\n\", r->n, r->n ? r->hits[0].id : \"-\");\n"
    "  es_results_free(r);\n"
    "  es_close(s);\n"
    "  return 0;\n"
    "}\n";

/* What the consumer prints against a fresh database. */
static const char consumer_out[] =
    "version " EMBSTORE_PROJECT_VERSION " " EMBSTORE_PROJECT_VERSION "\n"
    "strerror invalid argument\n"
    "hits 1 doc-1\n";

/* Reads a whole file (malloc'd, NUL-terminated); fails the test on error. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    FAIL("cannot read %s: %s", path, strerror(errno));
  char *buf = NULL;
  size_t len = 0, cap = 0, n;
  char tmp[8192];
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
    if (len + n + 1 > cap) {
      cap = (len + n + 1) * 2;
      buf = realloc(buf, cap);
      if (buf == NULL)
        FAIL("out of memory");
    }
    memcpy(buf + len, tmp, n);
    len += n;
  }
  fclose(f);
  if (buf == NULL && (buf = malloc(1)) == NULL)
    FAIL("out of memory");
  buf[len] = '\0';
  return buf;
}

/* Writes text to path; fails the test on error. */
static void spit(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
    FAIL("cannot write %s: %s", path, strerror(errno));
}

/* Runs argv (argv[0] is looked up on PATH unless it holds a slash) with
 * the "NAME=value" strings of env (NULL-terminated, or NULL) added to the
 * environment; standard output and error both go to the returned text
 * (malloc'd).  Fails the test, showing the command and what it printed,
 * unless it exits 0. */
static char *run(const char *const *env, const char *const *argv) {
  static int seq;
  char log[4096];
  snprintf(log, sizeof log, "%s/run-%d.log", th_tmpdir(), ++seq);
  int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0)
    FAIL("cannot create %s: %s", log, strerror(errno));
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0)
    FAIL("fork: %s", strerror(errno));
  if (pid == 0) {
    int in = open("/dev/null", O_RDONLY);
    dup2(in, 0);
    dup2(fd, 1);
    dup2(fd, 2);
    for (size_t i = 0; env && env[i]; i++)
      putenv((char *)env[i]);
    execvp(argv[0], (char *const *)argv);
    dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(fd);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR)
      FAIL("waitpid: %s", strerror(errno));
  char *out = slurp(log);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    char cmd[4096] = "";
    for (size_t i = 0; argv[i]; i++)
      snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "%s%s",
               i ? " " : "", argv[i]);
    size_t len = strlen(out);
    FAIL("`%s` failed (%s %d); it printed:\n%s", cmd,
         WIFEXITED(st) ? "exit" : "signal",
         WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
         len > 6000 ? out + len - 6000 : out);
  }
  return out;
}

#define RUN(env, ...) run(env, (const char *const[]){__VA_ARGS__, NULL})

/* The tools this file needs, or a failure that says which is missing. */
static void need_tools(void) {
  if (access(EMBSTORE_CMAKE, X_OK) != 0)
    FAIL("cmake (%s, which configured this build) is not there: the "
         "install tests run `cmake --install` and configure a project",
         EMBSTORE_CMAKE);
  if (EMBSTORE_PKG_CONFIG[0] == '\0' || access(EMBSTORE_PKG_CONFIG, X_OK) != 0)
    FAIL("pkg-config (\"%s\") is not there: the install test builds a "
         "program with `pkg-config --cflags --libs embstore` (apt-get install "
         "pkg-config)", EMBSTORE_PKG_CONFIG);
  if (access(EMBSTORE_CC, X_OK) != 0)
    FAIL("the C compiler of this build (%s) is not there", EMBSTORE_CC);
}

/* Splits words (separated by blanks) into argv from *n on; the words stay
 * in words, which is modified. */
static void add_words(const char **argv, size_t *n, size_t cap, char *words) {
  for (char *w = strtok(words, " \t\n"); w; w = strtok(NULL, " \t\n")) {
    if (*n + 1 >= cap)
      FAIL("too many words in \"%s\"", words);
    argv[(*n)++] = w;
  }
  argv[*n] = NULL;
}

/* path must exist; fails the test naming it otherwise. */
static void assert_exists(const char *dir, const char *name) {
  char path[4096];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (lstat(path, &st) != 0)
    FAIL("%s was not installed: %s", path, strerror(errno));
}

/* Every dynamic symbol library defines must be es_ and not es__ (nm -D);
 * the ones a program needs first must be among them. */
static void assert_exports_only_es(const char *library) {
  char *out = RUN(NULL, "nm", "-D", "--defined-only", library);
  char *lines = strdup(out);
  char bad[4096] = "";
  int n = 0;
  if (lines == NULL)
    FAIL("out of memory");
  for (char *line = strtok(lines, "\n"); line; line = strtok(NULL, "\n")) {
    const char *name = strrchr(line, ' ');
    name = name ? name + 1 : line;
    n++;
    if (strncmp(name, "es_", 3) != 0 || strncmp(name, "es__", 4) == 0)
      snprintf(bad + strlen(bad), sizeof bad - strlen(bad), " %s", name);
  }
  free(lines);
  if (bad[0] != '\0')
    FAIL("%s exports symbols outside the es_ API:%s", library, bad);
  const char *api[] = {"es_version", "es_strerror", "es_open", "es_init",
                       "es_search_params_init", "es_search", "es_close"};
  for (size_t i = 0; i < sizeof api / sizeof api[0]; i++) {
    char want[64];
    snprintf(want, sizeof want, " %s\n", api[i]);
    ASSERT_CONTAINS(out, want);
  }
  ASSERT_INT_GE(n, 40);
  free(out);
}

/* The NEEDED and SONAME entries of an ELF file (readelf -d). */
static char *dynamic_section(const char *file) {
  return RUN(NULL, "readelf", "-d", file);
}

TEST(version_macros_es_version_and_the_tool_agree_with_the_project_version) {
  char dots[64];
  snprintf(dots, sizeof dots, "%d.%d.%d", ES_VERSION_MAJOR, ES_VERSION_MINOR,
           ES_VERSION_PATCH);
  ASSERT_STR_EQ(dots, EMBSTORE_PROJECT_VERSION);
  ASSERT_STR_EQ(ES_VERSION, EMBSTORE_PROJECT_VERSION);
  ASSERT_STR_EQ(es_version(), EMBSTORE_PROJECT_VERSION);
  th_proc p = th_cli(NULL, (const char *const[]){"--version", NULL});
  ASSERT_INT_EQ(p.status, 0);
  ASSERT_STR_EQ(p.out, "embstore " EMBSTORE_PROJECT_VERSION "\n");
  th_proc_free(&p);
}

TEST(install_gives_a_shared_library_of_es_symbols_a_pc_file_and_the_tool) {
  need_tools();
  char prefix[4096], lib[4096], pcdir[4096], so[4096], env_pc[4200];
  snprintf(prefix, sizeof prefix, "%s/prefix", th_tmpdir());
  snprintf(lib, sizeof lib, "%s/%s", prefix, EMBSTORE_INSTALL_LIBDIR);
  snprintf(pcdir, sizeof pcdir, "%s/pkgconfig", lib);
  snprintf(so, sizeof so, "%s/libembstore.so.%s", lib, EMBSTORE_SOVERSION);
  snprintf(env_pc, sizeof env_pc, "PKG_CONFIG_PATH=%s", pcdir);
  free(RUN(NULL, EMBSTORE_CMAKE, "--install", EMBSTORE_BUILD_DIR, "--prefix",
           prefix));

  const char *files[] = {
      EMBSTORE_INSTALL_BINDIR "/embstore",
      EMBSTORE_INSTALL_INCLUDEDIR "/embstore.h",
      EMBSTORE_INSTALL_INCLUDEDIR "/embstore_version.h",
      EMBSTORE_INSTALL_LIBDIR "/libembstore.a",
      EMBSTORE_INSTALL_LIBDIR "/libembstore.so",
      EMBSTORE_INSTALL_LIBDIR "/libembstore.so." EMBSTORE_SOVERSION,
      EMBSTORE_INSTALL_LIBDIR "/libembstore.so." EMBSTORE_PROJECT_VERSION,
      EMBSTORE_INSTALL_LIBDIR "/pkgconfig/embstore.pc"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    assert_exists(prefix, files[i]);

  /* The installed tool links the installed shared library, which it finds
   * from where it is (the build tree's RUNPATH is gone). */
  char tool[4200];
  snprintf(tool, sizeof tool, "%s/%s/embstore", prefix, EMBSTORE_INSTALL_BINDIR);
  char *out = dynamic_section(tool);
  ASSERT_CONTAINS(out, "Shared library: [libembstore.so." EMBSTORE_SOVERSION "]");
  ASSERT_CONTAINS(out, "Library runpath: [$ORIGIN/");
  ASSERT_NOT_CONTAINS(out, EMBSTORE_BUILD_DIR);
  free(out);
  out = RUN(NULL, tool, "--version");
  ASSERT_STR_EQ(out, "embstore " EMBSTORE_PROJECT_VERSION "\n");
  free(out);

  assert_exports_only_es(so);
  out = dynamic_section(so);
  ASSERT_CONTAINS(out, "Library soname: [libembstore.so." EMBSTORE_SOVERSION "]");
  free(out);

  /* pkg-config: the prefix it was installed into, and the private needs
   * of a static link. */
  const char *env[] = {env_pc, NULL};
  out = RUN(env, EMBSTORE_PKG_CONFIG, "--modversion", "embstore");
  ASSERT_STR_EQ(out, EMBSTORE_PROJECT_VERSION "\n");
  free(out);
  out = RUN(env, EMBSTORE_PKG_CONFIG, "--variable=libdir", "embstore");
  char want[4200];
  snprintf(want, sizeof want, "%s\n", lib);
  ASSERT_STR_EQ(out, want);
  free(out);
  out = RUN(env, EMBSTORE_PKG_CONFIG, "--static", "--libs", "embstore");
  ASSERT_CONTAINS(out, "-lembstore");
  ASSERT_CONTAINS(out, "-lpq");
  ASSERT_CONTAINS(out, "-lpthread");
  ASSERT_CONTAINS(out, "-lm");
  free(out);

  /* A program outside the tree, built the way its README would say. */
  char src[4200], prog[4200], rpath[4200];
  snprintf(src, sizeof src, "%s/consumer.c", th_tmpdir());
  snprintf(prog, sizeof prog, "%s/consumer", th_tmpdir());
  snprintf(rpath, sizeof rpath, "-Wl,-rpath,%s", lib);
  spit(src, consumer_c);
  char *flags = RUN(env, EMBSTORE_PKG_CONFIG, "--cflags", "--libs", "embstore");
  ASSERT_CONTAINS(flags, "-lembstore");
  char consumer_flags[] = EMBSTORE_CONSUMER_FLAGS;
  const char *argv[128] = {EMBSTORE_CC, "-std=c11", "-Wall", "-Wextra",
                           "-Wpedantic", "-Werror", src, "-o", prog, rpath};
  size_t n = 10;
  add_words(argv, &n, 128, consumer_flags);
  add_words(argv, &n, 128, flags);
  free(run(NULL, argv));
  free(flags);

  /* It uses the shared library, not the static one beside it. */
  out = dynamic_section(prog);
  ASSERT_CONTAINS(out, "Shared library: [libembstore.so." EMBSTORE_SOVERSION "]");
  free(out);
  out = RUN(NULL, prog, th_conninfo());
  ASSERT_STR_EQ(out, consumer_out);
  free(out);

  /* The installed tool finds what the program stored. */
  out = RUN(NULL, tool, "--db", th_conninfo(), "search", "--vector", "[1,0,0]");
  ASSERT_CONTAINS(out, "doc-1");
  free(out);
}

/* An outer project's CMakeLists.txt: embstore as a subdirectory, a program
 * linking its target, and the compile commands to look at afterwards. */
static const char outer_cmake[] =
    "cmake_minimum_required(VERSION 3.18)\n"
    "project(outer C)\n"
    "set(CMAKE_EXPORT_COMPILE_COMMANDS ON)\n"
    "add_subdirectory(\"${EMBSTORE_SRC}\" embstore)\n"
    "add_executable(consumer consumer.c)\n"
    "target_link_libraries(consumer PRIVATE embstore)\n";

/* A pkg-config directory with every module of the default search path but
 * jansson, so that a configure that asks for jansson fails. */
static void pkg_config_without_jansson(const char *dir) {
  char *path = RUN(NULL, EMBSTORE_PKG_CONFIG, "--variable=pc_path", "pkg-config");
  path[strcspn(path, "\n")] = '\0';
  if (mkdir(dir, 0700) != 0)
    FAIL("mkdir %s: %s", dir, strerror(errno));
  for (char *d = strtok(path, ":"); d; d = strtok(NULL, ":")) {
    DIR *dh = opendir(d);
    for (struct dirent *e; dh && (e = readdir(dh)) != NULL;) {
      size_t len = strlen(e->d_name);
      if (len < 4 || strcmp(e->d_name + len - 3, ".pc") != 0 ||
          strcmp(e->d_name, "jansson.pc") == 0)
        continue;
      char from[4096], to[4096];
      snprintf(from, sizeof from, "%s/%s", d, e->d_name);
      snprintf(to, sizeof to, "%s/%s", dir, e->d_name);
      /* the first directory that has a module wins, as in pkg-config */
      if (symlink(from, to) != 0 && errno != EEXIST)
        FAIL("symlink %s: %s", to, strerror(errno));
    }
    if (dh)
      closedir(dh);
  }
  free(path);
}

/* The compile command of the first entry of compile_commands.json whose
 * file ends in suffix (malloc'd); fails the test when there is none. */
static char *compile_command(const char *json, const char *suffix) {
  char key[256];
  snprintf(key, sizeof key, "%s\"", suffix);
  for (const char *e = strchr(json, '{'); e; e = strchr(e + 1, '{')) {
    const char *end = strchr(e, '}');
    const char *f = strstr(e, "\"file\"");
    if (end == NULL || f == NULL || f > end)
      continue;
    const char *hit = strstr(f, key);
    if (hit != NULL && hit < end)
      return strndup(e, (size_t)(end - e));
  }
  FAIL("no compile command for *%s in compile_commands.json", suffix);
}

TEST(embstore_builds_inside_another_cmake_project_without_jansson_or_its_flags) {
  need_tools();
  char dir[4096], build[4200], pcdir[4200], env_pc[4300], def_src[4300];
  snprintf(dir, sizeof dir, "%s/outer", th_tmpdir());
  snprintf(build, sizeof build, "%s/build", dir);
  snprintf(pcdir, sizeof pcdir, "%s/pkgconfig", th_tmpdir());
  snprintf(env_pc, sizeof env_pc, "PKG_CONFIG_LIBDIR=%s", pcdir);
  snprintf(def_src, sizeof def_src, "-DEMBSTORE_SRC=%s", EMBSTORE_SOURCE_DIR);
  if (mkdir(dir, 0700) != 0)
    FAIL("mkdir %s: %s", dir, strerror(errno));
  char path[4300];
  snprintf(path, sizeof path, "%s/CMakeLists.txt", dir);
  spit(path, outer_cmake);
  snprintf(path, sizeof path, "%s/consumer.c", dir);
  spit(path, consumer_c);
  pkg_config_without_jansson(pcdir);

  const char *env[] = {env_pc, NULL};
  free(RUN(env, EMBSTORE_CMAKE, "-S", dir, "-B", build, def_src,
           "-DCMAKE_C_COMPILER=" EMBSTORE_CC));
  free(RUN(env, EMBSTORE_CMAKE, "--build", build, "-j", "2"));

  /* Our flags stay on our targets: the outer program is compiled without
   * them, the library with them. */
  snprintf(path, sizeof path, "%s/compile_commands.json", build);
  char *json = slurp(path);
  char *outer = compile_command(json, "/consumer.c");
  char *ours = compile_command(json, "/src/store.c");
  ASSERT_CONTAINS(ours, "-Wshadow");
  ASSERT_CONTAINS(ours, "-fvisibility=hidden");
  ASSERT_NOT_CONTAINS(outer, "-Wshadow");
  ASSERT_NOT_CONTAINS(outer, "-Wextra");
  ASSERT_NOT_CONTAINS(outer, "-fvisibility");
  ASSERT_NOT_CONTAINS(outer, "-std=");
  free(outer);
  free(ours);
  free(json);

  /* No test binary and no jansson were asked for, and the tool built. */
  snprintf(path, sizeof path, "%s/embstore/tests/embstore-tests", build);
  ASSERT_INT_EQ(access(path, F_OK), -1);
  snprintf(path, sizeof path, "%s/embstore/embstore", build);
  char *out = RUN(NULL, path, "--version");
  ASSERT_STR_EQ(out, "embstore " EMBSTORE_PROJECT_VERSION "\n");
  free(out);

  snprintf(path, sizeof path, "%s/consumer", build);
  out = RUN(NULL, path, th_conninfo());
  ASSERT_STR_EQ(out, consumer_out);
  free(out);
}
