/* SPDX-License-Identifier: MIT */
/* Declarations shared by the files of src/notebook/ (apy__nb_*) and its
 * tests, nothing else: the strict JSON scanner that annotates cJSON trees,
 * the Python-compatible JSON renderer, the writer's pre-rendered cells and
 * the save targets' files. cJSON types may appear here: this header never
 * leaves notebook/. */
#ifndef APYRUN_NB_INTERNAL_H
#define APYRUN_NB_INTERNAL_H

#include <limits.h> /* PATH_MAX */
#include <stdarg.h>
#include <sys/types.h> /* off_t */
#include <stddef.h>

#include <cjson/cJSON.h>

#include "apyrun/notebook.h"

/* ---- Annotated cJSON trees (scan.c) ----
 * cJSON keeps neither positions nor lengths nor number texts, so the
 * scanner stores them in fields cJSON leaves unused for these types:
 *   string:          valueint = 1-based line of its opening quote,
 *                    valuedouble = decoded length in bytes (a string may
 *                    hold "\u0000", which ends cJSON's C string early);
 *   array, object:   valueint = line of the opening bracket;
 *   number:          valuestring = the number's JSON text exactly as
 *                    written (cJSON_Delete frees it: allocated with
 *                    cJSON_malloc), valuedouble = its value.
 * Every string node made by this layer goes through apy__nb_new_string so
 * that the length is always there. */
#define APY_NB_LINE(node) ((node)->valueint)

/* Returns the decoded length in bytes of annotated string node `s`. */
static inline size_t
apy__nb_strlen(const cJSON *s)
{
    return (size_t)s->valuedouble;
}

/* Parses `len` bytes of JSON into an annotated cJSON tree in *out (the
 * caller cJSON_Delete()s it). `what` prefixes messages ("not valid JSON"
 * for a notebook, "outputs: not valid JSON" for the run layer's outputs).
 * Returns 0, -EINVAL with one line in err, or -ENOMEM. */
int apy__nb_json_parse(const char *text, size_t len, const char *what,
                       cJSON **out, char *err, size_t errlen);

/* Returns a new string node holding a copy of s[0..len) (may contain NUL
 * bytes), annotated with `line`; NULL when out of memory. */
cJSON *apy__nb_new_string(const char *s, size_t len, int line);

/* Returns the value of JSON number text s[0..n) (NaN and [-]Infinity
 * included) whatever the C locale's decimal point is. */
double apy__nb_strtod(const char *s, size_t n);

/* Returns 1 if s[0..len) is valid UTF-8 (no surrogates, <= U+10FFFF). */
int apy__nb_utf8_valid(const char *s, size_t len);

/* Returns how many leading bytes of s[0..len) are "plain": >= 0x20 and
 * neither '"' nor '\\' (and < 0x80 too when ascii_only). Both the scanner
 * and the renderer spend their time in such runs (base64 images): this
 * tests 8 bytes at a time. */
size_t apy__nb_plain_prefix(const char *s, size_t len, int ascii_only);

/* ---- Errors (util.c) ---- */

/* Formats one line into err (if err and errlen are non-zero); returns
 * `code` so that callers can `return apy__nb_fail(-EINVAL, ...)`. */
int apy__nb_fail(int code, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Quotes s[0..len) for a message: at most ~40 characters, control
 * characters escaped; writes into out (outlen >= 64). */
void apy__nb_quote(char *out, size_t outlen, const char *s, size_t len);

/* ---- Rendering as Python's json.dumps(indent=1, sort_keys=True,
 * ensure_ascii=False) does (render.c) ---- */

/* Appends string s[0..len) as a JSON string literal. */
void apy__nb_render_string(apy_buf_t *b, const char *s, size_t len);
/* The same without the quotes; s may be cut anywhere (bytes are escaped
 * one by one). */
void apy__nb_render_string_body(apy_buf_t *b, const char *s, size_t len);

/* Appends annotated value v; `level` is its nesting level (the indent of
 * its closing bracket). Duplicate keys: the last one is written. */
void apy__nb_render_value(apy_buf_t *b, const cJSON *v, int level);

/* Sets *out to a new array (free() it; NULL when empty) of the members of
 * object `obj` in Python's sort_keys order, the last of duplicate keys
 * only, and *n to their count. Returns 0 or -ENOMEM. */
int apy__nb_sorted_members(const cJSON *obj, const cJSON ***out, size_t *n);

/* Appends a multi-line text as nbformat writes it: a list of lines split
 * as Python's str.splitlines(True) splits ("[]" when empty). */
void apy__nb_render_lines(apy_buf_t *b, const char *s, size_t len,
                          int level);

/* Returns the end (exclusive, terminator included) of the line of s that
 * starts at `start`, splitting as Python's str.splitlines() does. */
size_t apy__nb_splitline(const char *s, size_t len, size_t start);

/* nbformat's rejoin_lines + split_lines for what a cell holds besides its
 * source, applied in place to an annotated tree: outputs (a code cell's
 * list) and attachments (an object). Shapes nbformat would not expect are
 * left alone. Returns 0 or -ENOMEM. */
int apy__nb_fix_outputs(cJSON *outputs);
int apy__nb_fix_attachments(cJSON *attachments);

/* ---- Reading helpers shared by read.c and v3.c ---- */

/* Returns the last member of object `obj` named `key` (duplicate keys:
 * the last one wins, as in Python's json), or NULL. */
cJSON *apy__nb_get(const cJSON *obj, const char *key);

/* Removes every member named `key` from `obj` and returns the last one
 * (detached: the caller owns it), or NULL. */
cJSON *apy__nb_detach(cJSON *obj, const char *key);

/* Joins a source given as a string or a list of strings. Returns 0 with a
 * malloc()ed NUL-terminated copy in *out (*outlen bytes), 1 if `v` has
 * another type (the caller names the field), -1 when out of memory. */
int apy__nb_join_source(const cJSON *v, char **out, size_t *outlen);

/* Returns 1 if kernel language `lang` names Python ("python", "python3",
 * "Python 3", "ipython"...), else 0. */
int apy__nb_is_python(const char *lang);

/* Frees what one cell owns and zeroes it. */
void apy__nb_cell_free(apy_nb_cell_t *cell);

/* Returns a new number node whose JSON text is the decimal `v`; NULL when
 * out of memory. */
cJSON *apy__nb_new_int(long v);

/* Upgrades an nbformat 3 tree in place to nbformat 4.5's shape, as
 * nbformat.v4.convert.upgrade does, keeping line annotations. Returns 0,
 * -EINVAL (wrong shape: err says what) or -ENOMEM. */
int apy__nb_upgrade_v3(cJSON *root, int v2, char *err, size_t errlen);

/* ---- Parsing, streams, saving and rendering: for this layer (and its
 * tests and benchmark) ---- */

/* Parses `len` bytes of notebook JSON (need not be NUL-terminated), as
 * apy_nb_load does once it has read the file: the same results, the same
 * messages. `path` is only copied into nb->path (may be NULL). */
int apy__nb_parse(const char *data, size_t len, const char *path,
                  apy_notebook_t *nb, char *err, size_t errlen);

/* apy_nb_target_open, apy_nb_target_save and apy_nb_target_close of
 * out_path in one call. */
int apy__nb_save(const apy_notebook_t *nb, const char *out_path, char *err,
                 size_t errlen);

/* Returns s with one more reference. */
apy_nb_stream_t *apy__nb_stream_ref(apy_nb_stream_t *s);
/* Returns the number of lines rendered so far. */
size_t apy__nb_stream_lines(const apy_nb_stream_t *s);
/* Returns 1 for lines, 0 for one string. */
int apy__nb_stream_split(const apy_nb_stream_t *s);

/* Renders the notebook as apy__nb_save would write it into a new
 * NUL-terminated buffer *out (free() it) of *outlen bytes. Returns 0,
 * -EINVAL (nb was never parsed) or -ENOMEM. */
int apy__nb_render(const apy_notebook_t *nb, char **out, size_t *outlen,
                   char *err, size_t errlen);

/* ---- Writer (write.c, save.c, edit.c) ---- */

/* Indent levels in nbformat's layout. */
#define APY_NB_MEMBER_LEVEL 3 /* a cell's members */
#define APY_NB_META_LEVEL 4   /* a code cell's metadata members */

/* One member of an object, rendered: indent, key, ": ", value; no
 * separator. */
typedef struct {
    char *key;
    char *text;
    size_t len;
} apy_nb_piece_t;

/* Members sorted by key (strcmp: Python's sort_keys order), unique. */
typedef struct {
    apy_nb_piece_t *v;
    size_t n;
    size_t cap;
} apy_nb_pieces_t;

/* A big stream output's lines inside a rendered "outputs" member: they
 * go in at byte `off` of its text (stream.c). */
typedef struct {
    size_t off;
    apy_nb_stream_t *stream; /* a reference */
} apy_nb_hole_t;

struct apy_nb_wcell {
    apy_nb_pieces_t members;
    /* A code cell's metadata members, so that metadata.execution can be
     * replaced without re-reading anything. */
    apy_nb_pieces_t meta;
    /* The streams of the "outputs" member, in order of their offsets. */
    apy_nb_hole_t *holes;
    size_t nholes;
    /* The notebook's generation when a result last changed this cell: a
     * saved prefix holding it stays valid while this does not grow. */
    unsigned long gen;
};

/* Writes all of data to fd, again after EINTR. 0 or -errno. */
int apy__nb_write_all(int fd, const void *data, size_t len);

/* Appends the stream's rendered lines to fd (mem == NULL; copy_file_range
 * where possible) or to mem. 0 or -errno. */
int apy__nb_stream_copy(const apy_nb_stream_t *s, int fd, apy_buf_t *mem);

/* The stream's spill file and the bytes of rendered lines in it, from
 * offset 0; -1 (and 0) when it has none or they were moved. */
int apy__nb_stream_spill_fd(const apy_nb_stream_t *s, off_t *spilled);

/* Says the spilled lines now start at `base` of the spill file (the file
 * became a saved notebook: nothing more goes into it); 0 undoes it. */
void apy__nb_stream_moved(apy_nb_stream_t *s, off_t base);

/* Writes the rendered lines not spilled to fd. 0 or -errno. */
int apy__nb_stream_copy_tail(const apy_nb_stream_t *s, int fd);

struct apy_nb_wdoc {
    unsigned long gen;    /* bumped by every apy_nb_set_result */
    unsigned long layout; /* bumped when cells are inserted or removed */
    char *head; /* "{", members before "cells", "\"cells\": [" */
    size_t headlen;
    char *tail; /* members after "cells", "}", newline */
    size_t taillen;
};

/* Builds the writer state of cell `index` from its (nbformat 4 shaped,
 * annotated) object; may modify `obj` (it is deleted afterwards).
 * Returns 0 or -ENOMEM. */
int apy__nb_wcell_build(apy_notebook_t *nb, size_t index, cJSON *obj);

/* Builds the notebook-level writer state from the root object (after the
 * cells were taken out). Returns 0 or -ENOMEM. */
int apy__nb_wdoc_build(apy_notebook_t *nb, cJSON *root);

/* Free what a cell's / the notebook's writer state owns, and the state
 * itself (NULL is a no-op). */
void apy__nb_wcell_free(apy_nb_wcell_t *w);
void apy__nb_wdoc_free(apy_nb_wdoc_t *w);

/* Gives cell `index` a generated id and its "id" member (see
 * apy__nb_assign_ids). Returns 0 or -ENOMEM. */
int apy__nb_assign_id(apy_notebook_t *nb, size_t index);

/* Fills in a generated id for every cell that needs one when written as
 * nbformat >= 4.5: deterministic (a hash of index and source, made unique
 * among the notebook's ids). Returns 0 or -ENOMEM. */
int apy__nb_assign_ids(apy_notebook_t *nb);

/* ---- Targets and the files beside them (target.c, for save.c) ---- */

/* The next save's prefix: a temporary file beside the target holding the
 * first cells of the notebook as they will be saved (see save.c). */
struct apy_nb_prefix {
    int fd;              /* the next temporary file */
    char tmp[PATH_MAX + 64];
    off_t len;           /* bytes of it written and synced */
    size_t cells;        /* cells [0, cells) are in those bytes */
    unsigned long gen;   /* the notebook's generation when saved */
    unsigned long layout;
};

/* Returns the fd of a new temporary file beside target t (its name in tmp,
 * tmplen >= PATH_MAX + 64), born with t's mode and, for root, its owner;
 * or -errno. */
int apy__nb_temp_for(const apy_nb_target_t *t, char *tmp, size_t tmplen);

/* fsync()s the directory of `target`, so that a rename into it is
 * durable. Best effort: failures are not reported. */
void apy__nb_sync_dir(const char *target);

/* Frees prefix p (NULL is a no-op); its file is removed unless the caller
 * took the fd (p->fd == -1) or it has no name here (tmp empty: the
 * target itself). */
void apy__nb_prefix_free(struct apy_nb_prefix *p);

/* ---- text.c, myst.c, yaml.c: notebooks stored as text ---- */

/* A text notebook must be UTF-8 without NUL bytes (a BOM is skipped:
 * *data and *len move past it). 0, or -EINVAL with the line in err. */
int apy__nb_text_check(const char **data, size_t *len, char *err,
                       size_t errlen);

/* A text's lines (split at "\n", "\r\n" and "\r"), pointing into it. */
typedef struct {
    const char **s;
    size_t *n_; /* their lengths, terminators excluded */
    size_t n;
} apy_nb_lines_t;

/* 0, or -ENOMEM (then l is empty). */
int apy__nb_split_lines(const char *data, size_t len, apy_nb_lines_t *l);
void apy__nb_lines_free(apy_nb_lines_t *l);
/* 1 if s[0..n) is only white space. */
int apy__nb_blank(const char *s, size_t n);

/* The notebook being built from a text: its cells and, for each, the
 * text's 1-based line its source starts at. */
typedef struct {
    cJSON *cells;
    size_t *first;
    size_t n, cap;
} apy_nb_text_t;

/* Starts reading a text notebook: *nb zeroed, data checked
 * (apy__nb_text_check), split into *l, *t ready for cells. 0, or a
 * negative code with err (then nothing is held). */
int apy__nb_text_begin(const char *data, size_t len, apy_notebook_t *nb,
                       apy_nb_lines_t *l, apy_nb_text_t *t, char *err,
                       size_t errlen);
/* Adds a cell of type "code", "markdown" or "raw" whose source is the n
 * lines given (copied; joined with "\n"), its metadata meta (taken; NULL
 * for {}) and its first line first_line. 0 or -ENOMEM (meta freed). */
int apy__nb_text_cell(apy_nb_text_t *t, const char *type, cJSON *meta,
                      const char *const *lines, const size_t *lens,
                      size_t n, size_t first_line);
/* Reads t's cells with notebook metadata meta (taken; NULL for {}) as
 * nbformat 4.5 JSON into *nb (apy__nb_parse's results), line maps
 * pointing at the text. */
int apy__nb_text_finish(apy_nb_text_t *t, cJSON *meta,
                        apy_nb_format_t format, const char *path,
                        apy_notebook_t *nb, char *err, size_t errlen);
void apy__nb_text_free(apy_nb_text_t *t);

/* A percent marker's options (the text after "%%"): a new metadata
 * object (NULL when out of memory) and the cell's type in *type. */
cJSON *apy__nb_percent_options(const char *s, size_t n, const char **type);

/* jupytext's percent format (percent.c) and MyST Markdown (myst.c), as
 * apy__nb_parse reads JSON. */
int apy__nb_parse_percent(const char *data, size_t len, const char *path,
                          apy_notebook_t *nb, char *err, size_t errlen);
int apy__nb_parse_myst(const char *data, size_t len, const char *path,
                       apy_notebook_t *nb, char *err, size_t errlen);

/* The YAML of n lines (line0: the file line of the first, for messages)
 * into *out (a new cJSON tree; null when there is nothing): what
 * jupytext and MyST headers hold (yaml.c says what is read). 0, or
 * -EINVAL / -ENOMEM with one line in err. */
int apy__nb_yaml(const char *const *lines, const size_t *lens, size_t n,
                 size_t line0, cJSON **out, char *err, size_t errlen);

#endif
