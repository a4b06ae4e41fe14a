# SPDX-License-Identifier: MIT
"""Modules and notebooks with top-level await, imported (DESIGN 4):
from code with no running loop (the body runs on apyrun's one persistent
loop), at the module level of TLA code (the import awaits the module, in
statement order), with tracebacks at the right lines; python3 still sees
a SyntaxError.  Each test runs on apyrun's loop and on asyncio's."""
import pytest

from conftest import REF_PYTHON, child_env, code, run, write, write_nb

LOOPS = {"apyrun loop": {}, "asyncio loop": {"APYRUN_LOOP": "asyncio"}}


@pytest.fixture(params=list(LOOPS))
def env(request):
    return child_env(LOOPS[request.param])


def test_plain_script_imports_a_tla_module(apyrun, tmp_path, env):
    write(tmp_path / "tmod.py", """
        import asyncio
        print("body starts")
        await asyncio.sleep(0.01)
        VALUE = await asyncio.sleep(0, result=42)
        print("body ends")
    """)
    write(tmp_path / "main.py", """
        import asyncio
        print("before")
        import tmod
        print("after", tmod.VALUE)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            print("no loop runs now")
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "before\nbody starts\nbody ends\nafter 42\n"
                           "no loop runs now\n", "")


def test_what_the_module_starts_stays_valid(apyrun, tmp_path, env):
    # tasks and loop-bound objects outlive the import: they live on the
    # one persistent loop, which later imports (and the thread's current
    # loop) share; leftover tasks are cancelled at exit, quietly.
    write(tmp_path / "server.py", """
        import asyncio
        queue = asyncio.Queue()
        lock = asyncio.Lock()
        async def worker():
            while True:
                item = await queue.get()
                async with lock:
                    replies.put_nowait(item * 2)
        replies = asyncio.Queue()
        task = asyncio.create_task(worker())
        forever = asyncio.create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
    """)
    write(tmp_path / "client.py", """
        import server
        await server.queue.put(21)
        ANSWER = await server.replies.get()
    """)
    write(tmp_path / "main.py", """
        import asyncio, server, client
        print(client.ANSWER, server.task.done())
        loop = asyncio.get_event_loop()
        print(loop is server.task.get_loop())
        server.queue.put_nowait(5)
        print(loop.run_until_complete(server.replies.get()))
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "42 False\nTrue\n10\n", "")


def test_module_level_imports_await_in_statement_order(apyrun, tmp_path,
                                                       env):
    write(tmp_path / "pkg" / "__init__.py", """
        import asyncio
        await asyncio.sleep(0)
        print("pkg")
    """)
    write(tmp_path / "pkg" / "a.py", """
        import asyncio
        print("a starts")
        await asyncio.sleep(0.01)
        A = "a"
        print("a ends")
    """)
    write(tmp_path / "pkg" / "b.py", """
        import asyncio
        await asyncio.sleep(0)
        B = "b"
        print("b")
    """)
    write(tmp_path / "pkg" / "top.py", """
        import asyncio
        print("top 1")
        from . import a
        print("top 2", a.A)
        try:
            import pkg.missing
        except ImportError as e:
            print("top 3", type(e).__name__)
        if True:
            from .b import B
        print("top 4", B)
        await asyncio.sleep(0)
        def later():
            import pkg.b
            return pkg.b.B
        print("top 5", later())
    """)
    write(tmp_path / "main.py", "import pkg.top\nprint('main')\n")
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "pkg\ntop 1\na starts\na ends\ntop 2 a\n"
                           "top 3 ModuleNotFoundError\nb\ntop 4 b\n"
                           "top 5 b\nmain\n", "")


def test_a_policy_whose_local_has_no_loop_yet(apyrun, tmp_path, env):
    # The persistent loop's lookup reads policy._local._loop; a policy
    # whose _local is a bare threading.local (no _loop until one is set)
    # has no current loop, not an error without an exception
    # (SystemError).
    write(tmp_path / "tmod.py", """
        import asyncio
        VALUE = await asyncio.sleep(0, result=42)
    """)
    write(tmp_path / "main.py", """
        import asyncio, threading
        asyncio.get_event_loop_policy()._local = threading.local()
        import tmod
        print(tmod.VALUE)
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "42\n", "")


def test_a_tla_script_imports_tla_modules(apyrun, tmp_path, env):
    write(tmp_path / "dep.py", """
        import asyncio
        await asyncio.sleep(0)
        LOOP = asyncio.get_running_loop()
    """)
    write(tmp_path / "main.py", """
        import asyncio
        await asyncio.sleep(0)
        import dep
        print(dep.LOOP is asyncio.get_running_loop())
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "True\n", "")


def test_dash_m_runs_a_tla_module_in_a_tla_package(apyrun, tmp_path, env):
    write(tmp_path / "pk" / "__init__.py", """
        import asyncio
        LOOP = asyncio.get_running_loop()
        BG = asyncio.create_task(asyncio.sleep(0.01, "bg done"))
        await asyncio.sleep(0)
    """)
    write(tmp_path / "pk" / "m.py", """
        import asyncio, pk, sys
        print(__name__, sys.argv[1:], asyncio.get_running_loop() is pk.LOOP)
        print(await pk.BG)
    """)
    r = run([apyrun, "-m", "pk.m", "x"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "__main__ ['x'] True\nbg done\n", "")


def test_traceback_from_a_nested_tla_import(apyrun, tmp_path, env):
    write(tmp_path / "a2.py", """
        import asyncio
        await asyncio.sleep(0)
        import bad
    """)
    write(tmp_path / "bad.py", """
        import asyncio
        await asyncio.sleep(0)
        raise ValueError("boom")
    """)
    write(tmp_path / "main.py", "import a2\n")
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (
        "Traceback (most recent call last):\n"
        f'  File "{tmp_path}/main.py", line 1, in <module>\n'
        "    import a2\n"
        f'  File "{tmp_path}/a2.py", line 3, in <module>\n'
        "    import bad\n"
        f'  File "{tmp_path}/bad.py", line 3, in <module>\n'
        '    raise ValueError("boom")\n'
        "ValueError: boom\n")


def test_a_tla_notebook_imported_from_plain_code(apyrun, tmp_path, env):
    write_nb(tmp_path / "anb.ipynb",
             code("import asyncio"),
             code("await asyncio.sleep(0)\nimport dep"),
             code("DONE = dep.X + 1"))
    write(tmp_path / "dep.py", """
        import asyncio
        await asyncio.sleep(0)
        X = 1
    """)
    write(tmp_path / "main.py", "import anb\nprint(anb.DONE)\n")
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "2\n", "")


def test_python_still_reports_the_syntax_error(apyrun, tmp_path):
    write(tmp_path / "tmod.py", """
        import asyncio
        await asyncio.sleep(0)
        X = 1
    """)
    write(tmp_path / "main.py", "import tmod\nprint(tmod.X)\n")
    env = child_env()  # bytecode caching on
    assert run([apyrun, "main.py"], cwd=tmp_path, env=env).stdout == "1\n"
    assert not (tmp_path / "__pycache__" / "tmod.cpython-311.pyc").exists()
    r = run([REF_PYTHON, "main.py"], cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert r.stderr.endswith("SyntaxError: 'await' outside function\n")


def test_real_syntax_errors_stay_python_s(apyrun, tmp_path):
    write(tmp_path / "broken.py", "x = (1 +\nawait y\n")
    write(tmp_path / "main.py", "import broken\n")
    got = run([apyrun, "main.py"], cwd=tmp_path)
    ref = run([REF_PYTHON, "main.py"], cwd=tmp_path)
    assert (got.returncode, got.stdout) == (ref.returncode, ref.stdout)
    assert (got.returncode, got.stdout) == (1, "")
    assert got.stderr == ref.stderr


def test_a_body_that_never_completes_is_reported(apyrun, tmp_path):
    write(tmp_path / "stuck.py", """
        import asyncio
        await asyncio.get_running_loop().create_future()
    """)
    write(tmp_path / "main.py", "import stuck\n")
    r = run([apyrun, "main.py"], cwd=tmp_path, timeout=20)
    assert r.returncode == 1
    assert "never" in r.stderr and "stuck.py:2" in r.stderr


def test_reload_of_a_tla_module(apyrun, tmp_path, env):
    write(tmp_path / "tmod.py", """
        import asyncio
        await asyncio.sleep(0)
        COUNT = globals().get('COUNT', 0) + 1
    """)
    write(tmp_path / "main.py", """
        import importlib, tmod
        importlib.reload(tmod)
        print(tmod.COUNT)
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "2\n", "")


def test_notebook_cells_import_tla_modules(apyrun, tmp_path, env):
    # Every cell of `apyrun nb.ipynb` runs in the loop (as in a kernel), so
    # a module-level import in any cell awaits a TLA module.
    write(tmp_path / "dep.py", """
        import asyncio
        await asyncio.sleep(0)
        LOOP = asyncio.get_running_loop()
        BG = asyncio.create_task(asyncio.sleep(0.01, "bg done"))
    """)
    write(tmp_path / "other.py", """
        import asyncio
        await asyncio.sleep(0)
        X = "other"
    """)
    write_nb(tmp_path / "main.ipynb",
             code("import asyncio\nimport dep\nprint(dep.LOOP is "
                  "asyncio.get_running_loop())"),
             code("await asyncio.sleep(0)\nfrom other import X\nprint(X)"),
             code("print(await dep.BG)"))
    r = run([apyrun, "main.ipynb"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "True\nother\nbg done\n", "")
