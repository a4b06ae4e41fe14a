# SPDX-License-Identifier: MIT
"""Shared helpers for the end-to-end tests of notebook runs.

Every test writes its notebooks the way Jupyter does (nbformat.v4 objects,
nbformat.write), runs the built apyrun on them (from --apyrun or $APYRUN)
in its own session with a timeout, and validates every notebook apyrun
writes with nbformat's validator.  The child environment is scrubbed of
PYTHON*, APYRUN*, MPLBACKEND and NO_COLOR so the developer's shell cannot
change the outcome.
"""
import dataclasses
import json
import os
import signal
import subprocess

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbformat.v4 import new_raw_cell

REF_PYTHON = os.environ.get("APYRUN_REF_PYTHON", "/usr/bin/python3.11")
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


def pytest_addoption(parser):
    parser.addoption(
        "--apyrun", default=os.environ.get("APYRUN"),
        help="path of the apyrun binary under test (default: $APYRUN)")


def pytest_configure(config):
    path = config.getoption("--apyrun")
    if not path:
        raise pytest.UsageError("give the binary: --apyrun PATH or APYRUN=PATH")
    path = os.path.abspath(path)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise pytest.UsageError(f"--apyrun {path}: not an executable file")
    config.apyrun_path = path


@pytest.fixture(scope="session")
def apyrun(pytestconfig):
    return pytestconfig.apyrun_path


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


DROP = ("PYTHON", "APYRUN", "MPLBACKEND", "NO_COLOR", "JUPYTER")


def child_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if k == "PYTHONMALLOC" or not k.startswith(DROP)}
    env.setdefault("LC_ALL", "C.UTF-8")
    env.update(extra or {})
    return env


def _reset_signals():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(argv, *, cwd, env=None, stdin=subprocess.DEVNULL):
    return subprocess.Popen(
        [str(a) for a in argv], cwd=str(cwd),
        env=env if env is not None else child_env(), stdin=stdin,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, preexec_fn=_reset_signals)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def finish(proc, *, timeout=TIMEOUT, input=None):
    try:
        out, err = proc.communicate(
            input.encode() if input is not None else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        pytest.fail(f"child did not finish within {timeout}s (hang)\n"
                    f"--- stdout ---\n{out.decode(errors='replace')}\n"
                    f"--- stderr ---\n{err.decode(errors='replace')}")
    kill_group(proc)
    return Result(proc.returncode, out.decode(errors="replace"),
                  err.decode(errors="replace"))


def run(argv, *, cwd, env=None, input=None, timeout=TIMEOUT):
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    return finish(spawn(argv, cwd=cwd, env=env, stdin=stdin),
                  timeout=timeout, input=input)


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
