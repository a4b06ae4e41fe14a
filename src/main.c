/* SPDX-License-Identifier: MIT */
/* main() only: everything else starts in apyrun_main (src/embed/main.c). */
#include "apyrun/embed.h"

int
main(int argc, char **argv)
{
    return apyrun_main(argc, argv);
}
