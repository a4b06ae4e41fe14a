# SPDX-License-Identifier: MIT
"""Helpers the end-to-end suites (tests/e2e, e2e_nb, e2e_imp) share.

Each suite's conftest.py puts this directory on sys.path and imports from
here: the --apyrun option (default: $APYRUN) and the `apyrun` fixture, the
reference python, the way children are started, and how a test waits for
a child's line and for it to block before signalling it.  A child gets our
environment scrubbed of PYTHON* and APYRUN* variables (and whatever else
the suite drops) so the developer's shell (pyenv, PYTHONUNBUFFERED, ...)
cannot change the outcome, and runs in its own session with a timeout, so
a hang becomes a failure and never a stuck CI job.
"""
import dataclasses
import os
import select
import signal
import subprocess
import tempfile
import textwrap
import time

import pytest

REF_PYTHON = os.environ.get("APYRUN_REF_PYTHON", "/usr/bin/python3.11")

# Kept from the caller's environment: it changes no output, and the
# sanitizer CI build needs it (CPython's allocator hides heap errors).
KEEP = {"PYTHONMALLOC"}

# What a sanitizer build prints when it finds an error or a leak in a
# child (whose ASAN_OPTIONS/LSAN_OPTIONS it inherits). Found in the
# child's stderr, it fails the test whatever the test checks: some compare
# outputs only, others expect a non-zero exit.
SANITIZER_REPORTS = ("ERROR: AddressSanitizer:", "ERROR: LeakSanitizer:")


def no_leak_check():
    """Extra environment for a child LeakSanitizer cannot check: one run
    under ptrace (strace: LSan stops with a fatal error), or one that
    imports numpy or zmq (their Cython modules leak at import; not apyrun's
    or CPython's).  Empty outside the sanitizer build."""
    opts = os.environ.get("ASAN_OPTIONS")
    return {"ASAN_OPTIONS": opts + ":detect_leaks=0"} if opts else {}


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
    """Absolute path of the binary under test, as given (not resolved)."""
    return pytestconfig.apyrun_path


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def normalised(self, exe):
        """This result with the executable's path replaced by <python>.

        Only python's own messages print it ("<exe>: can't open file ...",
        "usage: <exe> [option] ..."): the one difference a drop-in may show.
        """
        return Result(self.returncode, self.stdout.replace(exe, "<python>"),
                      self.stderr.replace(exe, "<python>"))


def _reset_signals():
    # A child started from a shell's background job may inherit SIGINT
    # ignored, and then python never raises KeyboardInterrupt: restore it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Children:
    """How one suite starts its children.

    `timeout` is the seconds a child may run before the test fails as a
    hang; `drop` the prefixes of the variables scrubbed from its
    environment (KEEP stays); LC_ALL is C.UTF-8 unless set, or always with
    force_lc_all.  A conftest.py makes one and exports its methods
    (child_env, spawn, finish, run, run_measured) as the functions its
    tests import.
    A timeout of None means the suite's.
    """

    def __init__(self, timeout, *, drop=("PYTHON", "APYRUN"),
                 force_lc_all=False):
        self.timeout = timeout
        self.drop = tuple(drop)
        self.force_lc_all = force_lc_all

    def child_env(self, extra=None, path_prepend=None):
        """The environment for a child: ours minus PYTHON*, APYRUN*, ..."""
        env = {k: v for k, v in os.environ.items()
               if k in KEEP or not k.startswith(self.drop)}
        if self.force_lc_all:
            env["LC_ALL"] = "C.UTF-8"
        else:
            env.setdefault("LC_ALL", "C.UTF-8")
        if path_prepend:
            env["PATH"] = os.pathsep.join([str(path_prepend),
                                           env.get("PATH", "")])
        env.update(extra or {})
        return env

    def spawn(self, argv, *, cwd, env=None, stdin=subprocess.DEVNULL,
              stdout=subprocess.PIPE, stderr=subprocess.PIPE):
        """Start a child in its own session (so a hang can be killed whole)."""
        return subprocess.Popen(
            [a if isinstance(a, bytes) else str(a) for a in argv],
            cwd=str(cwd),
            env=env if env is not None else self.child_env(),
            stdin=stdin, stdout=stdout, stderr=stderr,
            start_new_session=True, preexec_fn=_reset_signals)

    def finish(self, proc, *, timeout=None, input=None, what="child"):
        """Wait for proc (feeding input); fail the test on a hang."""
        if timeout is None:
            timeout = self.timeout
        try:
            out, err = proc.communicate(
                input.encode() if input is not None else None,
                timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            out, err = proc.communicate()
            pytest.fail(f"{what} did not finish within {timeout}s (hang)\n"
                        f"--- stdout ---\n{out.decode(errors='replace')}\n"
                        f"--- stderr ---\n{err.decode(errors='replace')}")
        # Whatever the child left running (multiprocessing workers, a thread
        # that outlived a crash) must not outlive the test.
        kill_group(proc)
        result = Result(proc.returncode,
                        (out or b"").decode(errors="replace"),
                        (err or b"").decode(errors="replace"))
        if any(r in result.stderr for r in SANITIZER_REPORTS):
            pytest.fail(f"{what}: the sanitizer reported a problem\n"
                        f"--- stderr ---\n{result.stderr}")
        return result

    def run_measured(self, argv, *, cwd, env=None, timeout=None):
        """Run argv to completion (stdin /dev/null) and measure it.

        Returns (Result, rusage): the child's own resource usage from
        wait4 (ru_maxrss in KiB, ru_utime/ru_stime), so that earlier
        children of this process cannot change it, as they would change
        getrusage(RUSAGE_CHILDREN)'s maximum.
        """
        if timeout is None:
            timeout = self.timeout
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = self.spawn(argv, cwd=cwd, env=env, stdout=out, stderr=err)
            deadline = time.monotonic() + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    kill_group(proc)
                    proc.wait()
                    pytest.fail(f"{' '.join(map(str, argv))} did not finish "
                                f"within {timeout}s (hang)")
                time.sleep(0.01)
            # Reaped here: Popen must not wait for it again.
            proc.returncode = os.waitstatus_to_exitcode(status)
            kill_group(proc)
            out.seek(0)
            err.seek(0)
            return Result(proc.returncode,
                          out.read().decode(errors="replace"),
                          err.read().decode(errors="replace")), usage

    def run(self, argv, *, cwd, env=None, input=None, timeout=None):
        """Run argv to completion; stdin is `input` or /dev/null."""
        stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
        proc = self.spawn(argv, cwd=cwd, env=env, stdin=stdin)
        return self.finish(proc, timeout=timeout, input=input,
                           what=" ".join(map(str, argv)))


# Seconds read_line and wait_until_blocked wait by default.
WAIT = 20


def read_line(proc, timeout=WAIT):
    """One line of proc's stdout (a bytes pipe), or fail after timeout."""
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(left, 0))
        if not ready:
            kill_group(proc)
            pytest.fail(f"no line from the child within {timeout}s; "
                        f"got {line!r}")
        byte = os.read(proc.stdout.fileno(), 1)
        if not byte:
            err = proc.stderr.read().decode(errors="replace")
            pytest.fail(f"child closed stdout after {line!r}; stderr:\n{err}")
        line += byte
    return line.decode()


def wait_until_blocked(proc, timeout=WAIT):
    """Wait until proc sleeps in the kernel (time.sleep, epoll_wait, ...).

    A case script prints a line and then blocks; a signal sent between the
    two would interrupt the print instead, so tests that signal a blocked
    script call this after reading the line.  Only the main thread (the
    one that handles signals) is looked at.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
            with open(f"/proc/{proc.pid}/wchan") as f:
                wchan = f.read().strip()
        except FileNotFoundError:
            break
        if state == "S" and wchan not in ("", "0"):
            return
        time.sleep(0.01)
    kill_group(proc)
    pytest.fail(f"the child never blocked within {timeout}s")


def write(path, text, mode=None):
    """Write dedented text to path (parents created); returns path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    if mode is not None:
        path.chmod(mode)
    return path
