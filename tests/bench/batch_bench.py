# SPDX-License-Identifier: MIT
"""bench-batch: a tree of small notebooks tested in one go (issue 11).

200 notebooks of 3 cells (one awaits), two processes at a time, run by

  apyrun --test -j2 DIR              the batch (a fork server)
  xargs -P2 apyrun nb.ipynb          one fresh apyrun process a notebook
  pytest --apyrun -n 2 DIR           the pytest plugin under pytest-xdist
  xargs -P2 jupyter execute nb       a Jupyter kernel a notebook, on the
                                     first 20 only (scaled per notebook)

Each figure is the median wall time of --reps rounds, the tools
interleaved within each round. Goals: the batch at most 0.5x the xargs
time, and per notebook at least 100x faster than `jupyter execute`.
Prints a table and one JSON line (--json) for docs/benchmarks.md.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "python")


def write_tree(root, count):
    """count notebooks of 3 cells, one of which awaits."""
    paths = []
    for i in range(count):
        nb = new_notebook(cells=[
            new_code_cell(f"import asyncio\nx = {i}"),
            new_code_cell("await asyncio.sleep(0)\nx * 2"),
            new_code_cell("print('notebook', x)"),
        ])
        nb.metadata["kernelspec"] = {"name": "python3",
                                     "language": "python",
                                     "display_name": "Python 3"}
        path = os.path.join(root, f"nb{i:03d}.ipynb")
        nbformat.write(nb, path)
        paths.append(path)
    return paths


def env_for_children():
    # PYTHONMALLOC stays: the sanitizer build's smoke run needs it (with
    # pymalloc, LSan cannot see the objects that hold malloc'ed blocks).
    env = {k: v for k, v in os.environ.items()
           if k == "PYTHONMALLOC"
           or not k.startswith(("PYTHON", "APYRUN", "JUPYTER", "PYTEST_"))}
    env["PYTHONPATH"] = PLUGIN_DIR
    return env


def xargs(cmd, paths):
    """xargs -P2 -n1 over paths; stdin is the list."""
    return (["xargs", "-P2", "-n1", *cmd], "\n".join(paths) + "\n")


def tools(apyrun, root, paths, jupyter_count):
    rows = [("apyrun --test -j2", [apyrun, "--test", "-j2", root], None,
             len(paths))]
    argv, stdin = xargs([apyrun], paths)
    rows.append(("xargs -P2 apyrun nb.ipynb", argv, stdin, len(paths)))
    have_plugin = os.path.isfile(os.path.join(PLUGIN_DIR,
                                              "pytest_apyrun.py"))
    have_xdist = subprocess.run(
        [sys.executable, "-c", "import xdist"],
        capture_output=True).returncode == 0
    if have_plugin and have_xdist:
        rows.append(("pytest --apyrun -n 2",
                     [sys.executable, "-m", "pytest", "-q", "-p",
                      "pytest_apyrun", "-p", "no:cacheprovider", "--apyrun",
                      "-n", "2", root], None, len(paths)))
    else:
        print("skipped: pytest --apyrun -n 2 (python/pytest_apyrun.py or "
              "pytest-xdist missing)")
    jupyter = shutil.which("jupyter")
    if jupyter and shutil.which("jupyter-execute"):
        argv, stdin = xargs([jupyter, "execute"], paths[:jupyter_count])
        rows.append((f"xargs -P2 jupyter execute ({jupyter_count} nbs)",
                     argv, stdin, jupyter_count))
    else:
        print("skipped: jupyter execute (Debian: jupyter-core, "
              "python3-nbclient, python3-ipykernel)")
    return rows


def measure(argv, stdin, env, cwd):
    t0 = time.perf_counter()
    r = subprocess.run(argv, input=stdin, text=True, env=env, cwd=cwd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv[:4])} ... failed ({r.returncode}):\n"
                 f"{r.stderr[-2000:]}")
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apyrun", required=True)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--jupyter-count", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--smoke", action="store_true",
                    help="6 notebooks, 2 with Jupyter, one round")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.count, args.jupyter_count, args.reps = 6, 2, 1
    env = env_for_children()
    env["APYRUN"] = os.path.abspath(args.apyrun)  # the plugin's binary
    with tempfile.TemporaryDirectory(prefix="apyrun-bench-batch-") as root:
        paths = write_tree(root, args.count)
        rows = tools(os.path.abspath(args.apyrun), root, paths,
                     args.jupyter_count)
        times = {label: [] for label, *_ in rows}
        for _ in range(args.reps):
            for label, argv, stdin, _n in rows:
                times[label].append(measure(argv, stdin, env, root))
    results = []
    print(f"{'tool':40} {'runs':>4} {'median':>9} {'per notebook':>13}")
    for label, _argv, _stdin, n in rows:
        med = statistics.median(times[label])
        results.append({"tool": label, "notebooks": n, "runs": args.reps,
                        "median_s": med, "per_nb_ms": med / n * 1e3})
        print(f"{label:40} {args.reps:4d} {med:8.2f}s {med / n * 1e3:10.1f}ms")
    by = {r["tool"]: r for r in results}
    batch = by["apyrun --test -j2"]
    goals = {"batch / xargs apyrun (goal <= 0.5)":
             batch["median_s"] / by["xargs -P2 apyrun nb.ipynb"]["median_s"]}
    jup = next((r for r in results if r["tool"].startswith("xargs -P2 "
                                                           "jupyter")), None)
    if jup is not None:
        goals["jupyter execute / batch, per notebook (goal >= 100)"] = (
            jup["per_nb_ms"] / batch["per_nb_ms"])
    for name, value in goals.items():
        print(f"{name}: {value:.3f}")
    if args.json:
        print(json.dumps({"results": results, "goals": goals}))


if __name__ == "__main__":
    main()
