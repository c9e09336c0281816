# Turns the migration files into C at build time (nothing generated is
# checked in): one array of bytes per file, es__sql_NNN_name, and the table
# es__sql_files[] of {version, name, text} in order, from which the library
# takes the list of migrations.  A new sql/NNN_name.sql is applied by the
# next build without touching C.
#
# The files must be sql/001_*.sql, sql/002_*.sql, ... with no gap and no
# repeat, named NNN_name.sql (name: a-z, 0-9, _), and begin with the line
#   -- NNN_name: what it does
# whose text after the colon is the migration's name (`embstore migrate
# --status`, embstore_migrations.name).  Anything else fails the build
# with a message naming the file.
#
# Usage: cmake -DOUT_C=... -DOUT_H=... -DSQL_FILES="a|b|..." -P embed_sql.cmake
string(REPLACE "|" ";" SQL_FILES "${SQL_FILES}")
list(SORT SQL_FILES)
list(LENGTH SQL_FILES count)
if(count EQUAL 0)
  message(FATAL_ERROR "embed_sql: no migration files (sql/NNN_name.sql) given")
endif()

set(decls "")
set(bodies "")
set(rows "")
set(expect 1)
foreach(f IN LISTS SQL_FILES)
  get_filename_component(file "${f}" NAME)
  if(NOT file MATCHES "^([0-9][0-9][0-9])_([a-z0-9_]+)\\.sql$")
    message(FATAL_ERROR "sql/${file}: a migration file is named NNN_name.sql "
                        "(three digits, then a-z, 0-9 and _)")
  endif()
  set(stem "${CMAKE_MATCH_1}_${CMAKE_MATCH_2}")
  math(EXPR version "1${CMAKE_MATCH_1} - 1000")
  if(NOT version EQUAL expect)
    message(FATAL_ERROR "sql/${file}: migration ${version} where ${expect} "
                        "was expected: migrations are numbered 001, 002, ... "
                        "in sequence, without a gap or a repeat")
  endif()
  math(EXPR expect "${expect} + 1")

  file(READ "${f}" text)
  string(REGEX MATCH "^[^\n]*" first "${text}")
  string(LENGTH "-- ${stem}: " head)
  string(SUBSTRING "${first}" 0 ${head} prefix)
  if(NOT prefix STREQUAL "-- ${stem}: ")
    message(FATAL_ERROR "sql/${file}: the first line must be "
                        "\"-- ${stem}: <what it does>\", which names the migration")
  endif()
  string(SUBSTRING "${first}" ${head} -1 name)
  string(STRIP "${name}" name)
  string(REGEX REPLACE "\\.$" "" name "${name}")
  if(name STREQUAL "")
    message(FATAL_ERROR "sql/${file}: the first line names no migration "
                        "(\"-- ${stem}: <what it does>\")")
  endif()

  file(READ "${f}" hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(HEX "${name}" name_hex)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," name_bytes "${name_hex}")
  string(APPEND decls "extern const char es__sql_${stem}[];\n")
  string(APPEND bodies "const char es__sql_${stem}[] = {${bytes}0x00};\n"
                       "static const char name_${stem}[] = {${name_bytes}0x00};\n")
  string(APPEND rows "    {${version}, name_${stem}, es__sql_${stem}},\n")
endforeach()

file(WRITE "${OUT_H}"
  "/* generated from the sql directory by cmake/embed_sql.cmake */\n"
  "#ifndef ES_SQL_EMBED_H\n#define ES_SQL_EMBED_H\n\n"
  "/* One migration file, sql/NNN_name.sql. */\n"
  "typedef struct es__sql_file {\n"
  "  int version;       /* NNN */\n"
  "  const char *name;  /* the first line's text after \"NNN_name: \" */\n"
  "  const char *text;  /* the whole file */\n"
  "} es__sql_file;\n\n"
  "#define ES__N_SQL_FILES ${count}\n"
  "/* Every migration, in order: es__sql_files[i].version == i + 1. */\n"
  "extern const es__sql_file es__sql_files[ES__N_SQL_FILES];\n\n"
  "${decls}\n#endif\n")
file(WRITE "${OUT_C}"
  "/* generated from the sql directory by cmake/embed_sql.cmake */\n"
  "#include \"sql_embed.h\"\n\n${bodies}\n"
  "const es__sql_file es__sql_files[ES__N_SQL_FILES] = {\n${rows}};\n")
