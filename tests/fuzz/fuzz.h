/* SPDX-License-Identifier: MIT */
/* What the libFuzzer targets share: REQUIRE (a property that must hold,
 * else abort() and libFuzzer saves the input), and for the targets that
 * embed Python (fuzz_python.c) the interpreter, set up once, and the
 * property checks written in Python (checks.py). */
#ifndef APYRUN_FUZZ_H
#define APYRUN_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#define REQUIRE(cond)                                                     \
    do {                                                                  \
        if (!(cond)) {                                                    \
            fprintf(stderr, "fuzz: %s:%d: %s\n", __FILE__, __LINE__,      \
                    #cond);                                               \
            abort();                                                      \
        }                                                                 \
    } while (0)

#ifdef Py_PYTHON_H
#include <stddef.h>
#include <stdint.h>

/* Initialises the interpreter once (isolated, malloc as its allocator so
 * that ASan and LSan see every object, no signal handlers: libFuzzer has
 * its own) and imports checks.py. Aborts on failure. */
void fuzz_python_init(void);

/* Calls checks.<name>(*args) (args: a tuple, consumed). Returns a new
 * reference to its result. A failed property (AssertionError, or any
 * exception the check did not expect) prints the traceback and aborts;
 * RecursionError and MemoryError (an input too deep or too big to check)
 * return NULL with no exception set. */
PyObject *fuzz_check(const char *name, PyObject *args);

/* Returns a new bytes object of the input up to its first NUL (no C
 * string apyrun takes can hold one), or aborts. */
PyObject *fuzz_bytes(const uint8_t *data, size_t size);
#endif

#endif
