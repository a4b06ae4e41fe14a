/* SPDX-License-Identifier: MIT */
/* The embedding layer's interface: the one entry point main() calls.
 * Options -> PyConfig, init, run, finalize, exit code live behind it. */
#ifndef APYRUN_EMBED_H
#define APYRUN_EMBED_H

/* Runs apyrun with the process's argv and returns the process exit code
 * (DESIGN.md section 6). May not return: death by signal re-raises it. */
int apyrun_main(int argc, char **argv);

#endif
