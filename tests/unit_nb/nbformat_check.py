# SPDX-License-Identifier: MIT
"""The notebook layer against Debian's nbformat (run with /usr/bin/python3.11).

    nbformat_check.py CHECK NBTOOL FIXTURES_DIR [NBCLIENT_DIR]

same_as_nbformat   what apyrun writes for a notebook read and saved with no
                   results is byte for byte what nbformat.writes() gives for
                   nbformat.read(NO_CONVERT) (nbformat 3: converted to 4,
                   with apyrun's ids, since nbformat's are random)
validate_executed  notebooks saved with results for every code cell (and
                   saved as read) pass nbformat.validate()
line_map           each code cell's source line, as nbformat reads it, is on
                   the JSON line apyrun maps it to
Exits 0, 1 on a failure, 77 if nbformat is missing.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

try:
    import nbformat
except ImportError:
    print("nbformat is not importable: skipped")
    sys.exit(77)

# Not valid for nbformat's schema as input already (a future cell type).
NOT_VALID_INPUT = {"unknown_cell_type.ipynb"}


def notebooks(dirs):
    for d in dirs:
        if not os.path.isdir(d):
            print(f"{d}: absent, skipped")
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith(".ipynb"):
                yield os.path.join(d, name)


def nbtool(tool, *args):
    r = subprocess.run([tool, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"nbtool {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def universal_lines(text):
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def same_as_nbformat(tool, path, tmp):
    out = os.path.join(tmp, "out.ipynb")
    nbtool(tool, "render", path, out)
    with open(path, encoding="utf-8") as f:
        nb = nbformat.read(f, as_version=nbformat.NO_CONVERT)
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    ours = json.load(open(out, encoding="utf-8"))
    if nb.nbformat == 3:
        nb = nbformat.convert(nb, 4)
        raw_cells = [{} for _ in nb.cells]
    else:
        raw_cells = raw["cells"]
    # Ids nbformat made up (v3, or 4.5 cells without one) are random.
    for cell, rawcell, our in zip(nb.cells, raw_cells, ours["cells"]):
        if "id" not in rawcell and "id" in our:
            cell["id"] = our["id"]
    want = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    if not want.endswith("\n"):
        want += "\n"
    got = open(out, encoding="utf-8").read()
    if got != want:
        import difflib

        diff = difflib.unified_diff(want.splitlines(True),
                                    got.splitlines(True), "nbformat",
                                    "apyrun")
        return "".join(list(diff)[:40])
    return None


def validate_executed(tool, path, tmp):
    if os.path.basename(path) in NOT_VALID_INPUT:
        return None
    for mode in ("render", "run"):
        out = os.path.join(tmp, f"{mode}.ipynb")
        nbtool(tool, mode, path, out)
        nb = nbformat.read(out, as_version=4)
        try:
            nbformat.validate(nb)
        except nbformat.ValidationError as e:
            return f"{mode}: {e}"
        if mode == "run":
            counts = [c.execution_count for c in nb.cells
                      if c.cell_type == "code"]
            if counts != list(range(1, len(counts) + 1)):
                return f"execution counts {counts}"
            for c in nb.cells:
                if c.cell_type == "code" and "execution" not in c.metadata:
                    return "a code cell without metadata.execution"
    return None


STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def line_map(tool, path, tmp):
    with open(path, encoding="utf-8") as f:
        nb = nbformat.read(f, as_version=4)
    with open(path, encoding="utf-8", newline="") as f:
        file_lines = universal_lines(f.read())
    code = [c for c in nb.cells if c.cell_type == "code"]
    mapped = {}
    for row in nbtool(tool, "lines", path).split("\n"):
        if row:
            cell, line, jline = map(int, row.split())
            mapped[(cell, line)] = jline
    # nbtool numbers cells among all cells; nbformat's list is the same.
    index = [i + 1 for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    for no, cell in zip(index, code):
        lines = cell.source.replace("\r\n", "\n").replace("\r", "\n")
        lines = lines.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for k, text in enumerate(lines, 1):
            jline = mapped.get((no, k))
            if jline is None:
                return f"cell {no} line {k}: not mapped"
            literals = [json.loads(s) for s in
                        STRING.findall(file_lines[jline - 1])]
            if text.strip() and not any(text.strip() in s
                                        for s in literals):
                return (f"cell {no} line {k} {text!r} is not on JSON line "
                        f"{jline}: {file_lines[jline - 1]!r}")
        if (no, len(lines) + 1) in mapped:
            return f"cell {no}: more mapped lines than source lines"
    return None


def main():
    check, tool, fixtures = sys.argv[1:4]
    dirs = [fixtures] + sys.argv[4:]
    fn = {"same_as_nbformat": same_as_nbformat,
          "validate_executed": validate_executed,
          "line_map": line_map}[check]
    failed = n = 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in notebooks(dirs):
            n += 1
            try:
                problem = fn(tool, path, tmp)
            except Exception as e:  # report it with the file, go on
                problem = f"{type(e).__name__}: {e}"
            if problem:
                failed += 1
                print(f"FAIL {path}\n{problem}")
            else:
                print(f"ok   {path}")
    print(f"{n - failed}/{n} passed")
    return 1 if failed or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
