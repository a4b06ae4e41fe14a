/* SPDX-License-Identifier: MIT */
/* Adding and removing cells after parsing: papermill's injected-parameters
 * cell. A new cell is built as a small cJSON tree and rendered by the same
 * code as cells read from a file; the tree is deleted before returning. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nb_internal.h"

int
apy_nb_insert_code_cell(apy_notebook_t *nb, size_t pos, const char *source,
                        size_t len, const char *const *tags, size_t ntags,
                        char *err, size_t errlen)
{
    apy_nb_cell_t *cells, *cell;
    cJSON *obj = NULL, *meta, *list, *t;
    size_t i, n = 0;
    int rc = -ENOMEM;

    if (pos > nb->ncells || nb->w == NULL) {
        return apy__nb_fail(-ERANGE, err, errlen, "no cell position %zu",
                            pos + 1);
    }
    if (!apy__nb_utf8_valid(source, len) || memchr(source, '\0', len)) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "the new cell's source is not valid UTF-8 text");
    }
    for (i = 0; i < ntags; i++) {
        if (!apy__nb_utf8_valid(tags[i], strlen(tags[i]))) {
            return apy__nb_fail(-EINVAL, err, errlen,
                                "the new cell's tag %zu is not valid UTF-8",
                                i + 1);
        }
    }
    cells = realloc(nb->cells, (nb->ncells + 1) * sizeof(*cells));
    if (cells == NULL) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    nb->cells = cells;
    memmove(cells + pos + 1, cells + pos, (nb->ncells - pos) * sizeof(*cells));
    nb->ncells++;
    cell = &cells[pos];
    memset(cell, 0, sizeof(*cell));
    cell->kind = APY_NB_CODE;

    /* The cell as papermill makes it, built as a tree so that it is
     * rendered by the same code as every other cell. */
    obj = cJSON_CreateObject();
    meta = cJSON_CreateObject();
    list = cJSON_CreateArray();
    if (obj == NULL || meta == NULL || list == NULL ||
        !cJSON_AddItemToObject(obj, "metadata", meta)) {
        cJSON_Delete(meta);
        cJSON_Delete(list);
        goto fail;
    }
    if (!cJSON_AddItemToObject(meta, "tags", list)) {
        cJSON_Delete(list);
        goto fail;
    }
    for (i = 0; i < ntags; i++) {
        t = apy__nb_new_string(tags[i], strlen(tags[i]), 0);
        if (t == NULL || !cJSON_AddItemToArray(list, t)) {
            cJSON_Delete(t);
            goto fail;
        }
    }
    t = apy__nb_new_string("code", 4, 0);
    if (t == NULL || !cJSON_AddItemToObject(obj, "cell_type", t)) {
        cJSON_Delete(t);
        goto fail;
    }
    t = apy__nb_new_string(source, len, 0);
    if (t == NULL || !cJSON_AddItemToObject(obj, "source", t)) {
        cJSON_Delete(t);
        goto fail;
    }
    /* Its source, tags and line map (zeros: it is in no file). */
    cell->source = malloc(len + 1);
    if (cell->source == NULL) {
        goto fail;
    }
    for (i = 0; i < len; i++) {
        if (source[i] == '\r') {
            cell->source[n++] = '\n';
            if (i + 1 < len && source[i + 1] == '\n') {
                i++;
            }
        } else {
            cell->source[n++] = source[i];
        }
    }
    cell->source[n] = '\0';
    cell->source_len = n;
    for (i = 0; i < n; i++) {
        if (cell->source[i] == '\n' || i + 1 == n) {
            cell->nlines++;
        }
    }
    if (cell->nlines > 0 &&
        (cell->line_map = calloc(cell->nlines, sizeof(int))) == NULL) {
        goto fail;
    }
    if (ntags > 0 && (cell->tags = calloc(ntags, sizeof(char *))) == NULL) {
        goto fail;
    }
    for (i = 0; i < ntags; i++) {
        if ((cell->tags[i] = strdup(tags[i])) == NULL) {
            goto fail;
        }
        cell->ntags++;
    }
    if ((rc = apy__nb_wcell_build(nb, pos, obj)) < 0 ||
        (nb->out_nbformat_minor >= 5 &&
         (rc = apy__nb_assign_id(nb, pos)) < 0)) {
        goto fail;
    }
    cJSON_Delete(obj);
    if (nb->w != NULL) {
        nb->w->layout++; /* cells moved: a saved prefix no longer fits */
    }
    return 0;
fail:
    cJSON_Delete(obj);
    apy_nb_remove_cell(nb, pos);
    return apy__nb_fail(rc < 0 ? rc : -ENOMEM, err, errlen, "out of memory");
}

int
apy_nb_remove_cell(apy_notebook_t *nb, size_t pos)
{
    if (pos >= nb->ncells) {
        return -ERANGE;
    }
    apy__nb_cell_free(&nb->cells[pos]);
    memmove(nb->cells + pos, nb->cells + pos + 1,
            (nb->ncells - pos - 1) * sizeof(*nb->cells));
    nb->ncells--;
    if (nb->w != NULL) {
        nb->w->layout++; /* cells moved: a saved prefix no longer fits */
    }
    return 0;
}
