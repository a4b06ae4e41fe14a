# SPDX-License-Identifier: MIT
"""Top-level await in scripts (DESIGN 2).

python3.11 cannot run these case files, so each expectation is exact and,
where it is meaningful, also checked against the same program under
python3.11 wrapped in `async def main(): ...; asyncio.run(main())`: that
guards the test itself (the expectation is asyncio.run's behaviour).
"""
import re
import signal
import textwrap

import pytest

from conftest import (PROMPT, REF_PYTHON, Result, assert_like_python,
                      child_env, finish, probe, read_line, run, spawn,
                      wait_until_blocked, write)


def dedent(text):
    return textwrap.dedent(text).lstrip("\n")


def wrap_in_asyncio_run(source):
    """The TLA source as the body of main() under asyncio.run."""
    body = textwrap.indent(dedent(source), "    ")
    return (f"import asyncio\n\nasync def main():\n{body}\n"
            "asyncio.run(main())\n")


def check_against_asyncio_run(tmp_path, source, expected, stderr=True):
    """The wrapped program under python3.11 gives `expected` (a guard).

    stderr=False: compare only the exit code and stdout (asyncio.run's
    tracebacks show its own frames, which apyrun must not).
    """
    ref = write(tmp_path / "ref" / "wrapped.py", wrap_in_asyncio_run(source))
    r = run([REF_PYTHON, ref], cwd=tmp_path)
    if not stderr:
        r.stderr = expected.stderr
    assert r == expected, "asyncio.run disagrees with the test's expectation"


# The two loops a TLA program may run on: apyrun's (default) and asyncio's.
LOOPS = {
    "apyrun loop": ([], {}),
    "asyncio loop": (["--loop", "asyncio"], {}),
}

# Every way to choose one: (apyrun options, environment, expected loop).
LOOP_CHOICES = {
    "default": ([], {}, "apyrun True\n"),
    "--loop apyrun": (["--loop", "apyrun"], {}, "apyrun True\n"),
    "--loop asyncio": (["--loop", "asyncio"], {},
                       "asyncio.unix_events False\n"),
    "APYRUN_LOOP=asyncio": ([], {"APYRUN_LOOP": "asyncio"},
                            "asyncio.unix_events False\n"),
}


def run_tla(apyrun, tmp_path, source, *, loop="apyrun loop", timeout=None):
    """Write source to tmp_path/main.py and run it: (result, its path)."""
    loop_args, loop_env = LOOPS[loop]
    script = write(tmp_path / "main.py", source)
    kw = {} if timeout is None else {"timeout": timeout}
    r = run([apyrun, *loop_args, script], cwd=tmp_path,
            env=child_env(loop_env), **kw)
    return r, script


# -- every TLA construct, from every kind of target ---------------------------

CONSTRUCTS = {
    "await": ("""\
        import asyncio
        async def double(x):
            await asyncio.sleep(0)
            return 2 * x
        print(await double(21))
        """, "42\n"),
    "async for": ("""\
        import asyncio
        async def count(n):
            for i in range(n):
                await asyncio.sleep(0)
                yield i
        async for i in count(3):
            print(i)
        """, "0\n1\n2\n"),
    "async with": ("""\
        import contextlib
        @contextlib.asynccontextmanager
        async def managed():
            print("enter")
            yield "value"
            print("exit")
        async with managed() as v:
            print(v)
        """, "enter\nvalue\nexit\n"),
    "async comprehension": ("""\
        import asyncio
        async def count(n):
            for i in range(n):
                await asyncio.sleep(0)
                yield i
        print([i * i async for i in count(4)])
        print({i: i async for i in count(2)})
        """, "[0, 1, 4, 9]\n{0: 0, 1: 1}\n"),
    "await in comprehension": ("""\
        import asyncio
        async def double(x):
            await asyncio.sleep(0)
            return 2 * x
        print([await double(i) for i in range(3)])
        """, "[0, 2, 4]\n"),
    "await in blocks": ("""\
        import asyncio
        async def main():
            return "main ran"
        if __name__ == "__main__":
            try:
                print(await main())
            finally:
                for delay in (0, 0.01):
                    await asyncio.sleep(delay)
                print("finally ran")
        """, "main ran\nfinally ran\n"),
    "docstring and __future__": ('''\
        """The module docstring."""
        from __future__ import annotations
        import asyncio
        def f(x: NotDefinedAnywhere): pass
        await asyncio.sleep(0)
        print(__doc__, f.__annotations__)
        ''', "The module docstring. {'x': 'NotDefinedAnywhere'}\n"),
}

TLA_TARGETS = ["file", "-c", "- (stdin)", "stdin without -", "-m module",
               "-m package"]


def run_target(exe, tmp_path, target, source, args=(), options=(),
               env=None):
    """Run source as the given kind of target: exe [options] TARGET args."""
    source = dedent(source)
    write(tmp_path / "mod.py", source)
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "__main__.py", source)
    argv, stdin = {
        "file": (["mod.py"], None),
        "-c": (["-c", source], None),
        "- (stdin)": (["-"], source),
        "stdin without -": ([], source),
        "-m module": (["-m", "mod"], None),
        "-m package": (["-m", "pkg"], None),
    }[target]
    if target == "stdin without -":
        assert not args, "stdin without - takes no arguments"
    return run([exe, *options, *argv, *args], cwd=tmp_path, input=stdin,
               env=env)


# A __future__ import cannot move into main(): that one has no guard.
@pytest.mark.parametrize("construct", [
    c for c in CONSTRUCTS if "__future__" not in CONSTRUCTS[c][0]])
def test_construct_expectation_is_asyncio_runs(tmp_path, construct):
    """Guards test_construct_runs: its expected output is asyncio.run's."""
    source, stdout = CONSTRUCTS[construct]
    check_against_asyncio_run(tmp_path, source, Result(0, stdout, ""))


@pytest.mark.parametrize("target", TLA_TARGETS)
@pytest.mark.parametrize("construct", CONSTRUCTS)
def test_construct_runs(apyrun, tmp_path, construct, target):
    source, stdout = CONSTRUCTS[construct]
    r = run_target(apyrun, tmp_path, target, source)
    assert r == Result(0, stdout, "")


@pytest.mark.parametrize("target", TLA_TARGETS)
def test_tla_target_sees_what_python_shows(apyrun, tmp_path, target):
    # Without its await, the probe is plain python: python3.11 says what
    # the TLA version must see (argv, sys.path, __name__, __file__, ...).
    args = () if target == "stdin without -" else ("x", "--loop", "-c")
    plain = "import asyncio\n" + probe(loader=False)
    tla = "import asyncio\nawait asyncio.sleep(0)\n" + probe(loader=False)
    ref = run_target(REF_PYTHON, tmp_path, target, plain, args)
    assert ref.returncode == 0, ref.stderr
    got = run_target(apyrun, tmp_path, target, tla, args)
    assert got == ref


LOOP_PROBE = """\
import asyncio, apyrun
loop = asyncio.get_running_loop()
await asyncio.sleep(0)
print(type(loop).__module__, isinstance(loop, apyrun.Loop))
"""


@pytest.mark.parametrize("target", ["file", "-c", "- (stdin)", "-m module"])
@pytest.mark.parametrize("choice", LOOP_CHOICES)
def test_running_loop(apyrun, tmp_path, target, choice):
    options, env, expected = LOOP_CHOICES[choice]
    r = run_target(apyrun, tmp_path, target, LOOP_PROBE, options=options,
                   env=child_env(env))
    assert r == Result(0, expected, "")


NO_TLA = """\
import asyncio

try:
    asyncio.get_running_loop()
except RuntimeError as e:
    print("module level:", e)

async def main():
    await asyncio.sleep(0)
    return asyncio.get_running_loop() is not None

print("asyncio.run:", asyncio.run(main()))
print("asyncio.run again:", asyncio.run(main()))
"""


def test_plain_script_runs_with_no_loop(apyrun, tmp_path):
    write(tmp_path / "plain.py", NO_TLA)
    assert_like_python(apyrun, ["plain.py"], cwd=tmp_path, expected=Result(
        0, "module level: no running event loop\nasyncio.run: True\n"
           "asyncio.run again: True\n", ""))


def test_tla_script_starts_apyrun_subprocess(apyrun, tmp_path):
    r, _ = run_tla(apyrun, tmp_path, """\
        import asyncio, subprocess, sys
        child = subprocess.run(
            [sys.executable, "-c",
             "import asyncio; await asyncio.sleep(0); print('child ran')"],
            capture_output=True, text=True)
        await asyncio.sleep(0)
        print(child.returncode, child.stdout, child.stderr, sep="|")
        """)
    assert r == Result(0, "0|child ran\n|\n", "")


# -- asyncio.run semantics ----------------------------------------------------

SEMANTICS = {
    "leftover tasks are cancelled": ("""\
        import asyncio
        async def worker():
            try:
                await asyncio.sleep(30)
            finally:
                print("worker cancelled")
        task = asyncio.create_task(worker())
        await asyncio.sleep(0)
        print("main done")
        """, Result(0, "main done\nworker cancelled\n", "")),
    "async generators are finalised": ("""\
        import asyncio
        async def numbers():
            try:
                yield 1
                yield 2
            finally:
                await asyncio.sleep(0)  # only possible on a running loop
                print("generator finalised")
        # Held by the module, so it is still alive when the main coroutine
        # ends (inside asyncio.run's main() too).
        import __main__
        __main__.gen = numbers()
        print(await __main__.gen.__anext__())
        print("main done")
        """, Result(0, "1\nmain done\ngenerator finalised\n", "")),
    "default executor is shut down": ("""\
        import asyncio, time
        def work():
            time.sleep(0.3)
            # The loop waits for its executor before it closes.
            print("work done, loop closed:", loop.is_closed(), flush=True)
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, work)
        await asyncio.sleep(0)
        print("main done", flush=True)
        """, Result(0, "main done\nwork done, loop closed: False\n", "")),
    "sys.exit(3)": ("""\
        import asyncio, sys
        await asyncio.sleep(0)
        sys.exit(3)
        """, Result(3, "", "")),
    "sys.exit('msg')": ("""\
        import asyncio, sys
        await asyncio.sleep(0)
        sys.exit("fatal: no input")
        """, Result(1, "", "fatal: no input\n")),
}


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("case", SEMANTICS)
def test_asyncio_run_semantics(apyrun, tmp_path, case, loop):
    source, expected = SEMANTICS[case]
    check_against_asyncio_run(tmp_path, source, expected)
    r, _ = run_tla(apyrun, tmp_path, source, loop=loop)
    assert r == expected


def frames(stderr):
    """The files of the traceback frames in stderr, outermost first."""
    return re.findall(r'^  File "([^"]*)", line \d+', stderr, re.M)


# asyncio's runner and loop machinery: never in a TLA traceback.
MACHINERY = re.compile(r"/asyncio/(runners|base_events|events|"
                       r"selector_events|unix_events)\.py$")


def assert_starts_at_user_code(stderr, script):
    """The traceback (if any) starts at the script; no runner or loop
    frames."""
    files = frames(stderr)
    assert files[:1] in ([], [str(script)]), stderr
    assert not [f for f in files if MACHINERY.search(f)], stderr
    assert all(f == str(script) or f.startswith("/usr/lib/python3.11/")
               for f in files), f"apyrun-internal frames?\n{stderr}"


def traceback_of(*frames, last):
    lines = ["Traceback (most recent call last):"]
    for file, line, name, text in frames:
        lines.append(f'  File "{file}", line {line}, in {name}')
        if text:
            lines.append(f"    {text}")
    return "\n".join(lines + [last]) + "\n"


EXCEPTION_SOURCE = """\
import asyncio
async def inner():
    await asyncio.sleep(0)
    raise ValueError("boom")
print("before")
await inner()
print("after")
"""

TASK_EXCEPTION_SOURCE = """\
import asyncio
async def inner():
    await asyncio.sleep(0)
    raise ValueError("boom")
task = asyncio.create_task(inner())
await task
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_exception_traceback_shows_only_user_frames(apyrun, tmp_path, loop):
    r, script = run_tla(apyrun, tmp_path, EXCEPTION_SOURCE, loop=loop)
    assert frames(r.stderr) == [str(script)] * 2, r.stderr
    assert r == Result(1, "before\n", traceback_of(
        (script, 6, "<module>", "await inner()"),
        (script, 4, "inner", 'raise ValueError("boom")'),
        last="ValueError: boom"))


@pytest.mark.parametrize("loop", LOOPS)
def test_exception_in_awaited_task(apyrun, tmp_path, loop):
    r, script = run_tla(apyrun, tmp_path, TASK_EXCEPTION_SOURCE, loop=loop)
    assert frames(r.stderr) == [str(script)] * 2, r.stderr
    assert r == Result(1, "", traceback_of(
        (script, 6, "<module>", "await task"),
        (script, 4, "inner", 'raise ValueError("boom")'),
        last="ValueError: boom"))


def test_exception_in_c_code(apyrun, tmp_path):
    r = run([apyrun, "-c", EXCEPTION_SOURCE], cwd=tmp_path)
    assert frames(r.stderr) == ["<string>"] * 2, r.stderr
    assert r == Result(1, "before\n", traceback_of(
        ("<string>", 6, "<module>", None), ("<string>", 4, "inner", None),
        last="ValueError: boom"))


@pytest.mark.parametrize("loop", LOOPS)
def test_keyboard_interrupt_raised_kills_by_sigint(apyrun, tmp_path, loop):
    source = """\
        import asyncio
        await asyncio.sleep(0)
        raise KeyboardInterrupt
        """
    r, script = run_tla(apyrun, tmp_path, source, loop=loop)
    expected = Result(-signal.SIGINT, "", traceback_of(
        (script, 3, "<module>", "raise KeyboardInterrupt"),
        last="KeyboardInterrupt"))
    check_against_asyncio_run(tmp_path, source, expected, stderr=False)
    assert r == expected


# -- Ctrl-C -------------------------------------------------------------------

CTRL_C = """\
import asyncio
print("ready", flush=True)
try:
    await asyncio.sleep(30)
finally:
    print("finally ran", flush=True)
print("after the try")
"""

CTRL_C_TWICE = """\
import asyncio, time
print("ready", flush=True)
try:
    await asyncio.sleep(30)
finally:
    print("cleaning up", flush=True)
    CLEANUP
    print("cleanup finished")
"""

# Put before CTRL_C: a Ctrl-C that interrupts blocking code, caught.
CAUGHT_BEFORE = {
    "first": "",
    "after a caught interrupt": """\
import time
print("blocking", flush=True)
try:
    time.sleep(30)
except KeyboardInterrupt:
    pass
""",
}

# The cleanup awaits, or blocks: the second Ctrl-C interrupts either.
CLEANUPS = ["await asyncio.sleep(30)", "time.sleep(30)"]


def start(exe, script, cwd, loop="apyrun loop"):
    loop_args, loop_env = LOOPS[loop]
    return spawn([exe, *loop_args, script], cwd=cwd, env=child_env(loop_env))


def ctrl_c(proc, expect_line):
    assert read_line(proc) == expect_line
    wait_until_blocked(proc)
    proc.send_signal(signal.SIGINT)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("before", CAUGHT_BEFORE)
def test_ctrl_c_cancels_main_then_dies_by_sigint(apyrun, tmp_path, loop,
                                                 before):
    # As under asyncio.run: the finally runs, then death by SIGINT. An
    # interrupt of blocking code (not asyncio.run's rule: test_ctrl_c.py)
    # cancelled nothing, so a later Ctrl-C still cancels the main task.
    ref = start(REF_PYTHON, write(tmp_path / "ref" / "wrapped.py",
                                  wrap_in_asyncio_run(CTRL_C)), tmp_path)
    ctrl_c(ref, "ready\n")
    r = finish(ref, timeout=PROMPT, what="asyncio.run after Ctrl-C")
    assert (r.returncode, r.stdout) == (-signal.SIGINT, "finally ran\n")
    script = write(tmp_path / "main.py", CAUGHT_BEFORE[before] + CTRL_C)
    proc = start(apyrun, script, tmp_path, loop)
    if CAUGHT_BEFORE[before]:
        ctrl_c(proc, "blocking\n")
    ctrl_c(proc, "ready\n")
    r = finish(proc, timeout=PROMPT, what="apyrun after Ctrl-C")
    assert (r.returncode, r.stdout) == (-signal.SIGINT, "finally ran\n")
    assert r.stderr.splitlines()[-1:] == ["KeyboardInterrupt"], r.stderr
    assert_starts_at_user_code(r.stderr, script)


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("cleanup", CLEANUPS)
def test_second_ctrl_c_interrupts_the_cleanup(apyrun, tmp_path, loop,
                                              cleanup):
    source = CTRL_C_TWICE.replace("CLEANUP", cleanup)
    ref = start(REF_PYTHON, write(tmp_path / "ref" / "wrapped.py",
                                  wrap_in_asyncio_run(source)), tmp_path)
    ctrl_c(ref, "ready\n")
    ctrl_c(ref, "cleaning up\n")
    r = finish(ref, timeout=PROMPT, what="asyncio.run after Ctrl-C twice")
    assert (r.returncode, r.stdout) == (-signal.SIGINT, "")
    proc = start(apyrun, write(tmp_path / "main.py", source), tmp_path,
                 loop)
    ctrl_c(proc, "ready\n")
    ctrl_c(proc, "cleaning up\n")
    r = finish(proc, timeout=PROMPT, what="apyrun after a second Ctrl-C")
    assert (r.returncode, r.stdout) == (-signal.SIGINT, "")
    assert r.stderr.splitlines()[-1:] == ["KeyboardInterrupt"], r.stderr


# -- a TLA program that can never finish --------------------------------------

NEVER = {
    "bare Future": ("""\
        import asyncio
        print("start", flush=True)
        await asyncio.Future()
        print("never")
        """, [3]),
    "Event nobody sets": ("""\
        import asyncio
        ready = asyncio.Event()
        print("start", flush=True)
        await ready.wait()
        """, [4]),
    "task waiting on an Event": ("""\
        import asyncio
        ready = asyncio.Event()
        async def waiter():
            await ready.wait()
        print("start", flush=True)
        await asyncio.create_task(waiter())
        """, [4, 6]),
}


@pytest.mark.parametrize("case", NEVER)
def test_never_completed_is_reported(apyrun, tmp_path, case):
    source, lines = NEVER[case]
    r, script = run_tla(apyrun, tmp_path, source, timeout=PROMPT)
    assert r.returncode == 1, r
    assert r.stdout == "start\n"
    assert "top-level await never completed" in r.stderr
    where = "|".join(str(n) for n in lines)
    assert re.search(rf'{re.escape(str(script))}(", line |:)({where})\b',
                     r.stderr), f"no {script} line {lines} in:\n{r.stderr}"


FINISHES_LATER = {
    "to_thread": """\
        import asyncio, time
        await asyncio.to_thread(time.sleep, 0.5)
        """,
    "sleep": """\
        import asyncio
        await asyncio.sleep(0.3)
        """,
    "executor job": """\
        import asyncio, time
        await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.5)
        """,
    "call_later": """\
        import asyncio
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.3, future.set_result, None)
        await future
        """,
    "Event set by a task": """\
        import asyncio
        ready = asyncio.Event()
        async def setter():
            await asyncio.sleep(0.3)
            ready.set()
        task = asyncio.create_task(setter())
        await ready.wait()
        """,
    "thread calling back": """\
        import asyncio, threading, time
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        def later():
            time.sleep(0.5)
            loop.call_soon_threadsafe(future.set_result, None)
        threading.Thread(target=later).start()
        await future
        """,
}


@pytest.mark.parametrize("case", FINISHES_LATER)
def test_pending_work_is_not_reported(apyrun, tmp_path, case):
    source = dedent(FINISHES_LATER[case]) + 'print("done")\n'
    check_against_asyncio_run(tmp_path, source, Result(0, "done\n", ""))
    r, _ = run_tla(apyrun, tmp_path, source)
    assert r == Result(0, "done\n", "")


# -- what is not TLA ----------------------------------------------------------

@pytest.mark.parametrize("source", [
    'print("a"\nx = 1\n',
    "import asyncio\nawait asyncio.sleep(0)\nx = = 1\n",
    "import asyncio\nasync def f():\n    await asyncio.sleep(0)\n  x = 1\n",
    "import asyncio\ndef f():\n    await asyncio.sleep(0)\n",
    "import asyncio\nyield 1\n",
], ids=["unclosed paren", "await then bad syntax", "bad indent",
        "await in a plain def", "yield at module level"])
def test_syntax_error_is_pythons(apyrun, tmp_path, source):
    write(tmp_path / "bad.py", source)
    got = assert_like_python(apyrun, ["bad.py"], cwd=tmp_path)
    assert got.returncode == 1
    assert re.search(r"^(SyntaxError|IndentationError): ",
                     got.stderr.splitlines()[-1])
    got = assert_like_python(apyrun, ["-c", source], cwd=tmp_path)
    assert got.returncode == 1
