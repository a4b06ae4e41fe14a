# SPDX-License-Identifier: MIT
# Compiler flags shared by every target: warnings, -Werror, sanitizers.
add_library(apyrun_flags INTERFACE)
add_library(apyrun::flags ALIAS apyrun_flags)
target_compile_options(apyrun_flags INTERFACE
    -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
    -Wshadow -Wstrict-prototypes -Wmissing-prototypes -fno-strict-aliasing)
if(APYRUN_WERROR)
    target_compile_options(apyrun_flags INTERFACE -Werror)
endif()
if(APYRUN_SANITIZE)
    target_compile_options(apyrun_flags INTERFACE
        -fsanitize=address,undefined -fno-omit-frame-pointer
        -fno-sanitize-recover=undefined)
    target_link_options(apyrun_flags INTERFACE -fsanitize=address,undefined)
endif()
