/* SPDX-License-Identifier: MIT */
/* nbformat 3 -> nbformat 4.5, in place on an annotated cJSON tree, as
 * nbformat.v4.convert.upgrade does it: worksheets flattened, "input" ->
 * "source", "prompt_number" -> "execution_count", heading cells ->
 * markdown, v3 outputs -> v4. Nodes are moved, not copied, so the line
 * annotations survive. The caller deletes the tree, whatever happens. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apyrun/buf.h"
#include "nb_internal.h"

/* Adds `item` to `obj` as `key`, after removing any member of that name;
 * deletes `item` if it cannot be added. */
static int
put_member(cJSON *obj, const char *key, cJSON *item)
{
    if (item == NULL) {
        return -ENOMEM;
    }
    cJSON_Delete(apy__nb_detach(obj, key));
    /* cJSON_AddItemToObject copies the key; an item moved from elsewhere
     * may still carry its old one. */
    if (item->string != NULL) {
        cJSON_free(item->string);
        item->string = NULL;
    }
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return -ENOMEM;
    }
    return 0;
}

/* Makes string node `node` hold `s`. */
static int
set_string(cJSON *node, const char *s)
{
    size_t n = strlen(s);
    char *copy = cJSON_malloc(n + 1);

    if (copy == NULL) {
        return -ENOMEM;
    }
    memcpy(copy, s, n + 1);
    cJSON_free(node->valuestring);
    node->valuestring = copy;
    node->valuedouble = (double)n;
    return 0;
}

static int
is_string(const cJSON *v, const char *s)
{
    return cJSON_IsString(v) && strcmp(v->valuestring, s) == 0;
}

/* Returns 1 if v is a string or a list of strings. */
static int
is_string_list(const cJSON *v)
{
    const cJSON *c;

    if (cJSON_IsString(v)) {
        return 1;
    }
    if (!cJSON_IsArray(v)) {
        return 0;
    }
    for (c = v->child; c != NULL; c = c->next) {
        if (!cJSON_IsString(c)) {
            return 0;
        }
    }
    return 1;
}

/* nbformat.v4.convert._mime_map */
static const char *const mime_map[][2] = {
    {"text", "text/plain"},       {"html", "text/html"},
    {"svg", "image/svg+xml"},     {"png", "image/png"},
    {"jpeg", "image/jpeg"},       {"latex", "text/latex"},
    {"json", "application/json"}, {"javascript", "application/javascript"},
};

/* to_mime_key: v3 aliases become mime types; the alias's value wins over
 * a mime key already there, as `d[mime] = d.pop(alias)` makes it. */
static int
to_mime_key(cJSON *d)
{
    size_t i;
    cJSON *v;
    int rc;

    if (!cJSON_IsObject(d)) {
        return 0;
    }
    for (i = 0; i < sizeof(mime_map) / sizeof(mime_map[0]); i++) {
        v = apy__nb_detach(d, mime_map[i][0]);
        if (v != NULL && (rc = put_member(d, mime_map[i][1], v)) < 0) {
            return rc;
        }
    }
    return 0;
}

static int
upgrade_output(cJSON *out)
{
    cJSON *type = apy__nb_get(out, "output_type"), *data, *c, *next, *json;
    int rc;

    if (is_string(type, "pyout") || is_string(type, "display_data")) {
        if (apy__nb_get(out, "metadata") == NULL &&
            (rc = put_member(out, "metadata", cJSON_CreateObject())) < 0) {
            return rc;
        }
        if (is_string(type, "pyout")) {
            if ((rc = set_string(type, "execute_result")) < 0) {
                return rc;
            }
            c = apy__nb_detach(out, "prompt_number");
            if ((rc = put_member(out, "execution_count",
                                 c ? c : cJSON_CreateNull())) < 0) {
                return rc;
            }
        }
        /* Everything but these three moves into the data bundle. */
        data = cJSON_CreateObject();
        if (data == NULL) {
            return -ENOMEM;
        }
        for (c = out->child; c != NULL; c = next) {
            next = c->next;
            if (c->string == NULL || strcmp(c->string, "output_type") == 0 ||
                strcmp(c->string, "execution_count") == 0 ||
                strcmp(c->string, "metadata") == 0) {
                continue;
            }
            cJSON_DetachItemViaPointer(out, c);
            cJSON_AddItemToArray(data, c); /* keeps c->string as the key */
        }
        if ((rc = put_member(out, "data", data)) < 0 ||
            (rc = to_mime_key(data)) < 0 ||
            (rc = to_mime_key(apy__nb_get(out, "metadata"))) < 0) {
            return rc;
        }
        /* v3 kept JSON output as a string; v4 holds the value. One that
         * does not parse stays a string. */
        c = apy__nb_get(data, "application/json");
        if (cJSON_IsString(c) &&
            apy__nb_json_parse(c->valuestring, apy__nb_strlen(c), "json",
                               &json, NULL, 0) == 0) {
            if ((rc = put_member(data, "application/json", json)) < 0) {
                return rc;
            }
        }
        return 0;
    }
    if (is_string(type, "pyerr")) {
        return set_string(type, "error");
    }
    if (is_string(type, "stream")) {
        c = apy__nb_detach(out, "stream");
        return put_member(out, "name",
                          c ? c : apy__nb_new_string("stdout", 6, 0));
    }
    return 0;
}

/* Returns the end of line [start, end) without its line terminator. */
static size_t
strip_terminator(const char *s, size_t start, size_t end)
{
    const unsigned char *u = (const unsigned char *)s;

    if (end - start >= 2 && u[end - 2] == '\r' && u[end - 1] == '\n') {
        return end - 2;
    }
    if (end - start >= 3 && u[end - 3] == 0xE2 && u[end - 2] == 0x80 &&
        (u[end - 1] == 0xA8 || u[end - 1] == 0xA9)) {
        return end - 3;
    }
    if (end - start >= 2 && u[end - 2] == 0xC2 && u[end - 1] == 0x85) {
        return end - 2;
    }
    if (end > start && (u[end - 1] == '\n' || u[end - 1] == '\r' ||
                        (u[end - 1] >= 0x0B && u[end - 1] <= 0x0C) ||
                        (u[end - 1] >= 0x1C && u[end - 1] <= 0x1E))) {
        return end - 1;
    }
    return end;
}

/* heading -> markdown: "#" * level + " " + " ".join(source.splitlines()) */
static int
upgrade_heading(cJSON *cell, size_t no, char *err, size_t errlen)
{
    cJSON *level = apy__nb_detach(cell, "level");
    cJSON *src = apy__nb_get(cell, "source"), *node;
    char *joined = NULL;
    size_t len = 0, start, end, i;
    double d = 1;
    long hashes;
    int line, rc;
    apy_buf_t b = {0};

    if (level != NULL) {
        if (!cJSON_IsNumber(level) ||
            level->valuedouble != floor(level->valuedouble)) {
            cJSON_Delete(level);
            return apy__nb_fail(-EINVAL, err, errlen,
                                "cell %zu: 'level' must be an integer", no);
        }
        d = level->valuedouble;
        cJSON_Delete(level);
    }
    /* Python repeats "#" max(level, 0) times; more than 64 is no heading
     * anyone wrote, and the cap keeps a hostile level from costing. */
    hashes = d < 0 ? 0 : d > 64 ? 64 : (long)d;
    line = APY_NB_LINE(cell);
    if (src != NULL) {
        rc = apy__nb_join_source(src, &joined, &len);
        if (rc != 0) {
            return rc < 0 ? -ENOMEM
                          : apy__nb_fail(-EINVAL, err, errlen,
                                         "cell %zu: 'source' must be a "
                                         "string or a list of strings",
                                         no);
        }
        line = (cJSON_IsArray(src) && src->child) ? APY_NB_LINE(src->child)
                                                  : APY_NB_LINE(src);
    }
    for (i = 0; i < (size_t)hashes; i++) {
        apy_buf_putc(&b, '#');
    }
    apy_buf_putc(&b, ' ');
    for (start = 0; start < len; start = end) {
        end = apy__nb_splitline(joined, len, start);
        if (start > 0) {
            apy_buf_putc(&b, ' ');
        }
        apy_buf_put(&b, joined + start,
                       strip_terminator(joined, start, end) - start);
    }
    free(joined);
    if (b.failed) {
        apy_buf_free(&b);
        return -ENOMEM;
    }
    node = apy__nb_new_string(b.data, b.len, line);
    apy_buf_free(&b);
    return put_member(cell, "source", node);
}

static int
upgrade_code(cJSON *cell, cJSON *meta, size_t no, char *err, size_t errlen)
{
    cJSON *c, *outputs;
    char q[64];
    int rc;

    c = apy__nb_detach(cell, "language");
    if (c != NULL) {
        /* IJulia and IRkernel wrote their language into every v3 cell. */
        if (cJSON_IsString(c) && !apy__nb_is_python(c->valuestring)) {
            apy__nb_quote(q, sizeof(q), c->valuestring, apy__nb_strlen(c));
            cJSON_Delete(c);
            return apy__nb_fail(-ENOEXEC, err, errlen,
                                "cell %zu: language is '%s', not Python", no,
                                q);
        }
        cJSON_Delete(c);
    }
    c = apy__nb_detach(cell, "collapsed");
    if (c != NULL && (rc = put_member(meta, "collapsed", c)) < 0) {
        return rc;
    }
    c = apy__nb_detach(cell, "input");
    if (c == NULL) {
        c = apy__nb_new_string("", 0, APY_NB_LINE(cell));
    } else if (!is_string_list(c)) {
        cJSON_Delete(c);
        return apy__nb_fail(-EINVAL, err, errlen,
                            "cell %zu: 'input' must be a string or a list of "
                            "strings",
                            no);
    }
    if ((rc = put_member(cell, "source", c)) < 0) {
        return rc;
    }
    c = apy__nb_detach(cell, "prompt_number");
    if ((rc = put_member(cell, "execution_count",
                         c ? c : cJSON_CreateNull())) < 0) {
        return rc;
    }
    outputs = apy__nb_get(cell, "outputs");
    if (outputs == NULL) {
        return put_member(cell, "outputs", cJSON_CreateArray());
    }
    if (cJSON_IsArray(outputs)) {
        for (c = outputs->child; c != NULL; c = c->next) {
            if (cJSON_IsObject(c) && (rc = upgrade_output(c)) < 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* A list of lines as nbformat's readers join it: nbformat 2 with "\n"
 * (its rejoin_lines), nbformat 3 with "\n" unless the first line ends
 * with one (its _join_lines, for lists made by splitlines()). Done here by
 * ending each line but the last with "\n", so that the line map keeps
 * one JSON line per source line. 0 or -ENOMEM. */
static int
relines(cJSON *list, int v2)
{
    if (!is_string_list(list) || list->child == NULL) {
        return 0;
    }
    const cJSON *first = list->child;
    size_t n0 = apy__nb_strlen(first);
    if (!v2 && n0 > 0 && (first->valuestring[n0 - 1] == '\n'
                          || first->valuestring[n0 - 1] == '\r')) {
        return 0;
    }
    for (cJSON *c = list->child; c != NULL && c->next != NULL;) {
        size_t n = apy__nb_strlen(c);
        char *t = malloc(n + 1);
        if (t == NULL) {
            return -ENOMEM;
        }
        memcpy(t, c->valuestring, n);
        t[n] = '\n';
        cJSON *line = apy__nb_new_string(t, n + 1, APY_NB_LINE(c));
        free(t);
        if (line == NULL) {
            return -ENOMEM;
        }
        cJSON *next = c->next;
        cJSON_ReplaceItemViaPointer(list, c, line);
        c = next;
    }
    return 0;
}

/* relines() on every list of lines of a cell. 0 or -ENOMEM. */
static int
relines_cell(cJSON *cell, int v2)
{
    static const char *const texts[] = {"text", "html", "svg", "latex",
                                        "javascript", "json", NULL};
    int rc = relines(apy__nb_get(cell, "input"), v2);
    if (rc == 0) {
        rc = relines(apy__nb_get(cell, "source"), v2);
    }
    cJSON *outs = apy__nb_get(cell, "outputs"), *o;
    for (o = cJSON_IsArray(outs) ? outs->child : NULL; rc == 0 && o != NULL;
         o = o->next) {
        for (const char *const *k = texts; rc == 0 && *k != NULL; k++) {
            rc = cJSON_IsObject(o) ? relines(apy__nb_get(o, *k), v2) : 0;
        }
    }
    return rc;
}

int
apy__nb_upgrade_v3(cJSON *root, int v2, char *err, size_t errlen)
{
    cJSON *ws, *w, *wc, *cells, *c, *meta, *type;
    size_t k = 0, no = 0;
    int rc;

    ws = apy__nb_get(root, "worksheets");
    if (ws == NULL) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "not a notebook: no 'worksheets' list "
                            "(nbformat %d)", v2 ? 2 : 3);
    }
    if (!cJSON_IsArray(ws)) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "'worksheets' must be a list");
    }
    cells = cJSON_CreateArray();
    if (cells == NULL || put_member(root, "cells", cells) < 0) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    APY_NB_LINE(cells) = APY_NB_LINE(ws);
    /* In the unlikely event of several worksheets, nbformat flattens
     * them: so does this, numbering cells across them. */
    for (w = ws->child; w != NULL; w = w->next) {
        k++;
        wc = apy__nb_get(w, "cells");
        if (!cJSON_IsObject(w) || wc == NULL) {
            return apy__nb_fail(-EINVAL, err, errlen,
                                "worksheet %zu: no 'cells' list", k);
        }
        if (!cJSON_IsArray(wc)) {
            return apy__nb_fail(-EINVAL, err, errlen,
                                "worksheet %zu: 'cells' must be a list", k);
        }
        while ((c = wc->child) != NULL) {
            cJSON_DetachItemViaPointer(wc, c);
            cJSON_AddItemToArray(cells, c);
            no++;
            if (!cJSON_IsObject(c)) {
                continue; /* read_cell names it */
            }
            if (relines_cell(c, v2) < 0) {
                return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
            }
            meta = apy__nb_get(c, "metadata");
            if (meta == NULL) {
                meta = cJSON_CreateObject();
                if ((rc = put_member(c, "metadata", meta)) < 0) {
                    return apy__nb_fail(rc, err, errlen, "out of memory");
                }
            }
            if (!cJSON_IsObject(meta)) {
                return apy__nb_fail(-EINVAL, err, errlen,
                                    "cell %zu: 'metadata' must be an object",
                                    no);
            }
            type = apy__nb_get(c, "cell_type");
            rc = 0;
            if (is_string(type, "code")) {
                rc = upgrade_code(c, meta, no, err, errlen);
            } else if (is_string(type, "heading")) {
                rc = set_string(type, "markdown");
                if (rc == 0) {
                    rc = upgrade_heading(c, no, err, errlen);
                }
            } else if (is_string(type, "html")) {
                rc = set_string(type, "markdown");
            }
            if (rc == -ENOMEM) {
                return apy__nb_fail(rc, err, errlen, "out of memory");
            }
            if (rc < 0) {
                return rc;
            }
        }
    }
    meta = apy__nb_get(root, "metadata");
    if (cJSON_IsObject(meta)) {
        cJSON_Delete(apy__nb_detach(meta, "name"));
        cJSON_Delete(apy__nb_detach(meta, "signature"));
    }
    cJSON_Delete(apy__nb_detach(root, "worksheets"));
    cJSON_Delete(apy__nb_detach(root, "orig_nbformat"));
    cJSON_Delete(apy__nb_detach(root, "orig_nbformat_minor"));
    if (put_member(root, "nbformat", apy__nb_new_int(4)) < 0 ||
        put_member(root, "nbformat_minor", apy__nb_new_int(5)) < 0) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    return 0;
}
