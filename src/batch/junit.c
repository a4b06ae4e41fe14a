/* SPDX-License-Identifier: MIT */
/* The JUnit XML report of apyrun --test, in the shape pytest's
 * --junitxml writes (_pytest/junitxml.py: testsuites > testsuite >
 * testcase, failure/skipped, system-out/system-err, times "%.3f"), so
 * that GitLab, Jenkins and anything reading pytest's reads ours. Plain C;
 * written to a temporary file renamed over the target. */
#define _GNU_SOURCE /* mkostemp */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int
apy__batch_junit_names(const char *path, char **classname, char **name)
{
    while (path[0] == '.' && path[1] == '/') {
        path += 2;
    }
    while (path[0] == '/') {
        path++;
    }
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash != NULL ? (size_t)(slash - path) : 0;
    *classname = malloc(dirlen + 1);
    *name = strdup(slash != NULL ? slash + 1 : path);
    if (*classname == NULL || *name == NULL) {
        free(*classname);
        free(*name);
        *classname = *name = NULL;
        return -1;
    }
    for (size_t i = 0; i < dirlen; i++) {
        (*classname)[i] = path[i] == '/' ? '.' : path[i];
    }
    (*classname)[dirlen] = '\0';
    return 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes left) and its code
 * point, or 0 if the bytes there are not one. */
static size_t
utf8_char(const unsigned char *s, size_t n, unsigned *cp)
{
    size_t len;
    unsigned c = s[0], min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        c &= 0x1F;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        c &= 0x0F;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        c &= 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        return 0;
    }
    *cp = c;
    return len;
}

/* Whether XML 1.0 allows code point c; DEL is refused too, as pytest's
 * bin_xml_escape does. */
static int
xml_char(unsigned c)
{
    return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c < 0x7F)
           || (c >= 0x80 && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD)
           || c >= 0x10000;
}

/* Writes text[0..len) escaped for XML: markup characters as entities
 * (and, in an attribute, quotes and line ends too, as ElementTree does),
 * characters XML forbids and bytes that are not UTF-8 shown as "#xNN",
 * pytest's visible replacement. */
static void
put_escaped(FILE *f, const char *text, size_t len, int attribute)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned c;
        size_t n = utf8_char(s + i, len - i, &c);
        if (n == 0) {
            fprintf(f, "#x%02X", s[i]);
            i++;
            continue;
        }
        if (!xml_char(c)) {
            fprintf(f, c <= 0xFF ? "#x%02X" : "#x%04X", c);
        } else if (c == '&') {
            fputs("&amp;", f);
        } else if (c == '<') {
            fputs("&lt;", f);
        } else if (c == '>') {
            fputs("&gt;", f);
        } else if (attribute && c == '"') {
            fputs("&quot;", f);
        } else if (attribute && c == '\n') {
            fputs("&#10;", f);
        } else if (attribute && c == '\r') {
            fputs("&#13;", f);
        } else if (attribute && c == '\t') {
            fputs("&#09;", f);
        } else {
            fwrite(s + i, 1, n, f);
        }
        i += n;
    }
}

static void
put_attr(FILE *f, const char *name, const char *value)
{
    fprintf(f, " %s=\"", name);
    put_escaped(f, value, strlen(value), 1);
    fputc('"', f);
}

/* <tag>text</tag>, or nothing when text is empty. */
static void
put_element(FILE *f, const char *tag, const char *text, size_t len)
{
    if (text == NULL || len == 0) {
        return;
    }
    fprintf(f, "<%s>", tag);
    put_escaped(f, text, len, 0);
    fprintf(f, "</%s>", tag);
}

/* A failure's message: its reason, or what the exit status says. */
static void
failure_reason(const apy_batch_item_t *it, char *buf, size_t size)
{
    if (it->message != NULL) {
        snprintf(buf, size, "%s", it->message);
    } else if (it->signal > 0) {
        snprintf(buf, size, "killed by signal %d", it->signal);
    } else {
        snprintf(buf, size, "exit status %d", it->exitcode);
    }
}

static int
put_testcase(FILE *f, const apy_batch_item_t *it)
{
    char *classname, *name;
    if (apy__batch_junit_names(it->path, &classname, &name) < 0) {
        return -1;
    }
    char seconds[32];
    snprintf(seconds, sizeof(seconds), "%.3f", it->seconds);
    fputs("<testcase", f);
    put_attr(f, "classname", classname);
    put_attr(f, "name", name);
    put_attr(f, "time", seconds);
    fputc('>', f);
    free(classname);
    free(name);
    char reason[1024];
    if (it->state == APY_ITEM_FAILED || it->state == APY_ITEM_INTERRUPTED) {
        failure_reason(it, reason, sizeof(reason));
        fputs("<failure", f);
        put_attr(f, "message", reason);
        fputc('>', f);
        /* The text: the traceback as apyrun printed it, else the reason. */
        if (it->err_len > 0) {
            put_escaped(f, it->err, it->err_len, 0);
        } else {
            put_escaped(f, reason, strlen(reason), 0);
        }
        fputs("</failure>", f);
    } else if (it->state == APY_ITEM_SKIPPED) {
        fputs("<skipped type=\"pytest.skip\"", f);
        put_attr(f, "message", it->message != NULL ? it->message : "");
        fputc('>', f);
        if (it->message != NULL) {
            put_escaped(f, it->message, strlen(it->message), 0);
        }
        fputs("</skipped>", f);
    }
    put_element(f, "system-out", it->out, it->out_len);
    put_element(f, "system-err", it->err, it->err_len);
    fputs("</testcase>", f);
    return 0;
}

/* The whole document on f. 0 or -1 (out of memory). */
static int
put_report(FILE *f, const apy_batch_item_t *items, size_t n, double wall)
{
    size_t tests = 0, failures = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        apy_item_state_t s = items[i].state;
        tests += s != APY_ITEM_PENDING && s != APY_ITEM_RUNNING;
        failures += s == APY_ITEM_FAILED || s == APY_ITEM_INTERRUPTED;
        skipped += s == APY_ITEM_SKIPPED;
    }
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    char stamp[64] = "";
    time_t start = time(NULL) - (time_t)wall;
    struct tm tm;
    if (localtime_r(&start, &tm) != NULL) {
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"utf-8\"?><testsuites>"
            "<testsuite name=\"apyrun\" errors=\"0\" failures=\"%zu\" "
            "skipped=\"%zu\" tests=\"%zu\" time=\"%.3f\"",
            failures, skipped, tests, wall);
    put_attr(f, "timestamp", stamp);
    put_attr(f, "hostname", host);
    fputc('>', f);
    for (size_t i = 0; i < n; i++) {
        apy_item_state_t s = items[i].state;
        if (s != APY_ITEM_PENDING && s != APY_ITEM_RUNNING
            && put_testcase(f, &items[i]) < 0) {
            return -1;
        }
    }
    fputs("</testsuite></testsuites>\n", f);
    return 0;
}

int
apy__batch_write_junit(const char *path, const apy_batch_item_t *items,
                       size_t n, double wall, char *err, size_t errlen)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "--junit-xml %.200s: path too long", path);
        return -1;
    }
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "--junit-xml %.300s: %s", path,
                 strerror(errno));
        return -1;
    }
    /* mkostemp makes it 0600; a report is as readable as any file. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        goto fail;
    }
    int rc = put_report(f, items, n, wall);
    if (rc < 0) {
        errno = ENOMEM;
    }
    if (rc < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        int e = errno;
        fclose(f);
        errno = e;
        goto fail;
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        goto fail;
    }
    return 0;

fail:
    snprintf(err, errlen, "--junit-xml %.300s: %s", path, strerror(errno));
    unlink(tmp);
    return -1;
}
