/* SPDX-License-Identifier: MIT */
/* Private to src/importer: the `_apyrun_importer` module state and the
 * entry points between the importer's files. Other layers use
 * include/apyrun/importer.h. */
#ifndef APYRUN_IMPORTER_PRIVATE_H
#define APYRUN_IMPORTER_PRIVATE_H

#include <Python.h>
#include <frameobject.h>

#include <stdint.h>

/* Cache file tags: `<stem>.<cache_tag>[.opt-N].<tag>.pyc` beside where
 * python would put `<stem>.<cache_tag>.pyc`; python never reads them. */
#define APY_CACHE_TAG_TLA "apyrun-tla"
#define APY_CACHE_TAG_NOTEBOOK "apyrun-ipynb"

/* Per-module state of `_apyrun_importer`. Everything is a strong
 * reference except where marked. */
typedef struct {
    PyTypeObject *source_loader_type;   /* SourceFileLoader subclass */
    PyTypeObject *notebook_loader_type; /* .ipynb loader */
    PyTypeObject *notebook_finder_type;    /* .ipynb, last on meta_path */
    PyTypeObject *awaiter_type;         /* what `await` imports through */
    PyTypeObject *exec_type;            /* one TLA module body running */
    PyObject *async_import_error;       /* apyrun.AsyncImportError */
    PyObject *deferred;                 /* private BaseException subclass */
    /* importlib and builtins, fetched once at exec */
    PyObject *call_with_frames_removed;
    PyObject *cache_from_source;
    PyObject *spec_from_file_location;
    PyObject *fix_co_filename;
    PyObject *builtin_exec;
    PyObject *orig_lock_unlock; /* importlib's _lock_unlock_module */
    /* asyncio, fetched on first use by TLA code (never at startup) */
    PyObject *current_task; /* _asyncio._current_tasks: loop -> task */
    /* The loop apyrun created for imports from code with no running loop,
     * kept so that what those imports started stays alive; NULL until a
     * TLA module is first imported that way. */
    PyObject *loop;
    PyObject *records; /* dict: module name -> Exec object in progress */
    PyObject *waits;   /* dict: task -> Exec object it waits for */
    PyObject *lines;   /* dict: notebook path -> linecache entry waiting
                          for linecache to be imported */
    /* The import an awaiter is making right now (see awaiter.c). */
    PyThreadState *armed_tstate; /* borrowed; NULL when not armed */
    PyFrameObject *armed_frame;  /* borrowed; the awaiting frame */
    int closer_registered;       /* atexit hook for `loop` is set */
    int linecache_hooked;        /* the linecache finder is installed */
} apy_importer_state_t;

/* One TLA module body being run: shared by every task that imports the
 * module while it runs (awaiter.c, exec.c). */
typedef struct {
    PyObject_HEAD
    PyObject *name;    /* module name */
    PyObject *module;  /* the module object */
    PyObject *coro;    /* the body coroutine, until an awaiter takes it */
    PyObject *task;    /* task running the body; NULL if unknown */
    PyObject *waiters; /* list of futures of the other importers */
    PyObject *alias;   /* second sys.modules name, or NULL */
    double started;    /* monotonic seconds, for -X importtime */
    int sync;          /* run by exec_module: importlib owns sys.modules */
    int depth;         /* nesting of async imports, for -X importtime */
} ApyExecObject;

/* --- state.c --- */
/* The state of the `_apyrun_importer` module that defined `tp` (or a base
 * of it). Borrowed; never NULL for the importer's own types. */
apy_importer_state_t *apy__importer_state_of(PyTypeObject *tp);
/* The state of the imported `_apyrun_importer` module. Borrowed, or NULL
 * with an exception set. */
apy_importer_state_t *apy__importer_find_state(void);
/* Imports asyncio and fetches _asyncio's task registry into st on first
 * use. 0 or -1. */
int apy__importer_need_asyncio(apy_importer_state_t *st);
/* The running loop (asyncio._get_running_loop()): a new reference,
 * Py_None when no loop runs, NULL with an exception set. Call it after
 * apy__importer_need_asyncio. */
PyObject *apy__importer_running_loop(void);
/* Submits coroutine `coro` to `loop`, which runs in another thread, and
 * blocks this thread until it is done. Returns a new reference to its
 * result, or NULL with its exception set. */
PyObject *apy__importer_run_threadsafe(PyObject *coro, PyObject *loop);
/* Raises apyrun.AsyncImportError(msg, name=name) and steals msg (NULL:
 * the exception creating it is already set, and stays). */
void apy__importer_raise_async_import_error(apy_importer_state_t *st,
                                            PyObject *name, PyObject *msg);

/* --- cache.c --- */
/* The stat fields a cache entry is keyed on (as pyc headers: mtime in
 * whole seconds and size, both truncated to 32 bits). */
typedef struct {
    int64_t mtime;
    int64_t size;
    double mtime_float; /* os.stat's st_mtime, for linecache */
    unsigned int mode;
} apy_source_stat_t;
/* stat()s path (a str). Returns 0, or -1 with OSError set. */
int apy__importer_stat(PyObject *path, apy_source_stat_t *out);
/* Returns a new reference to the cache file name for source `path` with
 * tag (APY_CACHE_TAG_*), Py_None when this interpreter caches nothing
 * (sys.implementation.cache_tag is None), or NULL with an exception. */
PyObject *apy__importer_cache_path(apy_importer_state_t *st, PyObject *path,
                                   const char *tag);
/* Reads cache file `cache` for a source with stat `src`. Returns a new
 * reference to the cached object, Py_None on a miss (no file, stale,
 * other format), or NULL with an exception (a corrupt marshal stream is
 * a miss, not an error). */
PyObject *apy__importer_cache_read(PyObject *cache,
                                   const apy_source_stat_t *src);
/* Writes `payload` (marshallable) to cache file `cache` for a source with
 * stat `src`, atomically, unless sys.dont_write_bytecode. Failures to
 * write are silent, as python's own. Returns 0, or -1 with an exception
 * only when payload cannot be marshalled. */
int apy__importer_cache_write(PyObject *cache, const apy_source_stat_t *src,
                              PyObject *payload);
/* Writes python's -v trace line `# <fmt>` (PyUnicode_FromFormat's
 * format) when -v is on. Keeps the current exception. */
void apy__importer_verbose(const char *fmt, ...);

/* --- source_loader.c, notebook_loader.c, finder.c --- */
extern PyType_Spec apy__importer_source_loader_spec;
extern PyType_Spec apy__importer_notebook_loader_spec;
extern PyType_Spec apy__importer_notebook_finder_spec;
/* Compiles module source bytes (the TLA rule plus awaited imports).
 * Returns a new code object and sets *is_tla, or NULL with an exception
 * (the plain compile's SyntaxError when the code is not TLA either). */
PyObject *apy__importer_compile(PyObject *data, PyObject *path, int flags,
                                int *is_tla);

/* --- exec.c --- */
/* Runs `code` (from get_code) as the body of `module`, TLA or not:
 * plain code through importlib's frame-trimming call; TLA code on the
 * persistent loop when no loop runs in this thread, deferred to the
 * awaiter when one imports it, else AsyncImportError. `alias` (or NULL)
 * is a second sys.modules name. Returns 0, or -1 with an exception. */
int apy__importer_exec_code(apy_importer_state_t *st, PyObject *module,
                            PyObject *code, PyObject *alias);
/* The loop imports from loop-less code run on: the thread's current loop
 * if set and open, else apyrun's persistent one (created, made current,
 * closed at exit). New reference, or NULL with an exception. */
PyObject *apy__importer_get_loop(apy_importer_state_t *st);
extern PyType_Spec apy__importer_exec_spec;
/* A new Exec object for module (its __name__), holding `coro` (or NULL)
 * and `alias` (or NULL). New reference or NULL. */
ApyExecObject *apy__importer_exec_new(apy_importer_state_t *st,
                                      PyObject *module, PyObject *coro,
                                      PyObject *alias);
/* An awaiter starts running rec's body in `task` (Py_None if none): the
 * module goes into sys.modules (and its alias), marked initialising, and
 * rec into st->records. 0 or -1. */
int apy__importer_exec_start(apy_importer_state_t *st, ApyExecObject *rec,
                             PyObject *task);
/* rec's body ended: ok, or failed with the exception that is set (it
 * stays set). Unregisters rec, finishes or undoes the sys.modules
 * registration as _load_unlocked would (not for sync bodies, which
 * importlib itself registered), sets the parent's attribute, and wakes
 * the waiters with the outcome. Returns 0, or -1 with an exception. */
int apy__importer_exec_finish(apy_importer_state_t *st, ApyExecObject *rec,
                              int ok);
/* _run_sync(module, code, alias) (module function, METH_FASTCALL). */
PyObject *apy__importer_run_sync(PyObject *mod, PyObject *const *args,
                                 Py_ssize_t nargs);
/* Prints a -X importtime line for a module whose body ran outside
 * python's import timer (an awaited import). */
void apy__importer_importtime(PyObject *name, double seconds, int depth);
/* Closes the persistent loop at exit (atexit); METH_NOARGS. */
PyObject *apy__importer_close_loop(PyObject *module, PyObject *unused);

/* --- awaiter.c --- */
extern PyType_Spec apy__importer_awaiter_spec;
/* A new awaiter importing `name` (module mode: absolute name, the value
 * is the module; else as `__import__(name, globals, None, fromlist,
 * level)` from an import statement). New reference or NULL. */
PyObject *apy__importer_awaiter_new(apy_importer_state_t *st, PyObject *name,
                                    PyObject *globals, PyObject *fromlist,
                                    int level, int module_mode);
/* _await_import(name, fromlist, level): the awaitable a rewritten import
 * statement awaits. New reference or NULL. */
PyObject *apy__importer_await_import(PyObject *module, PyObject *const *args,
                                     Py_ssize_t nargs);
/* import_module(name, package=None): the awaitable behind
 * `await apyrun.import_module(name)`. New reference or NULL. */
PyObject *apy__importer_import_module(PyObject *module, PyObject *args,
                                      PyObject *kwds);

/* --- waits.c --- */
/* Returns 1 when the exec_module running now was called, through
 * importlib alone, by the import an awaiter is making (so the TLA body
 * may be handed to it), else 0. */
int apy__importer_is_awaited_import(apy_importer_state_t *st);
/* The task the running loop is stepping: a new reference, Py_None
 * outside a task (or with no running loop), NULL on error. */
PyObject *apy__importer_current_task(apy_importer_state_t *st);
/* Returns 1 if waiting for rec's body from the current task would never
 * end (rec's task waits, through other bodies, for this task; or there
 * is no task to suspend), else 0; -1 on error. */
int apy__importer_would_cycle(apy_importer_state_t *st, ApyExecObject *rec);

/* --- lock_unlock.c --- */
/* _lock_unlock_module(name): replaces importlib's, which python calls
 * when an import finds the module in sys.modules still initialising. For
 * a TLA body running on a loop: a cycle gets the partial module (as
 * python's), an awaiter's own import goes on (it waits itself), another
 * synchronous import in the loop's thread gets AsyncImportError, and one
 * from another thread blocks until the body is done. Otherwise
 * importlib's own. Returns None or NULL. */
PyObject *apy__importer_lock_unlock(PyObject *module, PyObject *name);

/* --- after_import.c --- */
/* Calls callback(module) once, right after the module `name` (not yet in
 * sys.modules) has been found and executed by python's own finders and
 * its own loader; the hook leaves no trace on the module. An exception
 * from the callback fails that import. Returns 0, or -1 with an exception
 * set. */
int apy__importer_after_import(const char *name, PyObject *callback);

/* --- linecache.c --- */
/* Makes linecache (now, or once it is imported) serve the lines of
 * `source` (the module text, line N at the notebook file's line N) for
 * notebook `path` with stat `src`, so that tracebacks and inspect show
 * code. Returns 0 or -1 with an exception set. */
int apy__importer_register_lines(apy_importer_state_t *st, PyObject *path,
                                 const apy_source_stat_t *src,
                                 PyObject *source);

#endif
