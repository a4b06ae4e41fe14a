# SPDX-License-Identifier: MIT
"""--timeout and --total-timeout (issue 3 section 2): blocking code is
interrupted, a running coroutine is cancelled, the report names the cell,
exit 124; and Ctrl-C / SIGTERM save the executed notebook (section 3)."""
import signal
import time

import pytest

from conftest import (finish, outputs, read_valid, run, spawn, stream_text,
                      write_nb)

LOOPS = ["apyrun", "asyncio"]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("body", [
    "import time\ntime.sleep(30)",
    "while True:\n    pass",
    "import asyncio\nawait asyncio.sleep(30)",
    "import asyncio\nasync def spin():\n    while True:\n"
    "        await asyncio.sleep(0)\nawait spin()",
])
def test_timeout_interrupts_the_cell(apyrun, tmp_path, loop, body):
    nb = write_nb(tmp_path / "t.ipynb", [
        "print('first')", "print('second', flush=True)\n" + body,
        "print('never')"])
    out = tmp_path / "out.ipynb"
    start = time.monotonic()
    r = run([apyrun, "--loop", loop, "--timeout", "1", "-o", out, nb],
            cwd=tmp_path, timeout=30)
    elapsed = time.monotonic() - start
    assert r.returncode == 124, r.stderr
    assert elapsed < 15
    assert r.stdout == "first\nsecond\n"
    assert r.stderr.splitlines()[-1] == (
        f"apyrun: --timeout (1s) expired in cell 2, In [2] of {nb}")
    got = read_valid(out)
    assert stream_text(outputs(got, 1)) == "second\n"
    assert outputs(got, 1)[-1]["output_type"] == "error"
    assert outputs(got, 2) == []


@pytest.mark.parametrize("loop", LOOPS)
def test_first_timeout_interrupt_stops_blocking_code(apyrun, tmp_path, loop):
    # The watchdog's first SIGINT raises KeyboardInterrupt in the blocking
    # call and cancels nothing: the cell can catch it and await on, and
    # only the next interrupt ends it.
    nb = write_nb(tmp_path / "t.ipynb", [
        "import asyncio, time\n"
        "try:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "await asyncio.sleep(0)\n"
        "print('not cancelled', flush=True)\n"
        "time.sleep(30)",
        "print('never')"])
    r = run([apyrun, "--loop", loop, "--timeout", "1", nb], cwd=tmp_path,
            timeout=30)
    assert (r.returncode, r.stdout) == (124, "interrupted\nnot cancelled\n")
    assert r.stderr.splitlines()[-1] == (
        f"apyrun: --timeout (1s) expired in cell 1, In [1] of {nb}")


def test_total_timeout(apyrun, tmp_path):
    nb = write_nb(tmp_path / "t.ipynb", [
        "import time\ntime.sleep(0.7)", "time.sleep(0.7)",
        "time.sleep(0.7)", "print('never')"])
    r = run([apyrun, "--total-timeout", "1.5", nb], cwd=tmp_path,
            timeout=30)
    assert r.returncode == 124
    last = r.stderr.splitlines()[-1]
    assert last.startswith("apyrun: --total-timeout (1.5s) expired in cell ")
    assert "never" not in r.stdout


def test_cells_within_the_timeout_run(apyrun, tmp_path):
    nb = write_nb(tmp_path / "t.ipynb", [
        "import time\ntime.sleep(0.3)", "time.sleep(0.3)", "print('ok')"])
    r = run([apyrun, "--timeout", "2", nb], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "ok\n")


def test_code_swallowing_the_interrupt_still_ends(apyrun, tmp_path):
    nb = write_nb(tmp_path / "t.ipynb", [
        "print('saved')",
        "import time\nwhile True:\n    try:\n        time.sleep(30)\n"
        "    except KeyboardInterrupt:\n        pass"])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "--timeout", "0.5", "-o", out, nb], cwd=tmp_path,
            timeout=30)
    assert r.returncode == 124
    assert "did not stop" in r.stderr
    assert stream_text(outputs(read_valid(out), 0)) == "saved\n"


def _start_and_wait(apyrun, tmp_path, nb, out, marker):
    proc = spawn([apyrun, "-o", out, nb], cwd=tmp_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.stdout.readline().startswith(marker):
            return proc
    pytest.fail("the cell never started")


@pytest.mark.parametrize("wait", [
    "import time\ntime.sleep(30)",
    "import asyncio\nawait asyncio.sleep(30)"])
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, -signal.SIGTERM),
                                      (signal.SIGINT, -signal.SIGINT)])
def test_signal_saves_the_partial_cell(apyrun, tmp_path, sig, code, wait):
    nb = write_nb(tmp_path / "s.ipynb", [
        "print('done cell')",
        "print('partial', flush=True)\n" + wait,
        "print('never')"])
    out = tmp_path / "out.ipynb"
    proc = _start_and_wait(apyrun, tmp_path, nb, out, b"partial")
    time.sleep(0.2)
    proc.send_signal(sig)
    r = finish(proc, timeout=30)
    assert r.returncode == code, r.stderr
    got = read_valid(out)
    assert stream_text(outputs(got, 0)) == "done cell\n"
    assert stream_text(outputs(got, 1)) == "partial\n"
    err = outputs(got, 1)[-1]
    assert err["output_type"] == "error"
    assert err["ename"] == "KeyboardInterrupt"
    assert outputs(got, 2) == []
    assert "cell 2, In [2]" in r.stderr
