/* SPDX-License-Identifier: MIT */
/* Declarations shared by the files of src/embed/ and nothing else: what
 * main.c's phases call in the other files of the layer. The layer's
 * interface (apyrun_main) is include/apyrun/embed.h. */
#ifndef APYRUN_EMBED_INTERNAL_H
#define APYRUN_EMBED_INTERNAL_H

/* Gives pymalloc arenas carved from transparent-huge-page regions (arena.c),
 * unless APYRUN_HUGEPAGES=0. Call before the interpreter allocates. */
void apy__embed_use_hugepage_arenas(void);

#endif
