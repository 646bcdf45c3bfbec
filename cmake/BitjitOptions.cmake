# Compiler warnings and the sanitizer options.
# -DBJ_SANITIZE=ON builds everything with AddressSanitizer + UndefinedBehaviorSanitizer
# (LeakSanitizer comes with ASan: ASAN_OPTIONS=detect_leaks=1).
# -DBJ_TSAN=ON builds everything with ThreadSanitizer (not together with BJ_SANITIZE); CI runs
# the tests labelled "tsan" under it (tests/CMakeLists.txt, BJ_TSAN_TESTS). Use clang
# (-DCMAKE_C_COMPILER=clang-19): with gcc the target_clones resolvers of runtime/ops.c run
# before TSan is initialised and the programs crash at load.
option(BJ_SANITIZE "Build with ASan and UBSan" OFF)
option(BJ_TSAN "Build with ThreadSanitizer" OFF)
option(BJ_WERROR "Treat warnings as errors" OFF)

add_compile_options(-Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter)
if(BJ_WERROR)
  add_compile_options(-Werror)
endif()
if(BJ_SANITIZE AND BJ_TSAN)
  message(FATAL_ERROR "BJ_SANITIZE (ASan) and BJ_TSAN cannot be combined: use two build directories")
endif()
if(BJ_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(BJ_TSAN)
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()
