/* SPDX-License-Identifier: MIT */
/* Annotated cJSON trees -> text, byte for byte as nbformat writes them:
 * Python's json.dumps(indent=1, sort_keys=True, separators=(",", ": "),
 * ensure_ascii=False), Python's float repr, and nbformat's rejoin_lines /
 * split_lines (str.splitlines rules). cJSON_Print is not used: it neither
 * sorts keys nor formats numbers and strings as Python does. */
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apyrun/buf.h"
#include "nb_internal.h"

double
apy__nb_strtod(const char *s, size_t n)
{
    char small[72], *buf = small, *end;
    char point = '.';
    const struct lconv *lc;
    double d;
    size_t i;

    if (n == 3 && memcmp(s, "NaN", 3) == 0) {
        return NAN;
    }
    if (n == 8 && memcmp(s, "Infinity", 8) == 0) {
        return INFINITY;
    }
    if (n == 9 && memcmp(s, "-Infinity", 9) == 0) {
        return -INFINITY;
    }
    /* strtod reads the locale's decimal point, and a cell may well have
     * called locale.setlocale(LC_ALL, ""): translate '.' as cJSON does. */
    lc = localeconv();
    if (lc != NULL && lc->decimal_point != NULL &&
        lc->decimal_point[0] != '\0') {
        point = lc->decimal_point[0];
    }
    if (n >= sizeof(small)) {
        buf = malloc(n + 1);
        if (buf == NULL) {
            return NAN;
        }
    }
    for (i = 0; i < n; i++) {
        buf[i] = (s[i] == '.') ? point : s[i];
    }
    buf[n] = '\0';
    d = strtod(buf, &end);
    if (buf != small) {
        free(buf);
    }
    return d;
}

/* Writes repr(d) as Python prints a float into out (>= 32 bytes). */
static void
format_float(double d, char *out)
{
    char tmp[40], digits[24];
    int prec, exp10 = 0, nd = 0, decpt, i, o = 0;
    const char *p;

    if (isnan(d)) {
        strcpy(out, "NaN");
        return;
    }
    if (isinf(d)) {
        strcpy(out, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    if (d == 0.0) {
        strcpy(out, signbit(d) ? "-0.0" : "0.0");
        return;
    }
    /* The shortest digit string that reads back as d, as Python's repr
     * (David Gay's shortest mode) gives it. snprintf and strtod share the
     * current locale, so their round trip is consistent whatever the
     * decimal point; only digits and the exponent are taken below. */
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) {
            break;
        }
    }
    p = tmp;
    if (*p == '-') {
        out[o++] = '-';
        p++;
    }
    for (; *p != '\0' && *p != 'e'; p++) {
        if (*p >= '0' && *p <= '9' && nd < (int)sizeof(digits)) {
            digits[nd++] = *p;
        }
    }
    if (*p == 'e') {
        exp10 = atoi(p + 1);
    }
    while (nd > 1 && digits[nd - 1] == '0') {
        nd--;
    }
    decpt = exp10 + 1;
    if (decpt > -4 && decpt <= 16) {
        /* Fixed notation, always with a fractional part. */
        if (decpt <= 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (i = 0; i < -decpt; i++) {
                out[o++] = '0';
            }
            memcpy(out + o, digits, (size_t)nd);
            o += nd;
        } else if (decpt >= nd) {
            memcpy(out + o, digits, (size_t)nd);
            o += nd;
            for (i = nd; i < decpt; i++) {
                out[o++] = '0';
            }
            out[o++] = '.';
            out[o++] = '0';
        } else {
            memcpy(out + o, digits, (size_t)decpt);
            o += decpt;
            out[o++] = '.';
            memcpy(out + o, digits + decpt, (size_t)(nd - decpt));
            o += nd - decpt;
        }
        out[o] = '\0';
        return;
    }
    out[o++] = digits[0];
    if (nd > 1) {
        out[o++] = '.';
        memcpy(out + o, digits + 1, (size_t)(nd - 1));
        o += nd - 1;
    }
    snprintf(out + o, 16, "e%c%02d", exp10 < 0 ? '-' : '+',
             exp10 < 0 ? -exp10 : exp10);
}

static void
render_number(apy_buf_t *b, const cJSON *v)
{
    const char *text = v->valuestring;
    char out[40];

    if (text == NULL) {
        /* A number this layer made (never one read): integral values are
         * ints, as Python would have them. */
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) {
            snprintf(out, sizeof(out), "%.0f", d);
            apy_buf_puts(b, strcmp(out, "-0") == 0 ? "0" : out);
        } else {
            format_float(d, out);
            apy_buf_puts(b, out);
        }
        return;
    }
    if (strpbrk(text, ".eEIN") == NULL) {
        /* Python's json makes it an int and prints it back unchanged
         * (any length), except that -0 becomes 0. */
        apy_buf_puts(b, strcmp(text, "-0") == 0 ? "0" : text);
        return;
    }
    format_float(apy__nb_strtod(text, strlen(text)), out);
    apy_buf_puts(b, out);
}

void
apy__nb_render_string(apy_buf_t *b, const char *s, size_t len)
{
    apy_buf_putc(b, '"');
    apy__nb_render_string_body(b, s, len);
    apy_buf_putc(b, '"');
}

void
apy__nb_render_string_body(apy_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0, run;
    char esc[8];

    while (i < len) {
        run = i + apy__nb_plain_prefix(s + i, len - i, 0);
        apy_buf_put(b, s + i, run - i);
        if (run == len) {
            break;
        }
        /* Python's encoder with ensure_ascii=False escapes exactly these:
         * '"', '\\', the short escapes, and other controls as \u00xx. */
        switch (s[run]) {
        case '"':
            apy_buf_put(b, "\\\"", 2);
            break;
        case '\\':
            apy_buf_put(b, "\\\\", 2);
            break;
        case '\n':
            apy_buf_put(b, "\\n", 2);
            break;
        case '\r':
            apy_buf_put(b, "\\r", 2);
            break;
        case '\t':
            apy_buf_put(b, "\\t", 2);
            break;
        case '\b':
            apy_buf_put(b, "\\b", 2);
            break;
        case '\f':
            apy_buf_put(b, "\\f", 2);
            break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[((unsigned char)s[run] >> 4) & 0xF];
            esc[5] = hex[(unsigned char)s[run] & 0xF];
            apy_buf_put(b, esc, 6);
            break;
        }
        i = run + 1;
    }
}

typedef struct {
    const cJSON *item;
    size_t index;
} member_t;

static int
member_cmp(const void *a, const void *b)
{
    const member_t *x = a, *y = b;
    int c = strcmp(x->item->string, y->item->string);

    /* strcmp compares bytes as unsigned char: UTF-8 byte order is code
     * point order, which is how Python sorts str keys. The index keeps
     * the sort stable, so the last of duplicate keys sorts last. */
    if (c != 0) {
        return c;
    }
    return (x->index > y->index) - (x->index < y->index);
}

int
apy__nb_sorted_members(const cJSON *obj, const cJSON ***out, size_t *n)
{
    member_t *m;
    const cJSON *c, **items;
    size_t count = 0, i, k = 0;

    *out = NULL;
    *n = 0;
    for (c = obj->child; c != NULL; c = c->next) {
        count++;
    }
    if (count == 0) {
        return 0;
    }
    m = malloc(count * sizeof(*m));
    items = malloc(count * sizeof(*items));
    if (m == NULL || items == NULL) {
        free(m);
        free(items);
        return -ENOMEM;
    }
    for (c = obj->child, i = 0; c != NULL; c = c->next, i++) {
        m[i].item = c;
        m[i].index = i;
    }
    qsort(m, count, sizeof(*m), member_cmp);
    for (i = 0; i < count; i++) {
        /* Python's json keeps the last value of a duplicate key. */
        if (i + 1 < count &&
            strcmp(m[i].item->string, m[i + 1].item->string) == 0) {
            continue;
        }
        items[k++] = m[i].item;
    }
    free(m);
    *out = items;
    *n = k;
    return 0;
}

static void
render_object(apy_buf_t *b, const cJSON *v, int level)
{
    const cJSON **items;
    size_t n, i;

    if (apy__nb_sorted_members(v, &items, &n) < 0) {
        b->failed = 1;
        return;
    }
    if (n == 0) {
        apy_buf_put(b, "{}", 2);
        return;
    }
    apy_buf_putc(b, '{');
    for (i = 0; i < n; i++) {
        apy_buf_puts(b, i ? ",\n" : "\n");
        apy_buf_indent(b, level + 1);
        apy__nb_render_string(b, items[i]->string, strlen(items[i]->string));
        apy_buf_put(b, ": ", 2);
        apy__nb_render_value(b, items[i], level + 1);
    }
    apy_buf_putc(b, '\n');
    apy_buf_indent(b, level);
    apy_buf_putc(b, '}');
    free(items);
}

void
apy__nb_render_value(apy_buf_t *b, const cJSON *v, int level)
{
    const cJSON *c;

    /* Recursion depth is bounded by APY_NB_MAX_DEPTH: every tree rendered
     * here went through the scanner. */
    switch (v->type & 0xFF) {
    case cJSON_NULL:
        apy_buf_put(b, "null", 4);
        break;
    case cJSON_True:
        apy_buf_put(b, "true", 4);
        break;
    case cJSON_False:
        apy_buf_put(b, "false", 5);
        break;
    case cJSON_Number:
        render_number(b, v);
        break;
    case cJSON_String:
        apy__nb_render_string(b, v->valuestring, apy__nb_strlen(v));
        break;
    case cJSON_Array:
        if (v->child == NULL) {
            apy_buf_put(b, "[]", 2);
            break;
        }
        apy_buf_putc(b, '[');
        for (c = v->child; c != NULL; c = c->next) {
            apy_buf_puts(b, c == v->child ? "\n" : ",\n");
            apy_buf_indent(b, level + 1);
            apy__nb_render_value(b, c, level + 1);
        }
        apy_buf_putc(b, '\n');
        apy_buf_indent(b, level);
        apy_buf_putc(b, ']');
        break;
    case cJSON_Object:
        render_object(b, v, level);
        break;
    default: /* cJSON_Raw and cJSON_Invalid: never made by this layer */
        apy_buf_put(b, "null", 4);
        break;
    }
}

size_t
apy__nb_splitline(const char *s, size_t len, size_t start)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i;

    /* str.splitlines() boundaries: \n \r \r\n \v \f \x1c \x1d \x1e, and
     * U+0085, U+2028, U+2029. The text is valid UTF-8, so 0xC2 and 0xE2
     * here are lead bytes. */
    for (i = start; i < len; i++) {
        switch (u[i]) {
        case '\n':
        case 0x0B:
        case 0x0C:
        case 0x1C:
        case 0x1D:
        case 0x1E:
            return i + 1;
        case '\r':
            return (i + 1 < len && u[i + 1] == '\n') ? i + 2 : i + 1;
        case 0xC2:
            if (i + 1 < len && u[i + 1] == 0x85) {
                return i + 2;
            }
            break;
        case 0xE2:
            if (i + 2 < len && u[i + 1] == 0x80 &&
                (u[i + 2] == 0xA8 || u[i + 2] == 0xA9)) {
                return i + 3;
            }
            break;
        default:
            break;
        }
    }
    return len;
}

void
apy__nb_render_lines(apy_buf_t *b, const char *s, size_t len, int level)
{
    size_t start = 0, end;

    if (len == 0) {
        apy_buf_put(b, "[]", 2);
        return;
    }
    apy_buf_putc(b, '[');
    while (start < len) {
        end = apy__nb_splitline(s, len, start);
        apy_buf_puts(b, start == 0 ? "\n" : ",\n");
        apy_buf_indent(b, level + 1);
        apy__nb_render_string(b, s + start, end - start);
        start = end;
    }
    apy_buf_putc(b, '\n');
    apy_buf_indent(b, level);
    apy_buf_putc(b, ']');
}

cJSON *
apy__nb_get(const cJSON *obj, const char *key)
{
    cJSON *c, *found = NULL;

    if (!cJSON_IsObject(obj)) {
        return NULL;
    }
    /* Case-sensitive, and the last duplicate wins, as in Python's json:
     * cJSON_GetObjectItemCaseSensitive would return the first, and
     * cJSON_GetObjectItem ignores case ("Source" is not "source"). */
    for (c = obj->child; c != NULL; c = c->next) {
        if (c->string != NULL && strcmp(c->string, key) == 0) {
            found = c;
        }
    }
    return found;
}

cJSON *
apy__nb_detach(cJSON *obj, const char *key)
{
    cJSON *c, *next, *last = NULL;

    for (c = obj->child; c != NULL; c = next) {
        next = c->next;
        if (c->string != NULL && strcmp(c->string, key) == 0) {
            cJSON_DetachItemViaPointer(obj, c);
            if (last != NULL) {
                cJSON_Delete(last);
            }
            last = c;
        }
    }
    return last;
}

/* Turns node (a list of strings) into one string node, in place. */
static int
join_in_place(cJSON *node)
{
    char *joined;
    size_t len;

    if (apy__nb_join_source(node, &joined, &len) != 0) {
        return -ENOMEM;
    }
    cJSON_Delete(node->child);
    node->child = NULL;
    /* cJSON strings are cJSON_malloc()ed: hand over a copy made with it. */
    node->valuestring = cJSON_malloc(len + 1);
    if (node->valuestring == NULL) {
        free(joined);
        node->type = (node->type & ~0xFF) | cJSON_NULL;
        return -ENOMEM;
    }
    memcpy(node->valuestring, joined, len + 1);
    free(joined);
    node->type = (node->type & ~0xFF) | cJSON_String;
    node->valuedouble = (double)len;
    return 0;
}

/* Turns string node into a list of its lines, in place. */
static int
split_in_place(cJSON *node)
{
    const char *s = node->valuestring;
    size_t len = apy__nb_strlen(node), start = 0, end;
    cJSON *head = NULL, *tail = NULL, *line;

    while (start < len) {
        end = apy__nb_splitline(s, len, start);
        line = apy__nb_new_string(s + start, end - start, APY_NB_LINE(node));
        if (line == NULL) {
            cJSON_Delete(head);
            return -ENOMEM;
        }
        if (head == NULL) {
            head = line;
        } else {
            tail->next = line;
            line->prev = tail;
        }
        tail = line;
        start = end;
    }
    if (head != NULL) {
        head->prev = tail; /* cJSON's convention: the head knows the tail */
    }
    cJSON_free(node->valuestring);
    node->valuestring = NULL;
    node->child = head;
    node->type = (node->type & ~0xFF) | cJSON_Array;
    return 0;
}

static int
all_strings(const cJSON *list)
{
    const cJSON *c;

    for (c = list->child; c != NULL; c = c->next) {
        if (!cJSON_IsString(c)) {
            return 0;
        }
    }
    return 1;
}

static int
is_json_mime(const char *mime)
{
    size_t n = strlen(mime);

    return strcmp(mime, "application/json") == 0 ||
           (strncmp(mime, "application/", 12) == 0 && n >= 17 &&
            strcmp(mime + n - 5, "+json") == 0);
}

static int
fix_mimebundle(cJSON *data)
{
    cJSON *c;
    int rc;

    for (c = data->child; c != NULL; c = c->next) {
        if (c->string == NULL) {
            continue;
        }
        /* rejoin_lines on read, then split_lines on write. */
        if (!is_json_mime(c->string) && cJSON_IsArray(c) && all_strings(c) &&
            (rc = join_in_place(c)) < 0) {
            return rc;
        }
        if (cJSON_IsString(c) &&
            (strncmp(c->string, "text/", 5) == 0 ||
             strcmp(c->string, "application/javascript") == 0 ||
             strcmp(c->string, "image/svg+xml") == 0) &&
            (rc = split_in_place(c)) < 0) {
            return rc;
        }
    }
    return 0;
}

int
apy__nb_fix_outputs(cJSON *outputs)
{
    cJSON *out, *type, *data, *text;
    int rc;

    if (!cJSON_IsArray(outputs)) {
        return 0;
    }
    for (out = outputs->child; out != NULL; out = out->next) {
        if (!cJSON_IsObject(out)) {
            continue;
        }
        type = apy__nb_get(out, "output_type");
        if (!cJSON_IsString(type) || apy__nb_strlen(type) == 0) {
            continue;
        }
        if (strcmp(type->valuestring, "execute_result") == 0 ||
            strcmp(type->valuestring, "display_data") == 0) {
            data = apy__nb_get(out, "data");
            if (cJSON_IsObject(data) && (rc = fix_mimebundle(data)) < 0) {
                return rc;
            }
            continue;
        }
        text = apy__nb_get(out, "text");
        if (cJSON_IsArray(text) && all_strings(text) &&
            (rc = join_in_place(text)) < 0) {
            return rc;
        }
        if (strcmp(type->valuestring, "stream") == 0 && cJSON_IsString(text) &&
            (rc = split_in_place(text)) < 0) {
            return rc;
        }
    }
    return 0;
}

int
apy__nb_fix_attachments(cJSON *attachments)
{
    cJSON *c;
    int rc;

    if (!cJSON_IsObject(attachments)) {
        return 0;
    }
    for (c = attachments->child; c != NULL; c = c->next) {
        if (cJSON_IsObject(c) && (rc = fix_mimebundle(c)) < 0) {
            return rc;
        }
    }
    return 0;
}

int
apy__nb_join_source(const cJSON *v, char **out, size_t *outlen)
{
    const cJSON *c;
    size_t len = 0, o = 0;
    char *s;

    *out = NULL;
    *outlen = 0;
    if (cJSON_IsString(v)) {
        len = apy__nb_strlen(v);
    } else if (cJSON_IsArray(v) && all_strings(v)) {
        for (c = v->child; c != NULL; c = c->next) {
            len += apy__nb_strlen(c);
        }
    } else {
        return 1;
    }
    s = malloc(len + 1);
    if (s == NULL) {
        return -1;
    }
    if (cJSON_IsString(v)) {
        memcpy(s, v->valuestring, len);
    } else {
        for (c = v->child; c != NULL; c = c->next) {
            memcpy(s + o, c->valuestring, apy__nb_strlen(c));
            o += apy__nb_strlen(c);
        }
    }
    s[len] = '\0';
    *out = s;
    *outlen = len;
    return 0;
}
