# SPDX-License-Identifier: MIT
"""Helpers for the end-to-end tests of the pytest plugin.

Each test writes a tree of notebooks (nbformat, as Jupyter writes them)
with a pytest.ini of its own, so the tree is the inner session's rootdir,
and runs an inner pytest there with the checkout's plugin:
PYTHONPATH=<repo>/python, -p pytest_apyrun, APYRUN=<binary under test>.
The binary is $APYRUN if set, else this session's --apyrun=PATH (the
option of tests/common/apytest.py; the inner sessions' --apyrun is the
plugin's flag).  The inner environment is scrubbed of PYTHON*, APYRUN* and
PYTEST_* so neither the developer's shell nor this session leaks in.
Until the binary under test has a working `apyrun --test`, the tests that
run notebooks skip (the `batch` fixture says why).
"""
import os
import subprocess
import sys
import tempfile

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

# The shared helpers: tests/common/apytest.py.  pytest finds the hooks and
# the apyrun fixture imported from it here by name.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "common"))
from apytest import Children, apyrun, pytest_addoption, pytest_configure

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PLUGIN_DIR = os.path.join(REPO, "python")
# The inner sessions run on this session's interpreter: Debian's, which
# has pytest, pytest-xdist and nbformat.
PYTHON = sys.executable
# An inner session starts pytest (and with -n 2 two workers) and a process
# per notebook on a small machine shared with the rest of ctest.
TIMEOUT = 120

_children = Children(TIMEOUT, drop=("PYTHON", "APYRUN", "PYTEST_"))
child_env, run = _children.child_env, _children.run


@pytest.fixture(scope="session")
def binary(apyrun):
    """The apyrun the inner sessions run: $APYRUN, else --apyrun=PATH."""
    return os.path.abspath(os.environ.get("APYRUN") or apyrun)


def has_batch_mode(path):
    """Whether `path --test` runs batches: on an empty directory it must
    exit 5 (nothing collected), as the plugin's own check requires."""
    with tempfile.TemporaryDirectory() as empty:
        proc = subprocess.run([path, "--test", "--list", "--", empty],
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=TIMEOUT)
    return proc.returncode == 5


@pytest.fixture(scope="session")
def batch(binary):
    """The binary, for the tests that run notebooks: they skip without
    a working --test (a build from before the batch runner merged)."""
    if not has_batch_mode(binary):
        pytest.skip(f"{binary} has no working --test (an empty batch does "
                    f"not exit 5); give one with APYRUN=PATH")
    return binary


def write_nb(path, cells, *, language="python", tags=None):
    """Writes a notebook of code cells; tags maps a cell index to tags."""
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    for index, names in (tags or {}).items():
        nb.cells[index].metadata["tags"] = list(names)
    if language == "python":
        nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                     "display_name": "Python 3"}
    else:
        nb.metadata["kernelspec"] = {"name": "ir", "language": language,
                                     "display_name": language}
    nb.metadata["language_info"] = {"name": language}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def make_tree(root, notebooks, ini="[pytest]\n"):
    """A tree for an inner session: {relative path: cells}, a pytest.ini."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pytest.ini").write_text(ini)
    for rel, cells in notebooks.items():
        write_nb(root / rel, cells)
    return root


def inner_pytest(tree, *args, binary=None, plugin_dir=PLUGIN_DIR,
                 load=("-p", "pytest_apyrun"), env=None, cwd=None):
    """Runs `python -m pytest [load] args` in tree (or cwd); a Result.

    APYRUN is `binary` when given, else unset.  -p no:apyrun first: an
    installed copy of the plugin, whose entry point is named apyrun, must
    not load beside the checkout's.
    """
    extra = {"PYTHONPATH": plugin_dir, "PYTHONDONTWRITEBYTECODE": "1"}
    if binary is not None:
        extra["APYRUN"] = binary
    if load:
        load = ("-p", "no:apyrun") + tuple(load)
    return run([PYTHON, "-m", "pytest", *load, *args],
               cwd=cwd or tree, env=env or child_env(extra))
