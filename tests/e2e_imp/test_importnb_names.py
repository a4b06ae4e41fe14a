# SPDX-License-Identifier: MIT
"""importnb-style names (DESIGN 4): in a module name with `_`, `__`
matches any run of characters and `_` one character, against notebook
file names; the newest match wins; the module is registered under both
names."""
import os

from conftest import code, markdown, run, write, write_nb


def seed_notebook(path):
    """The seed's example: 2022-11-12-async-import.ipynb."""
    return write_nb(path,
                    markdown("# Importing a notebook with top-level await"),
                    code("import asyncio\n\n"
                         "async def dream():\n"
                         "    await asyncio.sleep(0.01)\n"
                         "    return 'dream on'"),
                    code("print(catcher := await dream())"))


def test_seed_example(apyrun, tmp_path):
    seed_notebook(tmp_path / "2022-11-12-async-import.ipynb")
    write(tmp_path / "main.py", """
        import __11_12_async_import
        assert __11_12_async_import.catcher == "dream on"
        print("catcher ==", repr(__11_12_async_import.catcher))
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "dream on\ncatcher == 'dream on'\n", "")


def test_registered_under_both_names(apyrun, tmp_path):
    write_nb(tmp_path / "my-notebook.ipynb", "VALUE = 7")
    write(tmp_path / "main.py", """
        import sys, importlib
        import my_notebook
        real = sys.modules['my-notebook']
        print(real is my_notebook, sys.modules['my_notebook'] is my_notebook)
        print(my_notebook.__name__, my_notebook.__file__.rsplit('/', 1)[-1])
        print(importlib.import_module('my-notebook') is my_notebook)
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "True True\nmy_notebook my-notebook.ipynb\nTrue\n",
                        "")


def test_the_newest_match_wins(apyrun, tmp_path):
    old = write_nb(tmp_path / "2021-01-01-report.ipynb", "WHICH = 'old'")
    new = write_nb(tmp_path / "2023-05-06-report.ipynb", "WHICH = 'new'")
    os.utime(old, (1_600_000_000, 1_600_000_000))
    os.utime(new, (1_700_000_000, 1_700_000_000))
    write(tmp_path / "main.py", "import __report\nprint(__report.WHICH)\n")
    assert run([apyrun, "main.py"], cwd=tmp_path).stdout == "new\n"
    os.utime(old, (1_800_000_000, 1_800_000_000))
    assert run([apyrun, "main.py"], cwd=tmp_path).stdout == "old\n"


def test_underscore_is_one_character_double_is_any_run(apyrun, tmp_path):
    write_nb(tmp_path / "a-b.ipynb", "WHO = 'a-b'")
    write_nb(tmp_path / "x--y.ipynb", "WHO = 'x--y'")
    write_nb(tmp_path / "p.q.r.ipynb", "WHO = 'p.q.r'")
    write(tmp_path / "main.py", """
        def attempt(name):
            try:
                return __import__(name).WHO
            except ModuleNotFoundError as e:
                return type(e).__name__
        for name in ['a_b', 'x_y', 'x__y', 'x___y', 'p_q_r', 'p__r', '__q__',
                     'a_b_']:
            print(name, attempt(name))
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "a_b a-b", "x_y ModuleNotFoundError", "x__y x--y", "x___y x--y",
        "p_q_r p.q.r", "p__r p.q.r", "__q__ p.q.r",
        "a_b_ ModuleNotFoundError"]


def test_only_notebooks_and_only_names_with_underscores(apyrun, tmp_path):
    write(tmp_path / "a-b.py", "WHO = 'py'\n")
    write_nb(tmp_path / "nounderscore.ipynb", "WHO = 'nb'")
    write(tmp_path / "main.py", """
        for name in ['a_b', 'nounderscor']:
            try:
                __import__(name)
            except ModuleNotFoundError as e:
                print(e)
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "No module named 'a_b'\n"
                           "No module named 'nounderscor'\n", "")


def test_in_a_package_and_first_directory_wins(apyrun, tmp_path):
    write(tmp_path / "pkg" / "__init__.py", "")
    write_nb(tmp_path / "pkg" / "data-prep.ipynb",
             "from . import __version\nWHO = 'pkg ' + __version.V")
    write_nb(tmp_path / "pkg" / "0.1-version.ipynb", "V = '0.1'")
    write_nb(tmp_path / "first" / "t-1.ipynb", "WHO = 'first'")
    write_nb(tmp_path / "second" / "t-2.ipynb", "WHO = 'second'")
    os.utime(tmp_path / "first" / "t-1.ipynb", (1, 1))
    write(tmp_path / "main.py", """
        import sys
        sys.path[1:1] = ['first', 'second']
        from pkg import data_prep
        import t_1, t__
        print(data_prep.WHO, t_1.WHO, t__.WHO)
        print(sorted(k for k in sys.modules if k.startswith('pkg.')))
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "pkg 0.1 first first\n['pkg.0.1-version', "
                           "'pkg.__version', 'pkg.data-prep', "
                           "'pkg.data_prep']\n", "")


def test_a_failed_import_registers_neither_name(apyrun, tmp_path):
    write_nb(tmp_path / "will-fail.ipynb", "raise RuntimeError('no')")
    write(tmp_path / "main.py", """
        import sys
        try:
            import will_fail
        except RuntimeError as e:
            print('caught', e)
        print([k for k in sys.modules if 'will' in k])
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "caught no\n[]\n", "")
