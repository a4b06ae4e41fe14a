# SPDX-License-Identifier: MIT
# What `cmake --install build --prefix P` puts under P: the binary in
# P/bin, and the pytest plugin (python/pytest_apyrun.py) in Python's site
# directory with a dist-info whose pytest11 entry point lets
# `pytest --apyrun` find it without -p. The installed module knows the
# binary beside it by a path relative to itself, so a staged install
# (DESTDIR, cpack) still finds it once moved to its prefix.
include(GNUInstallDirs)

install(TARGETS apyrun RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Debian's python3 has /usr/lib/python3/dist-packages on sys.path, where
# Debian's own python3-* packages go; the default suits the package
# issue 14 makes (prefix /usr). Other prefixes need PYTHONPATH.
set(APYRUN_PYTHON_SITEDIR "lib/python3/dist-packages" CACHE STRING
    "Directory of the pytest plugin, relative to the install prefix")

set(APYRUN_PLUGIN_SOURCE ${PROJECT_SOURCE_DIR}/python/pytest_apyrun.py)
# Kept out of the way: not a directory to put on PYTHONPATH.
set(APYRUN_PLUGIN_BUILD ${PROJECT_BINARY_DIR}/CMakeFiles/pytest_apyrun)
set(APYRUN_PLUGIN_DISTINFO
    pytest_apyrun-${PROJECT_VERSION}.dist-info)

# Writes content to path, leaving the file (and its time) alone when it
# already holds that: configure_file copies only what changed. path.in
# stays, since configure_file re-runs cmake when its input disappears.
function(apyrun_write_file path content)
    file(WRITE ${path}.in "${content}")
    configure_file(${path}.in ${path} COPYONLY)
endfunction()

# The installed module: the checkout's, with _INSTALLED_BINARY set to the
# binary's path relative to the module's directory. Read at configure
# time, so a change of the module re-runs cmake.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
             ${APYRUN_PLUGIN_SOURCE})
file(RELATIVE_PATH _apyrun_binary_rel /P/${APYRUN_PYTHON_SITEDIR}
     /P/${CMAKE_INSTALL_BINDIR}/apyrun)
file(READ ${APYRUN_PLUGIN_SOURCE} _apyrun_plugin)
set(_apyrun_unset "\n_INSTALLED_BINARY = None\n")
string(FIND "${_apyrun_plugin}" "${_apyrun_unset}" _apyrun_at)
if(_apyrun_at EQUAL -1)
    message(FATAL_ERROR "${APYRUN_PLUGIN_SOURCE}: no line "
            "'_INSTALLED_BINARY = None' for the install to set")
endif()
string(REPLACE "${_apyrun_unset}"
       "\n_INSTALLED_BINARY = \"${_apyrun_binary_rel}\"\n"
       _apyrun_plugin "${_apyrun_plugin}")
apyrun_write_file(${APYRUN_PLUGIN_BUILD}/pytest_apyrun.py "${_apyrun_plugin}")

# The least a distribution needs for importlib.metadata (and so pytest's
# plugin loader) to see it: METADATA and the entry points.
apyrun_write_file(${APYRUN_PLUGIN_BUILD}/${APYRUN_PLUGIN_DISTINFO}/METADATA
"Metadata-Version: 2.1
Name: pytest-apyrun
Version: ${PROJECT_VERSION}
Summary: Jupyter notebooks as pytest items, run by apyrun
License: MIT
Classifier: Framework :: Pytest
")
apyrun_write_file(
    ${APYRUN_PLUGIN_BUILD}/${APYRUN_PLUGIN_DISTINFO}/entry_points.txt
"[pytest11]
apyrun = pytest_apyrun
")
apyrun_write_file(
    ${APYRUN_PLUGIN_BUILD}/${APYRUN_PLUGIN_DISTINFO}/top_level.txt
"pytest_apyrun
")

install(FILES ${APYRUN_PLUGIN_BUILD}/pytest_apyrun.py
        DESTINATION ${APYRUN_PYTHON_SITEDIR})
# Named one by one: the directory also holds the *.in copies.
install(FILES ${APYRUN_PLUGIN_BUILD}/${APYRUN_PLUGIN_DISTINFO}/METADATA
              ${APYRUN_PLUGIN_BUILD}/${APYRUN_PLUGIN_DISTINFO}/entry_points.txt
              ${APYRUN_PLUGIN_BUILD}/${APYRUN_PLUGIN_DISTINFO}/top_level.txt
        DESTINATION ${APYRUN_PYTHON_SITEDIR}/${APYRUN_PLUGIN_DISTINFO})
