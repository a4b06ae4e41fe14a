/* SPDX-License-Identifier: MIT */
/* What apyrun --test prints, in pytest's manner: a line a notebook with
 * --verbose (else a progress line on a terminal), the failures with
 * their output, then "apyrun: N passed, N failed" and the wall time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define RED "\033[31m"
#define GREEN "\033[32m"
#define YELLOW "\033[33m"
#define BOLD "\033[1m"
#define RESET "\033[0m"

/* Colour and the progress line: only on a terminal; no colour with
 * NO_COLOR set to anything (https://no-color.org). */
void
apy__batch_report_init(apy_batch_report_t *r, size_t total, int verbose)
{
    memset(r, 0, sizeof(*r));
    int tty = isatty(STDOUT_FILENO);
    const char *no_color = getenv("NO_COLOR");
    r->color = tty && (no_color == NULL || no_color[0] == '\0');
    r->progress = tty && !verbose;
    r->total = total;
}

static const char *
state_word(apy_item_state_t state)
{
    switch (state) {
    case APY_ITEM_PASSED:
        return "PASSED";
    case APY_ITEM_FAILED:
        return "FAILED";
    case APY_ITEM_SKIPPED:
        return "SKIPPED";
    case APY_ITEM_INTERRUPTED:
        return "INTERRUPTED";
    default:
        return "?";
    }
}

static const char *
state_color(apy_item_state_t state)
{
    return state == APY_ITEM_PASSED    ? GREEN
           : state == APY_ITEM_SKIPPED ? YELLOW
                                       : RED;
}

static void
clear_progress(apy_batch_report_t *r)
{
    if (r->progress && r->shown) {
        fputs("\r\033[K", stdout);
        r->shown = 0;
    }
}

void
apy__batch_report_item(apy_batch_report_t *r, const apy_batch_item_t *it,
                       int verbose)
{
    r->done++;
    r->count[it->state]++;
    if (verbose) {
        if (r->color) {
            printf("%s %s%s%s (%.2fs)\n", it->path, state_color(it->state),
                   state_word(it->state), RESET, it->seconds);
        } else {
            printf("%s %s (%.2fs)\n", it->path, state_word(it->state),
                   it->seconds);
        }
    } else if (r->progress) {
        clear_progress(r);
        printf("[%zu/%zu] %zu failed", r->done, r->total,
               r->count[APY_ITEM_FAILED]);
        r->shown = 1;
    }
    fflush(stdout);
}

/* A title centred in a line of fill characters, as pytest's sections. */
static void
rule(apy_batch_report_t *r, char fill, const char *title)
{
    char line[81];
    size_t width = 80, len = strlen(title) + 2;
    size_t left = len < width ? (width - len) / 2 : 0;
    size_t right = len < width ? width - len - left : 0;
    memset(line, fill, left);
    line[left] = '\0';
    fputs(line, stdout);
    printf("%s %s %s", r->color && fill == '=' ? BOLD : "", title,
           r->color && fill == '=' ? RESET : "");
    memset(line, fill, right);
    line[right] = '\0';
    puts(line);
}

static void
show_failure(apy_batch_report_t *r, const apy_batch_item_t *it)
{
    rule(r, '_', it->path);
    if (it->message != NULL) {
        printf("%s%s%s\n", r->color ? RED : "", it->message,
               r->color ? RESET : "");
    }
    if (it->out_len > 0) {
        puts("----- captured stdout -----");
        fwrite(it->out, 1, it->out_len, stdout);
        if (it->out[it->out_len - 1] != '\n') {
            putchar('\n');
        }
    }
    if (it->err_len > 0) {
        puts("----- captured stderr -----");
        fwrite(it->err, 1, it->err_len, stdout);
        if (it->err[it->err_len - 1] != '\n') {
            putchar('\n');
        }
    }
}

void
apy__batch_report_end(apy_batch_report_t *r, const apy_batch_item_t *items,
                      size_t n, double wall, int verbose_skips)
{
    clear_progress(r);
    if (r->count[APY_ITEM_FAILED] > 0) {
        rule(r, '=', "FAILURES");
        for (size_t i = 0; i < n; i++) {
            if (items[i].state == APY_ITEM_FAILED) {
                show_failure(r, &items[i]);
            }
        }
    }
    if (verbose_skips && r->count[APY_ITEM_SKIPPED] > 0) {
        for (size_t i = 0; i < n; i++) {
            if (items[i].state == APY_ITEM_SKIPPED) {
                printf("SKIPPED %s: %s\n", items[i].path,
                       items[i].message ? items[i].message : "");
            }
        }
    }
    if (r->count[APY_ITEM_INTERRUPTED] > 0) {
        printf("apyrun: interrupted: %zu did not finish\n",
               r->count[APY_ITEM_INTERRUPTED]);
    }
    const char *c = !r->color ? ""
                    : r->count[APY_ITEM_FAILED] > 0 ? RED
                                                    : GREEN;
    printf("%sapyrun: %zu passed, %zu failed", c, r->count[APY_ITEM_PASSED],
           r->count[APY_ITEM_FAILED]);
    if (r->count[APY_ITEM_SKIPPED] > 0) {
        printf(", %zu skipped", r->count[APY_ITEM_SKIPPED]);
    }
    printf("%s\n", r->color ? RESET : "");
    printf("in %.2fs\n", wall);
    fflush(stdout);
}
