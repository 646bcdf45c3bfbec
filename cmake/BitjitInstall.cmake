# `cmake --install`: the drivers (bitjit, bitjitc), libbitjit (shared and static), bitjit.h, the
# bundled packed model (an installed bitjit's default model), a CMake package and pkg-config files.
#
#   PREFIX/bin/bitjit, bitjitc
#   PREFIX/lib/libbitjit.so.0.1.0               the shared library (SONAME libbitjit.so.0, symbols
#   PREFIX/lib/libbitjit.so.0 -> .so.0.1.0       versioned BITJIT_0), its runtime link and its
#   PREFIX/lib/libbitjit.so -> libbitjit.so.0    development link (runtime/CMakeLists.txt)
#   PREFIX/lib/libbitjit.a                      every internal layer, prelinked, only bitjit_* global
#   PREFIX/include/bitjit.h
#   PREFIX/lib/cmake/bitjit/                    find_package(bitjit): bitjit::bitjit (shared),
#                                                bitjit::bitjit_static
#   PREFIX/lib/pkgconfig/bitjit.pc              cc prog.c $(pkg-config --cflags --libs bitjit)
#   PREFIX/lib/pkgconfig/bitjit-static.pc       cc prog.c $(pkg-config --cflags --libs bitjit-static)
#   PREFIX/share/bitjit/models/kjv-bitnet-11m/packed
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS bitjit bitjitc RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS bitjit_shared bitjit_static EXPORT bitjitTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/runtime/bitjit.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/models/kjv-bitnet-11m/packed
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bitjit/models/kjv-bitnet-11m)
install(FILES ${PROJECT_SOURCE_DIR}/models/kjv-bitnet-11m/README.md
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bitjit/models/kjv-bitnet-11m)

set(BJ_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/bitjit)
install(EXPORT bitjitTargets NAMESPACE bitjit:: DESTINATION ${BJ_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/bitjitConfig.cmake.in
                              ${CMAKE_CURRENT_BINARY_DIR}/bitjitConfig.cmake INSTALL_DESTINATION ${BJ_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/bitjitConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/bitjitConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/bitjitConfigVersion.cmake
        DESTINATION ${BJ_CMAKE_DIR})

# pkg-config: relocatable (prefix relative to the .pc file, so `cmake --install --prefix P` and
# DESTDIR both work); the static archive's own dependencies by their pkg-config names, and LLVM
# as this LLVM's llvm-config says to link it (BJ_STATIC_LIBS_PC: runtime/CMakeLists.txt, from
# BJ_LLVM_LINK_PC in cmake/BitjitDeps.cmake).
file(RELATIVE_PATH BJ_PC_TO_PREFIX /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
string(REGEX REPLACE "/$" "" BJ_PC_TO_PREFIX "${BJ_PC_TO_PREFIX}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/bitjit.pc.in ${CMAKE_CURRENT_BINARY_DIR}/bitjit.pc @ONLY)
configure_file(${PROJECT_SOURCE_DIR}/cmake/bitjit-static.pc.in ${CMAKE_CURRENT_BINARY_DIR}/bitjit-static.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/bitjit.pc ${CMAKE_CURRENT_BINARY_DIR}/bitjit-static.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
