/* SPDX-License-Identifier: MIT */
/* The import layer (src/importer/): meta-path finders and loaders. */
#ifndef APYRUN_IMPORTER_H
#define APYRUN_IMPORTER_H

#include <Python.h>

/* Puts a one-shot finder at the front of sys.meta_path that, once the
 * `asyncio` package has been executed, calls apyrun.install() so that
 * apyrun's loop is asyncio's default, without importing asyncio (or
 * apyrun) for programs that never use it. Returns 0, or -1 with an
 * exception set. */
int apy_importer_install_loop_hook(void);

#endif
