# SPDX-License-Identifier: MIT
"""Helpers for the end-to-end tests of apyrun --test (DESIGN 6).

Tests write trees of notebooks the way Jupyter does (nbformat), run the
built apyrun --test on them in a session of its own with a timeout (the
shared helpers of tests/common/apytest.py), and read its report, exit
code, JUnit XML and executed notebooks.
"""
import os
import re
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "common"))
from apytest import (REF_PYTHON, Children, apyrun,  # noqa: F401
                     kill_group,
                     pytest_addoption, pytest_configure, read_line)

TIMEOUT = 120
_children = Children(TIMEOUT, drop=("PYTHON", "APYRUN", "MPLBACKEND",
                                    "NO_COLOR", "JUPYTER", "PYTEST_"))
child_env, spawn, finish, run = (_children.child_env, _children.spawn,
                                 _children.finish, _children.run)

# The closing line, alone on its line, and the wall time after it.
SUMMARY = re.compile(r"^apyrun: (\d+) passed, (\d+) failed"
                     r"(?:, (\d+) skipped)?\nin \d+\.\d\ds\n", re.M)


def write_nb(path, *sources, tags=None, language="python"):
    """A notebook of code cells (sources) at path, parents made."""
    nb = new_notebook(cells=[new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "k", "language": language,
                                 "display_name": language}
    for i, t in (tags or {}).items():
        nb.cells[i].metadata["tags"] = list(t)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def summary(result):
    """(passed, failed, skipped) from the report; fails if it has none."""
    found = SUMMARY.findall(result.stdout)
    assert len(found) == 1, result.stdout + result.stderr
    p, f, s = found[0]
    return int(p), int(f), int(s or 0)


def verdicts(result):
    """{path: PASSED/FAILED/SKIPPED/INTERRUPTED} from --verbose lines."""
    return dict(re.findall(r"^(\S+) (PASSED|FAILED|SKIPPED|INTERRUPTED) "
                           r"\(\d+\.\d\ds\)$", result.stdout, re.M))
