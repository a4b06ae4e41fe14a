# SPDX-License-Identifier: MIT
"""apyrun --test: each notebook isolated (crashes, exits, timeouts,
monkeypatching, leftover threads and processes change no other result),
output captured and shown for failures only, the report and exit codes,
--output-dir, --exitfirst, Ctrl-C, and the run options applied to each."""
import os
import re
import signal
import time

import nbformat
import pytest

from conftest import (child_env, finish, read_line, run, spawn, summary,
                      verdicts, write_nb)

# A marker no other process on the machine has in its command line.
MARK = f"{os.getpid()}.{int(time.time()) % 100000}"


def leftovers():
    """The pids of the `sleep MARK` processes still alive (/proc: pgrep
    is not on every machine)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argv[:2] == [b"sleep", MARK.encode()] and state != "Z":
            found.append(pid)
    return found


def test_passes_and_failures_report_and_exit_codes(apyrun, tmp_path):
    write_nb(tmp_path / "ok.ipynb", "import asyncio",
             "await asyncio.sleep(0.01)\nprint('quiet output')")
    write_nb(tmp_path / "sub" / "bad.ipynb", "x = 1",
             "print('shown on failure')\n1 / 0", "print('never')")
    r = run([apyrun, "--test", "--verbose"], cwd=tmp_path)
    assert r.returncode == 1
    assert verdicts(r) == {"ok.ipynb": "PASSED", "sub/bad.ipynb": "FAILED"}
    assert summary(r) == (1, 1, 0)
    # The failure: its path, its cell and its traceback, its output.
    fail = r.stdout[r.stdout.index("FAILURES"):]
    assert " sub/bad.ipynb " in fail
    assert "cell 2: ZeroDivisionError: division by zero" in fail
    assert "Traceback (most recent call last):" in fail
    assert "apyrun: error in cell 2, In [2] of sub/bad.ipynb" in fail
    assert "shown on failure" in fail
    # A passing notebook's output is not shown; nothing leaks to stderr.
    assert "quiet output" not in r.stdout
    assert r.stderr == ""
    # The summary line is the last but one: the wall time closes.
    lines = r.stdout.splitlines()
    assert lines[-2] == "apyrun: 1 passed, 1 failed"
    assert re.fullmatch(r"in \d+\.\d\ds", lines[-1])
    ok = run([apyrun, "--test", "ok.ipynb"], cwd=tmp_path)
    assert ok.returncode == 0
    assert ok.stdout.splitlines()[-2] == "apyrun: 1 passed, 0 failed"
    # Off a terminal: no colour, no progress line.
    assert "\033[" not in r.stdout + ok.stdout


def test_crashes_and_exits_are_failures_of_their_own(apyrun, tmp_path):
    write_nb(tmp_path / "1segv.ipynb", "import ctypes\nctypes.string_at(0)")
    write_nb(tmp_path / "2exit.ipynb", "import os\nos._exit(3)")
    write_nb(tmp_path / "3abort.ipynb", "import os\nos.abort()")
    write_nb(tmp_path / "4sysexit.ipynb", "import sys\nsys.exit(4)")
    write_nb(tmp_path / "5fine.ipynb", "print(sum([1, 2]))")
    # The sanitizer build: ASan's SEGV handler would report the crash and
    # exit 1; the test wants the signal, as a release build dies of it.
    opts = os.environ.get("ASAN_OPTIONS")
    env = child_env({"ASAN_OPTIONS": opts + ":handle_segv=0"} if opts
                    else None)
    r = run([apyrun, "--test", "--verbose", "-j1"], cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert verdicts(r) == {"1segv.ipynb": "FAILED", "2exit.ipynb": "FAILED",
                           "3abort.ipynb": "FAILED",
                           "4sysexit.ipynb": "FAILED",
                           "5fine.ipynb": "PASSED"}
    assert "killed by signal 11 (SIGSEGV)" in r.stdout
    assert "exit status 3" in r.stdout
    assert "killed by signal 6 (SIGABRT)" in r.stdout
    assert "exit status 4" in r.stdout
    assert summary(r) == (1, 4, 0)


def test_no_notebook_sees_another(apyrun, tmp_path):
    # Run one after the other in one batch (-j1): all from the same
    # parent. The first leaves every kind of mess behind.
    write_nb(tmp_path / "a_mess.ipynb",
             "import builtins, sys, os, threading, time, subprocess\n"
             "builtins.len = lambda x: 42\n"
             "sys.modules['json'] = None\n"
             "os.environ['APYRUN_TEST_LEAK'] = '1'\n"
             "leaked_global = 1\n"
             f"subprocess.Popen(['sleep', '{MARK}'])\n"
             "threading.Thread(target=time.sleep, args=(1000,),"
             " daemon=True).start()\n"
             "os.chdir('/')")
    write_nb(tmp_path / "sub" / "b_clean.ipynb",
             "import os, sys, json\n"
             "assert len([1, 2]) == 2\n"
             "assert 'leaked_global' not in globals()\n"
             "assert 'APYRUN_TEST_LEAK' not in os.environ\n"
             "assert os.getcwd() == os.path.dirname(os.path.abspath("
             "__file__)), os.getcwd()\n"
             "assert os.path.basename(os.getcwd()) == 'sub'\n"
             "assert sys.argv == ['sub/b_clean.ipynb'], sys.argv\n"
             "assert __name__ == '__main__'\n"
             "import threading\n"
             "assert threading.active_count() == 1\n"
             "print('clean')")
    r = run([apyrun, "--test", "--verbose", "-j1"], cwd=tmp_path)
    assert verdicts(r) == {"a_mess.ipynb": "PASSED",
                           "sub/b_clean.ipynb": "PASSED"}, r.stdout
    # The process a notebook left running ended with it.
    assert leftovers() == []


def test_random_state_differs_between_notebooks(apyrun, tmp_path):
    for i in range(2):
        write_nb(tmp_path / f"r{i}.ipynb",
                 "import random\n"
                 f"open('r{i}.txt', 'w').write(str(random.random()))")
    r = run([apyrun, "--test", "-j1"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    assert (tmp_path / "r0.txt").read_text() != \
        (tmp_path / "r1.txt").read_text()


def test_outputs_never_interleave(apyrun, tmp_path):
    for name in ("x", "y"):
        write_nb(tmp_path / f"{name}.ipynb",
                 "import sys, time\n"
                 "for i in range(300):\n"
                 f"    print('{name}' * 20, i, flush=True)\n"
                 f"    print('{name}err', i, file=sys.stderr, flush=True)\n"
                 "    time.sleep(0.001)\n"
                 "raise RuntimeError('end')")
    r = run([apyrun, "--test", "-j2"], cwd=tmp_path)
    assert r.returncode == 1
    fail = r.stdout[r.stdout.index("FAILURES"):]
    x_part = fail[:fail.index(" y.ipynb ")]
    y_part = fail[fail.index(" y.ipynb "):]
    assert x_part.count("x" * 20) == 300 and "y" * 20 not in x_part
    assert y_part.count("y" * 20) == 300 and "x" * 20 not in y_part
    out_lines = [ln for ln in x_part.splitlines() if ln.startswith("x" * 20)]
    assert out_lines == [f"{'x' * 20} {i}" for i in range(300)]


def test_capture_no_shows_output_live(apyrun, tmp_path):
    write_nb(tmp_path / "live.ipynb", "print('live line')")
    r = run([apyrun, "--test", "--capture=no"], cwd=tmp_path)
    assert r.returncode == 0
    assert "live line" in r.stdout


def test_invalid_notebooks_are_one_failed_item_each(apyrun, tmp_path):
    (tmp_path / "a_json.ipynb").write_text("{not json")
    (tmp_path / "b_shape.ipynb").write_text('{"cells": 3, "nbformat": 4}')
    (tmp_path / "c_empty.ipynb").write_text("")
    write_nb(tmp_path / "d_good.ipynb", "x = 1")
    os.symlink("nowhere.ipynb", tmp_path / "e_dangling.ipynb")
    r = run([apyrun, "--test", "--verbose"], cwd=tmp_path)
    assert r.returncode == 1
    assert verdicts(r) == {"a_json.ipynb": "FAILED",
                           "b_shape.ipynb": "FAILED",
                           "c_empty.ipynb": "FAILED",
                           "d_good.ipynb": "PASSED",
                           "e_dangling.ipynb": "FAILED"}
    assert "not valid JSON" in r.stdout
    assert "cannot open: No such file or directory" in r.stdout
    assert summary(r) == (1, 4, 0)


def test_scripts_named_pass_by_exit_status(apyrun, tmp_path):
    (tmp_path / "good.py").write_text(
        "import asyncio\nawait asyncio.sleep(0)\nprint('tla script')\n")
    (tmp_path / "bad.py").write_text("import sys\nsys.exit(7)\n")
    (tmp_path / "-dash.py").write_text("import sys\n"
                                       "assert sys.argv == ['-dash.py']\n")
    r = run([apyrun, "--test", "--verbose", "good.py", "bad.py", "--",
             "-dash.py"], cwd=tmp_path)
    assert verdicts(r) == {"good.py": "PASSED", "bad.py": "FAILED",
                           "-dash.py": "PASSED"}
    assert "exit status 7" in r.stdout


def test_run_options_apply_to_each_notebook(apyrun, tmp_path):
    for name in ("p1", "p2"):
        write_nb(tmp_path / f"{name}.ipynb", "alpha = 0",
                 "assert alpha == 5, alpha", tags={0: ["parameters"]})
    r = run([apyrun, "--test", "-p", "alpha", "5"], cwd=tmp_path)
    assert summary(r) == (2, 0, 0), r.stdout
    r = run([apyrun, "--test"], cwd=tmp_path)
    assert summary(r) == (0, 2, 0)


def test_timeout_applies_to_each_and_is_reported(apyrun, tmp_path):
    write_nb(tmp_path / "slow.ipynb", "import asyncio",
             "await asyncio.sleep(60)")
    write_nb(tmp_path / "quick.ipynb", "x = 1")
    t0 = time.monotonic()
    r = run([apyrun, "--test", "--verbose", "--timeout", "1"], cwd=tmp_path)
    assert time.monotonic() - t0 < 30
    assert verdicts(r) == {"slow.ipynb": "FAILED", "quick.ipynb": "PASSED"}
    assert "cell 2: --timeout (1s) expired" in r.stdout


def test_allow_errors_passes_notebooks_whose_errors_it_let_through(
        apyrun, tmp_path):
    write_nb(tmp_path / "err.ipynb", "1 / 0", "print('after')")
    write_nb(tmp_path / "exit.ipynb", "import os\nos._exit(2)")
    r = run([apyrun, "--test", "--verbose", "--allow-errors"], cwd=tmp_path)
    assert verdicts(r) == {"err.ipynb": "PASSED", "exit.ipynb": "FAILED"}


def test_output_dir_keeps_executed_notebooks_failures_included(apyrun,
                                                                tmp_path):
    write_nb(tmp_path / "nbs" / "a.ipynb", "print('a out')")
    write_nb(tmp_path / "nbs" / "deep" / "b.ipynb", "1 / 0")
    r = run([apyrun, "--test", "--output-dir", "out", "nbs"], cwd=tmp_path)
    assert r.returncode == 1
    a = nbformat.read(str(tmp_path / "out" / "nbs" / "a.ipynb"), 4)
    assert a.cells[0].outputs[0]["text"] == "a out\n"
    b = nbformat.read(str(tmp_path / "out" / "nbs" / "deep" / "b.ipynb"), 4)
    assert b.cells[0].outputs[0]["ename"] == "ZeroDivisionError"
    # The inputs are untouched.
    assert nbformat.read(str(tmp_path / "nbs" / "a.ipynb"),
                         4).cells[0].outputs == []


def test_output_dir_paths_stay_inside(apyrun, tmp_path):
    write_nb(tmp_path / "up.ipynb", "x = 1")
    (tmp_path / "w").mkdir()
    r = run([apyrun, "--test", "-o", "../out", "../up.ipynb"],
            cwd=tmp_path / "w")
    assert r.returncode == 0, r.stdout
    assert (tmp_path / "out" / "up.ipynb").is_file()


def test_unwritable_output_dir_is_an_error_before_anything_runs(apyrun,
                                                                tmp_path):
    write_nb(tmp_path / "a.ipynb", "open('ran', 'w').close()")
    (tmp_path / "file").write_text("x")
    r = run([apyrun, "--test", "--output-dir", "file/sub"], cwd=tmp_path)
    assert r.returncode == 2
    assert "--output-dir file/sub" in r.stderr
    r = run([apyrun, "--test", "--junit-xml", "file/r.xml"], cwd=tmp_path)
    assert r.returncode == 2
    assert not (tmp_path / "ran").exists()


def test_exitfirst_stops_at_the_first_failure(apyrun, tmp_path):
    write_nb(tmp_path / "a.ipynb", "x = 1")
    write_nb(tmp_path / "b.ipynb", "1 / 0")
    for c in "cde":
        write_nb(tmp_path / f"{c}.ipynb", f"open('{c}.ran', 'w').close()")
    r = run([apyrun, "--test", "--exitfirst", "-j1", "--verbose"],
            cwd=tmp_path)
    assert r.returncode == 1
    assert verdicts(r) == {"a.ipynb": "PASSED", "b.ipynb": "FAILED"}
    assert not list(tmp_path.glob("*.ran"))


def test_ctrl_c_ends_children_and_prints_what_finished(apyrun, tmp_path):
    write_nb(tmp_path / "a_quick.ipynb", "print('quick')")
    write_nb(tmp_path / "b_slow.ipynb",
             "import subprocess, asyncio\n"
             f"subprocess.Popen(['sleep', '{MARK}'])\n"
             "print('started', flush=True)\n"
             "await asyncio.sleep(60)")
    write_nb(tmp_path / "c_later.ipynb", "open('c.ran', 'w').close()")
    proc = spawn([apyrun, "--test", "--verbose", "-j1"], cwd=tmp_path)
    assert read_line(proc).startswith("a_quick.ipynb PASSED")
    deadline = time.monotonic() + 20
    while not leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers()
    proc.send_signal(signal.SIGINT)
    r = finish(proc, timeout=30)
    assert r.returncode == -signal.SIGINT
    assert "b_slow.ipynb INTERRUPTED" in r.stdout
    assert "apyrun: interrupted: 1 did not finish" in r.stdout
    assert summary(r) == (1, 0, 0)
    assert not (tmp_path / "c.ran").exists()
    assert leftovers() == []


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_jobs_run_that_many_at_a_time(apyrun, tmp_path, jobs):
    for i in range(4):
        write_nb(tmp_path / f"n{i}.ipynb",
                 "import time\n"
                 "t0 = time.time()\n"
                 "time.sleep(0.6)\n"
                 f"open('{tmp_path}/n{i}.span', 'w').write("
                 "f'{t0} {time.time()}')")
    r = run([apyrun, "--test", "-j", str(jobs)], cwd=tmp_path)
    assert summary(r) == (4, 0, 0)
    spans = [tuple(map(float, p.read_text().split()))
             for p in tmp_path.glob("*.span")]
    # The most notebooks running at one moment: exactly -j (four
    # notebooks of 0.6 s each started as soon as a slot was free).
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most == jobs


def run_on_terminal(apyrun, cwd, args, env_extra=None):
    """apyrun --test with stdout and stderr on a pseudo-terminal; returns
    (exit code, everything it wrote)."""
    import pty
    import select as sel
    from conftest import child_env
    leader, follower = pty.openpty()
    proc = spawn([apyrun, "--test", *args], cwd=cwd,
                 env=child_env(env_extra), stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = sel.select([leader], [], [], 1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
    os.close(leader)
    return proc.wait(timeout=30), out.decode(errors="replace")


def test_terminal_gets_progress_and_colour_unless_no_color(apyrun, tmp_path):
    write_nb(tmp_path / "a.ipynb", "x = 1")
    write_nb(tmp_path / "b.ipynb", "1 / 0")
    rc, out = run_on_terminal(apyrun, tmp_path, ["-j1"])
    assert rc == 1
    assert "[1/2] 0 failed" in out and "[2/2] 1 failed" in out
    assert "\033[31m" in out                       # red for the failure
    rc, out = run_on_terminal(apyrun, tmp_path, ["-j1"],
                              {"NO_COLOR": "1"})
    assert rc == 1
    assert "[2/2] 1 failed" in out
    assert "\033[3" not in out and "\033[1m" not in out
    assert "apyrun: 1 passed, 1 failed\r\n" in out


def test_sigterm_stops_the_batch_as_ctrl_c_does(apyrun, tmp_path):
    write_nb(tmp_path / "slow.ipynb", "import asyncio\n"
             "print('started', flush=True)\nawait asyncio.sleep(60)")
    proc = spawn([apyrun, "--test", "--verbose"], cwd=tmp_path)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    r = finish(proc, timeout=30)
    assert r.returncode == 128 + signal.SIGTERM
    assert "slow.ipynb INTERRUPTED" in r.stdout
    assert summary(r) == (0, 0, 0)


def test_the_end_of_a_notebook_is_as_after_apyrun(apyrun, tmp_path):
    # What the interpreter's end does that a notebook can see: non-daemon
    # threads joined, atexit callbacks, files left open flushed. A batch
    # child ends as `apyrun nb` does. (A __del__ that calls open() at the
    # end fails under python3 and apyrun, builtins being gone by then; a
    # batch child releases __main__ first, so it does not.)
    src = ("import atexit, threading, time\n"
           "atexit.register(print, 'atexit ran')\n"
           "def late():\n    time.sleep(0.2)\n"
           "    open('thread.txt', 'w').write('thread done')\n"
           "threading.Thread(target=late).start()\n"
           "f = open('left_open.txt', 'w')\nf.write('buffered')")
    outs = {}
    for way in ("alone", "batch"):
        d = tmp_path / way
        write_nb(d / "nb.ipynb", src)
        argv = ([apyrun, "nb.ipynb"] if way == "alone"
                else [apyrun, "--test", "--capture=no", "nb.ipynb"])
        r = run(argv, cwd=d)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "atexit ran" in r.stdout
        outs[way] = {n: (d / n).read_text() for n in
                     ("thread.txt", "left_open.txt")}
    assert outs["batch"] == outs["alone"] == {
        "thread.txt": "thread done", "left_open.txt": "buffered"}
