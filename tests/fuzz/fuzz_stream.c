/* SPDX-License-Identifier: MIT */
/* libFuzzer target for big stream outputs (src/notebook/stream.c). The
 * first byte of an input picks how its text is cut into chunks (anywhere,
 * inside a UTF-8 character too); the text, fed to an apy_nb_stream_t and
 * saved as a stream output's text, must render exactly as the same text
 * given whole in the outputs' JSON (the path small outputs take), which
 * splits lines as Python's str.splitlines. The same text as a big data
 * value (lines for text/html, one string for image/png), its place
 * tagged, must render as the value given whole. Text that is not UTF-8
 * never reaches a stream (the run layer encodes str) and is skipped. */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apyrun/notebook.h"
#include "fuzz.h"
#include "nb_internal.h"

static const char base_nb[] =
    "{\"cells\": [{\"cell_type\": \"code\", \"source\": \"x = 1\"}], "
    "\"metadata\": {}, \"nbformat\": 4, \"nbformat_minor\": 5}";
static const char hole[] = "[{\"output_type\": \"stream\", "
                           "\"name\": \"stdout\", \"text\": null}]";

#define TAG "\x01tag-"

static char *
render_with(apy_notebook_t *nb, const char *outputs, size_t len,
            apy_nb_stream_t *st)
{
    apy_nb_result_t res;
    char err[512], *out;
    size_t outlen;

    memset(&res, 0, sizeof(res));
    res.cell = 0;
    res.execution_count = 1;
    res.outputs = outputs;
    res.outputs_len = len;
    res.streams = &st;
    res.nstreams = st != NULL;
    res.value_tag = TAG;
    REQUIRE(apy_nb_set_result(nb, &res, err, sizeof(err)) == 0);
    REQUIRE(apy__nb_render(nb, &out, &outlen, err, sizeof(err)) == 0);
    return out;
}

/* Feeds text to st in cuts of 1..step bytes, varied by the text. */
static void
feed(apy_nb_stream_t *st, const char *text, size_t len, size_t step)
{
    size_t at, cut;

    for (at = 0; at < len; at += cut) {
        cut = 1 + ((unsigned char)text[at] + at) % step;
        if (cut > len - at) {
            cut = len - at;
        }
        REQUIRE(apy_nb_stream_put(st, text + at, cut) == 0);
    }
    REQUIRE(apy_nb_stream_finish(st) == 0);
}

/* The text as the value of `mime` in a display_data: whole, then from a
 * value stream in its tagged place; both renders must be the same. */
static void
check_value(apy_notebook_t *nb, const char *mime, int split,
            const char *text, size_t len, size_t step)
{
    apy_buf_t json = {0};
    char *whole, *streamed;

    for (int tagged = 0; tagged < 2; tagged++) {
        json.len = 0;
        apy_buf_puts(&json, "[{\"output_type\": \"display_data\", "
                               "\"metadata\": {}, \"data\": {"
                               "\"a/a\": \"before\", \"");
        apy_buf_puts(&json, mime);
        apy_buf_puts(&json, "\": ");
        if (tagged) {
            apy__nb_render_string(&json, TAG "0", strlen(TAG "0"));
        } else {
            apy__nb_render_string(&json, text, len);
        }
        apy_buf_puts(&json, ", \"z/z\": \"after\"}}]");
        REQUIRE(!json.failed);
        if (!tagged) {
            whole = render_with(nb, json.data, json.len, NULL);
            continue;
        }
        apy_nb_stream_t *st = apy_nb_value_new(NULL, split);
        REQUIRE(st != NULL);
        feed(st, text, len, step);
        streamed = render_with(nb, json.data, json.len, st);
        apy_nb_stream_unref(st);
    }
    if (strcmp(whole, streamed) != 0) {
        fprintf(stderr, "fuzz: %s streamed:\n%s\nwhole:\n%s\n", mime,
                streamed, whole);
        REQUIRE(strcmp(whole, streamed) == 0);
    }
    free(whole);
    free(streamed);
    apy_buf_free(&json);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apy_notebook_t nb;
    apy_buf_t json = {0};
    char err[512], *whole, *streamed;
    size_t step;

    if (size < 1 || !apy__nb_utf8_valid((const char *)data + 1, size - 1)) {
        return 0;
    }
    /* A run's tag holds 64 random bits (apy__nbrun_value_tag), so no text
     * of the program's starts with it; this fixed one, the fuzzer finds
     * (a text starting with it is taken for a tag). */
    if (memmem(data + 1, size - 1, TAG, sizeof(TAG) - 1) != NULL) {
        return 0;
    }
    step = (size_t)(data[0] % 16) + 1;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    REQUIRE(apy__nb_parse(base_nb, sizeof(base_nb) - 1, NULL, &nb, err,
                          sizeof(err)) == 0);
    apy_buf_puts(&json, "[{\"output_type\": \"stream\", "
                           "\"name\": \"stdout\", \"text\": ");
    apy__nb_render_string(&json, text, len);
    apy_buf_puts(&json, "}]");
    REQUIRE(!json.failed);
    whole = render_with(&nb, json.data, json.len, NULL);

    apy_nb_stream_t *st = apy_nb_stream_new(NULL);
    REQUIRE(st != NULL);
    feed(st, text, len, step);
    streamed = render_with(&nb, hole, sizeof(hole) - 1, st);
    apy_nb_stream_unref(st);
    if (strcmp(whole, streamed) != 0) {
        fprintf(stderr, "fuzz: streamed:\n%s\nwhole:\n%s\n", streamed,
                whole);
        REQUIRE(strcmp(whole, streamed) == 0);
    }
    free(whole);
    free(streamed);
    apy_buf_free(&json);
    check_value(&nb, "text/html", 1, text, len, step);
    check_value(&nb, "image/png", 0, text, len, step);
    apy_nb_free(&nb);
    return 0;
}
