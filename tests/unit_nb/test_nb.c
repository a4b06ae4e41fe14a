/* SPDX-License-Identifier: MIT */
/* Unit tests of src/notebook: `test_nb NAME` runs one case (ctest runs each
 * in its own process); `test_nb` alone runs them all in this process.
 * Exit 0 = pass, 1 = fail, 77 = skipped (something the case needs is
 * missing). Every TEST_CASE(name) line is picked up by CMakeLists.txt. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "apyrun/notebook.h"
#include "nb_internal.h" /* apy__nb_render, apy__nb_stream_lines */

#ifndef APY_NB_FIXTURES
#define APY_NB_FIXTURES "fixtures"
#endif
#ifndef APY_NB_NBCLIENT
#define APY_NB_NBCLIENT "/work/shared/notebooks/nbclient"
#endif

#define SKIP 77

/* ---- A tiny runner ---- */

typedef struct {
    const char *name;
    void (*fn)(void);
} case_t;

static case_t cases[128];
static size_t ncases;

static void
register_case(const char *name, void (*fn)(void))
{
    if (ncases < sizeof(cases) / sizeof(cases[0])) {
        cases[ncases].name = name;
        cases[ncases].fn = fn;
        ncases++;
    }
}

#define TEST_CASE(name)                                                       \
    static void test_##name(void);                                            \
    __attribute__((constructor)) static void reg_##name(void)                 \
    {                                                                         \
        register_case(#name, test_##name);                                    \
    }                                                                         \
    static void test_##name(void)

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                   \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

#define CHECK_STR(got, want)                                                  \
    do {                                                                      \
        const char *g_ = (got), *w_ = (want);                                 \
        if (g_ == NULL || strcmp(g_, w_) != 0) {                              \
            fprintf(stderr, "%s:%d: got  \"%s\"\n%*swant \"%s\"\n", __FILE__, \
                    __LINE__, g_ ? g_ : "(null)", (int)strlen(__FILE__) + 6,  \
                    "", w_);                                                  \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

#define CHECK_INT(got, want)                                                  \
    do {                                                                      \
        long g_ = (long)(got), w_ = (long)(want);                             \
        if (g_ != w_) {                                                       \
            fprintf(stderr, "%s:%d: %s is %ld, want %ld\n", __FILE__,         \
                    __LINE__, #got, g_, w_);                                  \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

/* ---- Helpers ---- */

static char err[512];

static void
parse_ok(const char *json, apy_notebook_t *nb)
{
    int rc =
        apy__nb_parse(json, strlen(json), "t.ipynb", nb, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "parse failed (%d): %s\n", rc, err);
        exit(1);
    }
}

static void
load_ok(const char *path, apy_notebook_t *nb)
{
    int rc = apy_nb_load(path, nb, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "%s: load failed (%d): %s\n", path, rc, err);
        exit(1);
    }
}

/* Parses json (len bytes) and checks that it fails with `code` and
 * exactly `msg`, leaving nb zeroed. */
static void
parse_fails_n(const char *json, size_t len, int code, const char *msg,
              int line)
{
    apy_notebook_t nb;
    int rc = apy__nb_parse(json, len, "t.ipynb", &nb, err, sizeof(err));

    if (rc != code || strcmp(err, msg) != 0) {
        fprintf(stderr,
                "%s:%d: got rc %d \"%s\"\n"
                "                  want %d \"%s\"\n",
                __FILE__, line, rc, rc ? err : "", code, msg);
        exit(1);
    }
    CHECK(nb.cells == NULL && nb.ncells == 0 && nb.w == NULL);
}

#define PARSE_FAILS(json, code, msg)                                          \
    parse_fails_n((json), strlen(json), (code), (msg), __LINE__)

static char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data;
    long n;

    if (f == NULL) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc((size_t)n + 1);
    CHECK(data != NULL);
    CHECK(fread(data, 1, (size_t)n, f) == (size_t)n);
    data[n] = '\0';
    fclose(f);
    if (len != NULL) {
        *len = (size_t)n;
    }
    return data;
}

static void
write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK(fwrite(data, 1, strlen(data), f) == strlen(data));
    CHECK(fclose(f) == 0);
}

static char *
render(const apy_notebook_t *nb)
{
    char *out;
    size_t len;

    CHECK(apy__nb_render(nb, &out, &len, err, sizeof(err)) == 0);
    CHECK(strlen(out) == len);
    return out;
}

/* A fresh empty directory for the case. */
static const char *
temp_dir(void)
{
    static char dir[64];

    strcpy(dir, "/tmp/test_nb.XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    return dir;
}

/* Counts entries of dir other than . and .. */
static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

static void
remove_dir(const char *dir)
{
    char cmd[256];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

/* Splits text into lines as Python's universal newlines do; returns the
 * count, with line i (1-based) at starts[i-1], lens[i-1]. */
static size_t
split_lines(const char *s, size_t len, const char ***starts, size_t **lens)
{
    size_t n = 0, cap = 64, i = 0, b;

    *starts = malloc(cap * sizeof(char *));
    *lens = malloc(cap * sizeof(size_t));
    while (i < len) {
        b = i;
        while (i < len && s[i] != '\n' && s[i] != '\r') {
            i++;
        }
        if (n == cap) {
            cap *= 2;
            *starts = realloc(*starts, cap * sizeof(char *));
            *lens = realloc(*lens, cap * sizeof(size_t));
        }
        (*starts)[n] = s + b;
        (*lens)[n] = i - b;
        n++;
        if (i < len && s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') {
            i++;
        }
        i++;
    }
    return n;
}

/* Checks the line map of every code cell of nb against the JSON text it
 * was read from: each source line's mapped line exists and holds the
 * start of that source line (JSON-escaped; compared up to the first
 * non-ASCII character, since a file may escape those). With `strict`
 * (Jupyter's one-string-per-line layout), line k of a cell maps to the
 * first one's line + k. */
static void
check_line_map(const char *text, size_t len, const apy_notebook_t *nb,
               int strict)
{
    const char **starts;
    size_t *lens, nfile, i, k, e;
    char want[64], line[4096];

    nfile = split_lines(text, len, &starts, &lens);
    for (i = 0; i < nb->ncells; i++) {
        const apy_nb_cell_t *c = &nb->cells[i];
        const char *p = c->source;
        if (c->kind != APY_NB_CODE) {
            continue;
        }
        for (k = 0; k < c->nlines; k++) {
            int l = c->line_map[k];
            CHECK(l >= 1 && (size_t)l <= nfile);
            if (strict) {
                CHECK_INT(l, c->line_map[0] + (int)k);
            }
            e = 0;
            while (*p != '\n' && *p != '\0' && e < 24 &&
                   (unsigned char)*p < 0x80) {
                if (*p == '"' || *p == '\\') {
                    want[e++] = '\\';
                    want[e++] = *p;
                } else if (*p == '\t') {
                    want[e++] = '\\';
                    want[e++] = 't';
                } else if ((unsigned char)*p < 0x20) {
                    e += (size_t)sprintf(want + e, "\\u%04x", *p);
                } else {
                    want[e++] = *p;
                }
                p++;
            }
            want[e] = '\0';
            snprintf(line, sizeof(line), "%.*s", (int)lens[l - 1],
                     starts[l - 1]);
            if (strstr(line, want) == NULL || strchr(line, '"') == NULL) {
                fprintf(stderr,
                        "cell %zu line %zu -> JSON line %d \"%s\" lacks "
                        "\"%s\"\n",
                        i + 1, k + 1, l, line, want);
                exit(1);
            }
            while (*p != '\n' && *p != '\0') {
                p++;
            }
            if (*p == '\n') {
                p++;
            }
        }
        CHECK(*p == '\0');
    }
    free(starts);
    free(lens);
}

static void
check_file_line_map(const char *path, int strict)
{
    apy_notebook_t nb;
    size_t len;
    char *text = read_file(path, &len);

    CHECK(text != NULL);
    load_ok(path, &nb);
    check_line_map(text, len, &nb, strict);
    apy_nb_free(&nb);
    free(text);
}

static const char *
fixture(const char *name)
{
    static char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", APY_NB_FIXTURES, name);
    return path;
}

/* A notebook around `cells` (JSON text of the list). */
static char *
notebook(const char *cells)
{
    static const char head[] =
        "{\n \"cells\": %s,\n \"metadata\": {},\n \"nbformat\": 4,\n"
        " \"nbformat_minor\": 4\n}\n";
    char *s = malloc(strlen(head) + strlen(cells) + 1);

    CHECK(s != NULL);
    sprintf(s, head, cells);
    return s;
}

static void
cells_fail(const char *cells, const char *msg, int line)
{
    char *json = notebook(cells);
    parse_fails_n(json, strlen(json), -EINVAL, msg, line);
    free(json);
}

#define CELLS_FAIL(cells, msg) cells_fail((cells), (msg), __LINE__)

static const char *const fixtures[] = {
    "v4_5_standard.ipynb",
    "v4_0_string_sources.ipynb",
    "v4_4_crlf_indent2.ipynb",
    "minified.ipynb",
    "indent4_cr_in_source.ipynb",
    "numbers_nan_nul.ipynb",
    "duplicate_keys.ipynb",
    "empty_cells.ipynb",
    "no_cells.ipynb",
    "v3_worksheets.ipynb",
    "unknown_cell_type.ipynb",
};

/* ---- Reading: format variants ---- */

static const char standard_code[] =
    "import asyncio\n\nawait asyncio.sleep(0)\nx = 1\nprint('h\xc3\xa9llo', "
    "x)";

TEST_CASE(read_v45_standard)
{
    apy_notebook_t nb;
    const apy_nb_cell_t *c;

    load_ok(fixture("v4_5_standard.ipynb"), &nb);
    CHECK_STR(nb.path, fixture("v4_5_standard.ipynb"));
    CHECK_INT(nb.nbformat, 4);
    CHECK_INT(nb.nbformat_minor, 5);
    CHECK_INT(nb.out_nbformat_minor, 5);
    CHECK_STR(nb.kernel_name, "python3");
    CHECK_STR(nb.kernel_language, "python");
    CHECK_STR(nb.language_info_name, "python");
    CHECK_INT(nb.ncells, 5);
    CHECK_INT(nb.cells[0].kind, APY_NB_MARKDOWN);
    CHECK_INT(nb.cells[1].kind, APY_NB_CODE);
    CHECK_INT(nb.cells[2].kind, APY_NB_RAW);
    CHECK_INT(nb.cells[3].kind, APY_NB_CODE);
    CHECK_INT(nb.cells[4].kind, APY_NB_CODE);
    c = &nb.cells[1];
    CHECK_STR(c->id, "code-1");
    CHECK_STR(c->source, standard_code);
    CHECK_INT(c->source_len, strlen(standard_code));
    CHECK_INT(c->ntags, 1);
    CHECK_STR(c->tags[0], "parameters");
    CHECK(apy_nb_cell_has_tag(c, "parameters"));
    CHECK(!apy_nb_cell_has_tag(c, "param"));
    CHECK_INT(c->nlines, 5);
    /* The file as nbformat wrote it: cell 2 opens on line 18 and its
     * source list starts on line 84. */
    CHECK_INT(c->json_line, 18);
    CHECK_INT(c->line_map[0], 84);
    CHECK_INT(c->line_map[4], 88);
    CHECK_STR(nb.cells[4].tags[1], "skip-execution");
    CHECK_STR(nb.cells[4].source,
              "def f():\n    return '\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e "
              "\xe2\x9c\x93 \xf0\x9f\x98\x80'\n\nf()\n");
    CHECK_INT(nb.cells[4].nlines, 4);
    CHECK_STR(nb.cells[3].source, "");
    CHECK_INT(nb.cells[3].nlines, 0);
    apy_nb_free(&nb);
    check_file_line_map(fixture("v4_5_standard.ipynb"), 1);
}

TEST_CASE(read_v40_string_sources)
{
    apy_notebook_t nb;
    const apy_nb_cell_t *c;

    load_ok(fixture("v4_0_string_sources.ipynb"), &nb);
    CHECK_INT(nb.nbformat_minor, 0);
    CHECK(nb.kernel_language != NULL && nb.language_info_name == NULL);
    c = &nb.cells[1];
    CHECK(c->id == NULL);
    CHECK_STR(c->source, "a = 1\nb = 2\nprint(a + b)\n");
    CHECK_INT(c->nlines, 3);
    /* One string holds every line: they all map to its line. */
    CHECK_INT(c->line_map[0], c->line_map[1]);
    CHECK_INT(c->line_map[0], c->line_map[2]);
    CHECK(c->line_map[0] > c->json_line);
    CHECK_STR(nb.cells[2].source, "print(3)\nprint('four')");
    CHECK_INT(nb.cells[2].nlines, 2);
    apy_nb_free(&nb);
    check_file_line_map(fixture("v4_0_string_sources.ipynb"), 0);
}

TEST_CASE(read_minified)
{
    apy_notebook_t nb;
    size_t i, k;

    load_ok(fixture("minified.ipynb"), &nb);
    CHECK_INT(nb.ncells, 5);
    CHECK_STR(nb.cells[1].source, standard_code);
    for (i = 0; i < nb.ncells; i++) {
        CHECK_INT(nb.cells[i].json_line, 1);
        for (k = 0; k < nb.cells[i].nlines; k++) {
            CHECK_INT(nb.cells[i].line_map[k], 1);
        }
    }
    apy_nb_free(&nb);
}

TEST_CASE(read_crlf_file)
{
    apy_notebook_t nb, ref;
    size_t i;

    load_ok(fixture("v4_4_crlf_indent2.ipynb"), &nb);
    load_ok(fixture("v4_5_standard.ipynb"), &ref);
    CHECK_INT(nb.ncells, ref.ncells);
    for (i = 0; i < nb.ncells; i++) {
        CHECK_STR(nb.cells[i].source, ref.cells[i].source);
        CHECK(nb.cells[i].id == NULL);
    }
    /* Indent 2 puts the source list on other lines than indent 1 does,
     * but CRLF counts as one line end. */
    CHECK_INT(nb.cells[1].line_map[0], 82);
    apy_nb_free(&nb);
    apy_nb_free(&ref);
    check_file_line_map(fixture("v4_4_crlf_indent2.ipynb"), 1);
}

TEST_CASE(read_cr_in_source)
{
    apy_notebook_t nb;

    load_ok(fixture("indent4_cr_in_source.ipynb"), &nb);
    CHECK_INT(nb.nbformat_minor, 2);
    /* "\r\n" and a lone "\r" inside strings become "\n" for Python; each
     * still maps to its own JSON line. */
    CHECK_STR(nb.cells[0].source,
              "x = '\xc3\xbc'\ny = '\xe2\x82\xac'\nz = x + y\nprint(z)");
    CHECK_INT(nb.cells[0].nlines, 4);
    CHECK_INT(nb.cells[0].line_map[0], 16);
    CHECK_INT(nb.cells[0].line_map[3], 19);
    CHECK_STR(nb.cells[1].source, "\xc3\x9cn\xc3\xaf"
                                  "c\xc3\xb6"
                                  "d\xc3\xa9\nok");
    apy_nb_free(&nb);
    check_file_line_map(fixture("indent4_cr_in_source.ipynb"), 1);
}

TEST_CASE(read_lone_cr_file)
{
    apy_notebook_t nb;

    /* Old Mac line ends: linecache (which shows traceback lines) splits
     * at a lone CR, so the line map must count them. */
    parse_ok("{\r \"cells\": [\r  {\"cell_type\": \"code\", \"metadata\": "
             "{}, \"outputs\": [], \"execution_count\": null,\r   "
             "\"source\": [\"a\\n\",\r    \"b\"]}],\r \"metadata\": {}, "
             "\"nbformat\": 4, \"nbformat_minor\": 2}",
             &nb);
    CHECK_INT(nb.cells[0].json_line, 3);
    CHECK_INT(nb.cells[0].nlines, 2);
    CHECK_INT(nb.cells[0].line_map[0], 4);
    CHECK_INT(nb.cells[0].line_map[1], 5);
    apy_nb_free(&nb);
}

TEST_CASE(read_line_map_pieces)
{
    apy_notebook_t nb;
    const apy_nb_cell_t *c;

    /* Strings that are not whole lines: a line maps to the string holding
     * its first character; empty strings hold none. */
    parse_ok("{\"cells\": [{\"cell_type\": \"code\", \"source\": [\n"
             "\"a\", \"b\\nc\\n\",\n"
             "\"\",\n"
             "\"d\\re\\r\\n\",\n"
             "\"\\n\"\n"
             "]}], \"metadata\": {}, \"nbformat\": 4}",
             &nb);
    c = &nb.cells[0];
    CHECK_STR(c->source, "ab\nc\nd\ne\n\n");
    CHECK_INT(c->nlines, 5);
    CHECK_INT(c->line_map[0], 2); /* "ab" starts in "a" */
    CHECK_INT(c->line_map[1], 2); /* "c" */
    CHECK_INT(c->line_map[2], 4); /* "d" (skips the empty string) */
    CHECK_INT(c->line_map[3], 4); /* "e" */
    CHECK_INT(c->line_map[4], 5); /* the empty last line */
    CHECK_INT(apy_nb_cell_line(c, 0), 2);
    CHECK_INT(apy_nb_cell_line(c, 3), 4);
    CHECK_INT(apy_nb_cell_line(c, 6), 5);
    CHECK_INT(apy_nb_cell_line(c, 1000000), 5);
    CHECK_INT(nb.nbformat_minor, 0); /* missing: 0, as nbformat reads it */
    apy_nb_free(&nb);
}

TEST_CASE(read_empty_cells)
{
    apy_notebook_t nb;
    size_t i;

    load_ok(fixture("empty_cells.ipynb"), &nb);
    CHECK_INT(nb.ncells, 4);
    for (i = 0; i < nb.ncells; i++) {
        CHECK_STR(nb.cells[i].source, "");
        CHECK_INT(nb.cells[i].nlines, 0);
        CHECK(nb.cells[i].line_map == NULL);
        CHECK_INT(apy_nb_cell_line(&nb.cells[i], 1), nb.cells[i].json_line);
    }
    CHECK_INT(nb.cells[3].kind, APY_NB_RAW);
    apy_nb_free(&nb);

    /* A code cell without "source" at all reads as empty. */
    parse_ok("{\"cells\": [{\"cell_type\": \"code\"}], \"nbformat\": 4}", &nb);
    CHECK_STR(nb.cells[0].source, "");
    apy_nb_free(&nb);
}

TEST_CASE(read_no_cells)
{
    apy_notebook_t nb;
    char *out;

    load_ok(fixture("no_cells.ipynb"), &nb);
    CHECK_INT(nb.ncells, 0);
    out = render(&nb);
    CHECK_STR(out, "{\n \"cells\": [],\n \"metadata\": {},\n"
                   " \"nbformat\": 4,\n \"nbformat_minor\": 4\n}\n");
    free(out);
    apy_nb_free(&nb);
}

TEST_CASE(read_minor_versions)
{
    static const int minors[] = {0, 1, 2, 3, 4, 5, 6, 42};
    apy_notebook_t nb;
    char json[256];
    size_t i;

    for (i = 0; i < sizeof(minors) / sizeof(minors[0]); i++) {
        snprintf(json, sizeof(json),
                 "{\"cells\": [{\"cell_type\": \"code\", \"source\": "
                 "\"x\"}], \"metadata\": {}, \"nbformat\": 4, "
                 "\"nbformat_minor\": %d}",
                 minors[i]);
        parse_ok(json, &nb);
        CHECK_INT(nb.nbformat_minor, minors[i]);
        CHECK_INT(nb.out_nbformat_minor, minors[i]);
        /* Ids are made up only for 4.5 and later. */
        CHECK((nb.cells[0].id != NULL) == (minors[i] >= 5));
        apy_nb_free(&nb);
    }
}

TEST_CASE(read_v3)
{
    apy_notebook_t nb;
    size_t i, k;

    load_ok(fixture("v3_worksheets.ipynb"), &nb);
    CHECK_INT(nb.nbformat, 3);
    CHECK_INT(nb.out_nbformat, 4);
    CHECK_INT(nb.out_nbformat_minor, 5);
    CHECK_INT(nb.ncells, 6); /* two worksheets, flattened */
    CHECK_INT(nb.cells[0].kind, APY_NB_MARKDOWN);
    CHECK_STR(nb.cells[0].source, "## A heading on two lines");
    CHECK_INT(nb.cells[1].kind, APY_NB_CODE);
    CHECK_STR(nb.cells[1].source, "import sys\nprint('hi')\n1 + 1");
    CHECK_INT(nb.cells[1].nlines, 3);
    CHECK_INT(nb.cells[1].line_map[0], 24);
    CHECK_INT(nb.cells[1].line_map[2], 26);
    CHECK_INT(nb.cells[2].kind, APY_NB_MARKDOWN);
    CHECK_INT(nb.cells[3].kind, APY_NB_CODE);
    CHECK_STR(nb.cells[3].source, "1/0");
    CHECK_INT(nb.cells[4].kind, APY_NB_RAW);
    CHECK_INT(nb.cells[5].kind, APY_NB_CODE);
    CHECK_STR(nb.cells[5].source, "");
    /* Generated ids: 8 hex digits, unique. */
    for (i = 0; i < nb.ncells; i++) {
        CHECK(nb.cells[i].id != NULL && strlen(nb.cells[i].id) == 8);
        CHECK(strspn(nb.cells[i].id, "0123456789abcdef") == 8);
        for (k = 0; k < i; k++) {
            CHECK(strcmp(nb.cells[i].id, nb.cells[k].id) != 0);
        }
    }
    apy_nb_free(&nb);
    check_file_line_map(fixture("v3_worksheets.ipynb"), 1);
}

/* Lists of lines as nbformat joins them: nbformat 2 with "\n" (its
 * rejoin_lines), nbformat 3 with "\n" only when the first line has no
 * newline (its _join_lines); each line keeps its own JSON line. */
TEST_CASE(read_v2_and_split_lines)
{
    apy_notebook_t nb;

    parse_ok("{\"nbformat\": 2, \"metadata\": {\"name\": \"n\"},\n"
             " \"worksheets\": [{\"cells\": [\n"
             "  {\"cell_type\": \"code\", \"input\": [\n"
             "    \"x = 1\",\n"
             "    \"\",\n"
             "    \"print(x)\"], \"language\": \"python\",\n"
             "   \"outputs\": [{\"output_type\": \"stream\", \"stream\":"
             " \"stdout\", \"text\": [\"a\", \"b\"]}],"
             " \"prompt_number\": 3},\n"
             "  {\"cell_type\": \"markdown\", \"source\": [\"# T\", "
             "\"text\"]}]}]}",
             &nb);
    CHECK_INT(nb.nbformat, 2);
    CHECK_INT(nb.out_nbformat_minor, 5);
    CHECK_INT(nb.ncells, 2);
    CHECK_STR(nb.cells[0].source, "x = 1\n\nprint(x)");
    CHECK_INT(nb.cells[0].nlines, 3);
    CHECK_INT(nb.cells[0].line_map[0], 4);
    CHECK_INT(nb.cells[0].line_map[2], 6);
    CHECK_STR(nb.cells[1].source, "# T\ntext");
    char *out = render(&nb);
    CHECK(strstr(out, "\"a\\n\",\n") != NULL);
    free(out);
    apy_nb_free(&nb);
    parse_ok("{\"nbformat\": 3, \"worksheets\": [{\"cells\": [\n"
             "  {\"cell_type\": \"code\", \"input\": [\"a = 1\", \"b\"]},\n"
             "  {\"cell_type\": \"code\", \"input\": [\"c\\n\", \"d\"]}]}]}",
             &nb);
    CHECK_STR(nb.cells[0].source, "a = 1\nb");
    CHECK_STR(nb.cells[1].source, "c\nd");
    apy_nb_free(&nb);
}

TEST_CASE(read_v3_errors)
{
    PARSE_FAILS("{\"nbformat\": 3, \"nbformat_minor\": 0, \"metadata\": {}}",
                -EINVAL, "not a notebook: no 'worksheets' list (nbformat 3)");
    PARSE_FAILS("{\"nbformat\": 3, \"worksheets\": {}}", -EINVAL,
                "'worksheets' must be a list");
    PARSE_FAILS("{\"nbformat\": 3, \"worksheets\": [{\"cells\": 1}]}", -EINVAL,
                "worksheet 1: 'cells' must be a list");
    PARSE_FAILS("{\"nbformat\": 3, \"worksheets\": [{}, 2]}", -EINVAL,
                "worksheet 1: no 'cells' list");
    PARSE_FAILS("{\"nbformat\": 3, \"worksheets\": [{\"cells\": [{\"cell_"
                "type\": \"markdown\", \"source\": \"\"}]}, {\"cells\": [{"
                "\"cell_type\": \"code\", \"language\": \"julia\", "
                "\"input\": \"println(1)\"}]}]}",
                -ENOEXEC, "cell 2: language is 'julia', not Python");
    PARSE_FAILS("{\"nbformat\": 3, \"worksheets\": [{\"cells\": [{\"cell_"
                "type\": \"code\", \"input\": 5}]}]}",
                -EINVAL,
                "cell 1: 'input' must be a string or a list of strings");
    PARSE_FAILS(
        "{\"nbformat\": 3, \"worksheets\": [{\"cells\": [{\"cell_"
        "type\": \"heading\", \"level\": \"2\", \"source\": \"x\"}]}]}",
        -EINVAL, "cell 1: 'level' must be an integer");
    PARSE_FAILS("{\"nbformat\": 3, \"worksheets\": [{\"cells\": [7]}]}",
                -EINVAL, "cell 1 is a number, not an object");
}

TEST_CASE(read_unknown_cell_type)
{
    apy_notebook_t nb;
    char *out;

    load_ok(fixture("unknown_cell_type.ipynb"), &nb);
    CHECK_INT(nb.cells[1].kind, APY_NB_OTHER);
    CHECK_STR(nb.cells[1].source, "whatever");
    out = render(&nb);
    CHECK(strstr(out, "   \"cell_type\": \"future-cell\",\n"
                      "   \"extra\": {\n    \"k\": 1\n   },\n") != NULL);
    free(out);
    apy_nb_free(&nb);
}

static void
kernel_case(const char *meta, const char *msg, int line)
{
    char json[512];
    apy_notebook_t nb;

    snprintf(json, sizeof(json),
             "{\"cells\": [], \"metadata\": %s, \"nbformat\": 4}", meta);
    if (msg == NULL) {
        if (apy__nb_parse(json, strlen(json), NULL, &nb, err, sizeof(err)) !=
            0) {
            fprintf(stderr, "%s:%d: %s\n", __FILE__, line, err);
            exit(1);
        }
        CHECK(nb.path == NULL);
        apy_nb_free(&nb);
    } else {
        /* Another language is -ENOEXEC; a malformed kernelspec -EINVAL. */
        parse_fails_n(json, strlen(json),
                      strstr(msg, "not Python") ? -ENOEXEC : -EINVAL, msg,
                      line);
    }
}

TEST_CASE(read_kernel_language)
{
    kernel_case("{\"kernelspec\": {\"name\": \"ir\", \"language\": \"R\"}}",
                "kernel language is 'R', not Python", __LINE__);
    kernel_case("{\"kernelspec\": {\"language\": \"julia\"}, "
                "\"language_info\": {\"name\": \"julia\"}}",
                "kernel language is 'julia', not Python", __LINE__);
    /* No kernelspec language: what the last kernel reported decides. */
    kernel_case("{\"language_info\": {\"name\": \"R\"}}",
                "kernel language is 'R', not Python", __LINE__);
    kernel_case("{\"kernelspec\": {\"language\": \"python\"}, "
                "\"language_info\": {\"name\": \"R\"}}",
                NULL, __LINE__);
    kernel_case("{\"kernelspec\": {\"language\": \"Python 3\"}}", NULL,
                __LINE__);
    kernel_case("{\"kernelspec\": {\"language\": \"python3\"}}", NULL,
                __LINE__);
    kernel_case("{\"kernelspec\": {\"name\": \"python3\"}}", NULL, __LINE__);
    kernel_case("{}", NULL, __LINE__);
    kernel_case("{\"kernelspec\": {\"language\": \"pythonista\"}}",
                "kernel language is 'pythonista', not Python", __LINE__);
    kernel_case("{\"kernelspec\": \"python3\"}",
                "'metadata.kernelspec' must be an object", __LINE__);
    kernel_case("{\"kernelspec\": {\"language\": 3}}",
                "'metadata.kernelspec.language' must be a string", __LINE__);
    kernel_case("{\"kernelspec\": {\"name\": null}}",
                "'metadata.kernelspec.name' must be a string", __LINE__);
    kernel_case("{\"language_info\": []}",
                "'metadata.language_info' must be an object", __LINE__);
    kernel_case("{\"language_info\": {\"name\": \"py\\u0000thon\"}}",
                "'metadata.language_info.name' contains a NUL character "
                "(\\u0000)",
                __LINE__);
    kernel_case("{\"kernelspec\": {\"language\": \"a\\nb\"}}",
                "kernel language is 'a\\x0ab', not Python", __LINE__);
}

TEST_CASE(read_duplicate_keys)
{
    apy_notebook_t nb;
    char *out;

    /* Python's json keeps the last of duplicate keys; so does apyrun,
     * for what it reads (source, tags) and for what it writes back. */
    load_ok(fixture("duplicate_keys.ipynb"), &nb);
    CHECK_STR(nb.cells[0].source, "second = 2\nthird = 3\n");
    CHECK_INT(nb.cells[0].ntags, 1);
    CHECK_STR(nb.cells[0].tags[0], "new");
    CHECK_INT(nb.cells[0].line_map[0], 5);
    out = render(&nb);
    CHECK(strstr(out, "first") == NULL && strstr(out, "old") == NULL);
    CHECK(strstr(out, "\"source\": [\n    \"second = 2\\n\",\n"
                      "    \"third = 3\\n\"\n   ]\n") != NULL);
    free(out);
    apy_nb_free(&nb);
    PARSE_FAILS("{\"cells\": [], \"nbformat\": 4, \"nbformat\": 5}", -EINVAL,
                "nbformat 5 is not supported (apyrun reads nbformat 2, 3 "
                "and 4)");
}

TEST_CASE(read_duplicate_metadata)
{
    apy_notebook_t nb;
    apy_nb_result_t res;
    char *out;

    /* Found by the fuzzer: only the last "metadata" is checked, so an
     * earlier one of another type must be ignored by the writer too. */
    parse_ok("{\"cells\": [{\"cell_type\": \"code\", \"metadata\": [1, "
             "{\"a\": 2}], \"metadata\": {\"b\": 3}, \"source\": \"x\"}], "
             "\"metadata\": [], \"metadata\": {}, \"nbformat\": 4}",
             &nb);
    memset(&res, 0, sizeof(res));
    res.execution_count = 1;
    res.idle = "t";
    CHECK_INT(apy_nb_set_result(&nb, &res, err, sizeof(err)), 0);
    out = render(&nb);
    CHECK(strstr(out, "   \"metadata\": {\n"
                      "    \"b\": 3,\n"
                      "    \"execution\": {\n"
                      "     \"iopub.status.idle\": \"t\"\n"
                      "    }\n"
                      "   },\n") != NULL);
    CHECK(strstr(out, "\"a\"") == NULL);
    free(out);
    apy_nb_free(&nb);
}

TEST_CASE(read_nul)
{
    apy_notebook_t nb;
    char *out;

    /* cJSON ends its C strings at a "\u0000": where apyrun reads a string
     * that is an error, where it only keeps one the length is kept. */
    CELLS_FAIL("[{\"cell_type\": \"code\", \"source\": [\"a\\u0000b\"]}]",
               "cell 1: the source contains a NUL character (\\u0000)");
    CELLS_FAIL("[{\"cell_type\": \"code\\u0000\", \"source\": \"\"}]",
               "cell 1: 'cell_type' contains a NUL character (\\u0000)");
    CELLS_FAIL("[{\"cell_type\": \"code\", \"metadata\": {\"tags\": "
               "[\"a\\u0000\"]}}]",
               "cell 1: 'metadata.tags' contains a NUL character "
               "(\\u0000)");
    CELLS_FAIL("[{\"cell_type\": \"code\", \"id\": \"\\u0000\"}]",
               "cell 1: 'id' contains a NUL character (\\u0000)");
    PARSE_FAILS("{\"cells\": [], \"metadata\": {\"a\\u0000b\": 1}}", -EINVAL,
                "not valid JSON: a key contains \\u0000 (line 1, column "
                "28)");
    load_ok(fixture("numbers_nan_nul.ipynb"), &nb);
    out = render(&nb);
    CHECK(strstr(out, "\"nul\\u0000byte\\n\",\n") != NULL);
    CHECK(strstr(out, "\"bell\\u0007 esc\\u001b[0m tab\\t del\x7f\\n\"") !=
          NULL);
    free(out);
    apy_nb_free(&nb);
}

TEST_CASE(read_numbers)
{
    apy_notebook_t nb;
    char *out;

    /* Python's json reads NaN, Infinity and ints of any length; cJSON
     * does not, and keeps numbers as doubles: they are written back as
     * Python would write them. */
    load_ok(fixture("numbers_nan_nul.ipynb"), &nb);
    out = render(&nb);
    CHECK(strstr(out, "\"big\": 1234567890123456789012345678901234567890123"
                      "45678901234567890123456789,\n") != NULL);
    CHECK(strstr(out, "    \"f\": [\n     1.5,\n     100000.0,\n     0,\n"
                      "     0.0001,\n     1e-05,\n     1e+16,\n"
                      "     Infinity,\n     5e-324,\n     2.5e-07\n    ],") !=
          NULL);
    CHECK(strstr(out, "     NaN,\n     Infinity,\n     -Infinity\n") != NULL);
    CHECK(strstr(out, "\"x\": NaN,\n") != NULL);
    free(out);
    apy_nb_free(&nb);
}

TEST_CASE(read_locale_numbers)
{
    apy_notebook_t nb;
    char *c_out, *de_out, cmd[256];
    const char *dir;

    /* A cell may call locale.setlocale(LC_ALL, ""): numbers must still be
     * read and written with '.'. Debian ships no de_DE locale by default:
     * compile one into a temporary LOCPATH. */
    load_ok(fixture("numbers_nan_nul.ipynb"), &nb);
    c_out = render(&nb);
    apy_nb_free(&nb);
    if (setlocale(LC_ALL, "de_DE.UTF-8") == NULL) {
        dir = temp_dir();
        snprintf(cmd, sizeof(cmd),
                 "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1",
                 dir);
        if (system(cmd) != 0) {
            remove_dir(dir);
            exit(SKIP);
        }
        setenv("LOCPATH", dir, 1);
        if (setlocale(LC_ALL, "de_DE.UTF-8") == NULL) {
            remove_dir(dir);
            exit(SKIP);
        }
        remove_dir(dir);
    }
    CHECK(localeconv()->decimal_point[0] == ',');
    load_ok(fixture("numbers_nan_nul.ipynb"), &nb);
    de_out = render(&nb);
    CHECK_STR(de_out, c_out);
    apy_nb_free(&nb);
    free(c_out);
    free(de_out);
    setlocale(LC_ALL, "C");
}

/* ---- Reading: bad input ---- */

TEST_CASE(bad_json_syntax)
{
    PARSE_FAILS("", -EINVAL, "the notebook is empty (no JSON at all)");
    PARSE_FAILS(" \r\n\t ", -EINVAL, "the notebook is empty (no JSON at all)");
    PARSE_FAILS("{", -EINVAL,
                "not valid JSON: unexpected end of the text (line 1, "
                "column 2)");
    PARSE_FAILS("{\n \"a\" 1}", -EINVAL,
                "not valid JSON: expected ':' after a key (line 2, column "
                "6)");
    PARSE_FAILS("{\"a\": 1,}", -EINVAL,
                "not valid JSON: expected a key in double quotes (line 1, "
                "column 9)");
    PARSE_FAILS("{\"a\": [1 2]}", -EINVAL,
                "not valid JSON: expected ',' or ']' (line 1, column 10)");
    PARSE_FAILS("{\"a\": 1 \"b\": 2}", -EINVAL,
                "not valid JSON: expected ',' or '}' (line 1, column 9)");
    PARSE_FAILS("{} x", -EINVAL,
                "not valid JSON: extra data after the JSON value (line 1, "
                "column 4)");
    PARSE_FAILS("{\"a\": tru}", -EINVAL,
                "not valid JSON: unexpected character (line 1, column 7)");
    PARSE_FAILS("{\"a\": None}", -EINVAL,
                "not valid JSON: unexpected character 'N' (line 1, column "
                "7)");
    PARSE_FAILS("{'a': 1}", -EINVAL,
                "not valid JSON: expected a key in double quotes (line 1, "
                "column 2)");
    PARSE_FAILS("\xef\xbb\xbf[]", -EINVAL,
                "not a notebook: the JSON is a list, not an object");
    PARSE_FAILS("\"x\"", -EINVAL,
                "not a notebook: the JSON is a string, not an object");
    PARSE_FAILS("null", -EINVAL,
                "not a notebook: the JSON is null, not an object");
    PARSE_FAILS("{}", -EINVAL, "not a notebook: no 'nbformat' version");
    PARSE_FAILS("<html>", -EINVAL,
                "not valid JSON: unexpected character '<' (line 1, column "
                "1)");
    /* Columns count characters, not bytes. */
    PARSE_FAILS("{\"\xc3\xa9\xc3\xa9\": x}", -EINVAL,
                "not valid JSON: unexpected character 'x' (line 1, column "
                "8)");
    /* A NUL byte in the file (cJSON would stop reading there). */
    parse_fails_n("{\"a\": 1}\0{", 10, -EINVAL,
                  "not valid JSON: extra data after the JSON value (line 1, "
                  "column 9)",
                  __LINE__);
}

TEST_CASE(bad_json_numbers)
{
    /* cJSON accepts all of these but "+1"; Python's json none. */
    PARSE_FAILS("{\"a\": 01}", -EINVAL,
                "not valid JSON: expected ',' or '}' (line 1, column 8)");
    PARSE_FAILS("{\"a\": +1}", -EINVAL,
                "not valid JSON: unexpected character '+' (line 1, column "
                "7)");
    PARSE_FAILS("{\"a\": 1.}", -EINVAL,
                "not valid JSON: invalid number (line 1, column 7)");
    PARSE_FAILS("{\"a\": .5}", -EINVAL,
                "not valid JSON: unexpected character '.' (line 1, column "
                "7)");
    PARSE_FAILS("{\"a\": -}", -EINVAL,
                "not valid JSON: invalid number (line 1, column 7)");
    PARSE_FAILS("{\"a\": 1e}", -EINVAL,
                "not valid JSON: invalid number (line 1, column 7)");
    PARSE_FAILS("{\"a\": -NaN}", -EINVAL,
                "not valid JSON: invalid number (line 1, column 7)");
    PARSE_FAILS("{\"a\": Infinit}", -EINVAL,
                "not valid JSON: unexpected character 'I' (line 1, column "
                "7)");
}

TEST_CASE(bad_json_strings)
{
    PARSE_FAILS("{\"a\": \"x\ty\"}", -EINVAL,
                "not valid JSON: unescaped control character U+0009 in a "
                "string (line 1, column 9)");
    PARSE_FAILS("{\"a\": \"line\nbreak\"}", -EINVAL,
                "not valid JSON: unescaped control character U+000A in a "
                "string (line 1, column 12)");
    PARSE_FAILS("{\"a\": \"\xff\"}", -EINVAL,
                "not valid JSON: invalid UTF-8 in a string (line 1, column "
                "8)");
    PARSE_FAILS("{\"a\": \"\xc0\xaf\"}", -EINVAL,
                "not valid JSON: invalid UTF-8 in a string (line 1, column "
                "8)");
    PARSE_FAILS("{\"a\": \"\xed\xa0\x80\"}", -EINVAL,
                "not valid JSON: invalid UTF-8 in a string (line 1, column "
                "8)");
    PARSE_FAILS("{\"a\": \"\xf4\x90\x80\x80\"}", -EINVAL,
                "not valid JSON: invalid UTF-8 in a string (line 1, column "
                "8)");
    PARSE_FAILS("{\"a\": \"\xe2\x82\"}", -EINVAL,
                "not valid JSON: invalid UTF-8 in a string (line 1, column "
                "8)");
    PARSE_FAILS("{\"a\": \"\\x41\"}", -EINVAL,
                "not valid JSON: invalid escape '\\x' (line 1, column 8)");
    PARSE_FAILS("{\"a\": \"\\u12G4\"}", -EINVAL,
                "not valid JSON: invalid \\u escape (line 1, column 8)");
    PARSE_FAILS("{\"a\": \"\\u00zz\"}", -EINVAL,
                "not valid JSON: invalid \\u escape (line 1, column 8)");
    PARSE_FAILS("{\"a\": \"\\ud83d\"}", -EINVAL,
                "not valid JSON: lone surrogate \\ud83d in a string (line "
                "1, column 8)");
    PARSE_FAILS("{\"a\": \"\\ude00x\"}", -EINVAL,
                "not valid JSON: lone surrogate \\ude00 in a string (line "
                "1, column 8)");
    PARSE_FAILS("{\"a\": \"\\ud83d\\u0041\"}", -EINVAL,
                "not valid JSON: lone surrogate \\ud83d in a string (line "
                "1, column 8)");
    PARSE_FAILS("{\"a\": \"abc", -EINVAL,
                "not valid JSON: unterminated string (line 1, column 7)");
    PARSE_FAILS("{\"a\": \"abc\\", -EINVAL,
                "not valid JSON: unterminated string (line 1, column 7)");
}

TEST_CASE(bad_json_depth)
{
    static const size_t depths[] = {APY_NB_MAX_DEPTH, APY_NB_MAX_DEPTH + 1,
                                    100000};
    size_t i, n;
    char *s;

    /* APY_NB_MAX_DEPTH levels are fine, one more is refused: the scanner
     * is iterative, cJSON and the renderer recurse at most this deep. */
    for (i = 0; i < sizeof(depths) / sizeof(depths[0]); i++) {
        n = depths[i];
        s = malloc(2 * n + 1);
        CHECK(s != NULL);
        memset(s, '[', n);
        memset(s + n, ']', n);
        s[2 * n] = '\0';
        if (n == APY_NB_MAX_DEPTH) {
            PARSE_FAILS(s, -EINVAL,
                        "not a notebook: the JSON is a list, not an object");
        } else {
            PARSE_FAILS(s, -EINVAL,
                        "not valid JSON: nested deeper than 512 levels "
                        "(line 1, column 513)");
        }
        free(s);
    }
}

TEST_CASE(bad_shape)
{
    PARSE_FAILS("{\"nbformat\": \"4\", \"cells\": []}", -EINVAL,
                "'nbformat' must be a non-negative integer");
    PARSE_FAILS("{\"nbformat\": 4.5, \"cells\": []}", -EINVAL,
                "'nbformat' must be a non-negative integer");
    PARSE_FAILS("{\"nbformat\": 1, \"cells\": []}", -EINVAL,
                "nbformat 1 is not supported (apyrun reads nbformat 2, 3 "
                "and 4)");
    PARSE_FAILS("{\"nbformat\": 2, \"cells\": []}", -EINVAL,
                "not a notebook: no 'worksheets' list (nbformat 2)");
    PARSE_FAILS("{\"nbformat\": 4, \"nbformat_minor\": -1, \"cells\": []}",
                -EINVAL, "'nbformat_minor' must be a non-negative integer");
    PARSE_FAILS("{\"nbformat\": 4, \"metadata\": []}", -EINVAL,
                "'metadata' must be an object");
    PARSE_FAILS("{\"nbformat\": 4, \"metadata\": {}}", -EINVAL,
                "not a notebook: no 'cells' list");
    PARSE_FAILS("{\"nbformat\": 4, \"cells\": {}}", -EINVAL,
                "'cells' must be a list, not an object");
    CELLS_FAIL("[{\"cell_type\": \"code\"}, \"x\"]",
               "cell 2 is a string, not an object");
    CELLS_FAIL("[{\"source\": \"x\"}]", "cell 1: no 'cell_type'");
    CELLS_FAIL("[{\"cell_type\": 1}]", "cell 1: 'cell_type' must be a string");
    CELLS_FAIL("[{\"cell_type\": \"code\"}, {\"cell_type\": \"code\"}, "
               "{\"cell_type\": \"code\"}, {\"cell_type\": \"code\", "
               "\"source\": 5}]",
               "cell 4: 'source' must be a string or a list of strings");
    CELLS_FAIL("[{\"cell_type\": \"markdown\", \"source\": [\"a\", null]}]",
               "cell 1: 'source' must be a string or a list of strings");
    CELLS_FAIL("[{\"cell_type\": \"code\", \"source\": {}}]",
               "cell 1: 'source' must be a string or a list of strings");
    CELLS_FAIL("[{\"cell_type\": \"code\", \"metadata\": []}]",
               "cell 1: 'metadata' must be an object");
    CELLS_FAIL("[{\"cell_type\": \"code\", \"metadata\": {\"tags\": "
               "\"skip-execution\"}}]",
               "cell 1: 'metadata.tags' must be a list of strings");
    CELLS_FAIL("[{\"cell_type\": \"code\", \"metadata\": {\"tags\": [1]}}]",
               "cell 1: 'metadata.tags' must be a list of strings");
    CELLS_FAIL("[{\"cell_type\": \"code\", \"id\": 12}]",
               "cell 1: 'id' must be a string");
}

/* Bytes this process has read(2) so far (/proc/self/io's rchar), or -1
 * where the kernel does not say: the cases that must not read check it. */
static long long
bytes_read(void)
{
    char buf[512];
    long long n = -1;
    int fd = open("/proc/self/io", O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return -1;
    }
    ssize_t got = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (got > 0) {
        buf[got] = '\0';
        const char *p = strstr(buf, "rchar:");
        if (p != NULL) {
            n = strtoll(p + 6, NULL, 10);
        }
    }
    return n;
}

/* Fails unless at most `n` bytes were read since `before` (bytes_read()),
 * not counting the read of /proc/self/io itself. */
#define CHECK_READ_AT_MOST(before, n)                                         \
    do {                                                                      \
        long long now_ = bytes_read();                                        \
        if ((before) >= 0 && now_ - (before) > (long long)(n) + 512) {        \
            fprintf(stderr, "%s:%d: %lld bytes read, want at most %lld\n",    \
                    __FILE__, __LINE__, now_ - (before), (long long)(n));     \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

/* Starts a child that writes len bytes of data into a new pipe and exits
 * (killed by SIGPIPE if the reader stops early); returns the read end. */
static int
pipe_from_child(const char *data, size_t len, pid_t *pid)
{
    int fds[2];

    CHECK(pipe(fds) == 0);
    *pid = fork();
    CHECK(*pid >= 0);
    if (*pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        close(fds[0]);
        while (len > 0) {
            ssize_t got = write(fds[1], data, len);
            if (got < 0) {
                _exit(errno == EPIPE ? 0 : 1);
            }
            data += got;
            len -= (size_t)got;
        }
        _exit(0);
    }
    close(fds[1]);
    return fds[0];
}

TEST_CASE(load_errors)
{
    apy_notebook_t nb;
    const char *dir = temp_dir();
    char path[256];
    int fd;

    CHECK_INT(apy_nb_load("/nonexistent/x.ipynb", &nb, err, sizeof(err)),
              -ENOENT);
    CHECK_STR(err, "cannot open: No such file or directory");
    CHECK(nb.cells == NULL);
    CHECK_INT(apy_nb_load(dir, &nb, err, sizeof(err)), -EISDIR);
    CHECK_STR(err, "is a directory");

    snprintf(path, sizeof(path), "%s/empty.ipynb", dir);
    write_file(path, "");
    CHECK_INT(apy_nb_load(path, &nb, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "the notebook is empty (no JSON at all)");

    /* Over the limit: refused from its size, without reading it (sparse,
     * so the test costs no disk). */
    snprintf(path, sizeof(path), "%s/huge.ipynb", dir);
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, APY_NB_MAX_FILE_SIZE + 1) == 0);
    close(fd);
    long long before = bytes_read();
    CHECK_INT(apy_nb_load(path, &nb, err, sizeof(err)), -EFBIG);
    CHECK_STR(err, "too large (1073741825 bytes; the limit is 1 GiB)");
    CHECK_READ_AT_MOST(before, 0);

    if (geteuid() != 0) {
        snprintf(path, sizeof(path), "%s/secret.ipynb", dir);
        write_file(path, "{}");
        CHECK(chmod(path, 0) == 0);
        CHECK_INT(apy_nb_load(path, &nb, err, sizeof(err)), -EACCES);
        CHECK_STR(err, "cannot open: Permission denied");
    }
    /* A pipe: read to EOF whatever st_size says. */
    CHECK_INT(apy_nb_load("/dev/null", &nb, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "the notebook is empty (no JSON at all)");
    remove_dir(dir);
}

/* Devices, pipes and FIFOs: read in growing chunks, refused as soon as
 * what was read cannot be a notebook, never waiting for a writer. */
TEST_CASE(load_streams)
{
    apy_notebook_t nb;
    const char *dir = temp_dir();
    char path[256];
    long long before;
    pid_t pid;
    int fd, status;

    /* A case that waits for a writer or reads the limit fails here
     * instead of hanging the suite. */
    alarm(30);

    /* /dev/zero: one chunk, not the 1 GiB limit (which took 2 GiB of
     * memory and seconds). */
    before = bytes_read();
    CHECK_INT(apy_nb_load("/dev/zero", &nb, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "not valid JSON: unexpected character U+0000 (line 1, "
                   "column 1)");
    CHECK_READ_AT_MOST(before, 64 * 1024);
    CHECK(nb.cells == NULL);

    /* A notebook of many chunks through a pipe (as /dev/stdin is). */
    size_t n = 300 * 1000;
    char *cells = malloc(n + 64);
    CHECK(cells != NULL);
    strcpy(cells, "[{\"cell_type\": \"code\", \"source\": \"");
    memset(cells + strlen(cells), 'x', n);
    strcpy(cells + strlen("[{\"cell_type\": \"code\", \"source\": \"") + n,
           "\"}]");
    char *json = notebook(cells);
    fd = pipe_from_child(json, strlen(json), &pid);
    snprintf(path, sizeof(path), "/dev/fd/%d", fd);
    load_ok(path, &nb);
    CHECK_INT(nb.ncells, 1);
    CHECK_INT(strlen(nb.cells[0].source), n);
    apy_nb_free(&nb);
    close(fd);
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status)
          && WEXITSTATUS(status) == 0);
    free(json);

    /* A control byte after 200 kB: reading stops in its chunk (the 4 MB
     * after it are never read) and the message is the whole text's. */
    size_t head = 200 * 1000, tail = 4 * 1000 * 1000;
    json = malloc(head + tail);
    CHECK(json != NULL);
    memcpy(json, "{\"a\": \"", 7);
    memset(json + 7, 'x', head - 7);
    json[head - 2] = '"';
    json[head - 1] = '\001';
    memset(json + head, ' ', tail);
    CHECK_INT(apy__nb_parse(json, head + tail, "t.ipynb", &nb, err,
                            sizeof(err)), -EINVAL);
    char whole[sizeof(err)];
    strcpy(whole, err);
    CHECK_STR(whole, "not valid JSON: expected ',' or '}' (line 1, column "
                     "200000)");
    fd = pipe_from_child(json, head + tail, &pid);
    snprintf(path, sizeof(path), "/dev/fd/%d", fd);
    before = bytes_read();
    CHECK_INT(apy_nb_load(path, &nb, err, sizeof(err)), -EINVAL);
    CHECK_READ_AT_MOST(before, head + 64 * 1024);
    CHECK_STR(err, whole);
    close(fd);
    CHECK(waitpid(pid, &status, 0) == pid);
    free(json);
    free(cells);

    /* A FIFO no one writes to: empty at once, no wait in open(). */
    snprintf(path, sizeof(path), "%s/fifo.ipynb", dir);
    CHECK(mkfifo(path, 0600) == 0);
    CHECK_INT(apy_nb_load(path, &nb, err, sizeof(err)), -EINVAL);
    CHECK_STR(err, "the notebook is empty (nothing was written to the FIFO)");
    alarm(0);
    remove_dir(dir);
}

/* ---- Writing ---- */

static void
same_cells(const apy_notebook_t *a, const apy_notebook_t *b)
{
    size_t i, k;

    CHECK_INT(a->ncells, b->ncells);
    for (i = 0; i < a->ncells; i++) {
        CHECK_INT(a->cells[i].kind, b->cells[i].kind);
        CHECK_STR(a->cells[i].source, b->cells[i].source);
        CHECK_INT(a->cells[i].ntags, b->cells[i].ntags);
        for (k = 0; k < a->cells[i].ntags; k++) {
            CHECK_STR(a->cells[i].tags[k], b->cells[i].tags[k]);
        }
        CHECK((a->cells[i].id == NULL) == (b->cells[i].id == NULL));
        if (a->cells[i].id != NULL) {
            CHECK_STR(a->cells[i].id, b->cells[i].id);
        }
    }
}

TEST_CASE(write_round_trip)
{
    apy_notebook_t nb, again;
    char *out, *out2;
    size_t i;

    for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        load_ok(fixture(fixtures[i]), &nb);
        out = render(&nb);
        parse_ok(out, &again);
        same_cells(&nb, &again);
        CHECK_INT(again.out_nbformat_minor, nb.out_nbformat_minor);
        /* What apyrun writes is in Jupyter's layout: its line maps are
         * exact, and writing it again changes nothing. */
        check_line_map(out, strlen(out), &again, 1);
        out2 = render(&again);
        CHECK_STR(out2, out);
        free(out);
        free(out2);
        apy_nb_free(&nb);
        apy_nb_free(&again);
    }
}

TEST_CASE(write_splitlines_boundaries)
{
    apy_notebook_t nb, again;
    char *out;

    /* nbformat writes sources split by str.splitlines(), which also breaks
     * at a form feed (and \v, \x1c-\x1e, U+0085, U+2028, U+2029); Python
     * does not. A Python line then spans two JSON lines and maps to the
     * first. */
    parse_ok("{\"cells\": [{\"cell_type\": \"code\", \"source\": "
             "\"a = 1  # \\f\\fpage\\nb = 2\\u2028c\\nd\"}], "
             "\"metadata\": {}, \"nbformat\": 4, \"nbformat_minor\": 4}",
             &nb);
    CHECK_INT(nb.cells[0].nlines, 3);
    out = render(&nb);
    CHECK(strstr(out, "   \"source\": [\n"
                      "    \"a = 1  # \\f\",\n"
                      "    \"\\f\",\n"
                      "    \"page\\n\",\n"
                      "    \"b = 2\xe2\x80\xa8\",\n"
                      "    \"c\\n\",\n"
                      "    \"d\"\n"
                      "   ]\n") != NULL);
    parse_ok(out, &again);
    CHECK_STR(again.cells[0].source, nb.cells[0].source);
    CHECK_INT(again.cells[0].line_map[1], again.cells[0].line_map[0] + 3);
    CHECK_INT(again.cells[0].line_map[2], again.cells[0].line_map[0] + 5);
    apy_nb_free(&again);
    apy_nb_free(&nb);
    free(out);
}

static const char small_nb[] =
    "{\"cells\": [\n"
    "{\"cell_type\": \"markdown\", \"metadata\": {}, \"source\": \"# T\"},\n"
    "{\"cell_type\": \"code\", \"execution_count\": 7, \"id\": \"c1\",\n"
    " \"metadata\": {\"collapsed\": false, \"zzz\": 1, \"trusted\": true,\n"
    "  \"execution\": {\"iopub.status.busy\": \"old\"}},\n"
    " \"outputs\": [{\"output_type\": \"stream\", \"name\": \"stdout\", "
    "\"text\": \"old\\n\"}],\n"
    " \"source\": \"print(1)\"}],\n"
    " \"metadata\": {\"kernelspec\": {\"name\": \"python3\"}, "
    "\"orig_nbformat\": 3},\n"
    " \"nbformat\": 4, \"nbformat_minor\": 5}";

static const char small_nb_cell2_head[] = "  {\n"
                                          "   \"cell_type\": \"code\",\n";

/* Appends s[0..n) to b as a JSON string (the test's own escaper). */
static void
json_quote(apy_buf_t *b, const char *s, size_t n)
{
    char esc[8];

    apy_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            apy_buf_putc(b, '\\');
            apy_buf_putc(b, (char)c);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            apy_buf_puts(b, esc);
        } else {
            apy_buf_putc(b, (char)c);
        }
    }
    apy_buf_putc(b, '"');
}

TEST_CASE(stream_renders_as_text)
{
    /* Every line end str.splitlines knows, near misses of the multi-byte
     * ones, and what JSON escapes; fed to a stream in chunks cut at any
     * byte (inside a character too), the notebook must come out exactly
     * as with the same text given whole in the outputs' JSON. */
    static const char *const bits[] = {
        "a", "bc", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d",
        "\x1e", "\xc2\x85", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xa7",
        "\xc2\xa0", "\"", "\\", "\t", "\x01", "\xc3\xa9",
        "\xf0\x9f\x90\x8d",
    };
    const size_t nbits = sizeof(bits) / sizeof(bits[0]);
    apy_notebook_t nb;
    apy_nb_result_t res;
    apy_buf_t text = {0}, json = {0};
    char *whole, *streamed;
    size_t len, at, cut;

    srand(9);
    parse_ok(small_nb, &nb);
    for (int round = 0; round < 300; round++) {
        text.len = 0;
        json.len = 0;
        size_t n = (size_t)(rand() % (round < 10 ? 3 : 200));
        for (size_t i = 0; i < n; i++) {
            apy_buf_puts(&text, bits[rand() % (int)nbits]);
        }
        apy_buf_puts(&json, "[{\"output_type\": \"stream\", "
                               "\"name\": \"stdout\", \"text\": ");
        json_quote(&json, text.data ? text.data : "", text.len);
        apy_buf_puts(&json, "}]");
        memset(&res, 0, sizeof(res));
        res.cell = 1;
        res.execution_count = 1;
        res.outputs = json.data;
        res.outputs_len = json.len;
        CHECK_INT(apy_nb_set_result(&nb, &res, err, sizeof(err)), 0);
        CHECK_INT(apy__nb_render(&nb, &whole, &len, err, sizeof(err)), 0);

        apy_nb_stream_t *st = apy_nb_stream_new(NULL);
        CHECK(st != NULL);
        for (at = 0; at < text.len; at += cut) {
            cut = 1 + (size_t)(rand() % 5);
            if (cut > text.len - at) {
                cut = text.len - at;
            }
            CHECK_INT(apy_nb_stream_put(st, text.data + at, cut), 0);
        }
        CHECK_INT(apy_nb_stream_finish(st), 0);
        static const char hole[] = "[{\"output_type\": \"stream\", "
                                   "\"name\": \"stdout\", \"text\": null}]";
        res.outputs = hole;
        res.outputs_len = sizeof(hole) - 1;
        res.streams = &st;
        res.nstreams = 1;
        CHECK_INT(apy_nb_set_result(&nb, &res, err, sizeof(err)), 0);
        apy_nb_stream_unref(st); /* the cell keeps its own reference */
        CHECK_INT(apy__nb_render(&nb, &streamed, &len, err, sizeof(err)), 0);
        CHECK_STR(streamed, whole);
        free(whole);
        free(streamed);
    }
    apy_buf_free(&text);
    apy_buf_free(&json);
    apy_nb_free(&nb);
}

TEST_CASE(stream_spills_and_saves)
{
    /* 30 MB through a stream: most of it in the spill file, which a save
     * copies into the target; the file matches the rendering in memory. */
    apy_notebook_t nb;
    apy_nb_result_t res;
    const char *dir = temp_dir();
    char path[256], line[128], *out, *saved;
    size_t len, got;
    static const char hole[] = "[{\"output_type\": \"stream\", "
                               "\"name\": \"stderr\", \"text\": null}]";

    parse_ok(small_nb, &nb);
    apy_nb_stream_t *st = apy_nb_stream_new(dir);
    CHECK(st != NULL);
    for (int i = 0; i < 300000; i++) {
        snprintf(line, sizeof(line), "line %d %s\n", i,
                 "................................................"
                 "..................................................");
        CHECK_INT(apy_nb_stream_put(st, line, strlen(line)), 0);
    }
    CHECK_INT(apy_nb_stream_finish(st), 0);
    CHECK_INT(apy__nb_stream_lines(st), 300000);
    memset(&res, 0, sizeof(res));
    res.cell = 1;
    res.outputs = hole;
    res.outputs_len = sizeof(hole) - 1;
    res.streams = &st;
    res.nstreams = 1;
    CHECK_INT(apy_nb_set_result(&nb, &res, err, sizeof(err)), 0);
    apy_nb_stream_unref(st);
    snprintf(path, sizeof(path), "%s/out.ipynb", dir);
    CHECK_INT(apy__nb_save(&nb, path, err, sizeof(err)), 0);
    CHECK_INT(apy__nb_render(&nb, &out, &len, err, sizeof(err)), 0);
    saved = read_file(path, &got);
    CHECK_INT(got, len);
    CHECK(memcmp(saved, out, len) == 0);
    CHECK(strstr(out, "     \"name\": \"stderr\",\n"
                      "     \"output_type\": \"stream\",\n"
                      "     \"text\": [\n"
                      "      \"line 0 ...") != NULL);
    /* The spill file is unlinked: only the output is in the directory. */
    CHECK_INT(count_entries(dir), 1);
    free(out);
    free(saved);
    apy_nb_free(&nb);
    remove_dir(dir);
}

/* The inode of the one temporary file of ours in dir, or 0. */
static ino_t
temp_inode(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    struct stat st;
    char path[512];
    ino_t ino = 0;

    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".apyrun-") != NULL) {
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            CHECK(ino == 0 && lstat(path, &st) == 0);
            ino = st.st_ino;
        }
    }
    closedir(d);
    return ino;
}

/* Sets cell i's result: a big stream of `lines` lines of `width` bytes
 * tagged with `round`, or (lines 0) a small stream. */
static void
set_stream(apy_notebook_t *nb, size_t i, int round, int lines, int width,
           const char *dir)
{
    static const char hole[] = "[{\"output_type\": \"stream\", "
                               "\"name\": \"stdout\", \"text\": null}]";
    char small[128], line[1100];
    apy_nb_result_t res;
    apy_nb_stream_t *st = NULL;

    memset(&res, 0, sizeof(res));
    res.cell = i;
    res.execution_count = round;
    if (lines == 0) {
        snprintf(small, sizeof(small),
                 "[{\"output_type\": \"stream\", \"name\": \"stdout\", "
                 "\"text\": \"round %d\\n\"}]", round);
        res.outputs = small;
        res.outputs_len = strlen(small);
    } else {
        st = apy_nb_stream_new(dir);
        CHECK(st != NULL);
        memset(line, 'a' + round % 26, (size_t)width);
        line[width] = '\n';
        for (int k = 0; k < lines; k++) {
            CHECK_INT(apy_nb_stream_put(st, line, (size_t)width + 1), 0);
        }
        CHECK_INT(apy_nb_stream_finish(st), 0);
        res.outputs = hole;
        res.outputs_len = sizeof(hole) - 1;
        res.streams = &st;
        res.nstreams = 1;
    }
    CHECK_INT(apy_nb_set_result(nb, &res, err, sizeof(err)), 0);
    apy_nb_stream_unref(st);
}

TEST_CASE(target_saves_reuse_a_prefix)
{
    /* Random results, cells inserted and removed, saves with random
     * `stable` counts (results then set inside them anyway, as
     * update_display does): every saved file must be the rendering in
     * memory byte for byte, and many saves must have been written into
     * the prefix file that the save before prepared (its inode becomes
     * the target's), many of them the file saved before that (exchanged
     * with the target, then brought up to date), but never one that a
     * reader still has open. A set stop flag prepares nothing. */
    apy_notebook_t nb;
    apy_nb_target_t t;
    const char *dir = temp_dir();
    char path[256], *out, *saved;
    size_t len, got, i;
    struct stat st;
    int used = 0, made = 0, swapped = 0, held;
    char *held_data, *again;
    size_t held_len;
    volatile sig_atomic_t stop = 0;
    apy_buf_t json = {0};

    apy_buf_puts(&json, "{\"cells\": [");
    for (i = 0; i < 8; i++) {
        char c[160];
        snprintf(c, sizeof(c),
                 "%s{\"cell_type\": \"code\", \"execution_count\": null, "
                 "\"id\": \"c%zu\", \"metadata\": {}, \"outputs\": [], "
                 "\"source\": \"print(%zu)\"}", i ? ", " : "", i, i);
        apy_buf_puts(&json, c);
    }
    apy_buf_puts(&json, "], \"metadata\": {}, \"nbformat\": 4, "
                           "\"nbformat_minor\": 5}");
    parse_ok(json.data, &nb);
    apy_buf_free(&json);
    snprintf(path, sizeof(path), "%s/out.ipynb", dir);
    CHECK_INT(apy_nb_target_open(path, &t, err, sizeof(err)), 0);
    t.stop = &stop;
    /* Over the 4 MiB below which no prefix is made. */
    set_stream(&nb, 0, 1, 3000, 1000, dir);
    set_stream(&nb, 2, 1, 2000, 1000, dir);
    srand(11);
    for (int round = 2; round < 160; round++) {
        int op = rand() % 10;
        i = (size_t)rand() % nb.ncells;
        if (op < 5) {
            set_stream(&nb, i, round, 0, 0, dir);
        } else if (op < 7) {
            set_stream(&nb, i, round, 2000 + rand() % 2000,
                       1 + rand() % 1000, dir);
        } else if (op == 7 && nb.ncells < 12) {
            CHECK_INT(apy_nb_insert_code_cell(&nb, i, "x = 1", 5, NULL, 0,
                                              err, sizeof(err)),
                      0);
        } else if (op == 8 && nb.ncells > 4) {
            CHECK_INT(apy_nb_remove_cell(&nb, i), 0);
        }
        ino_t before = temp_inode(dir);
        ino_t target = stat(path, &st) == 0 ? st.st_ino : 0;
        /* Mostly all but the last few, as in a run. */
        size_t back = (size_t)rand() % 5;
        size_t stable = back < nb.ncells ? nb.ncells - back : 0;
        CHECK_INT(apy_nb_target_save(&nb, &t, stable, err, sizeof(err)), 0);
        CHECK(stat(path, &st) == 0);
        used += before != 0 && st.st_ino == before;
        made += t.prefix != NULL;
        /* The old target became the next prefix (only the bytes new in
         * this save were copied into it). */
        swapped += t.prefix != NULL && temp_inode(dir) == target;
        CHECK_INT(apy__nb_render(&nb, &out, &len, err, sizeof(err)), 0);
        saved = read_file(path, &got);
        CHECK_INT(got, len);
        CHECK(memcmp(saved, out, len) == 0);
        free(out);
        free(saved);
    }
    CHECK(used >= 12);
    CHECK(made >= 15);
    CHECK(swapped >= 8);
    /* A reader holds the target open across two saves: what it reads
     * must not change, so that file is not made the next prefix. */
    set_stream(&nb, 0, 90, 6000, 1000, dir);
    CHECK_INT(apy_nb_target_save(&nb, &t, nb.ncells, err, sizeof(err)), 0);
    CHECK(stat(path, &st) == 0);
    ino_t target = st.st_ino;
    held = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(held >= 0);
    held_data = read_file(path, &held_len);
    for (int round = 91; round < 93; round++) {
        set_stream(&nb, nb.ncells - 1, round, 0, 0, dir);
        CHECK_INT(apy_nb_target_save(&nb, &t, nb.ncells, err, sizeof(err)),
                  0);
        CHECK(t.prefix != NULL && temp_inode(dir) != target);
    }
    again = malloc(held_len);
    CHECK(again != NULL);
    CHECK(fstat(held, &st) == 0 && (size_t)st.st_size == held_len);
    CHECK(pread(held, again, held_len, 0) == (ssize_t)held_len);
    CHECK(memcmp(again, held_data, held_len) == 0);
    free(again);
    free(held_data);
    close(held);
    /* A signal came: the save is written, and no next one prepared. */
    stop = 1;
    set_stream(&nb, nb.ncells - 1, 99, 0, 0, dir);
    CHECK_INT(apy_nb_target_save(&nb, &t, nb.ncells, err, sizeof(err)), 0);
    CHECK(t.prefix == NULL);
    CHECK(temp_inode(dir) == 0);
    /* Closing removes an unused prefix: the target alone is left. */
    stop = 0;
    CHECK_INT(apy_nb_target_save(&nb, &t, nb.ncells, err, sizeof(err)), 0);
    CHECK(temp_inode(dir) != 0 || t.prefix == NULL);
    apy_nb_target_close(&t);
    CHECK_INT(count_entries(dir), 1);
    apy_nb_free(&nb);
    remove_dir(dir);
}

TEST_CASE(write_result)
{
    apy_notebook_t nb;
    apy_nb_result_t res;
    char *out;
    static const char outputs[] =
        "[{\"output_type\": \"stream\", \"name\": \"stdout\", \"text\": "
        "\"1\\n2\\n\"}, {\"output_type\": \"execute_result\", "
        "\"execution_count\": 1, \"metadata\": {}, \"data\": {\"text/plain\":"
        " \"'x'\", \"text/html\": [\"<b>\\n\", \"x</b>\"]}}]";

    parse_ok(small_nb, &nb);
    memset(&res, 0, sizeof(res));
    res.cell = 1;
    res.execution_count = 1;
    res.outputs = outputs;
    res.outputs_len = strlen(outputs);
    res.busy = "2024-01-31T12:00:00.000001Z";
    res.execute_input = "2024-01-31T12:00:00.000002Z";
    res.execute_reply = "2024-01-31T12:00:00.000003Z";
    res.idle = "2024-01-31T12:00:00.000004Z";
    CHECK_INT(apy_nb_set_result(&nb, &res, err, sizeof(err)), 0);
    out = render(&nb);
    CHECK_STR(
        out, "{\n"
             " \"cells\": [\n"
             "  {\n"
             "   \"cell_type\": \"markdown\",\n"
             "   \"id\": \"d66d93fb\",\n"
             "   \"metadata\": {},\n"
             "   \"source\": [\n"
             "    \"# T\"\n"
             "   ]\n"
             "  },\n"
             "  {\n"
             "   \"cell_type\": \"code\",\n"
             "   \"execution_count\": 1,\n"
             "   \"id\": \"c1\",\n"
             "   \"metadata\": {\n"
             "    \"collapsed\": false,\n"
             "    \"execution\": {\n"
             "     \"iopub.execute_input\": \"2024-01-31T12:00:00.000002Z\",\n"
             "     \"iopub.status.busy\": \"2024-01-31T12:00:00.000001Z\",\n"
             "     \"iopub.status.idle\": \"2024-01-31T12:00:00.000004Z\",\n"
             "     \"shell.execute_reply\": \"2024-01-31T12:00:00.000003Z\"\n"
             "    },\n"
             "    \"zzz\": 1\n"
             "   },\n"
             "   \"outputs\": [\n"
             "    {\n"
             "     \"name\": \"stdout\",\n"
             "     \"output_type\": \"stream\",\n"
             "     \"text\": [\n"
             "      \"1\\n\",\n"
             "      \"2\\n\"\n"
             "     ]\n"
             "    },\n"
             "    {\n"
             "     \"data\": {\n"
             "      \"text/html\": [\n"
             "       \"<b>\\n\",\n"
             "       \"x</b>\"\n"
             "      ],\n"
             "      \"text/plain\": [\n"
             "       \"'x'\"\n"
             "      ]\n"
             "     },\n"
             "     \"execution_count\": 1,\n"
             "     \"metadata\": {},\n"
             "     \"output_type\": \"execute_result\"\n"
             "    }\n"
             "   ],\n"
             "   \"source\": [\n"
             "    \"print(1)\"\n"
             "   ]\n"
             "  }\n"
             " ],\n"
             " \"metadata\": {\n"
             "  \"kernelspec\": {\n"
             "   \"name\": \"python3\"\n"
             "  }\n"
             " },\n"
             " \"nbformat\": 4,\n"
             " \"nbformat_minor\": 5\n"
             "}\n");
    free(out);

    /* A second result replaces the first; no timing leaves the metadata
     * as it stands; null count; no outputs. */
    memset(&res, 0, sizeof(res));
    res.cell = 1;
    res.execution_count = APY_NB_NO_COUNT;
    CHECK_INT(apy_nb_set_result(&nb, &res, err, sizeof(err)), 0);
    out = render(&nb);
    CHECK(strstr(out, "   \"execution_count\": null,\n") != NULL);
    CHECK(strstr(out, "   \"outputs\": [],\n") != NULL);
    CHECK(strstr(out,
                 "\"iopub.status.idle\": \"2024-01-31T12:00:00.000004Z\"") !=
          NULL);
    CHECK(strstr(out, small_nb_cell2_head) != NULL);
    free(out);
    apy_nb_free(&nb);
}

static void
result_fails(apy_notebook_t *nb, const apy_nb_result_t *res, int code,
             const char *msg, int line)
{
    char *before = render(nb), *after;
    int rc = apy_nb_set_result(nb, res, err, sizeof(err));

    if (rc != code || strcmp(err, msg) != 0) {
        fprintf(stderr, "%s:%d: got %d \"%s\"\n   want %d \"%s\"\n", __FILE__,
                line, rc, err, code, msg);
        exit(1);
    }
    /* A refused result leaves the cell as it was. */
    after = render(nb);
    CHECK_STR(after, before);
    free(before);
    free(after);
}

TEST_CASE(write_result_errors)
{
    apy_notebook_t nb;
    apy_nb_result_t res;

    parse_ok(small_nb, &nb);
    memset(&res, 0, sizeof(res));
    res.cell = 1;
    res.outputs = "[{\"output_type\": \"stream\",}]";
    res.outputs_len = strlen(res.outputs);
    result_fails(&nb, &res, -EINVAL,
                 "outputs: not valid JSON: expected a key in double quotes "
                 "(line 1, column 27)",
                 __LINE__);
    res.outputs = "{}";
    res.outputs_len = 2;
    result_fails(&nb, &res, -EINVAL, "outputs: not a JSON list", __LINE__);
    res.outputs = "[{\"output_type\": \"pyout\"}]";
    res.outputs_len = strlen(res.outputs);
    result_fails(&nb, &res, -EINVAL,
                 "outputs: output 1: unknown output_type 'pyout'", __LINE__);
    res.outputs = "[{\"output_type\": \"error\"}, {\"name\": \"x\"}]";
    res.outputs_len = strlen(res.outputs);
    result_fails(&nb, &res, -EINVAL,
                 "outputs: output 2 is not an object with a string "
                 "'output_type'",
                 __LINE__);
    /* Only outputs_len bytes count: the NUL-free "[]" prefix here. */
    res.outputs = "[]garbage";
    res.outputs_len = 2;
    CHECK_INT(apy_nb_set_result(&nb, &res, err, sizeof(err)), 0);
    res.outputs = NULL;
    res.execution_count = -5;
    result_fails(&nb, &res, -EINVAL, "cell 2: execution_count -5 is negative",
                 __LINE__);
    res.execution_count = 1;
    res.idle = "\xff";
    result_fails(&nb, &res, -EINVAL,
                 "timestamp 'iopub.status.idle' is not valid UTF-8", __LINE__);
    res.idle = NULL;
    res.cell = 0;
    result_fails(&nb, &res, -EINVAL, "cell 1 is not a code cell", __LINE__);
    res.cell = 2;
    result_fails(&nb, &res, -ERANGE, "no cell 3 (of 2)", __LINE__);
    apy_nb_free(&nb);
}

/* Returns 1 if dir holds a file whose name contains ".apyrun-". */
static int
has_temp_file(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;

    CHECK(d != NULL);
    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, ".apyrun-") != NULL) {
            found = 1;
        }
    }
    closedir(d);
    return found;
}

TEST_CASE(save_new_file)
{
    apy_notebook_t nb;
    const char *dir = temp_dir();
    char path[256], *out, *saved;
    struct stat st;
    mode_t mask = umask(022);

    load_ok(fixture("v4_5_standard.ipynb"), &nb);
    snprintf(path, sizeof(path), "%s/out.ipynb", dir);
    CHECK_INT(apy__nb_save(&nb, path, err, sizeof(err)), 0);
    out = render(&nb);
    saved = read_file(path, NULL);
    CHECK_STR(saved, out);
    CHECK(stat(path, &st) == 0);
    CHECK_INT(st.st_mode & 0777, 0644);
    CHECK_INT(count_entries(dir), 1);
    free(saved);
    free(out);
    apy_nb_free(&nb);
    umask(mask);
    remove_dir(dir);
}

TEST_CASE(save_inplace_keeps_mode)
{
    apy_notebook_t nb;
    apy_nb_result_t res;
    const char *dir = temp_dir();
    char path[256], other[256], cmd[PATH_MAX + 600], *before, *after, *in;
    struct stat st;

    snprintf(path, sizeof(path), "%s/nb.ipynb", dir);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", fixture("v4_5_standard.ipynb"),
             path);
    CHECK(system(cmd) == 0);
    CHECK(chmod(path, 0640) == 0);
    before = read_file(path, NULL);

    /* Writing elsewhere never touches the input. */
    load_ok(path, &nb);
    memset(&res, 0, sizeof(res));
    res.cell = 1;
    res.execution_count = 1;
    CHECK_INT(apy_nb_set_result(&nb, &res, err, sizeof(err)), 0);
    snprintf(other, sizeof(other), "%s/other.ipynb", dir);
    CHECK_INT(apy__nb_save(&nb, other, err, sizeof(err)), 0);
    in = read_file(path, NULL);
    CHECK_STR(in, before);
    free(in);

    /* --inplace: the input is replaced, its mode kept. */
    CHECK_INT(apy__nb_save(&nb, path, err, sizeof(err)), 0);
    after = read_file(path, NULL);
    CHECK(strcmp(after, before) != 0);
    CHECK(strstr(after, "   \"outputs\": [],\n   \"source\": [\n"
                        "    \"import asyncio\\n\",") != NULL);
    CHECK(stat(path, &st) == 0);
    CHECK_INT(st.st_mode & 07777, 0640);
    CHECK(!has_temp_file(dir));
    free(before);
    free(after);
    apy_nb_free(&nb);
    remove_dir(dir);
}

TEST_CASE(save_failure_keeps_old_file)
{
    apy_notebook_t nb;
    const char *dir = temp_dir();
    char path[256], *before;
    struct rlimit rl;

    snprintf(path, sizeof(path), "%s/nb.ipynb", dir);
    write_file(path, "OLD CONTENT\n");
    load_ok(fixture("v4_5_standard.ipynb"), &nb);
    /* Make the write fail half way: files may not grow past 1000 bytes
     * (write() then fails with EFBIG instead of raising SIGXFSZ). */
    signal(SIGXFSZ, SIG_IGN);
    CHECK(getrlimit(RLIMIT_FSIZE, &rl) == 0);
    rl.rlim_cur = 1000;
    CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    CHECK_INT(apy__nb_save(&nb, path, err, sizeof(err)), -EFBIG);
    rl.rlim_cur = rl.rlim_max;
    CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    {
        char want[512];
        snprintf(want, sizeof(want), "cannot write %s: File too large", path);
        CHECK_STR(err, want);
    }
    before = read_file(path, NULL);
    CHECK_STR(before, "OLD CONTENT\n");
    CHECK_INT(count_entries(dir), 1);
    free(before);
    /* And with room, the same save succeeds. */
    CHECK_INT(apy__nb_save(&nb, path, err, sizeof(err)), 0);
    CHECK_INT(count_entries(dir), 1);
    apy_nb_free(&nb);
    remove_dir(dir);
}

TEST_CASE(save_errors)
{
    apy_notebook_t nb;
    const char *dir = temp_dir();
    char want[512];

    load_ok(fixture("no_cells.ipynb"), &nb);
    CHECK_INT(apy__nb_save(&nb, dir, err, sizeof(err)), -EISDIR);
    snprintf(want, sizeof(want), "cannot write %s: is a directory", dir);
    CHECK_STR(err, want);
    CHECK_INT(apy__nb_save(&nb, "/nonexistent/dir/x.ipynb", err, sizeof(err)),
              -ENOENT);
    CHECK_STR(err, "cannot write /nonexistent/dir/x.ipynb: No such file or "
                   "directory");
    CHECK_INT(count_entries(dir), 0);
    apy_nb_free(&nb);
    remove_dir(dir);
}

TEST_CASE(save_through_symlink)
{
    apy_notebook_t nb;
    const char *dir = temp_dir();
    char real[256], link[256], *saved, *out;
    struct stat st;

    snprintf(real, sizeof(real), "%s/real.ipynb", dir);
    snprintf(link, sizeof(link), "%s/link.ipynb", dir);
    write_file(real, "old");
    CHECK(symlink("real.ipynb", link) == 0);
    load_ok(fixture("no_cells.ipynb"), &nb);
    CHECK_INT(apy__nb_save(&nb, link, err, sizeof(err)), 0);
    CHECK(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    saved = read_file(real, NULL);
    out = render(&nb);
    CHECK_STR(saved, out);
    CHECK_INT(count_entries(dir), 2);
    free(saved);
    free(out);
    apy_nb_free(&nb);
    remove_dir(dir);
}

TEST_CASE(write_many_saves)
{
    apy_notebook_t nb;
    apy_nb_result_t res;
    const char *dir = temp_dir();
    char path[256], outputs[128], ts[APY_NB_TIMESTAMP_SIZE];
    size_t i;
    long count = 0;

    /* The run layer's pattern: a result and a save after every cell. */
    load_ok(fixture("v4_5_standard.ipynb"), &nb);
    snprintf(path, sizeof(path), "%s/out.ipynb", dir);
    for (i = 0; i < nb.ncells; i++) {
        if (nb.cells[i].kind != APY_NB_CODE) {
            continue;
        }
        snprintf(outputs, sizeof(outputs),
                 "[{\"output_type\": \"stream\", \"name\": \"stdout\", "
                 "\"text\": \"cell %zu\\n\"}]",
                 i);
        apy_nb_timestamp(ts);
        memset(&res, 0, sizeof(res));
        res.cell = i;
        res.execution_count = ++count;
        res.outputs = outputs;
        res.outputs_len = strlen(outputs);
        res.busy = res.idle = ts;
        CHECK_INT(apy_nb_set_result(&nb, &res, err, sizeof(err)), 0);
        CHECK_INT(apy__nb_save(&nb, path, err, sizeof(err)), 0);
        CHECK_INT(count_entries(dir), 1);
    }
    apy_nb_free(&nb);
    load_ok(path, &nb);
    CHECK_INT(nb.ncells, 5);
    apy_nb_free(&nb);
    remove_dir(dir);
}

TEST_CASE(insert_and_remove_cell)
{
    apy_notebook_t nb, again;
    const char *tags[] = {"injected-parameters"};
    char *before, *out;
    size_t i;

    load_ok(fixture("v4_5_standard.ipynb"), &nb);
    before = render(&nb);
    /* After the cell tagged "parameters", as papermill does. */
    for (i = 0; i < nb.ncells; i++) {
        if (apy_nb_cell_has_tag(&nb.cells[i], "parameters")) {
            break;
        }
    }
    CHECK_INT(i, 1);
    CHECK_INT(apy_nb_insert_code_cell(&nb, i + 1, "x = 2\r\ny = 'z'\n", 15,
                                      tags, 1, err, sizeof(err)),
              0);
    CHECK_INT(nb.ncells, 6);
    CHECK_STR(nb.cells[2].source, "x = 2\ny = 'z'\n");
    CHECK_INT(nb.cells[2].nlines, 2);
    CHECK_INT(nb.cells[2].line_map[1], 0);
    CHECK_INT(nb.cells[2].json_line, 0);
    CHECK_STR(nb.cells[2].tags[0], "injected-parameters");
    CHECK(nb.cells[2].id != NULL && strlen(nb.cells[2].id) == 8);
    CHECK_STR(nb.cells[3].id, "raw-1");
    out = render(&nb);
    CHECK(strstr(out,
                 "   \"metadata\": {\n    \"tags\": [\n"
                 "     \"injected-parameters\"\n    ]\n   },\n"
                 "   \"outputs\": [],\n   \"source\": [\n"
                 "    \"x = 2\\r\\n\",\n    \"y = 'z'\\n\"\n   ]\n") != NULL);
    parse_ok(out, &again);
    same_cells(&nb, &again);
    apy_nb_free(&again);
    free(out);

    CHECK_INT(
        apy_nb_insert_code_cell(&nb, 7, "", 0, NULL, 0, err, sizeof(err)),
        -ERANGE);
    CHECK_INT(
        apy_nb_insert_code_cell(&nb, 0, "\xff", 1, NULL, 0, err, sizeof(err)),
        -EINVAL);
    CHECK_STR(err, "the new cell's source is not valid UTF-8 text");
    CHECK_INT(apy_nb_remove_cell(&nb, 6), -ERANGE);
    CHECK_INT(apy_nb_remove_cell(&nb, 2), 0);
    out = render(&nb);
    CHECK_STR(out, before);
    free(out);
    free(before);
    apy_nb_free(&nb);

    /* Before 4.5 an inserted cell gets no id. */
    load_ok(fixture("v4_0_string_sources.ipynb"), &nb);
    CHECK_INT(
        apy_nb_insert_code_cell(&nb, 0, "a = 1", 5, NULL, 0, err, sizeof(err)),
        0);
    CHECK(nb.cells[0].id == NULL);
    CHECK_INT(nb.cells[0].nlines, 1);
    apy_nb_free(&nb);
}

TEST_CASE(timestamp_format)
{
    char ts[APY_NB_TIMESTAMP_SIZE];
    size_t i;

    apy_nb_timestamp(ts);
    /* 2024-01-31T12:34:56.123456Z */
    CHECK_INT(strlen(ts), 27);
    for (i = 0; i < 27; i++) {
        char c = ts[i];
        switch (i) {
        case 4:
        case 7:
            CHECK(c == '-');
            break;
        case 10:
            CHECK(c == 'T');
            break;
        case 13:
        case 16:
            CHECK(c == ':');
            break;
        case 19:
            CHECK(c == '.');
            break;
        case 26:
            CHECK(c == 'Z');
            break;
        default:
            CHECK(c >= '0' && c <= '9');
        }
    }
}

TEST_CASE(free_is_idempotent)
{
    apy_notebook_t nb;

    memset(&nb, 0, sizeof(nb));
    apy_nb_free(&nb);
    apy_nb_free(NULL);
    load_ok(fixture("v3_worksheets.ipynb"), &nb);
    apy_nb_free(&nb);
    apy_nb_free(&nb);
}

/* ---- The real notebooks (nbclient's test files) ---- */

TEST_CASE(line_map_nbclient)
{
    DIR *d = opendir(APY_NB_NBCLIENT);
    struct dirent *e;
    char path[PATH_MAX];
    int n = 0;

    if (d == NULL) {
        fprintf(stderr, "%s: absent, skipped\n", APY_NB_NBCLIENT);
        exit(SKIP);
    }
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 6, ".ipynb") != 0) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", APY_NB_NBCLIENT, e->d_name);
        check_file_line_map(path, 1);
        n++;
    }
    closedir(d);
    CHECK(n > 0);
}

int
main(int argc, char **argv)
{
    size_t i;

    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (i = 0; i < ncases; i++) {
            printf("%s\n", cases[i].name);
        }
        return 0;
    }
    for (i = 0; i < ncases; i++) {
        if (argc == 1 || strcmp(argv[1], cases[i].name) == 0) {
            cases[i].fn();
            if (argc == 2) {
                return 0;
            }
            printf("ok %s\n", cases[i].name);
        }
    }
    if (argc == 2) {
        fprintf(stderr, "no test case %s\n", argv[1]);
        return 1;
    }
    return 0;
}
