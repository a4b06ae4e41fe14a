/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the notebook layer. Every input is parsed as a
 * notebook; whatever parses must hold these properties, else abort():
 *   - sources are NUL-free, CR-free, source_len long, line maps in range;
 *   - what apyrun writes parses again into the same cells, writing that
 *     gives the same bytes, and its line maps are exact (Jupyter layout);
 *   - a result set on a code cell and an inserted/removed cell round-trip.
 * Every input is also tried as the outputs JSON of a result, the other
 * text apyrun parses. A refused input must come with a one-line message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apyrun/notebook.h"
#include "fuzz.h"
#include "nb_internal.h" /* apy__nb_render */

static const char base_nb[] =
    "{\"cells\": [{\"cell_type\": \"code\", \"source\": \"x = 1\"}], "
    "\"metadata\": {}, \"nbformat\": 4, \"nbformat_minor\": 5}";

static void
check_message(int rc, const char *err)
{
    REQUIRE(rc < 0);
    REQUIRE(err[0] != '\0');
    REQUIRE(strchr(err, '\n') == NULL);
}

static void
check_cells(const apy_notebook_t *nb)
{
    size_t i, k, lines;
    const char *p;

    for (i = 0; i < nb->ncells; i++) {
        const apy_nb_cell_t *c = &nb->cells[i];
        REQUIRE(c->source != NULL);
        REQUIRE(strlen(c->source) == c->source_len);
        REQUIRE(strchr(c->source, '\r') == NULL);
        lines = 0;
        for (p = c->source; *p != '\0'; p++) {
            if (*p == '\n' || p[1] == '\0') {
                lines++;
            }
        }
        REQUIRE(lines == c->nlines);
        for (k = 0; k < c->nlines; k++) {
            REQUIRE(c->line_map[k] >= 0);
            REQUIRE(k == 0 || c->line_map[k] >= c->line_map[k - 1]);
        }
        (void)apy_nb_cell_line(c, 0);
        (void)apy_nb_cell_line(c, (long)c->nlines + 1);
        for (k = 0; k < c->ntags; k++) {
            REQUIRE(c->tags[k] != NULL);
            (void)apy_nb_cell_has_tag(c, c->tags[k]);
        }
    }
}

static void
same_cells(const apy_notebook_t *a, const apy_notebook_t *b)
{
    size_t i, k;

    REQUIRE(a->ncells == b->ncells);
    for (i = 0; i < a->ncells; i++) {
        REQUIRE(a->cells[i].kind == b->cells[i].kind);
        REQUIRE(strcmp(a->cells[i].source, b->cells[i].source) == 0);
        REQUIRE(a->cells[i].ntags == b->cells[i].ntags);
        for (k = 0; k < a->cells[i].ntags; k++) {
            REQUIRE(strcmp(a->cells[i].tags[k], b->cells[i].tags[k]) == 0);
        }
        REQUIRE((a->cells[i].id == NULL) == (b->cells[i].id == NULL));
        REQUIRE(a->cells[i].id == NULL ||
                strcmp(a->cells[i].id, b->cells[i].id) == 0);
    }
}

/* Returns 1 if s holds a line boundary of str.splitlines() that is not
 * one for Python's tokenizer (\v \f \x1c-\x1e U+0085 U+2028 U+2029). */
static int
has_extra_boundary(const char *s)
{
    const unsigned char *u = (const unsigned char *)s;

    for (; *u != '\0'; u++) {
        if (*u == 0x0B || *u == 0x0C || (*u >= 0x1C && *u <= 0x1E) ||
            (u[0] == 0xC2 && u[1] == 0x85) ||
            (u[0] == 0xE2 && u[1] == 0x80 && (u[2] == 0xA8 || u[2] == 0xA9))) {
            return 1;
        }
    }
    return 0;
}

/* Written notebooks put each source line on its own JSON line. nbformat's
 * layout also breaks lines where Python does not (a form feed...): then a
 * Python line may span JSON lines, and the map only has to advance. */
static void
check_exact_line_map(const apy_notebook_t *nb)
{
    size_t i, k;
    const apy_nb_cell_t *c;

    for (i = 0; i < nb->ncells; i++) {
        c = &nb->cells[i];
        for (k = 1; k < c->nlines; k++) {
            if (has_extra_boundary(c->source)) {
                REQUIRE(c->line_map[k] > c->line_map[k - 1]);
            } else {
                REQUIRE(c->line_map[k] == c->line_map[0] + (int)k);
            }
        }
    }
}

/* Renders nb, parses the text back, checks it, and returns the text. */
static char *
round_trip(const apy_notebook_t *nb)
{
    apy_notebook_t again;
    char err[256], *out, *out2;
    size_t len, len2;
    int rc;

    REQUIRE(apy__nb_render(nb, &out, &len, err, sizeof(err)) == 0);
    rc = apy__nb_parse(out, len, NULL, &again, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "fuzz_nb: written notebook does not parse: %s\n%s\n",
                err, out);
        abort();
    }
    same_cells(nb, &again);
    check_exact_line_map(&again);
    REQUIRE(apy__nb_render(&again, &out2, &len2, err, sizeof(err)) == 0);
    REQUIRE(len == len2 && memcmp(out, out2, len) == 0);
    free(out2);
    apy_nb_free(&again);
    return out;
}

static void
exercise_notebook(apy_notebook_t *nb)
{
    static const char outputs[] =
        "[{\"output_type\": \"stream\", \"name\": \"stdout\", \"text\": "
        "\"a\\nb\\r\\nc\"}, {\"output_type\": \"error\", \"ename\": \"E\", "
        "\"evalue\": \"\", \"traceback\": []}]";
    const char *tags[] = {"injected-parameters"};
    apy_nb_result_t res;
    char err[256], *before, *after;
    size_t i, len;

    check_cells(nb);
    before = round_trip(nb);
    for (i = 0; i < nb->ncells; i++) {
        if (nb->cells[i].kind == APY_NB_CODE) {
            memset(&res, 0, sizeof(res));
            res.cell = i;
            res.execution_count = 1;
            res.outputs = outputs;
            res.outputs_len = sizeof(outputs) - 1;
            res.busy = res.idle = "2024-01-31T12:00:00.000000Z";
            REQUIRE(apy_nb_set_result(nb, &res, err, sizeof(err)) == 0);
            break;
        }
    }
    REQUIRE(apy_nb_insert_code_cell(nb, nb->ncells, "p = 1\n", 6, tags, 1, err,
                                    sizeof(err)) == 0);
    free(round_trip(nb));
    REQUIRE(apy_nb_remove_cell(nb, nb->ncells - 1) == 0);
    if (i == nb->ncells) {
        /* No result was set: removing the inserted cell restores it. */
        REQUIRE(apy__nb_render(nb, &after, &len, err, sizeof(err)) == 0);
        REQUIRE(strcmp(before, after) == 0);
        free(after);
    }
    free(before);
}

static void
exercise_outputs(const char *data, size_t size)
{
    apy_notebook_t nb;
    apy_nb_result_t res;
    char err[256];
    int rc;

    REQUIRE(apy__nb_parse(base_nb, sizeof(base_nb) - 1, NULL, &nb, err,
                          sizeof(err)) == 0);
    memset(&res, 0, sizeof(res));
    res.execution_count = APY_NB_NO_COUNT;
    res.outputs = data;
    res.outputs_len = size;
    rc = apy_nb_set_result(&nb, &res, err, sizeof(err));
    if (rc == 0) {
        free(round_trip(&nb));
    } else {
        check_message(rc, err);
    }
    apy_nb_free(&nb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apy_notebook_t nb;
    char err[256];
    int rc;

    err[0] = '\0';
    rc = apy__nb_parse((const char *)data, size, "fuzz.ipynb", &nb, err,
                       sizeof(err));
    if (rc == 0) {
        exercise_notebook(&nb);
        apy_nb_free(&nb);
    } else {
        check_message(rc, err);
        REQUIRE(nb.cells == NULL && nb.ncells == 0);
    }
    exercise_outputs((const char *)data, size);
    return 0;
}
