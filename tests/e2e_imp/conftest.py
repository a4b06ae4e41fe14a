# SPDX-License-Identifier: MIT
"""Helpers for the importer's end-to-end tests (DESIGN 4).

Each test writes its modules and notebooks into a temporary directory and
runs the built apyrun binary (--apyrun or $APYRUN) on a small driver
script, comparing stdout, stderr and the exit code.  Children get an
environment scrubbed of PYTHON* and APYRUN* variables and a timeout, so a
hang is a failure, never a stuck job.  Notebooks are written the way
Jupyter writes them (nbformat 4.5, indent 1, sorted keys, one string per
source line), so a source line's JSON line is known exactly.  What the
e2e suites share is in tests/common/apytest.py.
"""
import json
import os
import sys
import textwrap
import uuid

# The shared helpers: tests/common/apytest.py.  pytest finds the hooks and
# the apyrun fixture imported from it here by name.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "common"))
from apytest import (REF_PYTHON, Children, apyrun, no_leak_check,
                     pytest_addoption, pytest_configure, write)

TIMEOUT = 30
# How this suite starts children: its timeout, PYTHON*/APYRUN* scrubbed,
# LC_ALL always C.UTF-8.
_children = Children(TIMEOUT, force_lc_all=True)
child_env, spawn, finish, run = (_children.child_env, _children.spawn,
                                 _children.finish, _children.run)


def code(source):
    return ("code", textwrap.dedent(source).strip("\n"))


def markdown(source):
    return ("markdown", textwrap.dedent(source).strip("\n"))


def raw(source):
    return ("raw", textwrap.dedent(source).strip("\n"))


def _lines(text):
    return text.splitlines(keepends=True)


def write_nb(path, *cells, one_string=False, kernel_language="python"):
    """Write a notebook in Jupyter's layout; cells are code()/markdown()
    tuples or plain strings (code).  one_string=True writes each source
    as a single string instead of a list of lines."""
    out = []
    for cell in cells:
        kind, text = cell if isinstance(cell, tuple) else code(cell)
        entry = {"cell_type": kind, "id": uuid.uuid4().hex[:8],
                 "metadata": {},
                 "source": text if one_string else _lines(text)}
        if kind == "code":
            entry["execution_count"] = None
            entry["outputs"] = []
        out.append(entry)
    nb = {"cells": out, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3",
                                      "display_name": "Python 3",
                                      "language": kernel_language},
                       "language_info": {"name": kernel_language}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1, sort_keys=True,
                               ensure_ascii=False) + "\n")
    return path


def json_line(path, source_line):
    """The 1-based line of notebook `path` holding `source_line` (a line
    of some cell's source, without its newline)."""
    needle = json.dumps(source_line, ensure_ascii=False)[:-1]
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith(needle):
            return i
    raise AssertionError(f"{source_line!r} is not in {path}")


def python_cache(tmp):
    """Every file under a __pycache__ below tmp, as relative paths."""
    found = []
    for root, _dirs, files in os.walk(tmp):
        if os.path.basename(root) == "__pycache__":
            found += [os.path.relpath(os.path.join(root, f), tmp)
                      for f in files]
    return sorted(found)
