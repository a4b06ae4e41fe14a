/* SPDX-License-Identifier: MIT */
/* The notebook layer (src/notebook/): .ipynb text -> owned cell structs with
 * line maps, and the executed notebook written back in Jupyter's layout.
 * Plain C with cJSON inside; no cJSON type and no Python.h appear here.
 * Errors follow STYLE regime 1: 0 or a negative errno-style code, and one
 * line (no file name: the caller prefixes it) in the caller's buffer. */
#ifndef APYRUN_NOTEBOOK_H
#define APYRUN_NOTEBOOK_H

#include <signal.h> /* sig_atomic_t */
#include <stddef.h>

#include "apyrun/buf.h"

/* Limits, documented because users can hit them. */
#define APY_NB_MAX_FILE_SIZE (1024L * 1024L * 1024L) /* 1 GiB */
#define APY_NB_MAX_DEPTH 512 /* nested arrays/objects in the JSON */

/* execution_count value meaning JSON null ("In [ ]"). */
#define APY_NB_NO_COUNT (-1L)

/* Size of a buffer for apy_nb_timestamp(), NUL included. */
#define APY_NB_TIMESTAMP_SIZE 32

typedef enum {
    APY_NB_CODE = 0, /* runs */
    APY_NB_MARKDOWN, /* also nbformat 3 "heading" and "html" cells */
    APY_NB_RAW,
    APY_NB_OTHER, /* a cell_type nbformat calls "unrecognized": kept
                   * as read, never run */
} apy_nb_kind_t;

/* Writer state of one cell (pre-rendered JSON); private to notebook/. */
typedef struct apy_nb_wcell apy_nb_wcell_t;
/* Writer state of the notebook; private to notebook/. */
typedef struct apy_nb_wdoc apy_nb_wdoc_t;

typedef struct {
    apy_nb_kind_t kind;
    /* The cell's text as Python should see it: the joined source (nbformat
     * 3: input) with every "\r\n" and lone "\r" turned into "\n", as
     * Python's universal newlines do. UTF-8, NUL-terminated, never NULL;
     * a NUL inside a source is rejected at parse time. */
    char *source;
    size_t source_len; /* bytes, without the terminating NUL */
    /* line_map[i] is the 1-based line in the JSON file of source line i+1
     * (the line holding the start of that source line). Exact for the
     * layout Jupyter writes (one string per source line); for a source
     * given as one string, or minified JSON, every line maps to the line
     * of the string that holds it. nlines counts "\n"-terminated lines
     * plus a last unterminated one. 0 entries for an inserted cell. */
    int *line_map;
    size_t nlines;
    int json_line; /* line of the cell's '{' (0: inserted cell) */
    char **tags;   /* metadata.tags, owned strings */
    size_t ntags;
    /* The cell id: as read, or made up when the notebook is written as
     * nbformat >= 4.5 and the cell has none (nbformat 3 input, a 4.5 cell
     * without one, an inserted cell); else NULL. */
    char *id;
    apy_nb_wcell_t *w; /* private */
} apy_nb_cell_t;

/* How a notebook is stored. */
typedef enum {
    APY_NB_FORMAT_IPYNB = 0, /* nbformat JSON: *.ipynb, and other names */
    APY_NB_FORMAT_MYST,      /* MyST Markdown: *.md, .myst, .mystnb, .mnb */
    APY_NB_FORMAT_PERCENT,   /* jupytext's percent format: *.py */
} apy_nb_format_t;


typedef struct {
    char *path;             /* copy of the path given to parse; may be NULL */
    apy_nb_format_t format; /* as read: JSON, or a text notebook */
    int nbformat;           /* as read: 3 or 4 */
    int nbformat_minor;     /* as read */
    int out_nbformat;       /* as written: 4 */
    int out_nbformat_minor; /* as written: the input's; 5 for nbformat 3 */
    char *kernel_name;      /* metadata.kernelspec.name, or NULL */
    char *kernel_language;  /* metadata.kernelspec.language, or NULL */
    char *language_info_name; /* metadata.language_info.name, or NULL */
    apy_nb_cell_t *cells;
    size_t ncells;
    apy_nb_wdoc_t *w; /* private */
} apy_notebook_t;

/* A big stream output's text, rendered into nbformat's lines as it arrives
 * and kept, past a few MB, in an unlinked temporary file (src/notebook/
 * stream.c): so a cell's gigabyte of output costs the run a few MB, and
 * saving copies it in the kernel. Reference counted; not thread-safe. */
typedef struct apy_nb_stream apy_nb_stream_t;

/* Returns a new stream (one reference) whose spill file goes in spill_dir
 * (NULL: $TMPDIR, else /tmp), or NULL when out of memory. */
apy_nb_stream_t *apy_nb_stream_new(const char *spill_dir);
/* Drops a reference; the last one frees s (NULL is a no-op). */
void apy_nb_stream_unref(apy_nb_stream_t *s);
/* Appends len bytes of UTF-8 text (a character may be split across
 * calls). Returns 0, -ENOMEM, or -EINVAL after apy_nb_stream_finish. A
 * full disk is no error: the text then stays in memory. */
int apy_nb_stream_put(apy_nb_stream_t *s, const char *utf8, size_t len);
/* Ends the text (its last line need not end with a newline). Returns 0 or
 * -ENOMEM. Idempotent. */
int apy_nb_stream_finish(apy_nb_stream_t *s);
/* A stream for one big value of a display_data's or execute_result's data
 * (an image's base64, a page of HTML): rendered as nbformat writes it,
 * split into lines (split: text/ types, SVG, JavaScript) or one JSON
 * string. */
apy_nb_stream_t *apy_nb_value_new(const char *spill_dir, int split);

/* The result of running one code cell, as the run layer hands it over. */
typedef struct {
    size_t cell;          /* index into nb->cells */
    long execution_count; /* >= 0, or APY_NB_NO_COUNT for null */
    /* The cell's outputs: the text of a JSON array of nbformat 4 output
     * objects (stream, display_data, execute_result, error). Multi-line
     * strings may be given joined or split: they are written split, as
     * nbformat does. NULL means []. Need not be NUL-terminated. */
    const char *outputs;
    size_t outputs_len;
    /* Finished big streams: a stream output whose "text" is null in
     * `outputs`, and each data value that is the string value_tag
     * followed by its index here, takes the next one of these, in the
     * order they are written (data keys sorted). The cell keeps a
     * reference to each. */
    apy_nb_stream_t *const *streams;
    size_t nstreams;
    const char *value_tag; /* NULL: no value is a stream */
    /* nbclient's metadata.execution timestamps (ISO 8601 strings, see
     * apy_nb_timestamp); a NULL one is left out. When all four are NULL
     * the cell's metadata is written as read; otherwise its "execution"
     * object is replaced by the given ones. */
    const char *busy;          /* "iopub.status.busy" */
    const char *execute_input; /* "iopub.execute_input" */
    const char *execute_reply; /* "shell.execute_reply" */
    const char *idle;          /* "iopub.status.idle" */
} apy_nb_result_t;

/* Reads and parses the notebook at `path`, in the format its name tells
 * (.md, .myst, .mystnb, .mnb: MyST; .py: percent; else JSON; a text
 * notebook is read as jupytext reads it and becomes the nbformat 4.5
 * notebook jupytext would make of it, its line maps pointing at the
 * text's lines). Returns 0 with *nb filled
 * (free it with apy_nb_free), or: -ENOENT, -EACCES, -EISDIR... (the file
 * cannot be read), -EFBIG (over APY_NB_MAX_FILE_SIZE), -ENOEXEC (its
 * kernel language is not Python), -EINVAL (not a notebook apyrun can
 * run), -ENOMEM; on failure *nb is zeroed and err
 * holds one line, e.g. "not valid JSON: expected ',' or '}' (line 3,
 * column 7)", "cell 4: 'source' must be a string or a list of strings"
 * (cells are numbered from 1), "kernel language is 'R', not Python".
 * A leading UTF-8 BOM is skipped. nbformat 4 (any minor) and 3 are read;
 * a notebook whose kernel language is not Python is rejected.
 * JSON is read strictly (RFC 8259) plus what Python's json accepts and
 * Jupyter may write: NaN, Infinity, -Infinity and numbers of any length.
 * Duplicate keys: the last one wins, as in Python's json. Rejected: invalid
 * UTF-8, lone surrogates, unescaped control characters, "\u0000" in a key
 * or in a field apyrun reads (source, cell_type, tags, id, kernel names),
 * nesting deeper than APY_NB_MAX_DEPTH. "\u0000" elsewhere (outputs,
 * metadata) is kept and written back. */
int apy_nb_load(const char *path, apy_notebook_t *nb, char *err,
                size_t errlen);

/* Frees everything *nb owns and zeroes it; a zeroed nb is a no-op. */
void apy_nb_free(apy_notebook_t *nb);

/* Returns the JSON line of 1-based source line `lineno` of `cell`, clamped
 * to the cell's first/last line (a SyntaxError at EOF names the line after
 * the last one); json_line when the cell has no lines. */
int apy_nb_cell_line(const apy_nb_cell_t *cell, long lineno);

/* Returns 1 if `cell` has tag `tag` (exact match), else 0. */
int apy_nb_cell_has_tag(const apy_nb_cell_t *cell, const char *tag);

/* The JSON text of member `key` of `cell` ("outputs", "execution_count",
 * ...) as it will be written: as read until apy_nb_set_result replaces
 * it. *json points into the cell (not NUL-terminated), valid until the
 * cell next changes. 0, or -ENOENT when the cell has no such member. */
int apy_nb_cell_member(const apy_nb_cell_t *cell, const char *key,
                       const char **json, size_t *len);

/* Records the result of running code cell res->cell: its outputs, count
 * and timing are rendered now, once, so that saving stays cheap. A later
 * call for the same cell replaces the earlier one. Returns 0, -ERANGE (no
 * such cell), -EINVAL (not a code cell, outputs not a JSON array of output
 * objects, a timestamp not UTF-8: err says which) or -ENOMEM; on failure
 * the cell keeps its previous state. */
int apy_nb_set_result(apy_notebook_t *nb, const apy_nb_result_t *res,
                      char *err, size_t errlen);

/* Where the executed notebook goes, decided once when the run starts. */
typedef enum {
    /* A regular file or a new one: replaced atomically at every save (a
     * temporary file in the same directory born with the target's mode,
     * and owner when root writes; fsync; rename over the target). */
    APY_NB_TARGET_REPLACE = 0,
    /* Anything else that exists (a device, a FIFO, a /proc link such as
     * /dev/fd/3): opened and written into, never created or replaced.
     * Write it once, at the end. */
    APY_NB_TARGET_INTO,
    /* "-" or the process's own stdout by any name: written to the real
     * stdout, whose fd 1 then goes to stderr. Write it once, at the end. */
    APY_NB_TARGET_STDOUT,
} apy_nb_target_kind_t;

typedef struct {
    apy_nb_target_kind_t kind;
    char *path;     /* REPLACE: the file renamed over (links followed);
                     * INTO: the name as given; STDOUT: NULL */
    char *shown;    /* the name as given, for messages */
    int fd;         /* STDOUT: the real stdout; else -1 */
    int truncate;   /* INTO: a regular file behind a /proc link */
    int have_stat;  /* REPLACE over an existing file: its mode and owner */
    unsigned mode;
    unsigned uid, gid;
    struct apy_nb_prefix *prefix; /* REPLACE: the next save's first part,
                                   * written already (private to notebook/) */
    struct apy_nb_prefix *saved;  /* REPLACE: the file saved last, open */
    /* Set by the caller, or NULL: once *stop is nonzero (a signal came),
     * a save does not prepare the next one, which can take seconds. */
    const volatile sig_atomic_t *stop;
} apy_nb_target_t;

/* Decides how out_path is written ("-" is stdout). Symlinks in its last
 * component are followed one by one only as the kernel does with
 * fs.protected_symlinks=1: a link in a sticky world-writable directory
 * owned by neither this user nor the directory's owner is refused
 * (-EACCES). A directory gives -EISDIR. For REPLACE, temporary files that
 * killed runs of this user left beside the target are removed. For
 * STDOUT, fd 1 becomes a copy of fd 2. Returns 0 (close *t with
 * apy_nb_target_close), or -errno with "cannot write OUT_PATH: reason" in
 * err and *t needing no close. */
int apy_nb_target_open(const char *out_path, apy_nb_target_t *t, char *err,
                       size_t errlen);

/* Writes the notebook, with the results set so far, to the target, in
 * nbformat's layout (indent 1, sorted keys, multi-line strings as lists
 * of lines, trailing newline). REPLACE: on failure the target is
 * untouched and no temporary file is left; a target with other hard links
 * becomes a new file, as with any atomic replace. `stable` says that
 * cells [0, stable) will not get another result (one that changes them
 * anyway is noticed): a REPLACE save of a notebook over 4 MiB then also
 * copies them into the next save's temporary file, so that the next save
 * (a signal's), however big the notebook, writes only the rest. 0 asks
 * for nothing. Returns 0, or
 * -errno with "cannot write OUT_PATH: reason" in err (also -EINVAL if nb
 * was never parsed). One caller at a time. */
int apy_nb_target_save(const apy_notebook_t *nb, apy_nb_target_t *t,
                       size_t stable, char *err, size_t errlen);

/* Releases the target (the stdout copy included; an unused prefix is
 * removed). A zeroed or closed target with fd -1 is a
 * no-op. */
void apy_nb_target_close(apy_nb_target_t *t);

/* Inserts a new code cell (papermill's injected-parameters cell) before
 * index `pos` (pos == ncells appends): source `source` (UTF-8, `len`
 * bytes), metadata.tags = tags[0..ntags), no outputs, execution_count
 * null, an id when written as nbformat >= 4.5. Its json_line and
 * line_map entries are 0 (the cell is in no input file). Results set for
 * later cells follow their cells. Returns 0, -ERANGE, -EINVAL (source or a
 * tag is not valid UTF-8 or holds a NUL) or -ENOMEM. */
int apy_nb_insert_code_cell(apy_notebook_t *nb, size_t pos, const char *source,
                            size_t len, const char *const *tags, size_t ntags,
                            char *err, size_t errlen);

/* Removes cell `pos` (an old injected-parameters cell). Returns 0 or
 * -ERANGE. */
int apy_nb_remove_cell(apy_notebook_t *nb, size_t pos);

/* Writes the current UTC time as nbclient records it
 * ("2024-01-31T12:34:56.123456Z") into buf (APY_NB_TIMESTAMP_SIZE bytes). */
void apy_nb_timestamp(char buf[APY_NB_TIMESTAMP_SIZE]);

#endif
