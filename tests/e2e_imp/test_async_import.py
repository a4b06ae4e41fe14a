# SPDX-License-Identifier: MIT
"""Imports while a loop runs (DESIGN 4): `await apyrun.import_module()`,
apyrun.AsyncImportError for synchronous imports, shared executions,
cycles within one chain and across tasks, and nothing half-registered
after a failure or a cancellation.  On apyrun's loop and on asyncio's."""
import textwrap

import pytest

from conftest import REF_PYTHON, child_env, run, write

LOOPS = {"apyrun loop": {}, "asyncio loop": {"APYRUN_LOOP": "asyncio"}}


@pytest.fixture(params=list(LOOPS))
def env(request):
    return child_env(LOOPS[request.param])


SLOW = """
    import asyncio
    print("slow runs")
    try:
        await asyncio.sleep({delay})
    finally:
        print("slow finally")
    VALUE = "slow"
"""


def test_await_import_module(apyrun, tmp_path, env):
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "tmod.py", """
        import asyncio
        await asyncio.sleep(0)
        X = "tla"
    """)
    write(tmp_path / "plain.py", "Y = 'plain'\n")
    write(tmp_path / "main.py", """
        import asyncio, apyrun, sys
        async def main():
            m = await apyrun.import_module('pkg.tmod')
            rel = await apyrun.import_module('.tmod', 'pkg')
            plain = await apyrun.import_module('plain')
            print(m.X, rel is m, plain.Y, m is sys.modules['pkg.tmod'])
            print(sys.modules['pkg'].tmod is m)
            try:
                await apyrun.import_module('nope_no_such')
            except ModuleNotFoundError as e:
                print(e)
        asyncio.run(main())
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "tla True plain True\nTrue\n"
                           "No module named 'nope_no_such'\n", "")


def test_sync_import_while_the_loop_runs(apyrun, tmp_path, env):
    write(tmp_path / "tmod.py", """
        import asyncio
        print("never printed")
        await asyncio.sleep(0)
    """)
    # a module without top-level await imports it: that import is
    # synchronous too, even when the module itself is awaited
    write(tmp_path / "plainmid.py", "import tmod\n")
    write(tmp_path / "main.py", """
        import asyncio, apyrun, sys
        async def main():
            try:
                import tmod
            except ImportError as e:
                print(type(e).__name__, isinstance(e, apyrun.AsyncImportError),
                      e.name, 'tmod' in sys.modules)
                print(e)
            try:
                await apyrun.import_module('plainmid')
            except apyrun.AsyncImportError as e:
                print(e.name, 'plainmid' in sys.modules, 'tmod' in sys.modules)
        asyncio.run(main())
        loop = asyncio.new_event_loop()
        def callback():
            try:
                __import__('tmod')
            except apyrun.AsyncImportError:
                print("in a callback too")
            loop.stop()
        loop.call_soon(callback)
        loop.run_forever()
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == "AsyncImportError True tmod False"
    assert "await apyrun.import_module('tmod')" in lines[1]
    assert lines[2] == "tmod False False"
    assert lines[3] == "in a callback too"


def test_concurrent_imports_share_one_execution(apyrun, tmp_path, env):
    write(tmp_path / "slow.py", SLOW.format(delay=0.05))
    write(tmp_path / "bad.py", """
        import asyncio
        await asyncio.sleep(0.02)
        raise ValueError("shared failure")
    """)
    write(tmp_path / "main.py", """
        import asyncio, apyrun, sys
        async def main():
            a, b, c = await asyncio.gather(*(apyrun.import_module('slow')
                                             for _ in range(3)))
            print(a is b is c, a.VALUE)
            r = await asyncio.gather(apyrun.import_module('bad'),
                                     apyrun.import_module('bad'),
                                     return_exceptions=True)
            print([type(e).__name__ for e in r], r[0] is r[1],
                  'bad' in sys.modules)
        asyncio.run(main())
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "slow runs\nslow finally\nTrue slow\n"
                           "['ValueError', 'ValueError'] True False\n", "")


CYCLE_X = """
    xv = 1
    {await_}
    import y
    print("x done, y.yv =", y.yv)
"""
CYCLE_Y = """
    import x
    print("y sees partial x:", x.xv, hasattr(x, "y"))
    try:
        from x import y as nope
    except ImportError as e:
        print("ImportError:", e)
    yv = 2
"""


def test_a_cycle_in_one_chain_is_python_s(apyrun, tmp_path):
    # The same modules without await under python3 give the reference.
    ref = tmp_path / "ref"
    write(ref / "x.py", CYCLE_X.format(await_="pass"))
    write(ref / "y.py", CYCLE_Y)
    write(ref / "main.py", "import x\nprint('main', x.y.yv)\n")
    expected = run([REF_PYTHON, "main.py"], cwd=ref)
    assert expected.returncode == 0 and "partially initialized" in \
        expected.stdout
    got = tmp_path / "got"
    write(got / "x.py", "import asyncio\n" + textwrap.dedent(CYCLE_X.format(
        await_="await asyncio.sleep(0)")))
    write(got / "y.py", "import asyncio\nawait asyncio.sleep(0)\n"
          + textwrap.dedent(CYCLE_Y))
    write(got / "main.py", "import x\nprint('main', x.y.yv)\n")
    r = run([apyrun, "main.py"], cwd=got)
    assert r.stdout == expected.stdout.replace("/ref/", "/got/")
    assert (r.returncode, r.stderr) == (0, "")


def test_a_cycle_across_tasks_never_deadlocks(apyrun, tmp_path, env):
    write(tmp_path / "p.py", """
        import asyncio
        PV = 'p'
        await asyncio.sleep(0.05)
        import q
        print("p done; q.QV", q.QV)
    """)
    write(tmp_path / "q.py", """
        import asyncio
        QV = 'q'
        await asyncio.sleep(0.05)
        import p
        print("q done; p.PV", p.PV)
    """)
    write(tmp_path / "main.py", """
        import asyncio, apyrun
        async def main():
            mods = await asyncio.wait_for(asyncio.gather(
                apyrun.import_module('p'), apyrun.import_module('q')), 10)
            print([m.__name__ for m in mods])
        asyncio.run(main())
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "q done; p.PV p\np done; q.QV q\n['p', 'q']\n", "")


def test_failed_or_cancelled_imports_leave_nothing(apyrun, tmp_path, env):
    write(tmp_path / "slow.py", SLOW.format(delay=30))
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "bad.py", """
        import asyncio
        await asyncio.sleep(0)
        raise KeyError("bad")
    """)
    write(tmp_path / "main.py", """
        import asyncio, apyrun, sys
        import pkg
        async def main():
            try:
                await asyncio.wait_for(apyrun.import_module('slow'), 0.05)
            except asyncio.TimeoutError:
                print("timed out;", 'slow' in sys.modules)
            try:
                await apyrun.import_module('pkg.bad')
            except KeyError:
                pass
            print('pkg.bad' in sys.modules, hasattr(pkg, 'bad'))
            first = asyncio.create_task(apyrun.import_module('slow'))
            await asyncio.sleep(0.01)
            second = asyncio.create_task(apyrun.import_module('slow'))
            await asyncio.sleep(0.01)
            first.cancel()
            try:
                await second
            except apyrun.AsyncImportError as e:
                print("second:", e)
            print('slow' in sys.modules, first.cancelled())
        asyncio.run(main())
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(
        0, "slow runs\nslow finally\ntimed out; False\nFalse False\n"
           "slow runs\nslow finally\nsecond: import of 'slow' was cancelled "
           "in the task that ran it\nFalse True\n", "")


def test_sync_import_from_a_thread_while_the_loop_runs(apyrun, tmp_path,
                                                       env):
    write(tmp_path / "tmod.py", """
        import asyncio
        await asyncio.sleep(0.01)
        X = 'from thread'
    """)
    write(tmp_path / "slow.py", SLOW.format(delay=0.2))
    write(tmp_path / "main.py", """
        import asyncio, threading, apyrun
        got = []
        def worker(name):
            mod = __import__(name)   # no loop in this thread
            got.append(getattr(mod, 'X', None) or mod.VALUE)
        async def main():
            t = threading.Thread(target=worker, args=('tmod',))
            t.start()
            while t.is_alive():
                await asyncio.sleep(0.01)
            # slow's body runs in this thread's loop: the thread waits
            # for it instead of seeing a partial module
            importing = asyncio.create_task(apyrun.import_module('slow'))
            await asyncio.sleep(0.05)
            t = threading.Thread(target=worker, args=('slow',))
            t.start()
            await importing
            while t.is_alive():
                await asyncio.sleep(0.01)
            print(got)
        asyncio.run(main())
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "slow runs\nslow finally\n"
                           "['from thread', 'slow']\n", "")


def test_statement_order_with_awaited_imports_in_tasks(apyrun, tmp_path,
                                                       env):
    # A module-level import in a TLA module awaits a body another task is
    # running, then goes on: statements stay in order.
    write(tmp_path / "slow.py", SLOW.format(delay=0.05))
    write(tmp_path / "user.py", """
        import asyncio
        print("user before")
        await asyncio.sleep(0)
        import slow
        print("user after", slow.VALUE)
    """)
    # a module without top-level await cannot wait: its import says so
    write(tmp_path / "plainuser.py", """
        import slow
    """)
    write(tmp_path / "main.py", """
        import asyncio, apyrun, sys
        async def main():
            t = asyncio.create_task(apyrun.import_module('slow'))
            await asyncio.sleep(0.01)
            try:
                await apyrun.import_module('plainuser')
            except apyrun.AsyncImportError as e:
                print("plainuser:", str(e).split(";")[0])
            user = await apyrun.import_module('user')
            await t
            print("main", user.slow is t.result(), 'plainuser' in sys.modules)
        asyncio.run(main())
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "slow runs\nplainuser: module 'slow' is being "
                           "imported with top-level await by another task, "
                           "and a synchronous import cannot wait for it\n"
                           "user before\nslow finally\n"
                           "user after slow\nmain True False\n", "")
