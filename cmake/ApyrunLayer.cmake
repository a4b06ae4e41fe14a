# SPDX-License-Identifier: MIT
# apyrun_layer(NAME DIRS dir... [USES layer...] [LIBS target...]
#              [LEVELS "files" ...]): an object library apy_NAME from the .c
# files of the given directories under src/ (not their subdirectories: a
# subdirectory is a layer of its own unless listed). USES names the layers
# it may call, LIBS its external dependencies. LEVELS, bottom first, puts
# every file of the layer (its path under the first DIR, without .c) on a
# level; a file may then call only files on lower levels. The layers and their USES also go to layers.json, which the
# layering check (tests/layering) compares with the symbols the objects
# really use: the order is declared here, once, and the build enforces it.
set(APYRUN_LAYERS "" CACHE INTERNAL "")
set(APYRUN_LAYERS_JSON "" CACHE INTERNAL "")
function(apyrun_layer name)
    cmake_parse_arguments(L "" "" "DIRS;USES;LIBS;LEVELS" ${ARGN})
    set(srcs)
    foreach(dir IN LISTS L_DIRS)
        file(GLOB found CONFIGURE_DEPENDS
             ${CMAKE_CURRENT_SOURCE_DIR}/${dir}/*.c)
        list(APPEND srcs ${found})
    endforeach()
    if(NOT srcs)
        message(FATAL_ERROR "apyrun_layer(${name}): no sources in ${L_DIRS}")
    endif()
    add_library(apy_${name} OBJECT ${srcs})
    target_include_directories(apy_${name} PUBLIC
        ${PROJECT_SOURCE_DIR}/include ${PROJECT_BINARY_DIR}/src)
    set(uses)
    foreach(use IN LISTS L_USES)
        if(NOT TARGET apy_${use})
            message(FATAL_ERROR "apyrun_layer(${name}): layer ${use} must "
                    "be declared before the layers that use it")
        endif()
        list(APPEND uses apy_${use})
    endforeach()
    target_link_libraries(apy_${name} PUBLIC apyrun::flags ${uses} ${L_LIBS})
    set(APYRUN_LAYERS ${APYRUN_LAYERS} ${name} CACHE INTERNAL "")
    string(JOIN ";" dirs ${L_DIRS})
    string(JOIN ";" uses_s ${L_USES})
    string(JOIN "|" levels ${L_LEVELS})
    set(entry "{\"name\": \"${name}\", \"dirs\": \"${dirs}\", \"uses\": \"${uses_s}\", \"levels\": \"${levels}\", \"objects\": \"$<TARGET_OBJECTS:apy_${name}>\"}")
    if(APYRUN_LAYERS_JSON)
        set(APYRUN_LAYERS_JSON "${APYRUN_LAYERS_JSON}, ${entry}"
            CACHE INTERNAL "")
    else()
        set(APYRUN_LAYERS_JSON "${entry}" CACHE INTERNAL "")
    endif()
endfunction()

# apyrun_layers_done(): writes layers.json for the layering check.
function(apyrun_layers_done)
    file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/layers.json
         CONTENT "[\n${APYRUN_LAYERS_JSON}\n]\n")
endfunction()
