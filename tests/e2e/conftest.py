# SPDX-License-Identifier: MIT
"""Shared helpers for the end-to-end tests of the built apyrun binary.

Every test drives a real process: apyrun (from --apyrun or $APYRUN) and, for
differential tests, Debian's /usr/bin/python3.11 on the same case file.  The
child environment is scrubbed of PYTHON* and APYRUN* variables so the
developer's shell (pyenv, PYTHONUNBUFFERED, ...) cannot change the outcome,
and every child runs in its own session with a timeout, so a hang becomes a
failure and never a stuck CI job.

Validation mode: pointing --apyrun at /usr/bin/python3.11 makes every
differential test compare python with itself; they must all pass then.
"""
import dataclasses
import os
import re
import select
import shutil
import signal
import subprocess
import textwrap
import time

import pytest

REF_PYTHON = os.environ.get("APYRUN_REF_PYTHON", "/usr/bin/python3.11")

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


@pytest.fixture(scope="session")
def is_validation_run(apyrun):
    """True when the "binary under test" is the reference python itself."""
    return os.path.realpath(apyrun) == os.path.realpath(REF_PYTHON)


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


# Kept from the caller's environment: it changes no output, and the
# sanitizer CI build needs it (CPython's allocator hides heap errors).
KEEP = {"PYTHONMALLOC"}


def child_env(extra=None, path_prepend=None):
    """The environment for a child: ours minus PYTHON* and APYRUN*."""
    env = {k: v for k, v in os.environ.items()
           if k in KEEP or not k.startswith(("PYTHON", "APYRUN"))}
    env.setdefault("LC_ALL", "C.UTF-8")
    if path_prepend:
        env["PATH"] = os.pathsep.join([str(path_prepend), env.get("PATH", "")])
    env.update(extra or {})
    return env


def _reset_signals():
    # A child started from a shell's background job may inherit SIGINT
    # ignored, and then python never raises KeyboardInterrupt: restore it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(argv, *, cwd, env=None, stdin=subprocess.DEVNULL,
          stdout=subprocess.PIPE, stderr=subprocess.PIPE):
    """Start a child in its own session (so a hang can be killed whole)."""
    return subprocess.Popen(
        [str(a) for a in argv], cwd=str(cwd),
        env=env if env is not None else child_env(),
        stdin=stdin, stdout=stdout, stderr=stderr,
        start_new_session=True, preexec_fn=_reset_signals)


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def finish(proc, *, timeout=TIMEOUT, input=None, what="child"):
    """Wait for proc (feeding input); fail the test if it outlives timeout."""
    try:
        out, err = proc.communicate(
            input.encode() if input is not None else None, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        pytest.fail(f"{what} did not finish within {timeout}s (hang)\n"
                    f"--- stdout ---\n{out.decode(errors='replace')}\n"
                    f"--- stderr ---\n{err.decode(errors='replace')}")
    # Whatever the child left running (multiprocessing workers, a thread
    # that outlived a crash) must not outlive the test.
    kill_group(proc)
    return Result(proc.returncode, (out or b"").decode(errors="replace"),
                  (err or b"").decode(errors="replace"))


def run(argv, *, cwd, env=None, input=None, timeout=TIMEOUT):
    """Run argv to completion; stdin is `input` or /dev/null."""
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    proc = spawn(argv, cwd=cwd, env=env, stdin=stdin)
    return finish(proc, timeout=timeout, input=input,
                  what=" ".join(map(str, argv)))


def read_line(proc, timeout=TIMEOUT):
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


def wait_until_blocked(proc, timeout=TIMEOUT):
    """Wait until proc sleeps in the kernel (time.sleep, epoll_wait, ...).

    A case script prints a line and then blocks; a signal sent between the
    two would interrupt the print instead, so tests that signal a blocked
    script call this after reading the line.
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
