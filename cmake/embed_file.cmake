# Turns one file into C at build time: const char NAME[] (NUL-terminated)
# and const unsigned long NAME_len.  Nothing generated is checked in.
#
# Usage: cmake -DIN=file -DOUT=file.c -DNAME=symbol -P embed_file.cmake
file(READ "${IN}" hex HEX)
file(SIZE "${IN}" size)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)"
       "\\1\n  " bytes "${bytes}")
file(WRITE "${OUT}" "/* generated from ${IN} by cmake/embed_file.cmake */\n"
     "const char ${NAME}[] = {\n  ${bytes}0x00};\n"
     "const unsigned long ${NAME}_len = ${size};\n")
