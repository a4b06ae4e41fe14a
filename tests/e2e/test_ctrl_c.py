# SPDX-License-Identifier: MIT
"""Ctrl-C in TLA scripts (issue 9 item 4).

The first Ctrl-C interrupts code that blocks or computes at once, as
python3 does: KeyboardInterrupt where that code is, death by SIGINT.  Only
while the main task awaits does it cancel the main task (asyncio.run's
rule, whose cases are in test_tla.py: the Ctrl-C after that cancel,
which interrupts whatever runs, and the one after a caught interrupt).

Where the program makes sense without TLA, python3.11 runs the same lines
from the same file first (the awaits replaced by `pass`, so every line
keeps its number): apyrun's exit and traceback must be python's.
"""
import signal
import time

import pytest

from conftest import (PROMPT, REF_PYTHON, child_env, finish, read_line,
                      spawn, wait_until_blocked, write)

LOOPS = {
    "apyrun loop": [],
    "asyncio loop": ["--loop", "asyncio"],
}

# name: (TLA program, whether its main thread sleeps in the kernel once it
# has printed "ready").  Each awaits before it blocks, so the blocking code
# runs in a task step of the loop, never before the loop started.
IN_MAIN_TASK = {
    "time.sleep": ("""\
import asyncio, time
await asyncio.sleep(0)
print("ready", flush=True)
time.sleep(60)
print("not interrupted")
""", True),
    "Event.wait": ("""\
import asyncio, threading
await asyncio.sleep(0)
print("ready", flush=True)
threading.Event().wait()
print("not interrupted")
""", True),
    "computing": ("""\
import asyncio
await asyncio.sleep(0)
print("ready", flush=True)
while True:
    pass
""", False),
}


def interrupt(proc, expect_line, blocks=True):
    """Wait for expect_line and for the child to block, then Ctrl-C."""
    assert read_line(proc) == expect_line
    if blocks:
        wait_until_blocked(proc)
    else:
        time.sleep(0.3)  # well inside the loop that follows the print
    proc.send_signal(signal.SIGINT)


def interrupted(exe, script, cwd, loop_args=(), lines=("ready\n",),
                blocks=True):
    """Run script; Ctrl-C it after each of lines. Returns its Result."""
    proc = spawn([exe, *loop_args, script], cwd=cwd, env=child_env())
    for line in lines:
        interrupt(proc, line, blocks)
    # A blocking call that ignored the Ctrl-C would run for 60 s: the
    # timeout turns that into a failure.
    return finish(proc, timeout=PROMPT,
                  what=f"{exe} after {len(lines)} Ctrl-C")


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("case", IN_MAIN_TASK)
def test_first_ctrl_c_interrupts_the_main_task_where_it_blocks(
        apyrun, tmp_path, loop, case):
    source, blocks = IN_MAIN_TASK[case]
    script = tmp_path / "main.py"
    write(script, source.replace("await asyncio.sleep(0)", "pass"))
    ref = interrupted(REF_PYTHON, script, tmp_path, blocks=blocks)
    assert ref.returncode == -signal.SIGINT
    assert ref.stderr.startswith("Traceback (most recent call last):\n"
                                 f'  File "{script}", line 4, in <module>\n')
    assert ref.stderr.endswith("\nKeyboardInterrupt\n")
    write(script, source)
    assert interrupted(apyrun, script, tmp_path, LOOPS[loop],
                       blocks=blocks) == ref


# Blocking code that is not the main task's: a task it awaits, a callback.
ELSEWHERE = {
    "in a task": ("""\
import asyncio, time
async def block():
    print("ready", flush=True)
    time.sleep(60)
await asyncio.gather(block())
print("not interrupted")
""", "block"),
    "in a callback": ("""\
import asyncio, time
def block():
    print("ready", flush=True)
    time.sleep(60)
asyncio.get_running_loop().call_soon(block)
await asyncio.sleep(60)
""", "block"),
}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("case", ELSEWHERE)
def test_first_ctrl_c_interrupts_blocking_code_elsewhere(apyrun, tmp_path,
                                                         loop, case):
    source, func = ELSEWHERE[case]
    script = write(tmp_path / "main.py", source)
    r = interrupted(apyrun, script, tmp_path, LOOPS[loop])
    assert (r.returncode, r.stdout) == (-signal.SIGINT, ""), r.stderr
    # The report starts at the user's code and ends where it blocked.
    assert r.stderr.splitlines() == [
        "Traceback (most recent call last):",
        f'  File "{script}", line 4, in {func}',
        "    time.sleep(60)",
        "KeyboardInterrupt"]
