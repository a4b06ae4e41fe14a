# SPDX-License-Identifier: MIT
"""Saving the executed notebook (issue 9), each figure beside its anchor in
the same run:

  cells    100k one-line cells with -o, beside the same run without -o
           (goal: within 1.5x), medians of --reps interleaved runs;
  memory   a cell printing --big-mb MB, peak RSS with -o beside the output's
           size (goal: at most 2x) and beside the run without -o;
  image    the same for one display_data value of --big-mb MB;
  sigterm  SIGTERM while a cell sleeps after --term-mb MB of output, and
           while a cell prints once it printed that much: seconds from the
           signal to the exit (goal: under 1 s), the notebook saved and
           valid.

Run: /usr/bin/python3 tests/bench/save_bench.py --apyrun build/apyrun
(or `cmake --build build --target bench-save`).  --smoke: tiny sizes, one
run each, no goal judged.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import nbformat
from nbformat.v4 import new_code_cell, new_notebook


def write_nb(path, sources):
    # Ids of our own: nbformat's random 8-hex ones collide in 100k cells.
    nb = new_notebook(cells=[new_code_cell(s, id=f"c{i}")
                             for i, s in enumerate(sources)])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    nbformat.write(nb, path)
    return path


def env():
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTHON", "APYRUN", "MPLBACKEND"))}


def timed(argv, cwd):
    """Seconds of one run, which must succeed."""
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, env=env(),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, err = proc.communicate()
    took = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))}: exit {proc.returncode}\n"
                 f"{err.decode(errors='replace')}")
    return took


def peak_rss_mib(argv, cwd):
    """Peak RSS (MiB) of one run, which must succeed: the VmHWM its last
    cell wrote to hwm.txt. (wait4's ru_maxrss would include this process's
    own RSS, which a forked child keeps as its high-water mark across
    exec; VmHWM starts again at exec.)"""
    hwm = os.path.join(cwd, "hwm.txt")
    proc = subprocess.run(argv, cwd=cwd, env=env(),
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, argv))}: exit {proc.returncode}")
    with open(hwm) as f:
        kib = int(f.read().split()[0])
    os.unlink(hwm)
    return kib / 1024


def bench_cells(apyrun, tmp, ncells, reps):
    nb = write_nb(os.path.join(tmp, "cells.ipynb"),
                  [f"x = {i}" for i in range(ncells)])
    out = os.path.join(tmp, "cells_out.ipynb")
    plain, rec = [], []
    for _ in range(reps):
        plain.append(timed([apyrun, nb], tmp))
        rec.append(timed([apyrun, "-o", out, nb], tmp))
    nbformat.validate(nbformat.read(out, 4))
    a, b = statistics.median(plain), statistics.median(rec)
    return a, b, b / a


# A last cell that writes the process's high-water mark to hwm.txt.
HWM_CELL = ("status = open('/proc/self/status').read()\n"
            "hwm = status.split('VmHWM:')[1].split()[0]\n"
            "open('hwm.txt', 'w').write(hwm)")


def bench_memory(apyrun, tmp, mb):
    # Lines of 1000 characters: what a chatty cell prints.
    lines = mb * 1024 * 1024 // 1000
    nb = write_nb(os.path.join(tmp, "big.ipynb"), [
        "import sys\nw = sys.stdout.write\n"
        f"for i in range({lines}):\n    w('x' * 999 + '\\n')",
        # The first cell's outputs are rendered before this one runs.
        HWM_CELL])
    out = os.path.join(tmp, "big_out.ipynb")
    without = peak_rss_mib([apyrun, nb], tmp)
    with_o = peak_rss_mib([apyrun, "-o", out, nb], tmp)
    size = lines * 1000 / (1024 * 1024)
    os.unlink(out)
    return size, without, with_o, with_o / size


def bench_image(apyrun, tmp, mb):
    # One display_data value of mb MiB (an image's base64): the program
    # holds it once itself; the recording should add no copy.
    nb = write_nb(os.path.join(tmp, "image.ipynb"), [
        "from IPython.display import display\n"
        f"display({{'image/png': 'QUJD' * ({mb} << 18)}}, raw=True)",
        HWM_CELL])
    out = os.path.join(tmp, "image_out.ipynb")
    without = peak_rss_mib([apyrun, nb], tmp)
    with_o = peak_rss_mib([apyrun, "-o", out, nb], tmp)
    os.unlink(out)
    return without, with_o


def bench_sigterm(apyrun, tmp, mb, mid=False):
    # After: the cell printing mb MiB ended, the next one sleeps. Mid: the
    # signal comes once mb MiB were printed by a cell printing twice that.
    lines = mb * 1024 * 1024 // 1000
    nb = write_nb(os.path.join(tmp, "term.ipynb"), [
        "import sys\nw = sys.stdout.write\n"
        f"for i in range({2 * lines if mid else lines}):\n"
        "    w('x' * 999 + '\\n')",
        "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"])
    out = os.path.join(tmp, "term_out.ipynb")
    proc = subprocess.Popen([apyrun, "-o", out, nb], cwd=tmp, env=env(),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    seen, total = b"", 0
    while (total < lines * 1000) if mid else (b"sleeping" not in seen):
        chunk = os.read(proc.stdout.fileno(), 1 << 20)
        if not chunk:
            sys.exit("sigterm: the run ended before the signal")
        seen = seen[-64:] + chunk
        total += len(chunk)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.stdout.close()
    proc.wait()
    took = time.monotonic() - t0
    got = nbformat.read(out, 4)
    nbformat.validate(got)
    saved = sum(len(o.get("text", "")) for o in got.cells[0].outputs)
    os.unlink(out)
    return took, proc.returncode, saved / (1024 * 1024)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--apyrun", required=True)
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--big-mb", type=int, default=1024)
    ap.add_argument("--term-mb", type=int, default=1024)
    ap.add_argument("--only", choices=("cells", "memory", "image", "sigterm"))
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.cells, args.reps, args.big_mb, args.term_mb = 200, 1, 2, 2
    apyrun = os.path.abspath(args.apyrun)
    with tempfile.TemporaryDirectory(prefix="apyrun-save-bench-") as tmp:
        if args.only in (None, "cells"):
            a, b, ratio = bench_cells(apyrun, tmp, args.cells, args.reps)
            print(f"cells:   {args.cells} one-line cells, median of "
                  f"{args.reps}: without -o {a:.2f} s, with -o {b:.2f} s, "
                  f"ratio {ratio:.2f} (goal <= 1.5)")
        if args.only in (None, "memory"):
            size, without, with_o, ratio = bench_memory(apyrun, tmp,
                                                        args.big_mb)
            print(f"memory:  {size:.0f} MiB of output: peak RSS without -o "
                  f"{without:.0f} MiB, with -o {with_o:.0f} MiB, "
                  f"{ratio:.2f}x the output (goal <= 2)")
        if args.only in (None, "image"):
            without, with_o = bench_image(apyrun, tmp, args.big_mb)
            print(f"image:   one {args.big_mb} MiB display_data value: peak "
                  f"RSS without -o {without:.0f} MiB, with -o "
                  f"{with_o:.0f} MiB, {with_o / args.big_mb:.2f}x the "
                  f"output (goal <= 2; the program holds it once)")
        if args.only in (None, "sigterm"):
            for mid in (False, True):
                took, rc, saved = bench_sigterm(apyrun, tmp, args.term_mb,
                                                mid)
                where = ("while the cell prints" if mid
                         else "in the cell after it")
                print(f"sigterm: {args.term_mb} MiB of output, {where}: "
                      f"exit {rc} {took:.3f} s after SIGTERM "
                      f"(goal < 1 s), {saved:.0f} MiB saved")
    return 0


if __name__ == "__main__":
    sys.exit(main())
