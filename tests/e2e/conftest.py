# SPDX-License-Identifier: MIT
"""Helpers for the end-to-end tests of the built apyrun binary.

Every test drives a real process: apyrun (from --apyrun or $APYRUN) and, for
differential tests, Debian's /usr/bin/python3.11 on the same case file.  The
child environment is scrubbed of PYTHON* and APYRUN* variables so the
developer's shell (pyenv, PYTHONUNBUFFERED, ...) cannot change the outcome,
and every child runs in its own session with a timeout, so a hang becomes a
failure and never a stuck CI job.  What the e2e suites share is in
tests/common/apytest.py; this file adds this suite's own helpers.

Validation mode: pointing --apyrun at /usr/bin/python3.11 makes every
differential test compare python with itself; they must all pass then.
"""
import os
import re
import shutil
import sys

import pytest

# The shared helpers: tests/common/apytest.py.  pytest finds the hooks and
# the apyrun fixture imported from it here by name.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir, "common"))
from apytest import (REF_PYTHON, Children, Result, apyrun, kill_group,
                     pytest_addoption, pytest_configure, read_line,
                     wait_until_blocked, write)

# Seconds a child may run before the test fails as a hang.  Generous because
# ctest runs the test files in parallel on a 2-core machine.
TIMEOUT = 20
# Seconds for things that must happen "promptly" (Ctrl-C, the never-completed
# report): far below the 30 s the case scripts would otherwise sleep.
PROMPT = 10

# Prints what a script can see of how it was started; the last two lines
# name python's own loader and bytecode cache, which a TLA module may not
# use (probe_lines(loader=False) leaves them out).
PROBE_LINES = [
    "import sys",
    "_main = sys.modules['__main__']",
    "print('argv', sys.argv)",
    "print('path[0]', repr(sys.path[0]))",
    "print('path[1:]', sys.path[1:])",
    "print('__name__', __name__)",
    "print('__file__', globals().get('__file__', '<unset>'))",
    "print('__main__ is this module', _main.__dict__ is globals())",
    "print('__spec__', None if __spec__ is None else"
    " (__spec__.name, __spec__.origin, __spec__.parent))",
    "print('__package__', repr(__package__))",
    "print('__loader__', getattr(__loader__, '__name__',"
    " type(__loader__).__name__))",
    "print('__cached__', globals().get('__cached__', '<unset>'))",
]


def probe(loader=True):
    lines = PROBE_LINES if loader else PROBE_LINES[:-2]
    return "\n".join(lines) + "\n"


PROBE = probe()


@pytest.fixture(scope="session")
def is_validation_run(apyrun):
    """True when the "binary under test" is the reference python itself."""
    return os.path.realpath(apyrun) == os.path.realpath(REF_PYTHON)


# How this suite starts children: its timeout, PYTHON*/APYRUN* scrubbed.
_children = Children(TIMEOUT)
child_env, spawn, finish, run = (_children.child_env, _children.spawn,
                                 _children.finish, _children.run)
run_measured = _children.run_measured


def assert_like_python(apyrun, args, *, cwd, env=None, input=None,
                       timeout=TIMEOUT, expected=None):
    """Run args under python3.11 and apyrun; both must give the same result.

    `expected` (a Result, with <python> for the executable) pins what
    python does, so the test also fails if it no longer checks anything.
    Returns the apyrun result.
    """
    ref = run([REF_PYTHON, *args], cwd=cwd, env=env, input=input,
              timeout=timeout).normalised(REF_PYTHON)
    if expected is not None:
        assert ref == expected, "the reference python disagrees with the test"
    got = run([apyrun, *args], cwd=cwd, env=env, input=input,
              timeout=timeout).normalised(apyrun)
    assert got == ref
    return got


def stderr_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


def has_option(text, option):
    """Whether help text names `option` as an option (not inside a word)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) \
        is not None


def link_as_apyrun(apyrun, directory):
    """A directory whose `apyrun` runs the binary under test.

    The binary's own directory when it is called apyrun; else (validation
    runs, where it is python3.11) a symlink named apyrun in `directory`.
    """
    if os.path.basename(apyrun) == "apyrun":
        return os.path.dirname(apyrun)
    directory.mkdir(parents=True, exist_ok=True)
    os.symlink(apyrun, directory / "apyrun")
    return str(directory)


def copy_binary(apyrun, dest):
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(apyrun, dest)
    return dest
