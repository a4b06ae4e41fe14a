# SPDX-License-Identifier: MIT
"""Ctrl-C in a notebook run (issue 9 item 4): the first one interrupts the
code a cell is blocked in at once, as ipykernel does (KeyboardInterrupt
where it blocks, the cell reported "interrupted", the executed notebook
saved with the cell's error, death by SIGINT); a cell that awaits is
cancelled instead, and its traceback is where it awaited."""
import signal

import pytest

from conftest import (finish, json_line, outputs, read_line, read_valid,
                      spawn, stream_text, wait_until_blocked, write_nb)

LOOPS = ["apyrun", "asyncio"]
# Seconds a child may take to end after its Ctrl-C: far below the 60 s the
# cells would otherwise block for.
PROMPT = 10

# name: (first cell, the cell that blocks, its blocking line).
BLOCKING = {
    # A cell with an import runs in the loop like a TLA cell (its imports
    # may await TLA modules); without one it is evaluated from a callback.
    "plain cell": ("import time",
                   "print('ready', flush=True)\ntime.sleep(60)",
                   "time.sleep(60)"),
    "plain cell with an import": (
        "x = 1",
        "import time\nprint('ready', flush=True)\ntime.sleep(60)",
        "time.sleep(60)"),
    "Event.wait": (
        "x = 1",
        "import threading\nprint('ready', flush=True)\n"
        "threading.Event().wait()",
        "threading.Event().wait()"),
    "TLA cell": (
        "import asyncio, time",
        "await asyncio.sleep(0.1)\nprint('ready', flush=True)\n"
        "time.sleep(60)",
        "time.sleep(60)"),
}


def interrupted(apyrun, tmp_path, nb, loop, *extra, before=()):
    """Run nb, Ctrl-C once it blocked after "ready"; lines before it are
    `before`."""
    proc = spawn([apyrun, "--loop", loop, *extra, nb], cwd=tmp_path)
    for line in (*before, "ready\n"):
        assert read_line(proc) == line
    wait_until_blocked(proc)
    proc.send_signal(signal.SIGINT)
    return finish(proc, timeout=PROMPT, what="apyrun after one Ctrl-C")


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("case", BLOCKING)
def test_first_ctrl_c_interrupts_a_blocked_cell(apyrun, tmp_path, loop,
                                                case):
    first, blocking, line = BLOCKING[case]
    nb = write_nb(tmp_path / "b.ipynb", [first, blocking, "print('never')"])
    r = interrupted(apyrun, tmp_path, nb, loop)
    assert (r.returncode, r.stdout) == (-signal.SIGINT, ""), r.stderr
    lines = r.stderr.splitlines()
    assert lines[:3] == ["Traceback (most recent call last):",
                         f'  File "{nb}", line {json_line(nb, line)}, '
                         "in <module>",
                         f"    {line}"], r.stderr
    assert lines[-2:] == ["KeyboardInterrupt",
                          f"apyrun: interrupted in cell 2, In [2] of {nb}"]


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("case", ["plain cell with an import", "TLA cell"])
def test_interrupted_cell_is_saved(apyrun, tmp_path, loop, case):
    first, blocking, line = BLOCKING[case]
    nb = write_nb(tmp_path / "b.ipynb", [
        first + "\nprint('first cell')", blocking, "print('never')"])
    out = tmp_path / "out.ipynb"
    r = interrupted(apyrun, tmp_path, nb, loop, "-o", out,
                    before=["first cell\n"])
    assert r.returncode == -signal.SIGINT, r.stderr
    got = read_valid(out)
    assert stream_text(outputs(got, 0)) == "first cell\n"
    assert stream_text(outputs(got, 1)) == "ready\n"
    err = outputs(got, 1)[-1]
    assert (err["output_type"], err["ename"]) == ("error",
                                                  "KeyboardInterrupt")
    assert any(line in frame for frame in err["traceback"]), err
    assert outputs(got, 2) == []


@pytest.mark.parametrize("loop", LOOPS)
def test_ctrl_c_cancels_an_awaiting_cell(apyrun, tmp_path, loop):
    nb = write_nb(tmp_path / "a.ipynb", [
        "import asyncio",
        "print('ready', flush=True)\ntry:\n"
        "    await asyncio.sleep(60)\nfinally:\n"
        "    print('finally ran')",
        "print('never')"])
    r = interrupted(apyrun, tmp_path, nb, loop)
    assert (r.returncode, r.stdout) == (-signal.SIGINT, "finally ran\n")
    # Cancelled where it awaited, not interrupted inside the loop.
    lines = r.stderr.splitlines()
    assert lines[1:3] == [
        f'  File "{nb}", line {json_line(nb, "await asyncio.sleep(60)")}, '
        "in <module>",
        "    await asyncio.sleep(60)"], r.stderr
    assert lines[-2:] == ["KeyboardInterrupt",
                          f"apyrun: interrupted in cell 2, In [2] of {nb}"]


@pytest.mark.parametrize("loop", LOOPS)
def test_interrupt_before_a_cell_begins(apyrun, tmp_path, loop):
    # A KeyboardInterrupt that stops the loop before the next cell's code
    # began (a callback left queued raises it; a signal landing in
    # asyncio's own code between cells does the same): that cell is
    # interrupted and the run ends as after Ctrl-C. Its callback, still
    # queued, must never run it later (it crashed apyrun: state freed).
    from conftest import run
    nb = write_nb(tmp_path / "nb.ipynb", [
        "import asyncio\nloop = asyncio.get_running_loop()\n"
        "def boom():\n    raise KeyboardInterrupt\n"
        "loop.call_soon(lambda: loop.call_soon(boom));",
        "print('second')", "print('third')"])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "--loop", loop, "-o", out, nb], cwd=tmp_path)
    assert r.returncode == -signal.SIGINT, r.stderr
    assert "interrupted in cell 2" in r.stderr
    assert "second" not in r.stdout and "third" not in r.stdout
    got = read_valid(out)
    assert [o["ename"] for o in outputs(got, 1)] == ["KeyboardInterrupt"]
    assert outputs(got, 2) == []
