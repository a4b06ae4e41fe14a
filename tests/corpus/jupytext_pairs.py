#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Text notebooks read as jupytext reads them, on jupytext's own pairs.

jupytext's repository holds, for each notebook of
tests/data/notebooks/inputs/ipynb_py, the percent .py and the MyST .md it
writes from it (tests/data/notebooks/outputs/ipynb_to_percent and
ipynb_to_myst).  This runs every one of those text files through apyrun
(`apyrun --notebook FILE --allow-errors -o out.ipynb`) and compares the
executed notebook's cells (type, source, tags) with the .ipynb's.

    /usr/bin/python3 tests/corpus/jupytext_pairs.py --apyrun build/apyrun \
        --jupytext PATH   # a clone of github.com/mwouts/jupytext (bare ok)

Prints one line per differing file and "N same, M differ, of T"; exits 1
when any differs.  (2026-12-04, jupytext 73adc61: 46 of 48; the two others
are MyST files with no code cell, which jupytext's own format guess does
not read as MyST either.)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

INPUTS = "tests/data/notebooks/inputs/ipynb_py/"
OUTPUTS = {"percent": ("tests/data/notebooks/outputs/ipynb_to_percent/",
                       ".py"),
           "myst": ("tests/data/notebooks/outputs/ipynb_to_myst/", ".md")}


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], capture_output=True,
                          check=True).stdout


def cells(nb):
    out = []
    for c in nb["cells"]:
        src = c["source"]
        out.append((c["cell_type"],
                    "".join(src) if isinstance(src, list) else src,
                    c.get("metadata", {}).get("tags")))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apyrun", required=True)
    ap.add_argument("--jupytext", required=True,
                    help="a git clone of jupytext (a bare one will do)")
    args = ap.parse_args()
    listing = git(args.jupytext, "ls-tree", "-r", "--name-only", "HEAD",
                  INPUTS).decode().splitlines()
    names = sorted(os.path.basename(p)[:-6] for p in listing
                   if p.endswith(".ipynb"))
    same = differ = 0
    for name in names:
        want = cells(json.loads(git(args.jupytext, "show",
                                    f"HEAD:{INPUTS}{name}.ipynb")))
        for kind, (folder, ext) in OUTPUTS.items():
            with tempfile.TemporaryDirectory() as d:
                src = os.path.join(d, "nb" + ext)
                with open(src, "wb") as f:
                    f.write(git(args.jupytext, "show",
                                f"HEAD:{folder}{name}{ext}"))
                out = os.path.join(d, "out.ipynb")
                r = subprocess.run(
                    [args.apyrun, "--notebook", "--allow-errors",
                     "--timeout", "20", "-o", out, src],
                    capture_output=True, cwd=d, stdin=subprocess.DEVNULL,
                    timeout=300)
                if not os.path.exists(out):
                    differ += 1
                    print(f"refused {kind} {name}: exit {r.returncode}: "
                          f"{r.stderr.decode(errors='replace').strip()}")
                    continue
                with open(out) as f:
                    got = cells(json.load(f))
            if got == want:
                same += 1
                continue
            differ += 1
            first = next((i for i, (g, w) in enumerate(zip(got, want))
                          if g != w), min(len(got), len(want)))
            print(f"differs {kind} {name}: {len(got)} cells, the .ipynb "
                  f"{len(want)}; first at cell {first + 1}")
    print(f"{same} same, {differ} differ, of {same + differ}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
