# cmake/install.cmake - what `cmake --install` puts where (GNUInstallDirs):
#   bin/embstore                      the tool
#   lib/libembstore.so.X.Y.Z          the shared library (SONAME
#   lib/libembstore.so.N, .so         libembstore.so.N) and its links
#   lib/libembstore.a                 the static library
#   include/embstore.h, embstore_version.h
#   lib/pkgconfig/embstore.pc
# The tool links the shared library and finds it through its RUNPATH
# ($ORIGIN/../lib; none when lib is a system directory), so a prefix chosen
# at install time (cmake --install --prefix) works too.
install(TARGETS embstore embstore_shared embstore_cli
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/include/embstore.h
              ${ES_GEN_INCLUDE_DIR}/embstore_version.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/cmake/install_pc.cmake.in
               ${CMAKE_CURRENT_BINARY_DIR}/install_pc.cmake @ONLY)
install(SCRIPT ${CMAKE_CURRENT_BINARY_DIR}/install_pc.cmake)
