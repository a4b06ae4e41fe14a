# SPDX-License-Identifier: MIT
# apyrun_layer(NAME deps...): an object library apy_NAME from src/NAME/*.c
# (and its subdirectories), with exactly the given dependencies.
set(APYRUN_LAYERS "" CACHE INTERNAL "")
function(apyrun_layer name)
    file(GLOB_RECURSE srcs CONFIGURE_DEPENDS
         ${CMAKE_CURRENT_SOURCE_DIR}/${name}/*.c)
    if(NOT srcs)
        return()
    endif()
    add_library(apy_${name} OBJECT ${srcs})
    target_include_directories(apy_${name} PUBLIC
        ${PROJECT_SOURCE_DIR}/include ${PROJECT_BINARY_DIR}/src)
    target_link_libraries(apy_${name} PUBLIC apyrun::flags ${ARGN})
    set(APYRUN_LAYERS ${APYRUN_LAYERS} ${name} CACHE INTERNAL "")
endfunction()
