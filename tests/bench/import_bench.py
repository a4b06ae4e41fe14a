# SPDX-License-Identifier: MIT
"""The importer benchmark: a 200-cell notebook module against the same
code as a .py module, both imported by apyrun, measured in one run.

    /usr/bin/python3.11 tests/bench/import_bench.py --apyrun build/apyrun
                        [--procs N] [--reps N] [--cells N] [--json]

Rows (each the median over --procs fresh processes x --reps imports; in a
process the rows take turns, so drift hits every row alike; the time is
the import alone, perf_counter around importlib.import_module, with the
module dropped from sys.modules before each):
  .py first import        no __pycache__: read, compile, write the pyc
  .py cached import       the pyc exists
  .ipynb first import     no cache: parse the JSON, compile, write it
  .ipynb cached import    apyrun's cache exists
The goals (issue 4): a cached notebook import within 1.1x of the cached
.py import, a first import within 2x of the first .py import. Nothing
asserts a timing; the goals are printed beside the figures.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

MEASURE = """
import gc, glob, importlib, json, os, sys, time
reps = int(sys.argv[1])
rows = [(m, first) for m in ("bench_py", "bench_nb") for first in (1, 0)]
out = {f"{m} {first}": [] for m, first in rows}
for _ in range(reps):
    for module, first in rows:
        if first:
            for f in glob.glob("__pycache__/" + module + ".*"):
                os.remove(f)
        sys.modules.pop(module, None)
        gc.collect()  # the last module's garbage is not this import's
        t0 = time.perf_counter()
        importlib.import_module(module)
        t1 = time.perf_counter()
        out[f"{module} {first}"].append(t1 - t0)
print(json.dumps(out))
"""


def cell_source(i):
    """One realistic code cell: a function, a class, a computed value."""
    return (f"def f_{i}(x, y={i % 7 + 1}):\n"
            f"    \"\"\"Sum of k * x for k below y (cell {i}).\"\"\"\n"
            f"    total = 0\n"
            f"    for k in range(y):\n"
            f"        total += k * x\n"
            f"    return total\n"
            f"\n"
            f"\n"
            f"class C_{i}:\n"
            f"    value = {i}\n"
            f"\n"
            f"    def method(self, z):\n"
            f"        return f_{i}(z) + self.value\n"
            f"\n"
            f"\n"
            f"R_{i} = [f_{i}(j) for j in range(3)]\n"
            f"NAME_{i} = 'cell {i}: ' + str(C_{i}().method(2))")


def write_tree(root, ncells):
    """bench_nb.ipynb (code cells with a markdown cell every 5) and
    bench_py.py holding the same code."""
    cells, sources = [], []
    for i in range(ncells):
        if i % 5 == 0:
            cells.append({"cell_type": "markdown", "id": f"m{i}",
                          "metadata": {},
                          "source": [f"## Section {i // 5}\n",
                                     "Some prose about the code below."]})
        src = cell_source(i)
        sources.append(src)
        lines = src.splitlines(keepends=True)
        cells.append({"cell_type": "code", "execution_count": None,
                      "id": f"c{i}", "metadata": {}, "outputs": [],
                      "source": lines})
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3",
                                      "display_name": "Python 3",
                                      "language": "python"}}}
    with open(os.path.join(root, "bench_nb.ipynb"), "w") as f:
        json.dump(nb, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(root, "bench_py.py"), "w") as f:
        f.write("\n\n".join(sources) + "\n")
    with open(os.path.join(root, "measure.py"), "w") as f:
        f.write(MEASURE)


def clean_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "APYRUN"))}
    env["LC_ALL"] = "C.UTF-8"
    return env


def sample(apyrun, root, reps):
    """One fresh process importing each module `reps` times, every row in
    turn (a first import after removing its cache, then a cached one).
    Returns {row key: [seconds]}."""
    r = subprocess.run([apyrun, "measure.py", str(reps)], cwd=root,
                       env=clean_env(), capture_output=True, text=True,
                       timeout=600)
    if r.returncode != 0:
        sys.exit(f"apyrun failed:\n{r.stderr}")
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apyrun", default=os.environ.get("APYRUN"),
                    required=os.environ.get("APYRUN") is None)
    ap.add_argument("--procs", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    apyrun = os.path.abspath(args.apyrun)

    rows = [(".py first import", "bench_py 1"),
            (".py cached import", "bench_py 0"),
            (".ipynb first import", "bench_nb 1"),
            (".ipynb cached import", "bench_nb 0")]
    times = {label: [] for label, _ in rows}
    with tempfile.TemporaryDirectory(prefix="apyrun-import-bench-") as root:
        write_tree(root, args.cells)
        for _ in range(args.procs):
            got = sample(apyrun, root, args.reps)
            for label, key in rows:
                times[label] += got[key]

    med = {label: statistics.median(v) for label, v in times.items()}
    first_ratio = med[".ipynb first import"] / med[".py first import"]
    cached_ratio = med[".ipynb cached import"] / med[".py cached import"]
    if args.json:
        print(json.dumps({"cells": args.cells, "procs": args.procs,
                          "reps": args.reps,
                          "median_seconds": med,
                          "first_ratio": first_ratio,
                          "cached_ratio": cached_ratio}, indent=1))
        return
    print(f"importing a {args.cells}-cell notebook vs the same code as .py "
          f"(apyrun {apyrun}; median of {args.procs} processes x "
          f"{args.reps} imports per row)")
    for label, _ in rows:
        v = sorted(times[label])
        print(f"  {label:24s} {med[label] * 1e3:8.3f} ms"
              f"   (min {v[0] * 1e3:.3f}, max {v[-1] * 1e3:.3f})")
    print(f"  first import  .ipynb/.py = {first_ratio:5.2f}x   goal <= 2x   "
          f"{'met' if first_ratio <= 2 else 'NOT met'}")
    print(f"  cached import .ipynb/.py = {cached_ratio:5.2f}x   goal <= 1.1x "
          f"{'met' if cached_ratio <= 1.1 else 'NOT met'}")


if __name__ == "__main__":
    main()
