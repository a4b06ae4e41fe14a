/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the IPython-syntax translator (apy_ipy_translate
 * in src/ipython/translate.c). Every input is a cell; its
 * translation must hold these properties, else abort():
 *   - it never fails (but for MemoryError) and leaves no exception;
 *   - line numbers never move: as many lines out as in;
 *   - a %%magic cell, and a cell without '!', '%', '?' or a prompt
 *     ('>>>', '...', 'In ['), are left as they are;
 *   - a cell that is Python once IPython's prompts are stripped is left
 *     as that (checks.translate);
 *   - every translated line keeps its indentation, parses, and its helper
 *     call gives back the exact command or magic text (checks.translate). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "fuzz.h"
#include "apyrun/ipython.h"

static size_t
count_lines(const char *s)
{
    size_t n = 0;
    for (; *s != '\0'; s++) {
        n += *s == '\n';
    }
    return n;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_python_init();
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    PyObject *src = fuzz_bytes(data, size);
    const char *text = PyBytes_AS_STRING(src);
    int cell_magic = -1;
    char *out = apy_ipy_translate(text, &cell_magic);
    REQUIRE(out != NULL);
    REQUIRE(!PyErr_Occurred());
    REQUIRE(cell_magic == 0 || cell_magic == 1);
    REQUIRE(count_lines(out) == count_lines(text));
    if (cell_magic
        || (strpbrk(text, "!%?") == NULL && strstr(text, ">>>") == NULL
            && strstr(text, "...") == NULL && strstr(text, "In [") == NULL)) {
        REQUIRE(strcmp(out, text) == 0);
    }
    PyObject *r = fuzz_check("translate",
                             Py_BuildValue("(Oyi)", src, out, cell_magic));
    Py_XDECREF(r);
    free(out);
    Py_DECREF(src);
    return 0;
}
