# External dependencies, all from Debian's apt (see README.md for the package names).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
pkg_check_modules(JANSSON REQUIRED IMPORTED_TARGET jansson)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
pkg_check_modules(FFI REQUIRED IMPORTED_TARGET libffi)
# libmicrohttpd: the HTTP server of `bitjit serve` (runtime/server/).
pkg_check_modules(MICROHTTPD REQUIRED IMPORTED_TARGET libmicrohttpd)
# libedit (BSD licence): line editing and history in `bitjit chat` on a terminal (runtime/cli/lineedit.c).
pkg_check_modules(LIBEDIT REQUIRED IMPORTED_TARGET libedit)
pkg_check_modules(CRITERION IMPORTED_TARGET criterion)
find_path(XXHASH_INCLUDE_DIR xxhash.h REQUIRED)
find_library(XXHASH_LIBRARY xxhash REQUIRED)

# LLVM: 19 is the baseline, 22 is kept working. -DBJ_LLVM_VERSION=22 picks the other one.
set(BJ_LLVM_VERSION 19 CACHE STRING "LLVM major version to build against")
# (LLVMConfigVersion only accepts an exact major.minor, so find by path and check the major.)
find_package(LLVM REQUIRED CONFIG NO_DEFAULT_PATH
             PATHS /usr/lib/llvm-${BJ_LLVM_VERSION}/lib/cmake/llvm /usr/lib/llvm-${BJ_LLVM_VERSION}/cmake)
if(NOT LLVM_VERSION_MAJOR EQUAL BJ_LLVM_VERSION)
  message(FATAL_ERROR "bitjit: wanted LLVM ${BJ_LLVM_VERSION}, found ${LLVM_PACKAGE_VERSION} in ${LLVM_DIR}")
endif()
message(STATUS "bitjit: LLVM ${LLVM_PACKAGE_VERSION} from ${LLVM_DIR}")
add_library(bj_llvm INTERFACE)
target_include_directories(bj_llvm SYSTEM INTERFACE ${LLVM_INCLUDE_DIRS})
separate_arguments(_llvm_defs NATIVE_COMMAND "${LLVM_DEFINITIONS}")
target_compile_definitions(bj_llvm INTERFACE ${_llvm_defs})
# -DBJ_LLVM_STATIC=ON links LLVM's static component libraries instead of libLLVM.so, so the
# binaries run on a machine without LLVM 19 (e.g. the device machine used for thread scaling).
option(BJ_LLVM_STATIC "Link LLVM statically (for running on machines without LLVM ${BJ_LLVM_VERSION})" OFF)
if(BJ_LLVM_STATIC)
  # Debian's LLVMExports.cmake names a zstd target it does not define, so ask llvm-config.
  find_program(BJ_LLVM_CONFIG llvm-config PATHS ${LLVM_TOOLS_BINARY_DIR} NO_DEFAULT_PATH REQUIRED)
  execute_process(COMMAND ${BJ_LLVM_CONFIG} --link-static --libfiles core orcjit passes x86 native
                  OUTPUT_VARIABLE _llvm_libs OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
  separate_arguments(_llvm_libs UNIX_COMMAND "${_llvm_libs}")
  find_library(_zstd NAMES zstd libzstd.so.1 REQUIRED)  # the runtime library is enough
  # The system libraries static LLVM needs, less z3 and libxml2 (used by parts bitjit never links).
  target_link_libraries(bj_llvm INTERFACE -Wl,--start-group ${_llvm_libs} -Wl,--end-group
                        -static-libstdc++ stdc++ ${_zstd} z rt dl m)
else()
  target_link_libraries(bj_llvm INTERFACE LLVM)
endif()

# How a program that links libbitjit.a links LLVM, for bitjit-static.pc and bitjit::bitjit_static:
# asked of this LLVM's llvm-config at configure time (its -L directory and library names: -lLLVM-19
# for the shared library, the component archives with BJ_LLVM_STATIC), never a file path that
# belongs to one machine's LLVM install.
find_program(BJ_LLVM_CONFIG llvm-config PATHS ${LLVM_TOOLS_BINARY_DIR} NO_DEFAULT_PATH REQUIRED)
if(BJ_LLVM_STATIC)
  set(_llvm_cfg_args --link-static --ldflags --libs core orcjit passes x86 native)
else()
  set(_llvm_cfg_args --link-shared --ldflags --libs)
endif()
execute_process(COMMAND ${BJ_LLVM_CONFIG} ${_llvm_cfg_args} OUTPUT_VARIABLE _llvm_link
                OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
string(REGEX REPLACE "[ \t\r\n]+" " " _llvm_link "${_llvm_link}")
string(STRIP "${_llvm_link}" _llvm_link)
if(NOT _llvm_link MATCHES "-lLLVM")
  message(FATAL_ERROR "bitjit: ${BJ_LLVM_CONFIG} ${_llvm_cfg_args} named no LLVM library: '${_llvm_link}'")
endif()
if(BJ_LLVM_STATIC)  # the archives need the C++ runtime and LLVM's system libraries
  string(APPEND _llvm_link " -lstdc++ -lzstd -lz -lrt")
endif()
set(BJ_LLVM_LINK_PC "${_llvm_link}")
separate_arguments(BJ_LLVM_LINK UNIX_COMMAND "${_llvm_link}")
message(STATUS "bitjit: programs linking libbitjit.a link LLVM with: ${BJ_LLVM_LINK_PC}")
