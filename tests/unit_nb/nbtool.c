/* SPDX-License-Identifier: MIT */
/* nbtool: a command-line window on the notebook layer for the tests that
 * need Python (nbformat's validator and writer) on the other side:
 *   nbtool render IN.ipynb OUT.ipynb   parse, then save as read
 *   nbtool run IN.ipynb OUT.ipynb      parse, give every code cell a result
 *                                      (a stream output echoing its first
 *                                      line, counts 1..N, timing), save
 *   nbtool lines IN.ipynb              print "cell line jsonline" for each
 *                                      source line of each code cell
 *   nbtool check IN.ipynb              parse; print the error, exit 2
 * Exit status 0, or 2 with the error on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apyrun/notebook.h"
#include "nb_internal.h" /* apy__nb_save */

static int
give_results(apy_notebook_t *nb, char *err, size_t errlen)
{
    char outputs[512], ts[APY_NB_TIMESTAMP_SIZE];
    apy_nb_result_t res;
    size_t i, n;
    long count = 0;
    int rc;

    for (i = 0; i < nb->ncells; i++) {
        if (nb->cells[i].kind != APY_NB_CODE) {
            continue;
        }
        n = strcspn(nb->cells[i].source, "\n\"\\");
        if (n > 60) {
            n = 60;
        }
        snprintf(outputs, sizeof(outputs),
                 "[{\"output_type\": \"stream\", \"name\": \"stdout\", "
                 "\"text\": \"ran: %.*s\\nline 2\\n\"}, "
                 "{\"output_type\": \"execute_result\", "
                 "\"execution_count\": %ld, \"metadata\": {}, "
                 "\"data\": {\"text/plain\": \"%zu\\n1.5\"}}]",
                 (int)n, nb->cells[i].source, count + 1, i);
        apy_nb_timestamp(ts);
        memset(&res, 0, sizeof(res));
        res.cell = i;
        res.execution_count = ++count;
        res.outputs = outputs;
        res.outputs_len = strlen(outputs);
        res.busy = res.execute_input = res.execute_reply = res.idle = ts;
        rc = apy_nb_set_result(nb, &res, err, errlen);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

int
main(int argc, char **argv)
{
    apy_notebook_t nb;
    char err[512];
    size_t i, k;
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: nbtool render|run|lines|check IN [OUT]\n");
        return 2;
    }
    rc = apy_nb_load(argv[2], &nb, err, sizeof(err));
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", argv[2], err);
        return 2;
    }
    if (strcmp(argv[1], "lines") == 0) {
        for (i = 0; i < nb.ncells; i++) {
            if (nb.cells[i].kind != APY_NB_CODE) {
                continue;
            }
            for (k = 0; k < nb.cells[i].nlines; k++) {
                printf("%zu %zu %d\n", i + 1, k + 1, nb.cells[i].line_map[k]);
            }
        }
    } else if ((strcmp(argv[1], "render") == 0 ||
                strcmp(argv[1], "run") == 0) &&
               argc == 4) {
        rc = 0;
        if (strcmp(argv[1], "run") == 0) {
            rc = give_results(&nb, err, sizeof(err));
        }
        if (rc == 0) {
            rc = apy__nb_save(&nb, argv[3], err, sizeof(err));
        }
        if (rc < 0) {
            fprintf(stderr, "%s\n", err);
            apy_nb_free(&nb);
            return 2;
        }
    } else if (strcmp(argv[1], "check") != 0) {
        fprintf(stderr, "nbtool: unknown command %s\n", argv[1]);
        apy_nb_free(&nb);
        return 2;
    }
    apy_nb_free(&nb);
    return 0;
}
