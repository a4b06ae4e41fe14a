/* SPDX-License-Identifier: MIT */
/* The importer's bytecode cache: where cache files go, reading and
 * writing them, under names plain python never reads. Invalidation is by
 * the source's mtime and size, as python's default (timestamp) pycs.
 * Nothing here knows what is cached. */
#include <Python.h>
#include <marshal.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "importer.h"

/* Names come from importlib's cache_from_source (so sys.pycache_prefix
 * and -O apply as for pyc files) with an apyrun tag in front of ".pyc".
 * The header is a pyc header whose flags word names apyrun's format; the
 * body is a marshal stream. */

/* "APY" and a format version: bump it when what a cache file holds
 * changes meaning (the notebook transform, the payload's layout). */
#define CACHE_FORMAT 0x01595041u
#define HEADER_SIZE 16

static void
put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v & 0xff);
    p[1] = (unsigned char)((v >> 8) & 0xff);
    p[2] = (unsigned char)((v >> 16) & 0xff);
    p[3] = (unsigned char)((v >> 24) & 0xff);
}

static uint32_t
get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
           | ((uint32_t)p[3] << 24);
}

/* The -v trace line `# <fmt>`; keeps the current exception, never fails. */
void
apy__importer_verbose(const char *fmt, ...)
{
    const PyConfig *config = _PyInterpreterState_GetConfig(
        PyInterpreterState_Get());
    if (config->verbose < 1) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    va_list ap;
    va_start(ap, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (msg != NULL) {
        PySys_FormatStderr("# %U\n", msg);
        Py_DECREF(msg);
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
}

/* stat()s path into *out. 0, or -1 with OSError set. */
int
apy__importer_stat(PyObject *path, apy_source_stat_t *out)
{
    PyObject *fs = PyUnicode_EncodeFSDefault(path);
    if (fs == NULL) {
        return -1;
    }
    struct stat sb;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = stat(PyBytes_AS_STRING(fs), &sb);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path);
        Py_DECREF(fs);
        return -1;
    }
    Py_DECREF(fs);
    /* int(st_mtime), as SourceLoader.get_code keys pycs. */
    out->mtime = (int64_t)sb.st_mtim.tv_sec;
    out->size = (int64_t)sb.st_size;
    out->mtime_float = (double)sb.st_mtim.tv_sec
                       + (double)sb.st_mtim.tv_nsec * 1e-9;
    out->mode = (unsigned int)sb.st_mode;
    return 0;
}

/* The cache file name for `path` and `tag`: new reference, Py_None when
 * nothing is cached, NULL with an exception set. */
PyObject *
apy__importer_cache_path(apy_importer_state_t *st, PyObject *path,
                         const char *tag)
{
    PyObject *pyc = PyObject_CallOneArg(st->cache_from_source, path);
    if (pyc == NULL) {
        if (PyErr_ExceptionMatches(PyExc_NotImplementedError)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return NULL;
    }
    /* ".../x.cpython-311.pyc" -> ".../x.cpython-311.<tag>.pyc" */
    Py_ssize_t len = PyUnicode_GET_LENGTH(pyc);
    if (len <= 4) {
        /* Not a ".pyc" name: nothing to put beside it. */
        Py_DECREF(pyc);
        Py_RETURN_NONE;
    }
    PyObject *stem = PyUnicode_Substring(pyc, 0, len - 4);
    Py_DECREF(pyc);
    if (stem == NULL) {
        return NULL;
    }
    PyObject *name = PyUnicode_FromFormat("%U.%s.pyc", stem, tag);
    Py_DECREF(stem);
    return name;
}

/* Reads all of fd. Returns a malloc'ed buffer and its size in *len, or
 * NULL (errno set). */
static unsigned char *
read_fd(int fd, size_t *len)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 0) {
        return NULL;
    }
    size_t cap = (size_t)sb.st_size + 1, n = 0;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        return NULL;
    }
    for (;;) {
        if (n == cap) {
            unsigned char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                return NULL;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            free(buf);
            return NULL;
        }
        if (got == 0) {
            break;
        }
        n += (size_t)got;
    }
    *len = n;
    return buf;
}

/* The cached object for a source with stat `src`: new reference, Py_None
 * on a miss, NULL with an exception set. */
PyObject *
apy__importer_cache_read(PyObject *cache, const apy_source_stat_t *src)
{
    PyObject *fs = PyUnicode_EncodeFSDefault(cache);
    if (fs == NULL) {
        return NULL;
    }
    unsigned char *buf = NULL;
    size_t len = 0;
    Py_BEGIN_ALLOW_THREADS
    int fd = open(PyBytes_AS_STRING(fs), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        buf = read_fd(fd, &len);
        close(fd);
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(fs);
    if (buf == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *obj = Py_None;
    if (len < HEADER_SIZE
        || get_u32(buf) != (uint32_t)PyImport_GetMagicNumber()
        || get_u32(buf + 4) != CACHE_FORMAT
        || get_u32(buf + 8) != (uint32_t)(src->mtime & 0xFFFFFFFF)
        || get_u32(buf + 12) != (uint32_t)(src->size & 0xFFFFFFFF)) {
        Py_INCREF(obj);
    } else {
        obj = PyMarshal_ReadObjectFromString((const char *)buf + HEADER_SIZE,
                                             (Py_ssize_t)(len - HEADER_SIZE));
        if (obj == NULL
            && (PyErr_ExceptionMatches(PyExc_EOFError)
                || PyErr_ExceptionMatches(PyExc_ValueError)
                || PyErr_ExceptionMatches(PyExc_TypeError))) {
            /* A truncated or foreign file: compile again, as python does
             * with a bad pyc. */
            PyErr_Clear();
            obj = Py_NewRef(Py_None);
        }
    }
    free(buf);
    return obj;
}

/* mkdir -p of the directory part of `path` (a filesystem path). Returns 0
 * or -1 with errno set. */
static int
make_parents(char *path)
{
    char *slash = strrchr(path, '/');
    if (slash == NULL || slash == path) {
        return 0;
    }
    *slash = '\0';
    struct stat sb;
    int rc = 0;
    if (stat(path, &sb) != 0) {
        rc = make_parents(path);
        if (rc == 0 && mkdir(path, 0777) != 0 && errno != EEXIST) {
            rc = -1;
        }
    }
    *slash = '/';
    return rc;
}

/* Writes buf to path through a temporary file and rename(), so a reader
 * never sees half a file (importlib's _write_atomic does the same).
 * Returns 0 or -1 with errno set. */
static int
write_atomic(char *path, const unsigned char *buf, size_t len,
             unsigned int mode)
{
    if (make_parents(path) != 0) {
        return -1;
    }
    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (tmp == NULL) {
        return -1;
    }
    snprintf(tmp, tlen, "%s.%ld.tmp", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                  (mode | 0200) & 0666);
    if (fd < 0) {
        free(tmp);
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            break;
        }
        off += (size_t)w;
    }
    int ok = off == len;
    if (close(fd) != 0) {
        ok = 0;
    }
    if (!ok || rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        free(tmp);
        errno = saved;
        return -1;
    }
    free(tmp);
    return 0;
}

/* Writes payload to `cache` unless sys.dont_write_bytecode; write
 * failures are silent. 0, or -1 with an exception set (marshal). */
int
apy__importer_cache_write(PyObject *cache, const apy_source_stat_t *src,
                          PyObject *payload)
{
    /* -B and PYTHONDONTWRITEBYTECODE set this; a program may change it. */
    PyObject *dont = PySys_GetObject("dont_write_bytecode"); /* borrowed */
    if (dont != NULL && PyObject_IsTrue(dont) == 1) {
        return 0;
    }
    PyObject *data = PyMarshal_WriteObjectToString(payload,
                                                   Py_MARSHAL_VERSION);
    if (data == NULL) {
        return -1;
    }
    PyObject *fs = PyUnicode_EncodeFSDefault(cache);
    if (fs == NULL) {
        Py_DECREF(data);
        return -1;
    }
    size_t len = (size_t)PyBytes_GET_SIZE(data) + HEADER_SIZE;
    unsigned char *buf = malloc(len);
    char *path = strdup(PyBytes_AS_STRING(fs));
    int rc = -1;
    if (buf != NULL && path != NULL) {
        put_u32(buf, (uint32_t)PyImport_GetMagicNumber());
        put_u32(buf + 4, CACHE_FORMAT);
        put_u32(buf + 8, (uint32_t)(src->mtime & 0xFFFFFFFF));
        put_u32(buf + 12, (uint32_t)(src->size & 0xFFFFFFFF));
        memcpy(buf + HEADER_SIZE, PyBytes_AS_STRING(data),
               (size_t)PyBytes_GET_SIZE(data));
        Py_BEGIN_ALLOW_THREADS
        rc = write_atomic(path, buf, len, src->mode);
        Py_END_ALLOW_THREADS
    }
    if (rc == 0) {
        apy__importer_verbose("wrote %s", PyBytes_AS_STRING(fs));
    } else {
        apy__importer_verbose("could not create %s: %s",
                              PyBytes_AS_STRING(fs), strerror(errno));
    }
    free(buf);
    free(path);
    Py_DECREF(fs);
    Py_DECREF(data);
    return 0;
}
