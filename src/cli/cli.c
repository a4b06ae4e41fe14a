/* SPDX-License-Identifier: MIT */
/* argv -> apy_options_t. Owns the split between apyrun's own options
 * (long options, plus -p and -o, before the target, and after a notebook
 * up to "--") and everything else, which is passed on untouched for
 * CPython's PyConfig to parse: this file must not re-implement python's
 * option parser beyond finding the target. */
#define _GNU_SOURCE /* memmem */
#include "apyrun/cli.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Python short options that take an argument (python3.11 -h). */
#define PY_OPTS_WITH_ARG "cmWX"

/* Python's own long options; anything else starting with "--" before the
 * target is apyrun's, or a usage error. */
static const char *const py_long_opts[] = {
    "--help-env", "--help-xoptions", "--help-all",
    "--check-hash-based-pycs", NULL,
};

static int
is_py_long_opt(const char *arg)
{
    for (const char *const *p = py_long_opts; *p != NULL; p++) {
        size_t n = strlen(*p);
        if (strncmp(arg, *p, n) == 0 && (arg[n] == '\0' || arg[n] == '=')) {
            return 1;
        }
    }
    return 0;
}

/* Matches "--name" or "--name=value". Returns 0 if arg is not the option,
 * 1 if it is, and sets *inline_value to the text after '=' (or NULL). */
static int
match_long(const char *arg, const char *name, const char **inline_value)
{
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0) {
        return 0;
    }
    if (arg[n] == '\0') {
        *inline_value = NULL;
        return 1;
    }
    if (arg[n] == '=') {
        *inline_value = arg + n + 1;
        return 1;
    }
    return 0;
}

static int
parse_seconds(const char *text, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v > 0)) {
        return -1;
    }
    *out = v;
    return 0;
}

static int
parse_loop(const char *text, apy_loop_kind_t *out)
{
    if (strcmp(text, "apyrun") == 0) {
        *out = APY_LOOP_APYRUN;
        return 0;
    }
    if (strcmp(text, "asyncio") == 0) {
        *out = APY_LOOP_ASYNCIO;
        return 0;
    }
    return -1;
}

/* A python option cluster such as "-Bu" or "-Wignore" or "-c" (the code in
 * the next argument). Sets *takes_next when the option's argument is the
 * next argv element, and the target kind when it is -c or -m. */
static void
scan_short_cluster(const char *arg, apy_options_t *opts, int *takes_next,
                   apy_target_kind_t *target, const char **inline_target)
{
    *takes_next = 0;
    *target = APY_TARGET_NONE;
    *inline_target = NULL;
    for (const char *p = arg + 1; *p != '\0'; p++) {
        switch (*p) {
        case 'h':
        case '?':
            opts->show_help = 1;
            continue;
        case 'V':
            opts->show_version = 1;
            continue;
        case 'E':
        case 'I':
            opts->ignore_env = 1;
            continue;
        default:
            break;
        }
        if (strchr(PY_OPTS_WITH_ARG, *p) != NULL) {
            if (*p == 'c' || *p == 'm') {
                *target = *p == 'c' ? APY_TARGET_COMMAND : APY_TARGET_MODULE;
                if (p[1] != '\0') {
                    *inline_target = p + 1;
                }
            }
            *takes_next = p[1] == '\0';
            return;
        }
    }
}

static int
push_param(apy_options_t *opts, const char *name, const char *value)
{
    apy_param_t *grown = realloc(opts->params,
                                 (opts->nparams + 1) * sizeof(*grown));
    if (grown == NULL) {
        return -ENOMEM;
    }
    opts->params = grown;
    opts->params[opts->nparams].name = name;
    opts->params[opts->nparams].value = value;
    opts->nparams++;
    return 0;
}

/* Takes the value of an apyrun option: the inline "=value" or the next
 * argument. Returns the value or NULL (message in err). */
static const char *
option_value(const char *name, const char *inline_value, int argc,
             char **argv, int *i, char *err, size_t errlen)
{
    if (inline_value != NULL) {
        return inline_value;
    }
    if (*i + 1 >= argc) {
        snprintf(err, errlen, "option %s needs a value", name);
        return NULL;
    }
    return argv[++*i];
}

/* Handles one apyrun option about the run (--loop and the notebook
 * options) at argv[*i], with its value. Returns 1 if it was one
 * (consumed), 0 if not, -1 on a usage error (message in err). --help and
 * --version are not here: they are taken before the target only. */
static int
take_apyrun_option(int argc, char **argv, int *i, apy_options_t *opts,
                   char *err, size_t errlen)
{
    const char *arg = argv[*i];
    const char *iv = NULL;
    const char *v;

    if (match_long(arg, "--inplace", &iv) && iv == NULL) {
        opts->inplace = 1;
        return 1;
    }
    if (match_long(arg, "--notebook", &iv) && iv == NULL) {
        opts->as_notebook = 1;
        return 1;
    }
    if (match_long(arg, "--allow-errors", &iv) && iv == NULL) {
        opts->allow_errors = 1;
        return 1;
    }
    if (match_long(arg, "--loop", &iv)) {
        if ((v = option_value("--loop", iv, argc, argv, i, err, errlen))
            == NULL) {
            return -1;
        }
        if (parse_loop(v, &opts->loop) < 0) {
            snprintf(err, errlen,
                     "--loop must be 'apyrun' or 'asyncio', not '%s'", v);
            return -1;
        }
        return 1;
    }
    if (match_long(arg, "--output", &iv) || strcmp(arg, "-o") == 0) {
        if ((v = option_value("-o/--output", iv, argc, argv, i, err,
                              errlen)) == NULL) {
            return -1;
        }
        opts->output = v;
        return 1;
    }
    if (strncmp(arg, "-o", 2) == 0 && arg[2] != '\0') {
        opts->output = arg + 2;
        return 1;
    }
    if (match_long(arg, "--cwd", &iv)) {
        if ((v = option_value("--cwd", iv, argc, argv, i, err, errlen))
            == NULL) {
            return -1;
        }
        opts->cwd = v;
        return 1;
    }
    if (match_long(arg, "--params-file", &iv)) {
        if ((v = option_value("--params-file", iv, argc, argv, i, err,
                              errlen)) == NULL) {
            return -1;
        }
        opts->params_file = v;
        return 1;
    }
    if (match_long(arg, "--timeout", &iv)
        || match_long(arg, "--total-timeout", &iv)) {
        int total = arg[2] == 't' && arg[3] == 'o' && arg[4] == 't';
        const char *name = total ? "--total-timeout" : "--timeout";
        if ((v = option_value(name, iv, argc, argv, i, err, errlen))
            == NULL) {
            return -1;
        }
        if (parse_seconds(v, total ? &opts->total_timeout : &opts->timeout)
            < 0) {
            snprintf(err, errlen, "%s needs a positive number of seconds, "
                     "not '%s'", name, v);
            return -1;
        }
        return 1;
    }
    if (match_long(arg, "--check-outputs", &iv)) {
        if (iv == NULL || strcmp(iv, "strict") == 0) {
            opts->check_outputs = APY_CHECK_STRICT;
        } else if (strcmp(iv, "lax") == 0) {
            opts->check_outputs = APY_CHECK_LAX;
        } else {
            snprintf(err, errlen, "--check-outputs takes 'strict' or 'lax', "
                     "not '%s'", iv);
            return -1;
        }
        return 1;
    }
    if (match_long(arg, "--check-images", &iv) && iv == NULL) {
        opts->check_images = 1;
        return 1;
    }
    if (match_long(arg, "--sanitize", &iv)) {
        if ((v = option_value("--sanitize", iv, argc, argv, i, err, errlen))
            == NULL) {
            return -1;
        }
        opts->sanitize = v;
        return 1;
    }
    if (strcmp(arg, "-p") == 0) {
        if (*i + 2 >= argc) {
            snprintf(err, errlen, "-p needs a NAME and a VALUE");
            return -1;
        }
        int rc = push_param(opts, argv[*i + 1], argv[*i + 2]);
        if (rc < 0) {
            snprintf(err, errlen, "out of memory");
            return rc;
        }
        *i += 2;
        return 1;
    }
    return 0;
}

/* Returns 1 if arg reads as a number ("-1", "-2.5e3"): a word, such as
 * a negative value for the notebook, not an option. */
static int
is_number(const char *arg)
{
    char *end;
    (void)strtod(arg, &end);
    return end != arg && *end == '\0';
}

/* The arguments after a notebook target, argv[i..]. apyrun's options
 * about the run (take_apyrun_option) are taken here too, because that is
 * where papermill and nbconvert users type them (`apyrun nb.ipynb -o
 * out.ipynb`); "--" ends them, and everything after it is the notebook's
 * sys.argv[1:] unchanged. Other words stay the notebook's arguments, as
 * they always were, wherever they are. An unknown option before "--" is a
 * usage error, not an argument: passing it on silently is how `-o` was
 * lost before, and how a misspelt `--timout 5` would be; rejected: taking
 * every option-looking argument as the notebook's (the old behaviour),
 * which cannot tell a typo from an argument. Returns 0, or -1 (message in
 * err). */
static int
scan_after_notebook(int argc, char **argv, int i, apy_options_t *opts,
                    char *err, size_t errlen)
{
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            for (i++; i < argc; i++) {
                opts->py_argv[opts->py_argc++] = argv[i];
            }
            return 0;
        }
        if (arg[0] != '-' || arg[1] == '\0' || is_number(arg)) {
            opts->py_argv[opts->py_argc++] = argv[i];
            continue;
        }
        int rc = take_apyrun_option(argc, argv, &i, opts, err, errlen);
        if (rc < 0) {
            return rc;
        }
        if (rc == 0) {
            snprintf(err, errlen, "unknown option '%s' after the notebook "
                     "(apyrun --help lists apyrun's options); the "
                     "notebook's own arguments go after '--': "
                     "apyrun %s -- %s ...", arg, opts->target, arg);
            return -1;
        }
    }
    return 0;
}

/* --check-images and --sanitize refine --check-outputs. 0 or -1. */
static int
check_needs_outputs(const apy_options_t *opts, char *err, size_t errlen)
{
    if (opts->check_outputs == APY_CHECK_NONE
        && (opts->check_images || opts->sanitize != NULL)) {
        snprintf(err, errlen, "%s needs --check-outputs",
                 opts->check_images ? "--check-images" : "--sanitize");
        return -1;
    }
    return 0;
}

/* Appends word to the growing array *arr of *n borrowed strings. */
static int
push_word(const char ***arr, size_t *n, const char *word)
{
    const char **grown = realloc(*arr, (*n + 1) * sizeof(*grown));
    if (grown == NULL) {
        return -ENOMEM;
    }
    grown[(*n)++] = word;
    *arr = grown;
    return 0;
}

/* A positive int, all of text. 0 or -1. */
static int
parse_count(const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 1 || v > 100000) {
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* "K/N" with 1 <= K <= N. 0 or -1. */
static int
parse_shard(const char *text, int *k, int *n)
{
    const char *slash = strchr(text, '/');
    if (slash == NULL || slash == text) {
        return -1;
    }
    char kpart[16];
    size_t klen = (size_t)(slash - text);
    if (klen >= sizeof(kpart)) {
        return -1;
    }
    memcpy(kpart, text, klen);
    kpart[klen] = '\0';
    if (parse_count(kpart, k) < 0 || parse_count(slash + 1, n) < 0
        || *k > *n) {
        return -1;
    }
    return 0;
}

/* One --test option at argv[*i] that takes a value: -j, -k, -o and the
 * long ones. Returns 1 (taken), 0 (not one of these), -1 (usage error). */
static int
take_test_value_option(int argc, char **argv, int *i, apy_options_t *opts,
                       char *err, size_t errlen)
{
    apy_test_options_t *t = &opts->test_opts;
    const char *arg = argv[*i];
    const char *iv = NULL;
    const char *v;
    if (arg[0] == '-' && (arg[1] == 'j' || arg[1] == 'k' || arg[1] == 'o')) {
        iv = arg[2] != '\0' ? arg + 2 : NULL;
        char name[3] = {'-', arg[1], '\0'};
        if ((v = option_value(name, iv, argc, argv, i, err, errlen)) == NULL) {
            return -1;
        }
        if (arg[1] == 'k') {
            return push_word(&t->keywords, &t->nkeywords, v) < 0 ? -ENOMEM
                                                                 : 1;
        }
        if (arg[1] == 'o') {
            t->output_dir = v;
            return 1;
        }
        goto jobs;
    }
    if (match_long(arg, "--jobs", &iv)) {
        if ((v = option_value("--jobs", iv, argc, argv, i, err, errlen))
            == NULL) {
            return -1;
        }
        goto jobs;
    }
    if (match_long(arg, "--shard", &iv)) {
        if ((v = option_value("--shard", iv, argc, argv, i, err, errlen))
            == NULL) {
            return -1;
        }
        if (parse_shard(v, &t->shard_k, &t->shard_n) < 0) {
            snprintf(err, errlen, "--shard takes K/N with 1 <= K <= N "
                     "(the K-th of N shards), not '%s'", v);
            return -1;
        }
        return 1;
    }
    static const struct {
        const char *name;
        size_t offset;
    } files[] = {
        {"--durations", offsetof(apy_test_options_t, durations)},
        {"--junit-xml", offsetof(apy_test_options_t, junit_xml)},
        {"--junitxml", offsetof(apy_test_options_t, junit_xml)},
        {"--output-dir", offsetof(apy_test_options_t, output_dir)},
    };
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        if (match_long(arg, files[f].name, &iv)) {
            if ((v = option_value(files[f].name, iv, argc, argv, i, err,
                                  errlen)) == NULL) {
                return -1;
            }
            *(const char **)((char *)t + files[f].offset) = v;
            return 1;
        }
    }
    return 0;

jobs:
    if (parse_count(v, &t->jobs) < 0) {
        snprintf(err, errlen, "-j/--jobs takes a number of processes "
                 "(1 or more), not '%s'", v);
        return -1;
    }
    return 1;
}

/* One --test option without a value. 1 (taken), 0 (not one), -1. */
static int
take_test_flag(const char *arg, apy_options_t *opts, char *err,
               size_t errlen)
{
    apy_test_options_t *t = &opts->test_opts;
    const char *iv = NULL;
    if (strcmp(arg, "--list") == 0) {
        t->list = 1;
    } else if (strcmp(arg, "--exitfirst") == 0) {
        t->exitfirst = 1;
    } else if (strcmp(arg, "--verbose") == 0) {
        t->verbose = 1;
    } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        opts->show_help = 1;
    } else if (match_long(arg, "--capture", &iv)) {
        if (iv == NULL || (strcmp(iv, "no") != 0 && strcmp(iv, "fd") != 0)) {
            snprintf(err, errlen, "--capture takes =fd (the default) or "
                     "=no, not '%s'", iv != NULL ? iv : "");
            return -1;
        }
        t->capture_no = strcmp(iv, "no") == 0;
    } else {
        return 0;
    }
    return 1;
}

/* The arguments after --test, argv[i..]: test options, the notebook run
 * options (as after a notebook, but for -o, which is --output-dir here,
 * and --output, --inplace, --cwd, which make no sense for many
 * notebooks), and PATHs; after "--" only PATHs. 0 or -1 (err). */
static int
scan_test_args(int argc, char **argv, int i, apy_options_t *opts, char *err,
               size_t errlen)
{
    apy_test_options_t *t = &opts->test_opts;
    int paths_only = 0;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        int rc;
        if (paths_only || arg[0] != '-' || arg[1] == '\0') {
            if ((rc = push_word(&t->paths, &t->npaths, arg)) < 0) {
                snprintf(err, errlen, "out of memory");
                return rc;
            }
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            paths_only = 1;
            continue;
        }
        const char *iv;
        if (match_long(arg, "--output", &iv) || match_long(arg, "--inplace",
                                                           &iv)
            || match_long(arg, "--cwd", &iv)) {
            snprintf(err, errlen, "%s is not a --test option (--output-dir "
                     "DIR keeps the executed notebooks)", arg);
            return -1;
        }
        rc = take_test_flag(arg, opts, err, errlen);
        if (rc == 0) {
            rc = take_test_value_option(argc, argv, &i, opts, err, errlen);
        }
        if (rc == 0) {
            rc = take_apyrun_option(argc, argv, &i, opts, err, errlen);
        }
        if (rc == -ENOMEM) {
            snprintf(err, errlen, "out of memory");
        }
        if (rc < 0) {
            return rc;
        }
        if (rc == 0) {
            snprintf(err, errlen, "unknown --test option '%s' (apyrun --test "
                     "--help lists them; a path starting with '-' goes "
                     "after '--')", arg);
            return -1;
        }
    }
    return 0;
}

static int
ends_with(const char *s, const char *tail)
{
    size_t n = s != NULL ? strlen(s) : 0, t = strlen(tail);
    return n > t && strcmp(s + n - t, tail) == 0;
}

/* 1 if path names a notebook by its name: ".ipynb", or MyST's ".md",
 * ".myst", ".mystnb", ".mnb". */
static int
is_notebook_path(const char *path)
{
    return ends_with(path, ".ipynb") || ends_with(path, ".md")
           || ends_with(path, ".myst") || ends_with(path, ".mystnb")
           || ends_with(path, ".mnb");
}

/* The next line of buf[*k..n) with its "# " or "#" taken off, in
 * *line and *len; 0 when the line is not a comment (or there is none). */
static int
next_comment(const char *buf, size_t n, size_t *k, const char **line,
             size_t *len)
{
    if (*k >= n || buf[*k] != '#') {
        return 0;
    }
    const char *e = memchr(buf + *k, '\n', n - *k);
    size_t end = e != NULL ? (size_t)(e - buf) : n;
    size_t d = *k + 1 < end && buf[*k + 1] == ' ' ? 2 : 1;
    *line = buf + *k + d;
    *len = end - *k - d;
    while (*len > 0 && ((*line)[*len - 1] == '\r' || (*line)[*len - 1] == ' '
                        || (*line)[*len - 1] == '\t')) {
        (*len)--;
    }
    *k = end + 1;
    return 1;
}

/* 1 if the file opens with jupytext's header (after a #! line and a
 * coding line) and the header says the percent format. */
static int
has_percent_header(const char *path)
{
    char buf[8192];
    struct stat st;
    /* A regular file only: reading a FIFO here would take the script
     * from python. */
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof(buf), f), k = 0, len;
    fclose(f);
    const char *line;
    int opened = 0;
    while (next_comment(buf, n, &k, &line, &len)) {
        if (len == 3 && memcmp(line, "---", 3) == 0) {
            if (opened) {
                return 0;
            }
            opened = 1;
            continue;
        }
        if (!opened) {
            if (len > 0 && line[0] != '!' && memmem(line, len, "coding", 6)
                                                 == NULL) {
                return 0;
            }
            continue;
        }
        while (len > 0 && line[0] == ' ') {
            line++;
            len--;
        }
        if ((len >= 12 && memcmp(line, "format_name:", 12) == 0
             && memmem(line, len, "percent", 7) != NULL)
            || (len >= 8 && memcmp(line, "formats:", 8) == 0
                && memmem(line, len, "py:percent", 10) != NULL)) {
            return 1;
        }
    }
    return 0;
}

int
apy_cli_target_is_notebook(const apy_options_t *opts)
{
    if (opts->target_kind != APY_TARGET_FILE || opts->target == NULL) {
        return 0;
    }
    return opts->as_notebook || is_notebook_path(opts->target)
           || (ends_with(opts->target, ".py")
               && has_percent_header(opts->target));
}

int
apy_cli_parse(int argc, char **argv, apy_options_t *opts, char *err,
              size_t errlen)
{
    memset(opts, 0, sizeof(*opts));
    err[0] = '\0';

    const char *env_loop = getenv("APYRUN_LOOP");
    if (env_loop != NULL && env_loop[0] != '\0'
        && parse_loop(env_loop, &opts->loop) < 0) {
        snprintf(err, errlen,
                 "APYRUN_LOOP must be 'apyrun' or 'asyncio', not '%s'",
                 env_loop);
        return -1;
    }

    /* CPython's argv can only be as long as ours (plus a NULL). */
    opts->py_argv = calloc((size_t)argc + 1, sizeof(char *));
    if (opts->py_argv == NULL) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    opts->py_argv[opts->py_argc++] = argc > 0 ? argv[0] : "apyrun";

    int i = 1;
    for (; i < argc; i++) {
        const char *arg = argv[i];
        if (arg[0] != '-' || strcmp(arg, "-") == 0) {
            /* The target: a path, or "-" for stdin. */
            opts->target_kind = arg[0] == '-' ? APY_TARGET_STDIN
                                              : APY_TARGET_FILE;
            opts->target = opts->target_kind == APY_TARGET_FILE ? arg : NULL;
            break;
        }
        if (strcmp(arg, "--") == 0) {
            /* python: end of options, the next argument is the file. */
            opts->py_argv[opts->py_argc++] = argv[i];
            if (i + 1 < argc) {
                i++;
                opts->target_kind = strcmp(argv[i], "-") == 0
                                        ? APY_TARGET_STDIN : APY_TARGET_FILE;
                opts->target = opts->target_kind == APY_TARGET_FILE
                                   ? argv[i] : NULL;
            }
            break;
        }
        if (strcmp(arg, "--help") == 0) {
            opts->show_help = 1;
            /* After apyrun's own help, CPython lists its options. */
            opts->py_argv[opts->py_argc++] = "-h";
            continue;
        }
        if (strcmp(arg, "--version") == 0) {
            opts->show_version = 1;
            continue;
        }
        if (strcmp(arg, "--test") == 0) {
            opts->test = 1;
            opts->py_argv[opts->py_argc] = NULL;
            int rc = scan_test_args(argc, argv, i + 1, opts, err, errlen);
            return rc < 0 ? rc : check_needs_outputs(opts, err, errlen);
        }
        int rc = take_apyrun_option(argc, argv, &i, opts, err, errlen);
        if (rc < 0) {
            return rc;
        }
        if (rc > 0) {
            continue;
        }
        if (arg[1] == '-') {
            if (!is_py_long_opt(arg)) {
                snprintf(err, errlen, "unknown option '%s' "
                         "(apyrun --help lists the options)", arg);
                return -1;
            }
            opts->py_argv[opts->py_argc++] = argv[i];
            if (strcmp(arg, "--check-hash-based-pycs") == 0 && i + 1 < argc) {
                opts->py_argv[opts->py_argc++] = argv[++i];
            }
            continue;
        }
        int takes_next;
        apy_target_kind_t kind;
        const char *inline_target;
        scan_short_cluster(arg, opts, &takes_next, &kind, &inline_target);
        if (opts->show_version) {
            /* -V is answered by apyrun itself; drop it from python's argv
             * so that nothing else is printed. */
            continue;
        }
        opts->py_argv[opts->py_argc++] = argv[i];
        if (kind != APY_TARGET_NONE) {
            opts->target_kind = kind;
            if (inline_target != NULL) {
                opts->target = inline_target;
            } else if (i + 1 < argc) {
                opts->target = argv[i + 1];
            }
            /* Everything after -c/-m (its argument included) is the
             * program's; python's parser sees it unchanged. */
            i++;
            break;
        }
        if (takes_next && i + 1 < argc) {
            opts->py_argv[opts->py_argc++] = argv[++i];
        }
    }
    if (apy_cli_target_is_notebook(opts)) {
        opts->py_argv[opts->py_argc++] = argv[i++];
        int rc = scan_after_notebook(argc, argv, i, opts, err, errlen);
        if (rc < 0) {
            return rc;
        }
    } else {
        /* python's rule: everything after the target is the program's. */
        for (; i < argc; i++) {
            opts->py_argv[opts->py_argc++] = argv[i];
        }
    }
    opts->py_argv[opts->py_argc] = NULL;

    if (opts->inplace && opts->output != NULL) {
        snprintf(err, errlen, "--inplace and -o/--output exclude each other");
        return -1;
    }
    return check_needs_outputs(opts, err, errlen);
}

void
apy_cli_free(apy_options_t *opts)
{
    free(opts->py_argv);
    free(opts->params);
    free(opts->test_opts.paths);
    free(opts->test_opts.keywords);
    opts->test_opts.paths = opts->test_opts.keywords = NULL;
    opts->test_opts.npaths = opts->test_opts.nkeywords = 0;
    opts->py_argv = NULL;
    opts->params = NULL;
    opts->py_argc = 0;
    opts->nparams = 0;
}

void
apy_cli_print_help(void *out, const char *prog)
{
    FILE *f = out;
    fprintf(f,
"usage: %s [apyrun options] [python options] "
"(FILE | -m MOD | -c CODE | -) [args]\n"
"       %s [options] NB.ipynb [notebook options] [args] [-- args]\n"
"\n"
"Runs Python scripts, modules and Jupyter notebooks (FILE.ipynb), with\n"
"top-level await, on an asyncio event loop written in C on libuv. Code\n"
"without top-level await runs exactly as under python3. Notebooks stored\n"
"as text run too: MyST Markdown (NB.md) and jupytext's percent format\n"
"(NB.py with a jupytext header, or --notebook NB.py).\n"
"\n"
"apyrun options (before the target; --loop also after a notebook):\n"
"  --loop apyrun|asyncio  asyncio's default loop: apyrun's (default) or the\n"
"                         stdlib's; also APYRUN_LOOP=apyrun|asyncio\n"
"  -h, --help             this help, then python's options\n"
"  -V, --version          versions of apyrun, Python, libuv and cJSON\n"
"notebook options (before the notebook, or after it up to '--'):\n"
"  --notebook             the target is a notebook whatever its name\n"
"                         (jupytext's percent format: # %%%% cells)\n"
"  -o, --output OUT.ipynb write the executed notebook to OUT.ipynb (saved\n"
"                         at most once a second and at the end; '-' is\n"
"                         stdout, the cells' output then going to stderr)\n"
"  --inplace              write the executed notebook over the input\n"
"  --cwd DIR              working directory (default: the notebook's)\n"
"  --timeout S            time limit per cell, seconds (exit 124)\n"
"  --total-timeout S      time limit for the whole run (exit 124)\n"
"  --allow-errors         go on after a failing cell\n"
"  -p NAME VALUE          set a parameter, as papermill\n"
"  --params-file F.json   parameters from a JSON object\n"
"  --check-outputs[=strict|lax]  compare each code cell's outputs with the\n"
"                         stored ones, as nbval (lax: only cells tagged\n"
"                         nbval-check-output); a mismatch fails the run\n"
"  --check-images         ... images by their bytes, not only presence\n"
"  --sanitize FILE        nbval's sanitizer file (regex:/replace: lines)\n"
"\n"
"testing many notebooks: %s --test [options] [PATH ...] (options:\n"
"%s --test --help)\n"
"\n"
"After a script, -c, -m or -, every argument is the program's, as in\n"
"python3. After a notebook, apyrun's options are taken up to '--'; other\n"
"words and everything after '--' are the notebook's sys.argv[1:], and an\n"
"unknown option before '--' is a usage error:\n"
"  apyrun nb.ipynb -o out.ipynb -p alpha 0.5 data.csv -- --verbose\n"
"\n"
"environment: APYRUN_LOOP (as --loop); APYRUN_NATIVE_TCP=0 (asyncio's own\n"
"TCP transports); APYRUN_HUGEPAGES=0 (pymalloc on 4 KiB pages, not on\n"
"transparent huge pages).\n"
"\n"
"exit codes: 0 success; 1 uncaught exception or cell error; 2 usage\n"
"error or unreadable input; 124 timeout; 120 stdout not flushed;\n"
"128+N (negative in Python's subprocess) killed by signal N.\n"
"\n"
"python options (all of python3's, parsed by CPython):\n", prog, prog,
            prog, prog);
}

void
apy_cli_print_test_help(void *out, const char *prog)
{
    FILE *f = out;
    fprintf(f,
"usage: %s --test [options] [PATH ...]\n"
"\n"
"Runs every notebook (*.ipynb) under each directory PATH (default: .),\n"
"skipping hidden directories and .ipynb_checkpoints, and each .ipynb, .md\n"
"or .py file named, each in a process of its own, N at a time; prints the\n"
"failures and 'apyrun: N passed, N failed'.\n"
"\n"
"options:\n"
"  -j, --jobs N           processes at a time (default: the CPUs)\n"
"  -k SUBSTR              only paths containing SUBSTR (any of several -k)\n"
"  --list                 print the collected paths, run nothing\n"
"  --shard K/N            run the K-th of N shards (balanced by file size,\n"
"                         or by the times of --durations)\n"
"  --durations FILE       a JUnit XML file of a previous run, for --shard\n"
"  --junit-xml FILE       write a JUnit XML report (as pytest --junitxml)\n"
"  -o, --output-dir DIR   write each executed notebook under DIR\n"
"  --exitfirst            stop at the first failure\n"
"  --verbose              one line a notebook, as it finishes\n"
"  --capture=no           show the notebooks' output live\n"
"  --timeout S, --total-timeout S, --allow-errors, -p NAME VALUE,\n"
"  --params-file F, --check-outputs[=strict|lax], --check-images,\n"
"  --sanitize FILE, --loop  as for one notebook, applied to each\n"
"\n"
"exit codes: 0 all passed; 1 some failed; 2 usage error; 5 nothing\n"
"collected; 128+N interrupted by signal N.\n", prog);
}
