/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the text notebook readers (src/notebook/percent.c,
 * percent_opts.c, myst.c, yaml.c, text.c): the first byte of each input
 * picks jupytext's percent format or MyST, the rest is the file. Whatever
 * is read must hold these properties, else abort():
 *   - sources are NUL-free and CR-free, one source line per text line:
 *     each cell's line map counts up by one from a line of the text;
 *   - the notebook written from it parses again into the same cells;
 *   - a refused input comes with a one-line message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apyrun/notebook.h"
#include "fuzz.h"
#include "nb_internal.h" /* apy__nb_parse_percent, apy__nb_render */

static void
check(const apy_notebook_t *nb, size_t text_lines)
{
    for (size_t i = 0; i < nb->ncells; i++) {
        const apy_nb_cell_t *c = &nb->cells[i];
        REQUIRE(c->source != NULL && strlen(c->source) == c->source_len);
        REQUIRE(strchr(c->source, '\r') == NULL);
        for (size_t k = 0; k < c->nlines; k++) {
            REQUIRE(c->line_map[k] == c->line_map[0] + (int)k);
            /* An unclosed MyST fence adds one line after the text. */
            REQUIRE(c->line_map[k] >= 1
                    && (size_t)c->line_map[k] <= text_lines + 1);
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apy_notebook_t nb, again;
    char err[256], *out;
    size_t len, lines = 1;
    int rc;

    if (size == 0) {
        return 0;
    }
    int myst = data[0] & 1;
    const char *text = (const char *)data + 1;
    size -= 1;
    for (size_t k = 0; k < size; k++) {
        int cr = text[k] == '\r' && (k + 1 == size || text[k + 1] != '\n');
        lines += text[k] == '\n' || cr;
    }
    err[0] = '\0';
    rc = myst ? apy__nb_parse_myst(text, size, "fuzz.md", &nb, err,
                                   sizeof(err))
              : apy__nb_parse_percent(text, size, "fuzz.py", &nb, err,
                                      sizeof(err));
    if (rc < 0) {
        REQUIRE(err[0] != '\0' && strchr(err, '\n') == NULL);
        REQUIRE(nb.cells == NULL && nb.ncells == 0);
        return 0;
    }
    check(&nb, lines);
    REQUIRE(apy__nb_render(&nb, &out, &len, err, sizeof(err)) == 0);
    REQUIRE(apy__nb_parse(out, len, NULL, &again, err, sizeof(err)) == 0);
    REQUIRE(again.ncells == nb.ncells);
    for (size_t i = 0; i < nb.ncells; i++) {
        REQUIRE(again.cells[i].kind == nb.cells[i].kind);
        REQUIRE(strcmp(again.cells[i].source, nb.cells[i].source) == 0);
        REQUIRE(again.cells[i].ntags == nb.cells[i].ntags);
    }
    free(out);
    apy_nb_free(&again);
    apy_nb_free(&nb);
    return 0;
}
