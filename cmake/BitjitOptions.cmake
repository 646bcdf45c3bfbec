# Compiler warnings and the sanitizer option.
# -DBJ_SANITIZE=ON builds everything with AddressSanitizer + UndefinedBehaviorSanitizer.
option(BJ_SANITIZE "Build with ASan and UBSan" OFF)
option(BJ_WERROR "Treat warnings as errors" OFF)

add_compile_options(-Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter)
if(BJ_WERROR)
  add_compile_options(-Werror)
endif()
if(BJ_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
