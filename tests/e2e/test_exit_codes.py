# SPDX-License-Identifier: MIT
"""Exit codes and signals of code without top-level await (DESIGN 1, 6).

All differential: python3.11 and apyrun run the same case file; the exit
status, stdout and stderr (tracebacks included) must be identical.
"""
import signal
import subprocess

import pytest

from conftest import (PROMPT, REF_PYTHON, Result, assert_like_python,
                      finish, read_line, spawn, wait_until_blocked, write)

CASES = {
    "success": ('print("ok")\n', Result(0, "ok\n", "")),
    "uncaught exception": (
        """\
        def ratio(a, b):
            return a / b

        print("before")
        print(ratio(1, 0))
        """,
        Result(1, "before\n",
               'Traceback (most recent call last):\n'
               '  File "{script}", line 5, in <module>\n'
               '    print(ratio(1, 0))\n'
               '          ^^^^^^^^^^^\n'
               '  File "{script}", line 2, in ratio\n'
               '    return a / b\n'
               '           ~~^~~\n'
               'ZeroDivisionError: division by zero\n')),
    "exception with cause": (
        """\
        try:
            {}["missing"]
        except KeyError as e:
            raise RuntimeError("lookup failed") from e
        """,
        Result(1, "",
               'Traceback (most recent call last):\n'
               '  File "{script}", line 2, in <module>\n'
               '    {}["missing"]\n'
               '    ~~^^^^^^^^^^^\n'
               "KeyError: 'missing'\n"
               '\n'
               'The above exception was the direct cause of the following '
               'exception:\n'
               '\n'
               'Traceback (most recent call last):\n'
               '  File "{script}", line 4, in <module>\n'
               '    raise RuntimeError("lookup failed") from e\n'
               'RuntimeError: lookup failed\n')),
    "sys.exit(3)": ("import sys\nsys.exit(3)\n", Result(3, "", "")),
    "sys.exit(0)": ("import sys\nsys.exit(0)\n", Result(0, "", "")),
    "sys.exit(None)": ("import sys\nsys.exit(None)\n", Result(0, "", "")),
    "sys.exit('msg')": ('import sys\nsys.exit("fatal: no input")\n',
                        Result(1, "", "fatal: no input\n")),
    "sys.exit(True)": ("import sys\nsys.exit(True)\n", Result(1, "", "")),
    "SystemExit(256)": ("raise SystemExit(256)\n", Result(0, "", "")),
    "os._exit(7)": ('import os\nprint("lost", end="")\nos._exit(7)\n',
                    Result(7, "", "")),
    "exit in atexit": (
        """\
        import atexit
        atexit.register(print, "at exit")
        print("main")
        """,
        Result(0, "main\nat exit\n", "")),
    "KeyboardInterrupt raised": (
        'print("before", flush=True)\nraise KeyboardInterrupt\n',
        Result(-signal.SIGINT, "before\n",
               'Traceback (most recent call last):\n'
               '  File "{script}", line 2, in <module>\n'
               '    raise KeyboardInterrupt\n'
               'KeyboardInterrupt\n')),
}


@pytest.mark.parametrize("case", CASES)
def test_exit_status_like_python(apyrun, tmp_path, case):
    source, expected = CASES[case]
    script = write(tmp_path / "case.py", source)
    expected.stderr = expected.stderr.replace("{script}", str(script))
    assert_like_python(apyrun, [script], cwd=tmp_path, expected=expected)


def test_exit_status_of_c_code(apyrun, tmp_path):
    assert_like_python(apyrun, ["-c", "import sys; sys.exit(5)"],
                       cwd=tmp_path, expected=Result(5, "", ""))
    assert_like_python(apyrun, ["-c", "1/0"], cwd=tmp_path, expected=Result(
        1, "", 'Traceback (most recent call last):\n'
               '  File "<string>", line 1, in <module>\n'
               'ZeroDivisionError: division by zero\n'))


def run_with_stdout(exe, script, stdout, cwd):
    with open(stdout, "w") as out:
        proc = spawn([exe, script], cwd=cwd, stdout=out)
        return finish(proc)


def test_unflushable_stdout_exits_120(apyrun, tmp_path):
    script = write(tmp_path / "full.py", "print('x')\n")
    ref = run_with_stdout(REF_PYTHON, script, "/dev/full", tmp_path)
    assert ref == Result(
        120, "",
        "Exception ignored in: <_io.TextIOWrapper name='<stdout>' mode='w' "
        "encoding='utf-8'>\nOSError: [Errno 28] No space left on device\n")
    assert run_with_stdout(apyrun, script, "/dev/full", tmp_path) == ref


SLEEPER = """\
import time
print("sleeping", flush=True)
time.sleep(30)
print("woke up")
"""


def interrupt(exe, script, cwd):
    proc = spawn([exe, script], cwd=cwd)
    assert read_line(proc) == "sleeping\n"
    wait_until_blocked(proc)
    proc.send_signal(signal.SIGINT)
    return finish(proc, timeout=PROMPT, what=f"{exe} after SIGINT")


def test_real_sigint_kills_like_python(apyrun, tmp_path):
    script = write(tmp_path / "sleeper.py", SLEEPER)
    ref = interrupt(REF_PYTHON, script, tmp_path)
    assert ref == Result(
        -signal.SIGINT, "",
        'Traceback (most recent call last):\n'
        f'  File "{script}", line 3, in <module>\n'
        '    time.sleep(30)\n'
        'KeyboardInterrupt\n')
    assert interrupt(apyrun, script, tmp_path) == ref


def piped_into_head(exe, script, cwd):
    """Run `exe script | head -1`; the exe's result (stdout: what head saw)."""
    proc = spawn([exe, script], cwd=cwd)
    head = subprocess.Popen(["head", "-1"], stdin=proc.stdout,
                            stdout=subprocess.PIPE)
    proc.stdout.close()  # head alone holds the read end now.
    proc.stdout = None
    first, _ = head.communicate(timeout=30)
    result = finish(proc)
    return Result(result.returncode, first.decode(), result.stderr)


def test_sigpipe_into_head(apyrun, tmp_path):
    script = write(tmp_path / "many.py",
                   "for i in range(200000):\n    print(i)\n")
    ref = piped_into_head(REF_PYTHON, script, tmp_path)
    assert ref == Result(1, "0\n",
                         'Traceback (most recent call last):\n'
                         f'  File "{script}", line 2, in <module>\n'
                         '    print(i)\n'
                         'BrokenPipeError: [Errno 32] Broken pipe\n')
    assert piped_into_head(apyrun, script, tmp_path) == ref
