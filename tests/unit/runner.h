/* SPDX-License-Identifier: MIT */
/* A tiny test runner in libuv's spirit: every TEST() is a ctest entry of
 * its own and runs in its own process (`test_x NAME`), so a crash or a
 * leaked handle in one case cannot hide in another. Without arguments the
 * binary lists its cases. */
#ifndef APYRUN_TEST_RUNNER_H
#define APYRUN_TEST_RUNNER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(void);

typedef struct {
    const char *name;
    test_fn fn;
} test_case_t;

#define TEST_MAX 64
static test_case_t test_cases[TEST_MAX];
static int test_count;

/* Registers a case before main() runs (a GCC/Clang constructor). */
#define TEST(case_)                                                        \
    static void test_##case_(void);                                        \
    __attribute__((constructor)) static void register_##case_(void)        \
    {                                                                      \
        if (test_count < TEST_MAX) {                                       \
            test_cases[test_count].name = #case_;                          \
            test_cases[test_count].fn = test_##case_;                      \
            test_count++;                                                  \
        }                                                                  \
    }                                                                      \
    static void test_##case_(void)

/* Fails the case (the process) with the location and the expression. */
#define ASSERT(expr)                                                       \
    do {                                                                   \
        if (!(expr)) {                                                     \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,     \
                    __LINE__, #expr);                                      \
            abort();                                                       \
        }                                                                  \
    } while (0)

#define ASSERT_EQ(a, b)                                                    \
    do {                                                                   \
        long long a_ = (long long)(a), b_ = (long long)(b);                \
        if (a_ != b_) {                                                    \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n",      \
                    __FILE__, __LINE__, #a, #b, a_, b_);                   \
            abort();                                                       \
        }                                                                  \
    } while (0)

int
main(int argc, char **argv)
{
    if (argc < 2) {
        for (int i = 0; i < test_count; i++) {
            printf("%s\n", test_cases[i].name);
        }
        return 0;
    }
    for (int i = 0; i < test_count; i++) {
        if (strcmp(test_cases[i].name, argv[1]) == 0) {
            test_cases[i].fn();
            printf("ok %s\n", argv[1]);
            return 0;
        }
    }
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
}

#endif
