/* SPDX-License-Identifier: MIT */
/* IPython syntax to Python, line for line: `!cmd`, `x = !cmd`, `%magic
 * args`, `x = %magic args` become calls of builtins.__apyrun_nb__ (see
 * magics.c), `%time` is timed inline (so that it may await), and a cell
 * starting with `%%` is left whole for the cell-magic runner. A light
 * scanner tracks strings, brackets, comments and backslash continuations,
 * so magic-looking text inside a string or an expression is left alone.
 * Line numbers never move: tracebacks keep pointing at the notebook. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdlib.h>
#include <string.h>

#include "apyrun/buf.h"
#include "apyrun/ipython.h"

#define HELPER "__apyrun_nb__"

/* Appends s[0..n) as a single-quoted Python string literal. */
static void
put_literal(apy_buf_t *b, const char *s, size_t n)
{
    apy_buf_put(b, "'", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '\\' || c == '\'') {
            esc[0] = '\\';
            esc[1] = (char)c;
            apy_buf_put(b, esc, 2);
        } else if (c == '\n') {
            apy_buf_put(b, "\\n", 2);
        } else if (c == '\t') {
            apy_buf_put(b, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            apy_buf_put(b, esc, 4);
        } else {
            apy_buf_put(b, (const char *)&c, 1);
        }
    }
    apy_buf_put(b, "'", 1);
}

/* Scanner state carried from one physical line to the next. */
typedef struct {
    char quote;   /* the open string's quote character, or 0 */
    int triple;   /* the open string is triple-quoted */
    int depth;    /* open brackets */
    int backslash; /* the last line ended with a continuation */
} scan_t;

/* Advances the scanner over one physical line s[0..n). */
static void
scan_line(scan_t *st, const char *s, size_t n)
{
    st->backslash = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (st->quote) {
            if (c == '\\') {
                i++;
                if (i >= n) {
                    /* a backslash-newline inside a string */
                    st->backslash = !st->triple;
                }
                continue;
            }
            if (c == st->quote) {
                if (!st->triple) {
                    st->quote = 0;
                } else if (i + 2 < n && s[i + 1] == c && s[i + 2] == c) {
                    st->quote = 0;
                    i += 2;
                }
            }
            continue;
        }
        if (c == '#') {
            return;
        }
        if (c == '"' || c == '\'') {
            st->quote = c;
            st->triple = i + 2 < n && s[i + 1] == c && s[i + 2] == c;
            if (st->triple) {
                i += 2;
            }
            continue;
        }
        if (c == '(' || c == '[' || c == '{') {
            st->depth++;
        } else if ((c == ')' || c == ']' || c == '}') && st->depth > 0) {
            st->depth--;
        } else if (c == '\\' && i + 1 == n) {
            st->backslash = 1;
        }
    }
    if (st->quote && !st->triple && !st->backslash) {
        /* An unterminated one-line string: a syntax error for Python to
         * report; do not let it swallow the next lines. */
        st->quote = 0;
    }
}

/* Returns the length of an assignment target before "= !" or "= %" at
 * s (the line after its indentation), with *rhs set to the '!' or '%', or
 * 0 when the line is not such an assignment. Targets are names, dots,
 * commas, subscripts and spaces, as IPython accepts them. */
static size_t
assign_target(const char *s, size_t n, const char **rhs)
{
    size_t i = 0;
    while (i < n && (Py_ISALNUM(s[i]) || s[i] == '_' || s[i] == '.'
                     || s[i] == ',' || s[i] == '[' || s[i] == ']'
                     || s[i] == ' ' || (unsigned char)s[i] >= 0x80)) {
        i++;
    }
    if (i == 0 || i >= n || s[i] != '=' || (i + 1 < n && s[i + 1] == '=')) {
        return 0;
    }
    size_t target_end = i;
    while (target_end > 0 && s[target_end - 1] == ' ') {
        target_end--;
    }
    i++;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) {
        i++;
    }
    if (i >= n || (s[i] != '!' && s[i] != '%') || target_end == 0) {
        return 0;
    }
    if (s[i] == '%' && (i + 1 >= n || !(Py_ISALPHA(s[i + 1])
                                        || s[i + 1] == '_'))) {
        return 0;
    }
    *rhs = s + i;
    return target_end;
}

/* Returns 1 if text parses as one expression (so %time can give its
 * value), else 0. Never leaves an exception set. */
static int
is_expression(const char *text, size_t n)
{
    char *copy = PyMem_Malloc(n + 1);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, text, n);
    copy[n] = '\0';
    PyCompilerFlags cf = _PyCompilerFlags_INIT;
    cf.cf_flags = PyCF_ONLY_AST | PyCF_ALLOW_TOP_LEVEL_AWAIT;
    PyObject *tree = Py_CompileStringExFlags(copy, "<magic>", Py_eval_input,
                                             &cf, -1);
    PyMem_Free(copy);
    Py_XDECREF(tree);
    PyErr_Clear();
    return tree != NULL;
}

/* Emits the Python for a magic expression starting at s ('!' or '%'),
 * n bytes to the end of the line. */
static void
emit_magic(apy_buf_t *b, const char *s, size_t n)
{
    if (s[0] == '!') {
        apy_buf_puts(b, HELPER ".system(");
        put_literal(b, s + 1, n - 1);
        apy_buf_puts(b, ")");
        return;
    }
    /* The name runs to the first blank, as IPython's
     * content.partition(' '): `%undefined-name` names all of it. */
    size_t i = 1;
    while (i < n && s[i] != ' ' && s[i] != '\t') {
        i++;
    }
    size_t name_end = i;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) {
        i++;
    }
    apy_buf_puts(b, HELPER ".line_magic(");
    put_literal(b, s + 1, name_end - 1);
    apy_buf_puts(b, ", ");
    put_literal(b, s + i, n - i);
    apy_buf_puts(b, ")");
}

/* %time STMT, timed inline: an expression keeps its value. */
static void
emit_time(apy_buf_t *b, const char *stmt, size_t n)
{
    if (is_expression(stmt, n)) {
        apy_buf_puts(b, HELPER ".toc(" HELPER ".tic(), (");
        apy_buf_put(b, stmt, n);
        apy_buf_puts(b, "))");
    } else {
        apy_buf_puts(b, HELPER ".tic(); ");
        apy_buf_put(b, stmt, n);
        apy_buf_puts(b, "; " HELPER ".toc()");
    }
}

/* Returns 1 if the magic at s (after '%') is %time with a statement, and
 * sets *stmt and *stmt_len to it. */
static int
is_time_magic(const char *s, size_t n, const char **stmt, size_t *stmt_len)
{
    if (n < 5 || strncmp(s, "%time", 5) != 0
        || (n > 5 && s[5] != ' ' && s[5] != '\t')) {
        return 0;
    }
    size_t i = 5;
    while (i < n && (s[i] == ' ' || s[i] == '\t')) {
        i++;
    }
    if (i == n) {
        return 0;
    }
    *stmt = s + i;
    *stmt_len = n - i;
    return 1;
}

/* 1 when code points u[i..n) are a help target as IPython's pattern
 * reads one: %{0,2}, then parts of word characters and '*' (Python's
 * \w: letters, digits, '_'), none led by a digit, joined by '.'. */
static int
valid_target(const Py_UCS4 *u, Py_ssize_t i, Py_ssize_t n)
{
    for (int k = 0; k < 2 && i < n && u[i] == '%'; k++) {
        i++;
    }
    int start = 1;
    for (; i < n; i++) {
        Py_UCS4 c = u[i];
        if (c == '.' && !start) {
            start = 1;
            continue;
        }
        if (!(Py_UNICODE_ISALNUM(c) || c == '_' || c == '*')
            || (start && Py_UNICODE_ISDECIMAL(c))) {
            return 0;
        }
        start = 0;
    }
    return !start;
}

/* The help target in body[0..n) (UTF-8, the '?'s cut off) as IPython's
 * help_end pattern searches for it: the longest tail that is a valid
 * target. A new str, or NULL (no exception) when there is none. */
static PyObject *
help_target(const char *body, size_t n)
{
    PyObject *text = PyUnicode_DecodeUTF8(body, (Py_ssize_t)n, "strict");
    Py_UCS4 *u = text != NULL ? PyUnicode_AsUCS4Copy(text) : NULL;
    PyObject *target = NULL;
    Py_ssize_t len = text != NULL ? PyUnicode_GET_LENGTH(text) : 0;
    for (Py_ssize_t i = 0; u != NULL && i < len && target == NULL; i++) {
        if (valid_target(u, i, len)) {
            target = PyUnicode_Substring(text, i, len);
        }
    }
    PyMem_Free(u);
    Py_XDECREF(text);
    PyErr_Clear();
    return target;
}

/* Help syntax, as IPython's: `obj?`, `obj??` (the line's last token a
 * '?': no comment after it; the name is the longest valid tail before
 * it), `?text` and `??text` (the rest of the line), `*pat*` for search:
 * %pinfo, %pinfo2 or %psearch of it. Writes the call after the
 * indentation s[0..ind) and returns 1, or returns 0. */
/* Whether body[0..n)'s last character is code, where the line's last
 * token can be the '?' of help: 0 when it is in a comment or a string or
 * the line goes on; 1; 2 when the brackets do not balance (IPython's
 * tokenizer then stops short of the line's end, and takes it for help
 * only when it ends with "??"). */
static int
ends_in_code(const char *body, size_t n)
{
    scan_t st = {0, 0, 0, 0};
    scan_line(&st, body, n);
    if (st.quote != 0 || st.backslash) {
        return 0;
    }
    long depth = 0;
    for (size_t i = 0; i < n; i++) {
        char c = body[i];
        if (c == '#') {
            return 0;
        }
        if ((c == '"' || c == '\'') && i + 2 < n && body[i + 1] == c
            && body[i + 2] == c) {
            const char *end = NULL;
            for (size_t j = i + 3; j + 2 < n && end == NULL; j++) {
                if (body[j] == '\\') {
                    j++;
                } else if (body[j] == c && body[j + 1] == c
                           && body[j + 2] == c) {
                    end = body + j;
                }
            }
            if (end == NULL) {
                return 0; /* a string that goes on to the next line */
            }
            i = (size_t)(end - body) + 2;
            continue;
        }
        if (c == '"' || c == '\'') {
            /* To its closing quote; a one-line string left open is one
             * error token to Python's tokenizer, which goes on after the
             * quote. */
            size_t j = i + 1;
            while (j < n && body[j] != c) {
                j += body[j] == '\\' ? 2 : 1;
            }
            if (j < n) {
                i = j;
            } else if (i + 1 == n) {
                return 0; /* the quote is the last token */
            }
            continue;
        }
        if (c == '(' || c == '[' || c == '{') {
            depth++;
        } else if (c == ')' || c == ']' || c == '}') {
            depth--;
        }
    }
    return depth == 0 ? 1 : 2;
}

static int
help_line(apy_buf_t *b, const char *s, size_t ind, const char *body,
          size_t blen)
{
    PyObject *target = NULL;
    size_t marks = 0;
    for (size_t i = 0; i < blen; i++) {
        if ((unsigned char)body[i] < 0x20 && body[i] != '\t') {
            return 0; /* IPython splits lines at \r, \f, ...: not here */
        }
    }
    if (blen > 0 && body[0] == '?') {
        marks = blen > 1 && body[1] == '?' ? 2 : 1;
        size_t skip = marks + strspn(body + marks, " \t");
        /* `?` (or `??`) alone: IPython's usage screen, %pinfo of
         * nothing here. */
        target = PyUnicode_DecodeUTF8(body + skip, (Py_ssize_t)(blen - skip),
                                      "strict");
        if (skip >= blen) {
            marks = 1;
        }
        PyErr_Clear();
    } else {
        int code = blen > 0 ? ends_in_code(body, blen) : 0;
        while (marks < 2 && marks < blen && body[blen - 1 - marks] == '?') {
            marks++;
        }
        if (code == 0 || marks == 0 || (code == 2 && marks < 2)
            || (marks < blen && body[blen - 1 - marks] == '?')) {
            return 0;
        }
        target = help_target(body, blen - marks);
    }
    if (target == NULL) {
        return 0;
    }
    const char *t = PyUnicode_AsUTF8(target);
    if (t == NULL) {
        PyErr_Clear();
        Py_DECREF(target);
        return 0;
    }
    const char *magic = marks == 2               ? "%pinfo2 "
                        : strchr(t, '*') != NULL ? "%psearch "
                                                 : "%pinfo ";
    apy_buf_t line = {0};
    apy_buf_puts(&line, magic);
    apy_buf_puts(&line, t);
    Py_DECREF(target);
    size_t len;
    char *text = apy_buf_take(&line, &len);
    if (text == NULL) {
        return 0;
    }
    apy_buf_put(b, s, ind);
    emit_magic(b, text, len);
    free(text);
    return 1;
}

/* Translates one logical-line start s[0..n) (no newline) into b. Returns
 * 1 if it was IPython syntax (then the scanner must skip it), else 0. */
static int
translate_line(apy_buf_t *b, const char *s, size_t n)
{
    size_t ind = 0;
    while (ind < n && (s[ind] == ' ' || s[ind] == '\t')) {
        ind++;
    }
    const char *body = s + ind;
    size_t blen = n - ind;
    while (blen > 0 && (body[blen - 1] == ' ' || body[blen - 1] == '\t'
                        || body[blen - 1] == '\r')) {
        blen--;
    }
    if (help_line(b, s, ind, body, blen)) {
        return 1;
    }
    const char *rhs = NULL;
    size_t tlen = 0;
    int magic = blen > 1 && (body[0] == '!'
                             || (body[0] == '%' && (Py_ISALPHA(body[1])
                                                    || body[1] == '_')));
    if (!magic) {
        tlen = assign_target(body, blen, &rhs);
        if (tlen == 0) {
            return 0;
        }
    }
    apy_buf_put(b, s, ind);
    const char *stmt;
    size_t stmt_len;
    if (rhs == NULL && is_time_magic(body, blen, &stmt, &stmt_len)) {
        emit_time(b, stmt, stmt_len);
        return 1;
    }
    if (rhs != NULL) {
        apy_buf_put(b, body, tlen);
        apy_buf_puts(b, " = ");
        size_t rlen = blen - (size_t)(rhs - body);
        if (is_time_magic(rhs, rlen, &stmt, &stmt_len)) {
            emit_time(b, stmt, stmt_len);
        } else if (rhs[0] == '!') {
            apy_buf_puts(b, HELPER ".getoutput(");
            put_literal(b, rhs + 1, rlen - 1);
            apy_buf_puts(b, ")");
        } else {
            emit_magic(b, rhs, rlen);
        }
        return 1;
    }
    emit_magic(b, body, blen);
    return 1;
}

/* ---- prompts pasted with the code (IPython's cleanup transforms) ---- */

/* The length of a classic prompt at s[0..n): ">>>" (or, unless initial,
 * "...") then a space or the line's end; 0 when there is none. */
static size_t
classic_prompt(const char *s, size_t n, int initial)
{
    if (n < 3 || (memcmp(s, ">>>", 3) != 0
                  && (initial || memcmp(s, "...", 3) != 0))) {
        return 0;
    }
    return n == 3 ? 3 : s[3] == ' ' ? 4 : 0;
}

/* "In [12]: " at s[0..n): its length, or 0. */
static size_t
in_prompt(const char *s, size_t n)
{
    if (n < 4 || memcmp(s, "In [", 4) != 0) {
        return 0;
    }
    size_t i = 4;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        i++;
    }
    if (i == 4 || i + 3 > n || memcmp(s + i, "]: ", 3) != 0) {
        return 0;
    }
    return i + 3;
}

/* The length of an IPython prompt at s[0..n): "In [N]: " (after an
 * optional "[nav] ", "[ins] " or " "), or blank space, three or more dots
 * and ':' with an optional space; 0 when there is none. */
static size_t
ipython_prompt(const char *s, size_t n)
{
    size_t m;
    if (n > 6 && (memcmp(s, "[nav] ", 6) == 0 || memcmp(s, "[ins] ", 6) == 0)
        && (m = in_prompt(s + 6, n - 6)) > 0) {
        return 6 + m;
    }
    if (n > 1 && s[0] == ' ' && (m = in_prompt(s + 1, n - 1)) > 0) {
        return 1 + m;
    }
    if ((m = in_prompt(s, n)) > 0) {
        return m;
    }
    size_t i = 0, dots;
    /* Python's \s in ASCII (non-ASCII spaces are not skipped). */
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r'
                     || s[i] == '\f' || s[i] == '\v'
                     || (s[i] >= 0x1c && s[i] <= 0x1f))) {
        i++;
    }
    for (dots = 0; i + dots < n && s[i + dots] == '.'; dots++) {
    }
    if (dots < 3 || i + dots >= n || s[i + dots] != ':') {
        return 0;
    }
    i += dots + 1;
    return i < n && s[i] == ' ' ? i + 1 : i;
}

/* The prompt at line s[0..n): kind 0 classic (initial: the first line),
 * 1 IPython's. */
static size_t
prompt_at(int kind, const char *s, size_t n, int initial)
{
    return kind == 0 ? classic_prompt(s, n, initial) : ipython_prompt(s, n);
}

/* Strips one kind of prompt from every line of text when line `skip`
 * (the first that was not blank: IPython drops blank lines first) has
 * one, or the line after it does (IPython's PromptStripper). Lines stay
 * lines: tracebacks keep their numbers.
 * Returns a new malloc'ed text, or NULL when nothing was stripped (or
 * memory ran out: then nothing is). */
static char *
strip_prompts(const char *text, int kind, size_t skip)
{
    const char *first = text;
    for (size_t k = 0; k < skip; k++) {
        first += strcspn(first, "\n");
        first += *first == '\n';
    }
    size_t n1 = strcspn(first, "\n");
    const char *second = first[n1] == '\n' ? first + n1 + 1 : NULL;
    if (prompt_at(kind, first, n1, 1) == 0
        && (second == NULL
            || prompt_at(kind, second, strcspn(second, "\n"), 0) == 0)) {
        return NULL;
    }
    apy_buf_t b = {0};
    for (const char *p = text; *p != '\0';) {
        size_t n = strcspn(p, "\n");
        size_t cut = prompt_at(kind, p, n, 0);
        apy_buf_put(&b, p + cut, n - cut + (p[n] == '\n'));
        p += n + (p[n] == '\n');
    }
    return apy_buf_take(&b, NULL);
}

char *
apy_ipy_translate(const char *source, int *cell_magic)
{
    apy_buf_t b = {0};
    scan_t st = {0, 0, 0, 0};
    char *stripped[2] = {NULL, NULL};
    *cell_magic = 0;

    /* A cell magic must open the cell (blank lines before it allowed);
     * the cell is then the magic's, prompts and all. */
    const char *p = source;
    while (*p == '\n' || *p == ' ' || *p == '\t' || *p == '\r') {
        p++;
    }
    if (p[0] == '%' && p[1] == '%') {
        *cell_magic = 1;
    }
    size_t blank = 0; /* leading blank lines */
    for (const char *q = source; *q != '\0'; blank++) {
        size_t n = strcspn(q, "\n");
        if (strspn(q, " \t\r\f\v\x1c\x1d\x1e\x1f") < n) {
            break;
        }
        q += n + (q[n] == '\n');
    }
    for (int kind = 0; kind < 2 && !*cell_magic; kind++) {
        stripped[kind] = strip_prompts(source, kind, blank);
        if (stripped[kind] != NULL) {
            source = stripped[kind];
        }
    }
    int fast = strchr(source, '!') == NULL && strchr(source, '%') == NULL
               && strchr(source, '?') == NULL;
    if (*cell_magic || fast) {
        /* Nothing to translate: the text as it is. */
        apy_buf_put(&b, source, strlen(source));
        goto done;
    }
    p = source;
    while (*p != '\0') {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        int starts = !st.quote && st.depth == 0 && !st.backslash;
        if (!(starts && translate_line(&b, p, n))) {
            apy_buf_put(&b, p, n);
            scan_line(&st, p, n);
        } else {
            st.backslash = 0;
        }
        if (nl == NULL) {
            break;
        }
        apy_buf_put(&b, "\n", 1);
        p = nl + 1;
    }
done:;
    free(stripped[0]);
    free(stripped[1]);
    char *text = apy_buf_take(&b, NULL);
    if (text == NULL) {
        PyErr_NoMemory();
    }
    return text;
}

int
apy_ipy_silenced(const char *text)
{
    const char *line = NULL;
    for (const char *p = text; *p != '\0';) {
        size_t n = strcspn(p, "\n");
        size_t lead = strspn(p, " \t\f\r");
        if (lead < n && p[lead] != '#') {
            line = p;
        }
        p += n + (p[n] == '\n');
    }
    if (line == NULL) {
        return 0;
    }
    size_t n = strcspn(line, "\n"), end = 0;
    char quote = 0;
    for (size_t i = 0; i < n; i++) {
        char c = line[i];
        if (quote != 0) {
            if (c == '\\') {
                i++;
            } else if (c == quote) {
                quote = 0;
            }
            continue;
        }
        if (c == '#') {
            break;
        }
        if (c == '"' || c == '\'') {
            quote = c;
        }
        if (c != ' ' && c != '\t' && c != '\r' && c != '\f') {
            end = i + 1;
        }
    }
    return end > 0 && line[end - 1] == ';';
}
