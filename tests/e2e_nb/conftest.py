# SPDX-License-Identifier: MIT
"""Helpers for the end-to-end tests of notebook runs.

Every test writes its notebooks the way Jupyter does (nbformat.v4 objects,
nbformat.write), runs the built apyrun on them (from --apyrun or $APYRUN)
in its own session with a timeout, and validates every notebook apyrun
writes with nbformat's validator.  The child environment is scrubbed of
PYTHON*, APYRUN*, MPLBACKEND and NO_COLOR so the developer's shell cannot
change the outcome.  What the e2e suites share is in
tests/common/apytest.py; this file adds the notebook helpers.
"""
import json
import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbformat.v4 import new_raw_cell

# The shared helpers: tests/common/apytest.py.  pytest finds the hooks and
# the apyrun fixture imported from it here by name.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "common"))
from apytest import (REF_PYTHON, Children, apyrun, kill_group,
                     no_leak_check, pytest_addoption, pytest_configure,
                     read_line, wait_until_blocked)

# nbclient's notebooks: shared/ beside the repository (as CI lays it
# out), else the workplace's /work/shared; $APYRUN_NBCLIENT_NOTEBOOKS wins.
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
NBCLIENT_DIR = os.environ.get("APYRUN_NBCLIENT_NOTEBOOKS") or next(
    (d for d in (os.path.join(os.path.dirname(_REPO), "shared", "notebooks",
                              "nbclient"),
                 "/work/shared/notebooks/nbclient") if os.path.isdir(d)),
    "/work/shared/notebooks/nbclient")
# Seconds a child may run before the test fails as a hang; generous
# because ctest runs test files in parallel on a small machine.
TIMEOUT = 60

# PYTEST_CURRENT_TEST (set by pytest for every test) turns off ipykernel's
# recording of output written to fds 1 and 2 (ipykernel/iostream.py).
DROP = ("PYTHON", "APYRUN", "MPLBACKEND", "NO_COLOR", "JUPYTER", "PYTEST_")
# How this suite starts children: its timeout, DROP scrubbed.
_children = Children(TIMEOUT, drop=DROP)
child_env, spawn, finish, run = (_children.child_env, _children.spawn,
                                 _children.finish, _children.run)
run_measured = _children.run_measured


def cell(source, *, tags=None, kind="code"):
    """One nbformat v4 cell; tags go to metadata.tags."""
    make = {"code": new_code_cell, "markdown": new_markdown_cell,
            "raw": new_raw_cell}[kind]
    c = make(source)
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def write_nb(path, cells, **metadata):
    """Writes a notebook as Jupyter does; cells are str (code) or cells."""
    nb = new_notebook(cells=[c if not isinstance(c, str) else cell(c)
                             for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.update(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def read_valid(path):
    """Reads a notebook apyrun wrote; fails unless nbformat validates it."""
    with open(path, encoding="utf-8") as f:
        nb = nbformat.read(f, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    return nb


def json_line(path, text, start=1):
    """The 1-based line of the file holding `text` (after line start-1)."""
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if i >= start and text in line:
                return i
    raise AssertionError(f"{text!r} not in {path}")


def outputs(nb, index):
    return nb.cells[index].get("outputs", [])


def stream_text(outs, name="stdout"):
    return "".join(o["text"] for o in outs
                   if o["output_type"] == "stream" and o["name"] == name)


def executed(nb):
    return [c.get("execution_count") for c in nb.cells
            if c.cell_type == "code"]


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
