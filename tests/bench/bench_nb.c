/* SPDX-License-Identifier: MIT */
/* bench_nb [DIR]: times the notebook layer on a generated notebook of 200
 * code cells, one of which holds a 5 MB base64 image output, in Jupyter's
 * layout. Prints the best and median of several runs, in milliseconds:
 * parse (in memory), load (file), set_result (one cell) and save (atomic,
 * with fsync, into DIR, default /tmp). Then one parse each of two shapes
 * that once cost quadratic time: a cell with 200000 metadata keys and an
 * nbformat 3 notebook of 100000 cells (ids to make up). A benchmark: it
 * asserts nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apyrun/notebook.h"
#include "nb_internal.h" /* apy__nb_parse, apy__nb_save */

#define NCELLS 200
#define IMAGE_BYTES (5 * 1024 * 1024)
#define RUNS 15

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
report(const char *what, double *t, int n)
{
    qsort(t, (size_t)n, sizeof(double), cmp_double);
    printf("%-28s best %8.2f ms   median %8.2f ms\n", what, t[0], t[n / 2]);
}

/* Builds the notebook text: Jupyter's layout, indent 1, sorted keys. */
static char *
make_notebook(size_t *len)
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t cap = IMAGE_BYTES + NCELLS * 1024 + 4096, n = 0, i;
    char *s = malloc(cap);
    int c;

    if (s == NULL) {
        return NULL;
    }
    n += (size_t)sprintf(s + n, "{\n \"cells\": [\n");
    for (c = 0; c < NCELLS; c++) {
        n += (size_t)sprintf(
            s + n,
            "  {\n   \"cell_type\": \"code\",\n   \"execution_count\": %d,\n"
            "   \"id\": \"cell-%d\",\n   \"metadata\": {},\n"
            "   \"outputs\": [\n    {\n     \"name\": \"stdout\",\n"
            "     \"output_type\": \"stream\",\n     \"text\": [\n"
            "      \"value %d\\n\"\n     ]\n    }",
            c + 1, c, c);
        if (c == NCELLS / 2) {
            n += (size_t)sprintf(s + n, ",\n    {\n     \"data\": {\n"
                                        "      \"image/png\": \"");
            for (i = 0; i < IMAGE_BYTES; i++) {
                s[n++] = b64[(i * 7 + i / 64) & 63];
            }
            n += (size_t)sprintf(s + n,
                                 "\",\n      \"text/plain\": [\n"
                                 "       \"<Figure>\"\n      ]\n     },\n"
                                 "     \"metadata\": {},\n"
                                 "     \"output_type\": \"display_data\"\n"
                                 "    }");
        }
        n += (size_t)sprintf(
            s + n,
            "\n   ],\n   \"source\": [\n    \"import asyncio\\n\",\n"
            "    \"x_%d = %d * 2\\n\",\n    \"await asyncio.sleep(0)\\n\",\n"
            "    \"print('value', %d)\"\n   ]\n  }%s\n",
            c, c, c, c + 1 < NCELLS ? "," : "");
    }
    n += (size_t)sprintf(s + n,
                         " ],\n \"metadata\": {\n  \"kernelspec\": {\n"
                         "   \"language\": \"python\",\n"
                         "   \"name\": \"python3\"\n  }\n },\n"
                         " \"nbformat\": 4,\n \"nbformat_minor\": 5\n}\n");
    *len = n;
    return s;
}

/* Times one apy__nb_parse of text (freed here). */
static void
time_once(const char *what, char *text, size_t len)
{
    apy_notebook_t nb;
    char err[256];
    double t = now_ms();

    if (apy__nb_parse(text, len, NULL, &nb, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", what, err);
        exit(1);
    }
    printf("%-28s once %8.2f ms\n", what, now_ms() - t);
    apy_nb_free(&nb);
    free(text);
}

static char *
many_keys(size_t *len)
{
    size_t cap = 200000 * 32 + 256, n = 0;
    char *s = malloc(cap);
    int i;

    if (s == NULL) {
        return NULL;
    }
    n += (size_t)sprintf(s, "{\"cells\": [{\"cell_type\": \"code\", "
                            "\"source\": \"x\", \"metadata\": {");
    for (i = 0; i < 200000; i++) {
        n += (size_t)sprintf(s + n, "%s\"k%d\": %d", i ? ", " : "", 199999 - i,
                             i);
    }
    n += (size_t)sprintf(s + n, "}}], \"metadata\": {}, \"nbformat\": 4, "
                                "\"nbformat_minor\": 4}");
    *len = n;
    return s;
}

static char *
many_v3_cells(size_t *len)
{
    size_t cap = 100000 * 96 + 256, n = 0;
    char *s = malloc(cap);
    int i;

    if (s == NULL) {
        return NULL;
    }
    n += (size_t)sprintf(s, "{\"metadata\": {}, \"nbformat\": 3, "
                            "\"worksheets\": [{\"cells\": [");
    for (i = 0; i < 100000; i++) {
        n += (size_t)sprintf(s + n,
                             "%s{\"cell_type\": \"code\", \"input\": "
                             "\"x = %d\", \"outputs\": []}",
                             i ? ", " : "", i % 7);
    }
    n += (size_t)sprintf(s + n, "]}]}");
    *len = n;
    return s;
}

int
main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char in_path[512], out_path[512], err[256];
    double parse_t[RUNS], load_t[RUNS], set_t[RUNS], save_t[RUNS], t;
    apy_notebook_t nb;
    apy_nb_result_t res;
    size_t len, len2;
    char *text = make_notebook(&len), *text2;
    FILE *f;
    int r;

    if (text == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    snprintf(in_path, sizeof(in_path), "%s/bench_nb_in.ipynb", dir);
    snprintf(out_path, sizeof(out_path), "%s/bench_nb_out.ipynb", dir);
    f = fopen(in_path, "wb");
    if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", in_path);
        return 1;
    }
    printf("notebook: %d cells, %.2f MB\n", NCELLS, len / 1048576.0);
    memset(&res, 0, sizeof(res));
    res.cell = 3;
    res.execution_count = 4;
    res.outputs = "[{\"output_type\": \"stream\", \"name\": \"stdout\", "
                  "\"text\": \"value 3\\n\"}]";
    res.outputs_len = strlen(res.outputs);
    res.busy = res.execute_input = res.execute_reply = res.idle =
        "2024-01-31T12:00:00.000000Z";
    for (r = 0; r < RUNS; r++) {
        t = now_ms();
        if (apy__nb_parse(text, len, in_path, &nb, err, sizeof(err)) != 0) {
            fprintf(stderr, "parse: %s\n", err);
            return 1;
        }
        parse_t[r] = now_ms() - t;
        apy_nb_free(&nb);

        t = now_ms();
        if (apy_nb_load(in_path, &nb, err, sizeof(err)) != 0) {
            fprintf(stderr, "load: %s\n", err);
            return 1;
        }
        load_t[r] = now_ms() - t;

        t = now_ms();
        if (apy_nb_set_result(&nb, &res, err, sizeof(err)) != 0) {
            fprintf(stderr, "set_result: %s\n", err);
            return 1;
        }
        set_t[r] = now_ms() - t;

        t = now_ms();
        if (apy__nb_save(&nb, out_path, err, sizeof(err)) != 0) {
            fprintf(stderr, "save: %s\n", err);
            return 1;
        }
        save_t[r] = now_ms() - t;
        apy_nb_free(&nb);
    }
    report("apy_nb_parse (memory)", parse_t, RUNS);
    report("apy_nb_load (file)", load_t, RUNS);
    report("apy_nb_set_result (1 cell)", set_t, RUNS);
    report("apy_nb_save (fsync+rename)", save_t, RUNS);
    text2 = many_keys(&len2);
    if (text2 != NULL) {
        time_once("200000 metadata keys", text2, len2);
    }
    text2 = many_v3_cells(&len2);
    if (text2 != NULL) {
        time_once("100000 nbformat 3 cells", text2, len2);
    }
    unlink(in_path);
    unlink(out_path);
    free(text);
    return 0;
}
