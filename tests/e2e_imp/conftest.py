# SPDX-License-Identifier: MIT
"""Helpers for the importer's end-to-end tests (DESIGN 4).

Each test writes its modules and notebooks into a temporary directory and
runs the built apyrun binary (--apyrun or $APYRUN) on a small driver
script, comparing stdout, stderr and the exit code.  Children get an
environment scrubbed of PYTHON* and APYRUN* variables and a timeout, so a
hang is a failure, never a stuck job.  Notebooks are written the way
Jupyter writes them (nbformat 4.5, indent 1, sorted keys, one string per
source line), so a source line's JSON line is known exactly.
"""
import dataclasses
import json
import os
import signal
import subprocess
import textwrap
import uuid

import pytest

REF_PYTHON = os.environ.get("APYRUN_REF_PYTHON", "/usr/bin/python3.11")
TIMEOUT = 30


def pytest_addoption(parser):
    parser.addoption(
        "--apyrun", default=os.environ.get("APYRUN"),
        help="path of the apyrun binary under test (default: $APYRUN)")


def pytest_configure(config):
    path = config.getoption("--apyrun")
    if not path:
        raise pytest.UsageError(
            "give the binary: --apyrun=PATH or APYRUN=PATH")
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


def child_env(extra=None):
    """Our environment minus PYTHON* and APYRUN*, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k == "PYTHONMALLOC" or not k.startswith(("PYTHON", "APYRUN"))}
    env["LC_ALL"] = "C.UTF-8"
    env.update(extra or {})
    return env


def _reset_signals():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(argv, *, cwd, env=None, timeout=TIMEOUT, input=None):
    """Run argv; fail the test if it outlives `timeout` (a hang)."""
    proc = subprocess.Popen(
        [str(a) for a in argv], cwd=str(cwd),
        env=env if env is not None else child_env(),
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, preexec_fn=_reset_signals)
    try:
        out, err = proc.communicate(
            input.encode() if input is not None else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{argv} did not finish within {timeout}s (hang)\n"
                    f"--- stdout ---\n{out.decode(errors='replace')}\n"
                    f"--- stderr ---\n{err.decode(errors='replace')}")
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return Result(proc.returncode, out.decode(errors="replace"),
                  err.decode(errors="replace"))


def write(path, text):
    """Write dedented text to path (parents created); returns path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


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
