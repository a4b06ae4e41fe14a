# SPDX-License-Identifier: MIT
"""pytest_apyrun: Jupyter notebooks as pytest items, run by apyrun.

With ``pytest --apyrun`` every ``*.ipynb`` file pytest collects becomes one
test item, run as ``apyrun --test [options] NOTEBOOK``: a batch of one, so
each notebook runs exactly as in ``apyrun --test`` (its own process, the
same timeouts, output checks and exit statuses) and this module only
translates.  pytest and its plugins do the rest: pytest-xdist spreads the
items over workers and machines, ``--junitxml``, ``-k`` and ``--lf`` work
on them as on any test; apyrun brings no scheduler of its own.

From a checkout::

    PYTHONPATH=python python3 -m pytest -p pytest_apyrun --apyrun PATH

Installed (``cmake --install``) it is found through its ``pytest11`` entry
point, and ``pytest --apyrun`` is enough.

The binary is ``$APYRUN``, else the one installed beside this module, else
``apyrun`` on PATH.  The installed copy of this file has _INSTALLED_BINARY
set by cmake/ApyrunInstall.cmake; nothing else differs.
"""
import os
import re
import shutil
import subprocess
import tempfile

import pytest
# The internal classes pytest builds its own failure reports from.  A
# report made of them keeps its one-line message (junitxml's failure
# message, the -ra summary line) through pytest-xdist's serialisation,
# where any other object would become one string.
from _pytest._code.code import (ReprExceptionInfo, ReprFileLocation,
                                ReprTracebackNative)

# The binary installed with this module, relative to this file's
# directory; None in a checkout.  cmake/ApyrunInstall.cmake rewrites this
# line in the installed copy.
_INSTALLED_BINARY = None

# The lines of apyrun --test's report read here (docs/user-guide.md).
_FAILURES = re.compile(r"^=+ FAILURES =+$")
_CLOSING = re.compile(
    r"^apyrun: (\d+) passed, (\d+) failed(?:, (\d+) skipped)?$")
_TRACEBACK_LINE = re.compile(r'^\s*File "(.*)", line (\d+)')
# Seconds apyrun may take to list an empty directory.
_PROBE_TIMEOUT = 60


def pytest_addoption(parser):
    group = parser.getgroup("apyrun", "notebooks run by apyrun")
    group.addoption(
        "--apyrun", action="store_true", default=False,
        help="collect *.ipynb files as tests, each run by apyrun --test "
             "(binary: $APYRUN, else the one installed beside the plugin, "
             "else apyrun on PATH)")
    group.addoption("--apyrun-timeout", metavar="S",
                    help="time limit per cell, seconds")
    group.addoption("--apyrun-total-timeout", metavar="S",
                    help="time limit for a whole notebook, seconds")
    group.addoption("--apyrun-allow-errors", action="store_true",
                    default=False, help="go on after a failing cell")
    group.addoption("--apyrun-param", action="append", default=[],
                    metavar="NAME=VALUE",
                    help="set a parameter, as papermill (repeatable)")
    group.addoption("--apyrun-params-file", metavar="F",
                    help="parameters from a JSON object")
    # nargs="?" takes the next word if it is not an option, as pytest-cov's
    # --cov does: write --apyrun-check-outputs=lax, or the bare flag after
    # the paths.
    group.addoption("--apyrun-check-outputs", nargs="?", const="strict",
                    choices=("strict", "lax"), metavar="strict|lax",
                    help="compare each cell's outputs with the stored ones, "
                         "as nbval (lax: only cells tagged "
                         "nbval-check-output)")
    group.addoption("--apyrun-check-images", action="store_true",
                    default=False,
                    help="compare images by their bytes, not only presence")
    group.addoption("--apyrun-sanitize", metavar="FILE",
                    help="nbval's sanitizer file (regex:/replace: lines)")
    group.addoption("--apyrun-output-dir", metavar="DIR",
                    help="write each executed notebook under DIR")
    group.addoption("--apyrun-loop", choices=("apyrun", "asyncio"),
                    help="asyncio's default loop in the notebooks")


def pytest_configure(config):
    """Finds the binary and checks it takes the options, once a process."""
    if not config.getoption("apyrun"):
        return
    binary = find_binary()
    argv = [binary, "--test"] + apyrun_options(config)
    probe(argv)
    config.apyrun_argv = argv


def pytest_collect_file(file_path, parent):
    """A notebook becomes a NotebookFile; Jupyter's checkpoints do not."""
    if file_path.suffix != ".ipynb" or not parent.config.getoption("apyrun"):
        return None
    # pytest's default norecursedirs ('.*') already skips checkpoint
    # directories; this holds for a project's own norecursedirs too.  A
    # notebook named on the command line runs, as in apyrun --test.
    if (".ipynb_checkpoints" in file_path.parts
            and not parent.session.isinitpath(file_path)):
        return None
    return NotebookFile.from_parent(parent, path=file_path)


def find_binary():
    """The apyrun binary to run: an absolute path, or pytest.UsageError."""
    given = os.environ.get("APYRUN")
    if given:
        if not is_executable(given):
            raise pytest.UsageError(
                f"pytest --apyrun: $APYRUN={given} is not an executable file")
        return os.path.abspath(given)
    if _INSTALLED_BINARY is not None:
        beside = os.path.normpath(os.path.join(
            os.path.dirname(os.path.abspath(__file__)), _INSTALLED_BINARY))
        if is_executable(beside):
            return beside
    found = shutil.which("apyrun")
    if found:
        return os.path.abspath(found)
    raise pytest.UsageError(
        "pytest --apyrun: no apyrun binary: set $APYRUN=PATH, install "
        "apyrun with the plugin (cmake --install), or put apyrun on PATH")


def is_executable(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def apyrun_options(config):
    """apyrun --test's options from the --apyrun-* ones, as a list.

    Paths are made absolute against the directory pytest was started in,
    since the notebooks run from the rootdir.
    """
    def option(name):
        return config.getoption(name)

    def path(name):
        return os.path.join(str(config.invocation_params.dir), option(name))

    # --verbose: a skipped notebook's reason is printed only then.
    opts = ["--verbose"]
    for name, flag in (("apyrun_timeout", "--timeout"),
                       ("apyrun_total_timeout", "--total-timeout"),
                       ("apyrun_loop", "--loop")):
        if option(name) is not None:
            opts += [flag, option(name)]
    for name, flag in (("apyrun_params_file", "--params-file"),
                       ("apyrun_sanitize", "--sanitize"),
                       ("apyrun_output_dir", "--output-dir")):
        if option(name) is not None:
            opts += [flag, path(name)]
    for name, flag in (("apyrun_allow_errors", "--allow-errors"),
                       ("apyrun_check_images", "--check-images")):
        if option(name):
            opts.append(flag)
    if option("apyrun_check_outputs") is not None:
        opts.append("--check-outputs=" + option("apyrun_check_outputs"))
    for param in option("apyrun_param"):
        name, eq, value = param.partition("=")
        if not (name and eq):
            raise pytest.UsageError(
                f"--apyrun-param {param!r}: give NAME=VALUE")
        opts += ["-p", name, value]
    return opts


def probe(argv):
    """Fails with pytest.UsageError unless the binary runs `argv`.

    --list on an empty directory runs nothing and exits 5 once apyrun has
    parsed the options, so a mistyped value, or a binary without a working
    --test, is one clear error here rather than a failure of every
    notebook.
    """
    with tempfile.TemporaryDirectory(prefix="pytest-apyrun-") as empty:
        try:
            proc = subprocess.run(argv + ["--list", "--", empty],
                                  stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True,
                                  errors="replace", timeout=_PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise pytest.UsageError(
                f"pytest --apyrun: {argv[0]} --test --list did not finish "
                f"within {_PROBE_TIMEOUT}s: is it apyrun?") from None
    if proc.returncode == 5:
        return
    said = (proc.stderr or proc.stdout).strip()
    if proc.returncode == 2 and said:
        raise pytest.UsageError(f"pytest --apyrun: {said}")
    raise pytest.UsageError(
        f"pytest --apyrun: {argv[0]} --test does not work (listing an "
        f"empty directory exited {proc.returncode}, not 5): it needs an "
        f"apyrun with --test\n{said}".rstrip())


class NotebookFile(pytest.File):
    """One .ipynb file: collects the one NotebookItem that runs it."""

    def collect(self):
        # The item's node id is the file's (its path from the rootdir),
        # and so is its name, which -k matches.
        yield NotebookItem.from_parent(self, name=self.nodeid,
                                       nodeid=self.nodeid)


class NotebookFailure(Exception):
    """A notebook failed; args: (message line, report text)."""


class NotebookItem(pytest.Item):
    """Runs one notebook with apyrun --test and reads its report."""

    def runtest(self):
        rootdir = str(self.config.rootpath)
        target = os.path.relpath(self.path, rootdir)
        if target.startswith(os.pardir + os.sep):
            target = str(self.path)
        # Run from the rootdir so that the report and --output-dir name
        # the notebook as `apyrun --test` started there would.
        proc = subprocess.run(self.config.apyrun_argv + ["--", target],
                              cwd=rootdir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True,
                              errors="replace")
        counts = closing_counts(proc.stdout)
        if proc.returncode == 0 and counts == (1, 0, 0):
            return
        if proc.returncode == 0 and counts == (0, 0, 1):
            # The item's location (the notebook), not this file's line.
            raise pytest.skip.Exception(skip_reason(proc.stdout, target),
                                        _use_item_location=True)
        if proc.returncode == 1 and counts == (0, 1, 0):
            raise NotebookFailure(*failure_report(proc.stdout))
        # Anything else (a usage error, killed by a signal, no report)
        # is shown whole, under a message line of its own.
        message = f"apyrun --test exited with status {proc.returncode}"
        raise NotebookFailure(
            message, f"{message}\n{proc.stdout}{proc.stderr}")

    def repr_failure(self, excinfo):
        """The notebook's report as apyrun printed it, not this module's
        traceback: the message line ('cell 2: ZeroDivisionError: ...'),
        then the captured stdout and stderr, the traceback in stderr."""
        if not isinstance(excinfo.value, NotebookFailure):
            return super().repr_failure(excinfo)
        message, text = excinfo.value.args
        crash = ReprFileLocation(str(self.path), failing_line(text, self.path),
                                 message)
        lines = text.splitlines(keepends=True)
        return ReprExceptionInfo(reprtraceback=ReprTracebackNative(lines),
                                 reprcrash=crash)

    def reportinfo(self):
        # Line 0: pytest shows line + 1, the notebook's first line.  The
        # domain heads the failure's section; it must not end the node
        # id, or -v shows a.ipynb as a::ipynb (doctest's items use the
        # same "[doctest] name" form).
        return self.path, 0, f"[apyrun] {self.name}"


def closing_counts(stdout):
    """(passed, failed, skipped) from the last closing line, or None."""
    for line in reversed(stdout.splitlines()):
        m = _CLOSING.match(line)
        if m:
            return tuple(int(n or 0) for n in m.groups())
    return None


def skip_reason(stdout, target):
    """The reason in the line 'SKIPPED <target>: reason' of --verbose."""
    prefix = f"SKIPPED {target}: "
    for line in stdout.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):]
    return "skipped by apyrun"


def failure_report(stdout):
    """(message line, section text) of the one failure in the report.

    The section follows the FAILURES banner and the '____ path ____' line
    and runs to the closing line; its first line is the message.
    """
    lines = stdout.splitlines(keepends=True)
    start = next((i + 2 for i, line in enumerate(lines)
                  if _FAILURES.match(line.rstrip("\n"))), None)
    end = next((i for i in range(len(lines) - 1, -1, -1)
                if _CLOSING.match(lines[i].rstrip("\n"))), len(lines))
    if start is None or start >= end:
        message = "apyrun --test reported a failure"
        return message, f"{message}\n{stdout}"
    return lines[start].rstrip("\n"), "".join(lines[start:end])


def failing_line(text, path):
    """The notebook's line in the last traceback entry naming it, else 0.

    apyrun's tracebacks give lines of the .ipynb file itself, so path:line
    (pytest --tb=line) leads an editor to the failing source.
    """
    lineno = 0
    for line in text.splitlines():
        m = _TRACEBACK_LINE.match(line)
        if m and os.path.abspath(m.group(1)) == str(path):
            lineno = int(m.group(2))
    return lineno
