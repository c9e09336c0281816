# cmake/flags.cmake - the compile and link flags of embstore's own targets.
#
# Every flag goes on our targets through embstore_target_flags(), never
# through add_compile_options(): a project that add_subdirectory()s embstore
# keeps its own flags.  Each warning flag is tried first (as libuv does), so
# a compiler that lacks one (clang 14 has no -Wformat-truncation) is not
# given it.
include(CheckCCompilerFlag)
include(CheckLinkerFlag)

set(EMBSTORE_C_FLAGS)      # compiling our sources
set(EMBSTORE_LINK_FLAGS)   # linking our programs and the shared library;
                           # a program linking a sanitized library needs them
foreach(flag
    -Wall -Wextra -Wshadow -Wstrict-prototypes -Wformat=2
    -Wno-format-nonliteral
    # messages go to fixed buffers and are cut on purpose
    -Wno-format-truncation)
  # gcc takes any -Wno-X without a word, so ask about -WX instead.
  string(REGEX REPLACE "^-Wno-" "-W" probe "${flag}")
  string(MAKE_C_IDENTIFIER "ES_CC_HAS${probe}" var)
  check_c_compiler_flag("${probe}" ${var})
  if(${var})
    list(APPEND EMBSTORE_C_FLAGS ${flag})
  endif()
endforeach()
# Off by default (as curl's CURL_WERROR): a newer compiler's new warning
# must not stop a packager's build.  scripts/build and CI turn it on.
if(EMBSTORE_WERROR)
  list(APPEND EMBSTORE_C_FLAGS -Werror)
endif()

# The sanitizer and fuzzing builds assert the library's internal invariants
# whatever the build type (-UNDEBUG comes after the build type's -DNDEBUG).
if(EMBSTORE_SANITIZE OR EMBSTORE_TSAN OR EMBSTORE_FUZZ)
  list(APPEND EMBSTORE_C_FLAGS -UNDEBUG)
endif()
if(EMBSTORE_SANITIZE)
  list(APPEND EMBSTORE_C_FLAGS -fsanitize=address,undefined
       -fno-omit-frame-pointer -fno-sanitize-recover=all)
  list(APPEND EMBSTORE_LINK_FLAGS -fsanitize=address,undefined)
endif()
if(EMBSTORE_TSAN)
  list(APPEND EMBSTORE_C_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
  list(APPEND EMBSTORE_LINK_FLAGS -fsanitize=thread)
endif()
if(EMBSTORE_FUZZ)
  # Everything instrumented for libFuzzer, ASan and UBSan (clang only), so
  # that libFuzzer is steered by the library's own coverage.
  list(APPEND EMBSTORE_C_FLAGS -fsanitize=fuzzer-no-link,address,undefined
       -fno-omit-frame-pointer -fno-sanitize-recover=all)
  list(APPEND EMBSTORE_LINK_FLAGS -fsanitize=address,undefined)
endif()

# The shared library must name every library it uses (libpq, libm, ...).
# Not under a sanitizer: clang links its runtime into programs only.
set(EMBSTORE_SHARED_LINK_FLAGS)
if(NOT EMBSTORE_SANITIZE AND NOT EMBSTORE_TSAN AND NOT EMBSTORE_FUZZ)
  check_linker_flag(C -Wl,--no-undefined ES_LD_HAS_NO_UNDEFINED)
  if(ES_LD_HAS_NO_UNDEFINED)
    list(APPEND EMBSTORE_SHARED_LINK_FLAGS -Wl,--no-undefined)
  endif()
endif()

# Puts our language level and flags on one of our targets.
function(embstore_target_flags target)
  set_target_properties(${target} PROPERTIES
    C_STANDARD 11 C_STANDARD_REQUIRED ON
    C_EXTENSIONS ON)  # _GNU_SOURCE bits: asprintf, pipe2, close_range
  target_compile_options(${target} PRIVATE ${EMBSTORE_C_FLAGS})
  target_link_options(${target} PRIVATE ${EMBSTORE_LINK_FLAGS})
endfunction()
