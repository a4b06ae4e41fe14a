/* SPDX-License-Identifier: MIT */
/* TEMPORARY: until src/loop defines apy_loop_set_stall_check. */
#include <Python.h>

#include "apyrun/loop.h"

__attribute__((weak)) int
apy_loop_set_stall_check(PyObject *loop, int on)
{
    return 0;
}
