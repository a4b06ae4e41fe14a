# SPDX-License-Identifier: MIT
# Finds Debian's libpython3.11 (never pyenv's), libuv and cJSON through
# pkg-config, and defines apyrun::python, apyrun::uv and apyrun::cjson.
find_package(PkgConfig REQUIRED)

# pyenv puts its own python3.11 first on PATH; only pkg-config's view of the
# system counts here, so make sure no pyenv directory leaks into the search.
pkg_check_modules(PYEMBED REQUIRED IMPORTED_TARGET python3-embed>=3.11)
pkg_check_modules(UV REQUIRED IMPORTED_TARGET libuv>=1.44)
pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson>=1.7)

pkg_get_variable(APYRUN_PY_PREFIX python3-embed prefix)
pkg_get_variable(APYRUN_PY_LIBDIR python3-embed libdir)
set(APYRUN_PY_VERSION ${PYEMBED_VERSION})
# The stdlib is pinned to libpython's own prefix (DESIGN 1): this is it.
set(APYRUN_PYTHON_HOME "${APYRUN_PY_PREFIX}" CACHE PATH
    "Prefix of the Python installation libpython was built for")

add_library(apyrun_python INTERFACE)
add_library(apyrun::python ALIAS apyrun_python)
target_include_directories(apyrun_python INTERFACE ${PYEMBED_INCLUDE_DIRS})

set(APYRUN_PY_STATIC_LIB
    "${APYRUN_PY_LIBDIR}/python${APYRUN_PY_VERSION}/config-${APYRUN_PY_VERSION}-${CMAKE_LIBRARY_ARCHITECTURE}/libpython${APYRUN_PY_VERSION}.a")
if(NOT EXISTS "${APYRUN_PY_STATIC_LIB}")
    # Debian keeps the config dir under /usr/lib, not the multiarch libdir.
    set(APYRUN_PY_STATIC_LIB
        "${APYRUN_PY_PREFIX}/lib/python${APYRUN_PY_VERSION}/config-${APYRUN_PY_VERSION}-${CMAKE_LIBRARY_ARCHITECTURE}/libpython${APYRUN_PY_VERSION}.a")
endif()

if(APYRUN_STATIC_PYTHON AND EXISTS "${APYRUN_PY_STATIC_LIB}")
    # Python code runs measurably fewer instructions in the static, non-PIC
    # library (see docs/architecture.md); extension modules then resolve
    # their Py* symbols against the executable, hence -export-dynamic.
    message(STATUS "apyrun: linking ${APYRUN_PY_STATIC_LIB}")
    target_link_libraries(apyrun_python INTERFACE
        "${APYRUN_PY_STATIC_LIB}" expat z m dl pthread util)
    set(APYRUN_PY_LINK_STATIC ON)
else()
    message(STATUS "apyrun: linking the shared libpython")
    target_link_libraries(apyrun_python INTERFACE PkgConfig::PYEMBED)
    set(APYRUN_PY_LINK_STATIC OFF)
endif()

add_library(apyrun::uv ALIAS PkgConfig::UV)
add_library(apyrun::cjson ALIAS PkgConfig::CJSON)

# The interpreter used by tests and benchmarks: Debian's, which sees
# Debian's python3-* packages (pytest, nbformat, uvloop).
set(APYRUN_SYSTEM_PYTHON /usr/bin/python${APYRUN_PY_VERSION} CACHE FILEPATH
    "Debian's python3 used to drive tests")
