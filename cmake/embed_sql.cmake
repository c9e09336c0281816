# Turns the migration files into C strings at build time (nothing generated
# is checked in).  Usage: cmake -DOUT_C=... -DOUT_H=... -DSQL_FILES="a;b" -P
file(WRITE ${OUT_H} "/* generated from the sql directory by cmake/embed_sql.cmake */\n#ifndef ES_SQL_EMBED_H\n#define ES_SQL_EMBED_H\n")
file(WRITE ${OUT_C} "/* generated from the sql directory by cmake/embed_sql.cmake */\n#include \"sql_embed.h\"\n")
string(REPLACE "|" ";" SQL_FILES "${SQL_FILES}")
foreach(f ${SQL_FILES})
  get_filename_component(name ${f} NAME_WE)
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  file(APPEND ${OUT_H} "extern const char es__sql_${name}[];\n")
  file(APPEND ${OUT_C} "const char es__sql_${name}[] = {${bytes}0x00};\n")
endforeach()
file(APPEND ${OUT_H} "#endif\n")
