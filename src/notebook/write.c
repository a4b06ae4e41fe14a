/* SPDX-License-Identifier: MIT */
/* The executed notebook's cells: each kept pre-rendered as sorted member
 * texts (nbformat's layout at the cell's fixed indent), and results that
 * replace only execution_count, outputs and metadata.execution. No cJSON
 * tree outlives a call: the run layer's outputs are parsed, checked,
 * rendered and deleted inside apy_nb_set_result. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apyrun/buf.h"
#include "nb_internal.h"

static int
pieces_reserve(apy_nb_pieces_t *p, size_t extra)
{
    apy_nb_piece_t *v;
    size_t cap;

    if (p->n + extra <= p->cap) {
        return 0;
    }
    cap = p->cap ? p->cap : 8;
    while (cap < p->n + extra) {
        cap *= 2;
    }
    v = realloc(p->v, cap * sizeof(*v));
    if (v == NULL) {
        return -ENOMEM;
    }
    p->v = v;
    p->cap = cap;
    return 0;
}

/* Puts (key, text) in its sorted place, replacing a piece of that key;
 * takes ownership of both. Capacity must have been reserved: this cannot
 * fail, so callers can prepare everything first and then commit. */
static void
pieces_put(apy_nb_pieces_t *p, char *key, char *text, size_t len)
{
    size_t lo = 0, hi = p->n, mid;
    int c;

    while (lo < hi) {
        mid = (lo + hi) / 2;
        c = strcmp(p->v[mid].key, key);
        if (c == 0) {
            free(key);
            free(p->v[mid].text);
            p->v[mid].text = text;
            p->v[mid].len = len;
            return;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    memmove(p->v + lo + 1, p->v + lo, (p->n - lo) * sizeof(*p->v));
    p->v[lo].key = key;
    p->v[lo].text = text;
    p->v[lo].len = len;
    p->n++;
}

static int
pieces_has(const apy_nb_pieces_t *p, const char *key)
{
    size_t i;

    for (i = 0; i < p->n; i++) {
        if (strcmp(p->v[i].key, key) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Reserves room and puts a copy of key with `text` (owned). */
static int
pieces_add(apy_nb_pieces_t *p, const char *key, char *text, size_t len)
{
    char *k;

    if (text == NULL) {
        return -ENOMEM;
    }
    k = strdup(key);
    if (k == NULL || pieces_reserve(p, 1) < 0) {
        free(k);
        free(text);
        return -ENOMEM;
    }
    pieces_put(p, k, text, len);
    return 0;
}

static void
pieces_free(apy_nb_pieces_t *p)
{
    size_t i;

    for (i = 0; i < p->n; i++) {
        free(p->v[i].key);
        free(p->v[i].text);
    }
    free(p->v);
    memset(p, 0, sizeof(*p));
}

static void
holes_free(apy_nb_hole_t *holes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        apy_nb_stream_unref(holes[i].stream);
    }
    free(holes);
}

static void
put_key(apy_buf_t *b, int level, const char *key)
{
    apy_buf_indent(b, level);
    apy__nb_render_string(b, key, strlen(key));
    apy_buf_put(b, ": ", 2);
}

/* Renders member `key`: `value` (a tree) at `level`; NULL if no memory. */
static char *
render_member(int level, const char *key, const cJSON *value, size_t *len)
{
    apy_buf_t b = {0};

    put_key(&b, level, key);
    apy__nb_render_value(&b, value, level);
    return apy_buf_take(&b, len);
}

/* Renders every member of `obj` at `level` into p (members sorted, the
 * last of duplicate keys). Returns 0 or -ENOMEM. */
static int
add_members(apy_nb_pieces_t *p, const cJSON *obj, int level)
{
    const cJSON **items;
    char *text;
    size_t n, i, len;
    int rc;

    if ((rc = apy__nb_sorted_members(obj, &items, &n)) < 0) {
        return rc;
    }
    for (i = 0; i < n && rc == 0; i++) {
        text = render_member(level, items[i]->string, items[i], &len);
        rc = pieces_add(p, items[i]->string, text, len);
    }
    free(items);
    return rc;
}

/* Renders member `key`: `literal` (JSON text already in layout). */
static char *
render_literal(int level, const char *key, const char *literal, size_t *len)
{
    apy_buf_t b = {0};

    put_key(&b, level, key);
    apy_buf_puts(&b, literal);
    return apy_buf_take(&b, len);
}

/* Renders "metadata": {...} at APY_NB_MEMBER_LEVEL from its member pieces. */
static char *
render_meta(const apy_nb_pieces_t *meta, size_t *len)
{
    apy_buf_t b = {0};
    size_t i;

    put_key(&b, APY_NB_MEMBER_LEVEL, "metadata");
    if (meta->n == 0) {
        apy_buf_put(&b, "{}", 2);
        return apy_buf_take(&b, len);
    }
    apy_buf_putc(&b, '{');
    for (i = 0; i < meta->n; i++) {
        apy_buf_puts(&b, i ? ",\n" : "\n");
        apy_buf_put(&b, meta->v[i].text, meta->v[i].len);
    }
    apy_buf_putc(&b, '\n');
    apy_buf_indent(&b, APY_NB_MEMBER_LEVEL);
    apy_buf_putc(&b, '}');
    return apy_buf_take(&b, len);
}

/* Renders "source": [lines] from the joined source as read (before the
 * newline normalisation Python gets), as nbformat's split_lines does. */
static char *
render_source(const cJSON *src, size_t *len)
{
    apy_buf_t b = {0};
    char *joined = NULL;
    size_t n = 0;

    if (src != NULL && apy__nb_join_source(src, &joined, &n) < 0) {
        return NULL;
    }
    put_key(&b, APY_NB_MEMBER_LEVEL, "source");
    apy__nb_render_lines(&b, joined ? joined : "", n, APY_NB_MEMBER_LEVEL);
    free(joined);
    return apy_buf_take(&b, len);
}

int
apy__nb_wcell_build(apy_notebook_t *nb, size_t index, cJSON *obj)
{
    apy_nb_cell_t *cell = &nb->cells[index];
    apy_nb_wcell_t *w;
    cJSON *meta = apy__nb_get(obj, "metadata");
    const cJSON *c, **items;
    char *text;
    size_t len, n, i;
    int rc, code = cell->kind == APY_NB_CODE;

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return -ENOMEM;
    }
    cell->w = w;
    /* nbformat's strip_transient, then rejoin_lines + split_lines. */
    if (cJSON_IsObject(meta)) {
        cJSON_Delete(apy__nb_detach(meta, "trusted"));
    }
    if ((code &&
         (rc = apy__nb_fix_outputs(apy__nb_get(obj, "outputs"))) < 0) ||
        (rc = apy__nb_fix_attachments(apy__nb_get(obj, "attachments"))) < 0) {
        return rc;
    }
    /* Members come sorted and unique, so that every piece is appended:
     * inserting them in document order would cost O(n^2) for a cell with
     * a huge metadata object. */
    if ((rc = apy__nb_sorted_members(obj, &items, &n)) < 0) {
        return rc;
    }
    for (i = 0; i < n && rc == 0; i++) {
        c = items[i];
        if (strcmp(c->string, "source") == 0) {
            text = render_source(c, &len);
        } else if (code && strcmp(c->string, "metadata") == 0) {
            rc = add_members(&w->meta, c, APY_NB_META_LEVEL);
            if (rc < 0) {
                break;
            }
            text = render_meta(&w->meta, &len);
        } else {
            text = render_member(APY_NB_MEMBER_LEVEL, c->string, c, &len);
        }
        rc = pieces_add(&w->members, c->string, text, len);
    }
    free(items);
    if (rc < 0) {
        return rc;
    }
    /* A cell without a key nbformat's schema requires gets the default
     * nbformat itself would create, so that the output validates. */
    if (!pieces_has(&w->members, "metadata")) {
        text =
            code ? render_meta(&w->meta, &len)
                 : render_literal(APY_NB_MEMBER_LEVEL, "metadata", "{}", &len);
        if ((rc = pieces_add(&w->members, "metadata", text, len)) < 0) {
            return rc;
        }
    }
    if (!pieces_has(&w->members, "source")) {
        text = render_source(NULL, &len);
        if ((rc = pieces_add(&w->members, "source", text, len)) < 0) {
            return rc;
        }
    }
    if (code && !pieces_has(&w->members, "execution_count")) {
        text = render_literal(APY_NB_MEMBER_LEVEL, "execution_count", "null",
                              &len);
        if ((rc = pieces_add(&w->members, "execution_count", text, len)) < 0) {
            return rc;
        }
    }
    if (code && !pieces_has(&w->members, "outputs")) {
        text = render_literal(APY_NB_MEMBER_LEVEL, "outputs", "[]", &len);
        if ((rc = pieces_add(&w->members, "outputs", text, len)) < 0) {
            return rc;
        }
    }
    return 0;
}

int
apy__nb_wdoc_build(apy_notebook_t *nb, cJSON *root)
{
    apy_nb_wdoc_t *w;
    apy_nb_pieces_t top = {0};
    apy_buf_t head = {0}, tail = {0};
    cJSON *meta = apy__nb_get(root, "metadata");
    char *text, num[32];
    size_t len, i;
    int rc = -ENOMEM, before = 0;

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return -ENOMEM;
    }
    nb->w = w;
    if (cJSON_IsObject(meta)) {
        cJSON_Delete(apy__nb_detach(meta, "orig_nbformat"));
        cJSON_Delete(apy__nb_detach(meta, "orig_nbformat_minor"));
        cJSON_Delete(apy__nb_detach(meta, "signature"));
    }
    if ((rc = add_members(&top, root, 1)) < 0) {
        goto done;
    }
    if (!pieces_has(&top, "metadata")) {
        text = render_literal(1, "metadata", "{}", &len);
        if ((rc = pieces_add(&top, "metadata", text, len)) < 0) {
            goto done;
        }
    }
    if (!pieces_has(&top, "nbformat_minor")) {
        snprintf(num, sizeof(num), "%d", nb->out_nbformat_minor);
        text = render_literal(1, "nbformat_minor", num, &len);
        if ((rc = pieces_add(&top, "nbformat_minor", text, len)) < 0) {
            goto done;
        }
    }
    apy_buf_putc(&head, '{');
    for (i = 0; i < top.n; i++) {
        if (strcmp(top.v[i].key, "cells") < 0) {
            apy_buf_puts(&head, before ? ",\n" : "\n");
            apy_buf_put(&head, top.v[i].text, top.v[i].len);
            before = 1;
        } else {
            apy_buf_put(&tail, ",\n", 2);
            apy_buf_put(&tail, top.v[i].text, top.v[i].len);
        }
    }
    apy_buf_puts(&head, before ? ",\n \"cells\": [" : "\n \"cells\": [");
    /* nbformat.write ends the file with a newline. */
    apy_buf_put(&tail, "\n}\n", 3);
    w->head = apy_buf_take(&head, &w->headlen);
    w->tail = apy_buf_take(&tail, &w->taillen);
    rc = (w->head && w->tail) ? 0 : -ENOMEM;
done:
    pieces_free(&top);
    apy_buf_free(&head);
    apy_buf_free(&tail);
    return rc;
}

void
apy__nb_wcell_free(apy_nb_wcell_t *w)
{
    if (w == NULL) {
        return;
    }
    pieces_free(&w->members);
    pieces_free(&w->meta);
    holes_free(w->holes, w->nholes);
    free(w);
}

void
apy__nb_wdoc_free(apy_nb_wdoc_t *w)
{
    if (w == NULL) {
        return;
    }
    free(w->head);
    free(w->tail);
    free(w);
}

/* ---- Cell ids ---- */

/* The ids in use, as an open-addressing hash set of borrowed strings, so
 * that naming the cells of a huge nbformat 3 notebook stays linear. */
typedef struct {
    const char **slots;
    size_t mask;
} idset_t;

static uint64_t
fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i;

    for (i = 0; i < len; i++) {
        h = (h ^ p[i]) * 1099511628211ULL;
    }
    return h;
}

static int
idset_init(idset_t *set, size_t n)
{
    size_t cap = 16;

    while (cap < 2 * n + 16) {
        cap *= 2;
    }
    set->slots = calloc(cap, sizeof(char *));
    set->mask = cap - 1;
    return set->slots ? 0 : -ENOMEM;
}

/* Returns the slot of `id`: where it is, or the empty one it would go. */
static const char **
idset_slot(const idset_t *set, const char *id)
{
    size_t i = fnv1a(1469598103934665603ULL, id, strlen(id)) & set->mask;

    while (set->slots[i] != NULL && strcmp(set->slots[i], id) != 0) {
        i = (i + 1) & set->mask;
    }
    return &set->slots[i];
}

/* Deterministic ids, so that running a notebook twice gives the same
 * file: FNV-1a of the index, a salt and the source, 8 hex digits like
 * nbformat's random ones; the salt moves on until the id is unused.
 * `set` (optional) holds the ids in use; without it, cells are searched. */
static int
assign_id(apy_notebook_t *nb, size_t index, idset_t *set)
{
    apy_nb_cell_t *cell = &nb->cells[index];
    char id[16], *text;
    uint64_t h;
    uint32_t salt;
    size_t i, len;
    int taken;
    apy_buf_t b = {0};

    for (salt = 0;; salt++) {
        h = fnv1a(1469598103934665603ULL, &index, sizeof(index));
        h = fnv1a(h, &salt, sizeof(salt));
        h = fnv1a(h, cell->source, cell->source_len);
        snprintf(id, sizeof(id), "%08x", (unsigned)(h ^ (h >> 32)));
        taken = 0;
        if (set != NULL) {
            taken = *idset_slot(set, id) != NULL;
        }
        for (i = 0; set == NULL && i < nb->ncells && !taken; i++) {
            taken = nb->cells[i].id && strcmp(nb->cells[i].id, id) == 0;
        }
        if (!taken) {
            break;
        }
    }
    put_key(&b, APY_NB_MEMBER_LEVEL, "id");
    apy__nb_render_string(&b, id, strlen(id));
    text = apy_buf_take(&b, &len);
    if (pieces_add(&cell->w->members, "id", text, len) < 0) {
        return -ENOMEM;
    }
    cell->id = strdup(id);
    if (cell->id == NULL) {
        return -ENOMEM;
    }
    if (set != NULL) {
        *idset_slot(set, cell->id) = cell->id;
    }
    return 0;
}

int
apy__nb_assign_id(apy_notebook_t *nb, size_t index)
{
    return assign_id(nb, index, NULL);
}

int
apy__nb_assign_ids(apy_notebook_t *nb)
{
    idset_t set;
    size_t i;
    int rc = 0;

    if (nb->out_nbformat_minor < 5) {
        return 0;
    }
    if (idset_init(&set, nb->ncells) < 0) {
        return -ENOMEM;
    }
    for (i = 0; i < nb->ncells; i++) {
        if (nb->cells[i].id != NULL) {
            *idset_slot(&set, nb->cells[i].id) = nb->cells[i].id;
        }
    }
    for (i = 0; i < nb->ncells && rc == 0; i++) {
        if (nb->cells[i].id == NULL) {
            rc = assign_id(nb, i, &set);
        }
    }
    free(set.slots);
    return rc;
}

/* ---- Results ---- */

static const char *const output_types[] = {"stream", "display_data",
                                           "execute_result", "error"};

/* Returns 1 if output o is a stream whose text is a big stream's place
 * (null), else 0. */
static int
is_hole(const cJSON *o)
{
    const cJSON *t = apy__nb_get(o, "output_type");
    return strcmp(t->valuestring, "stream") == 0
           && cJSON_IsNull(apy__nb_get(o, "text"));
}

/* Cuts the places of big data values out of the output rendered at
 * b[start..]: each value that is the string res->value_tag + "N" (N the
 * index of its stream, which must be the next one, *k) becomes a hole,
 * the value rendered there as the stream renders it (a list of lines
 * loses its one item's indent too: the stream puts each line's). 0, or
 * -1 when a tag is out of order or malformed. */
static int
cut_values(apy_buf_t *b, size_t start, const apy_nb_result_t *res,
           apy_nb_hole_t *holes, size_t *k)
{
    apy_buf_t tag = {0};
    char *at, *end;
    size_t from = start, cut, stop;
    unsigned long idx;
    int rc = 0;

    /* The tag as rendered: a quote, then its escaped text. */
    apy__nb_render_string(&tag, res->value_tag, strlen(res->value_tag));
    if (tag.failed || tag.len < 2) {
        apy_buf_free(&tag);
        return -1;
    }
    tag.len--; /* without the closing quote: the index follows */
    while (rc == 0 && b->len > from
           && (at = memmem(b->data + from, b->len - from, tag.data, tag.len))
                  != NULL) {
        idx = strtoul(at + tag.len, &end, 10);
        if (end == at + tag.len || *end != '"' || idx != *k
            || *k >= res->nstreams) {
            rc = -1;
            break;
        }
        cut = (size_t)(at - b->data);
        stop = (size_t)(end + 1 - b->data);
        if (apy__nb_stream_split(res->streams[*k])) {
            /* "[\n" INDENT "tag" "\n" INDENT "]": the stream writes the
             * lines with their indent; no lines at all are "[]". */
            while (cut > start && b->data[cut - 1] == ' ') {
                cut--;
            }
            if (apy__nb_stream_lines(res->streams[*k]) == 0) {
                while (cut > start && b->data[cut - 1] != '[') {
                    cut--;
                }
                while (stop < b->len && b->data[stop] != ']') {
                    stop++;
                }
            }
        }
        memmove(b->data + cut, b->data + stop, b->len - stop);
        b->len -= stop - cut;
        holes[*k].off = cut;
        holes[*k].stream = apy__nb_stream_ref(res->streams[*k]);
        (*k)++;
        from = cut;
    }
    apy_buf_free(&tag);
    return rc;
}

/* Renders the checked outputs list as the "outputs" member, as
 * render_member would, except that each big stream's lines are a hole in
 * the text (the layout is the one nbformat gives a stream output with
 * exactly "name", "output_type" and "text"). */
static int
render_with_holes(const cJSON *tree, const apy_nb_result_t *res,
                  char **text, size_t *len, apy_nb_hole_t **holes,
                  size_t *nholes, char *err, size_t errlen)
{
    apy_buf_t b = {0};
    const cJSON *o, *name;
    size_t k = 0;

    *holes = NULL;
    *nholes = 0;
    if (res->nstreams > 0
        && (*holes = calloc(res->nstreams, sizeof(**holes))) == NULL) {
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    put_key(&b, APY_NB_MEMBER_LEVEL, "outputs");
    apy_buf_put(&b, tree->child ? "[" : "[]", tree->child ? 1 : 2);
    for (o = tree->child; o != NULL; o = o->next) {
        apy_buf_puts(&b, o == tree->child ? "\n" : ",\n");
        apy_buf_indent(&b, APY_NB_MEMBER_LEVEL + 1);
        if (!is_hole(o)) {
            size_t start = b.len;
            apy__nb_render_value(&b, o, APY_NB_MEMBER_LEVEL + 1);
            if (res->value_tag != NULL
                && cut_values(&b, start, res, *holes, &k) < 0) {
                apy_buf_free(&b);
                holes_free(*holes, k);
                *holes = NULL;
                return apy__nb_fail(-EINVAL, err, errlen,
                                    "outputs: a big value out of order");
            }
            continue;
        }
        name = apy__nb_get(o, "name");
        if (k == res->nstreams || !cJSON_IsString(name)) {
            apy_buf_free(&b);
            holes_free(*holes, k);
            *holes = NULL;
            return apy__nb_fail(-EINVAL, err, errlen,
                                "outputs: a stream with no text or name");
        }
        apy_buf_puts(&b, "{\n");
        put_key(&b, APY_NB_MEMBER_LEVEL + 2, "name");
        apy__nb_render_string(&b, name->valuestring, apy__nb_strlen(name));
        apy_buf_puts(&b, ",\n");
        put_key(&b, APY_NB_MEMBER_LEVEL + 2, "output_type");
        apy_buf_puts(&b, "\"stream\",\n");
        put_key(&b, APY_NB_MEMBER_LEVEL + 2, "text");
        if (apy__nb_stream_lines(res->streams[k]) == 0) {
            apy_buf_puts(&b, "[]\n");
        } else {
            apy_buf_puts(&b, "[\n");
            (*holes)[k].off = b.len;
            apy_buf_putc(&b, '\n');
            apy_buf_indent(&b, APY_NB_MEMBER_LEVEL + 2);
            apy_buf_puts(&b, "]\n");
        }
        (*holes)[k].stream = apy__nb_stream_ref(res->streams[k]);
        k++;
        apy_buf_indent(&b, APY_NB_MEMBER_LEVEL + 1);
        apy_buf_putc(&b, '}');
    }
    if (tree->child) {
        apy_buf_putc(&b, '\n');
        apy_buf_indent(&b, APY_NB_MEMBER_LEVEL);
        apy_buf_putc(&b, ']');
    }
    *nholes = k;
    *text = apy_buf_take(&b, len);
    if (*text == NULL) {
        holes_free(*holes, k);
        *holes = NULL;
        *nholes = 0;
        return apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    return 0;
}

/* Parses, checks and renders the run layer's outputs as the "outputs"
 * member, with its big streams' places in holes. */
static int
render_outputs(const apy_nb_result_t *res, char **text, size_t *len,
               apy_nb_hole_t **holes, size_t *nholes, char *err,
               size_t errlen)
{
    cJSON *tree = NULL, *o, *t;
    size_t k = 0, i;
    int rc;

    *holes = NULL;
    *nholes = 0;
    if (res->outputs == NULL) {
        *text = render_literal(APY_NB_MEMBER_LEVEL, "outputs", "[]", len);
        return *text ? 0 : apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
    }
    rc = apy__nb_json_parse(res->outputs, res->outputs_len,
                            "outputs: not valid JSON", &tree, err, errlen);
    if (rc < 0) {
        return rc;
    }
    if (!cJSON_IsArray(tree)) {
        rc = apy__nb_fail(-EINVAL, err, errlen, "outputs: not a JSON list");
        goto done;
    }
    for (o = tree->child; o != NULL; o = o->next) {
        k++;
        t = apy__nb_get(o, "output_type");
        if (!cJSON_IsObject(o) || !cJSON_IsString(t)) {
            rc = apy__nb_fail(-EINVAL, err, errlen,
                              "outputs: output %zu is not an object with "
                              "a string 'output_type'",
                              k);
            goto done;
        }
        for (i = 0; i < sizeof(output_types) / sizeof(output_types[0]); i++) {
            if (strcmp(t->valuestring, output_types[i]) == 0) {
                break;
            }
        }
        if (i == sizeof(output_types) / sizeof(output_types[0])) {
            char q[64];
            apy__nb_quote(q, sizeof(q), t->valuestring, apy__nb_strlen(t));
            rc = apy__nb_fail(-EINVAL, err, errlen,
                              "outputs: output %zu: unknown output_type "
                              "'%s'",
                              k, q);
            goto done;
        }
    }
    if (apy__nb_fix_outputs(tree) < 0) {
        rc = apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
        goto done;
    }
    rc = render_with_holes(tree, res, text, len, holes, nholes, err, errlen);
done:
    cJSON_Delete(tree);
    return rc;
}

/* Renders nbclient's metadata.execution member from the given stamps, or
 * sets *text to NULL when there are none. */
static int
render_timing(const apy_nb_result_t *res, char **text, size_t *len, char *err,
              size_t errlen)
{
    /* In sorted key order. */
    const char *keys[4] = {"iopub.execute_input", "iopub.status.busy",
                           "iopub.status.idle", "shell.execute_reply"};
    const char *vals[4] = {res->execute_input, res->busy, res->idle,
                           res->execute_reply};
    apy_buf_t b = {0};
    int i, first = 1;

    *text = NULL;
    if (!vals[0] && !vals[1] && !vals[2] && !vals[3]) {
        return 0;
    }
    put_key(&b, APY_NB_META_LEVEL, "execution");
    apy_buf_putc(&b, '{');
    for (i = 0; i < 4; i++) {
        if (vals[i] == NULL) {
            continue;
        }
        if (!apy__nb_utf8_valid(vals[i], strlen(vals[i]))) {
            apy_buf_free(&b);
            return apy__nb_fail(-EINVAL, err, errlen,
                                "timestamp '%s' is not valid UTF-8", keys[i]);
        }
        apy_buf_puts(&b, first ? "\n" : ",\n");
        first = 0;
        put_key(&b, APY_NB_META_LEVEL + 1, keys[i]);
        apy__nb_render_string(&b, vals[i], strlen(vals[i]));
    }
    apy_buf_putc(&b, '\n');
    apy_buf_indent(&b, APY_NB_META_LEVEL);
    apy_buf_putc(&b, '}');
    *text = apy_buf_take(&b, len);
    return *text ? 0 : apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
}

int
apy_nb_set_result(apy_notebook_t *nb, const apy_nb_result_t *res, char *err,
                  size_t errlen)
{
    apy_nb_cell_t *cell;
    apy_nb_wcell_t *w;
    char *out_text = NULL, *count_text = NULL, *exec_text = NULL;
    char *meta_text = NULL, *keys[4] = {NULL, NULL, NULL, NULL}, num[32];
    size_t out_len, count_len, exec_len = 0, meta_len = 0, i;
    apy_nb_pieces_t meta = {0};
    apy_nb_hole_t *holes = NULL;
    size_t nholes = 0;
    int rc;

    if (res->cell >= nb->ncells) {
        return apy__nb_fail(-ERANGE, err, errlen, "no cell %zu (of %zu)",
                            res->cell + 1, nb->ncells);
    }
    cell = &nb->cells[res->cell];
    w = cell->w;
    if (cell->kind != APY_NB_CODE) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "cell %zu is not a code cell", res->cell + 1);
    }
    if (res->execution_count < 0 && res->execution_count != APY_NB_NO_COUNT) {
        return apy__nb_fail(-EINVAL, err, errlen,
                            "cell %zu: execution_count %ld is negative",
                            res->cell + 1, res->execution_count);
    }
    /* Prepare everything that can fail; the commit below cannot. */
    if ((rc = render_outputs(res, &out_text, &out_len, &holes, &nholes, err,
                             errlen)) < 0 ||
        (rc = render_timing(res, &exec_text, &exec_len, err, errlen)) < 0) {
        goto fail;
    }
    if (res->execution_count == APY_NB_NO_COUNT) {
        strcpy(num, "null");
    } else {
        snprintf(num, sizeof(num), "%ld", res->execution_count);
    }
    count_text = render_literal(APY_NB_MEMBER_LEVEL, "execution_count", num,
                                &count_len);
    keys[0] = strdup("outputs");
    keys[1] = strdup("execution_count");
    keys[2] = strdup("metadata");
    keys[3] = strdup("execution");
    rc = -ENOMEM;
    if (count_text == NULL || !keys[0] || !keys[1] || !keys[2] || !keys[3] ||
        pieces_reserve(&w->members, 3) < 0 ||
        pieces_reserve(&w->meta, 1) < 0) {
        goto nomem;
    }
    if (exec_text != NULL) {
        /* The metadata as it will be: a view of the current pieces with
         * the new "execution" in its place (views own nothing). */
        meta.v = malloc((w->meta.n + 1) * sizeof(apy_nb_piece_t));
        if (meta.v == NULL) {
            goto nomem;
        }
        memcpy(meta.v, w->meta.v, w->meta.n * sizeof(apy_nb_piece_t));
        meta.n = w->meta.n;
        meta.cap = w->meta.n + 1;
        for (i = 0; i < meta.n && strcmp(meta.v[i].key, "execution") < 0;
             i++) {
        }
        if (i < meta.n && strcmp(meta.v[i].key, "execution") == 0) {
            meta.v[i].text = exec_text;
            meta.v[i].len = exec_len;
        } else {
            memmove(meta.v + i + 1, meta.v + i,
                    (meta.n - i) * sizeof(apy_nb_piece_t));
            meta.v[i].key = keys[3];
            meta.v[i].text = exec_text;
            meta.v[i].len = exec_len;
            meta.n++;
        }
        meta_text = render_meta(&meta, &meta_len);
        free(meta.v);
        if (meta_text == NULL) {
            goto nomem;
        }
    }
    /* Commit. */
    pieces_put(&w->members, keys[0], out_text, out_len);
    holes_free(w->holes, w->nholes);
    w->holes = holes;
    w->nholes = nholes;
    w->gen = ++nb->w->gen;
    pieces_put(&w->members, keys[1], count_text, count_len);
    if (exec_text != NULL) {
        pieces_put(&w->meta, keys[3], exec_text, exec_len);
        pieces_put(&w->members, keys[2], meta_text, meta_len);
    } else {
        free(keys[2]);
        free(keys[3]);
    }
    return 0;

nomem:
    rc = apy__nb_fail(-ENOMEM, err, errlen, "out of memory");
fail:
    holes_free(holes, nholes);
    free(out_text);
    free(count_text);
    free(exec_text);
    free(meta_text);
    for (i = 0; i < 4; i++) {
        free(keys[i]);
    }
    return rc;
}

int
apy_nb_cell_member(const apy_nb_cell_t *cell, const char *key,
                   const char **json, size_t *len)
{
    *json = NULL;
    *len = 0;
    if (cell->w == NULL) {
        return -ENOENT;
    }
    const apy_nb_pieces_t *m = &cell->w->members;
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->v[i].key, key) != 0) {
            continue;
        }
        /* The piece is indent, the key as a JSON string, ": ", value. */
        const char *p = m->v[i].text, *end = p + m->v[i].len;
        while (p < end && *p == ' ') {
            p++;
        }
        for (p++; p < end && *p != '"'; p++) {
            p += *p == '\\';
        }
        p += 3; /* the closing quote and ": " */
        if (p > end) {
            return -ENOENT;
        }
        *json = p;
        *len = (size_t)(end - p);
        return 0;
    }
    return -ENOENT;
}
