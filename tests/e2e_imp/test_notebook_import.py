# SPDX-License-Identifier: MIT
"""`import name` finds name.ipynb (DESIGN 4): loading, packages, relative
imports, -m, reload, importlib.resources, inspect, tracebacks at the
notebook's JSON lines, markdown cells, magics, bad notebooks."""
import json

import pytest

from conftest import (REF_PYTHON, code, json_line, markdown, raw, run,
                      write, write_nb)


def test_import_notebook_on_sys_path(apyrun, tmp_path):
    nb = write_nb(tmp_path / "nb.ipynb",
                  markdown("# Title\n\n    def broken(:\n        pass"),
                  code("import sys\nx = 21"),
                  raw("this is not python ("),
                  code("def f():\n    return x * 2"))
    write(tmp_path / "main.py", """
        import nb
        print(nb.f(), nb.__name__, nb.__file__ == nb.__spec__.origin)
        print(type(nb.__loader__).__name__, nb.__spec__.name)
        print(nb.__file__)
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f"42 nb True\nNotebookLoader nb\n{nb}\n"


def test_a_notebook_never_shadows_a_module(apyrun, tmp_path):
    # python's own finders go first, everywhere on the path: a .py beside
    # the notebook, a .py or package further down sys.path, the stdlib.
    write_nb(tmp_path / "mod.ipynb", "WHO = 'notebook'")
    write(tmp_path / "mod.py", "WHO = 'py'\n")
    write_nb(tmp_path / "later.ipynb", "WHO = 'notebook'")
    write(tmp_path / "lib" / "later" / "__init__.py", "WHO = 'package'\n")
    write_nb(tmp_path / "random.ipynb", "raise SystemExit('notebook ran')")
    write_nb(tmp_path / "matplotlib.ipynb", "raise SystemExit('notebook ran')")
    write(tmp_path / "main.py", """
        import sys
        sys.path.append('lib')
        import mod, later, random, tempfile
        print(mod.WHO, '|', later.WHO, '|', random.__file__.endswith('.py'))
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "py | package | True\n", "")


def test_notebooks_in_packages_and_relative_imports(apyrun, tmp_path):
    write(tmp_path / "pkg" / "__init__.py", "")
    write(tmp_path / "pkg" / "helper.py", "def twice(x):\n    return 2 * x\n")
    write_nb(tmp_path / "pkg" / "nb.ipynb",
             code("from . import helper\nfrom .helper import twice"),
             markdown("relative imports above"),
             code("def f(x):\n    return twice(x) + helper.twice(1)"))
    write(tmp_path / "pkg" / "sub" / "__init__.py",
          "from .. import helper\nNAME = __name__\n")
    write_nb(tmp_path / "pkg" / "sub" / "deep.ipynb",
             code("from . import NAME\nfrom ..nb import f\n"
                  "VALUE = f(NAME.count('.'))"))
    write(tmp_path / "main.py", """
        from pkg.nb import f
        from pkg.sub.deep import VALUE
        import pkg.sub
        print(f(3), VALUE, pkg.sub.NAME, len(pkg.sub.__path__) == 1)
        print(pkg.nb.__package__, pkg.sub.deep.__package__)
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "8 4 pkg.sub True\npkg pkg.sub\n", "")


def test_dash_m_runs_a_notebook_module(apyrun, tmp_path):
    write(tmp_path / "pkg" / "__init__.py", "")
    write_nb(tmp_path / "pkg" / "tool.ipynb",
             code("import sys\nprint(__name__, sys.argv[1:])"),
             code("print(__file__.endswith('tool.ipynb'), __spec__.name)"))
    r = run([apyrun, "-m", "pkg.tool", "a", "b"], cwd=tmp_path)
    assert r == type(r)(0, "__main__ ['a', 'b']\nTrue pkg.tool\n", "")


def test_dash_m_runs_a_tla_notebook(apyrun, tmp_path):
    write_nb(tmp_path / "anb.ipynb",
             code("import asyncio"),
             code("await asyncio.sleep(0)\nprint(__name__, 'awaited')"))
    r = run([apyrun, "-m", "anb"], cwd=tmp_path)
    assert r == type(r)(0, "__main__ awaited\n", "")


def test_reload_sees_the_edited_notebook(apyrun, tmp_path):
    nb = tmp_path / "nb.ipynb"
    write_nb(nb, "VALUE = 1")
    write(tmp_path / "main.py", """
        import importlib, os, sys, nb
        print(nb.VALUE)
        text = open('nb.ipynb').read().replace('VALUE = 1', 'VALUE = 22')
        open('nb.ipynb', 'w').write(text)
        os.utime('nb.ipynb', (1, 1))   # a new mtime even on coarse clocks
        importlib.reload(nb)
        print(nb.VALUE, sys.modules['nb'] is nb)
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "1\n22 True\n", "")


def test_importlib_resources_beside_notebooks(apyrun, tmp_path):
    write(tmp_path / "pkg" / "__init__.py", "")
    write_nb(tmp_path / "pkg" / "nb.ipynb", "NAME = 'nb'")
    write(tmp_path / "pkg" / "data.txt", "resource text\n")
    write(tmp_path / "plain.py", "")
    write_nb(tmp_path / "topnb.ipynb", "")
    write(tmp_path / "main.py", """
        import importlib.resources as res
        import pkg.nb, plain, topnb
        print(res.files(pkg).joinpath('data.txt').read_text(), end='')
        print(sorted(p.name for p in res.files('pkg').iterdir()
                     if p.name != '__pycache__'))
        reader = pkg.nb.__spec__.loader.get_resource_reader('pkg.nb')
        print(reader.files().joinpath('data.txt').read_text(), end='')
        for mod in [plain, topnb]:   # modules are not packages, alike
            try:
                res.files(mod)
            except TypeError as e:
                print(type(e).__name__, str(e).split(' from ')[0])
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "resource text\n['__init__.py', 'data.txt', "
                           "'nb.ipynb']\nresource text\n"
                           "TypeError <module 'plain'\n"
                           "TypeError <module 'topnb'\n", "")


def test_inspect_getsource(apyrun, tmp_path):
    write_nb(tmp_path / "nb.ipynb",
             code("def first(x):\n    # a comment\n    return x + 1"),
             markdown("between"),
             code("class K:\n    def m(self):\n        return 2"))
    driver = """
        import nb{before}
        import inspect
        print(inspect.getsource(nb.first), end='')
        print(inspect.getsource(nb.K.m), end='')
        print('def first' in inspect.getsource(nb),
              inspect.getsourcefile(nb.first) == nb.__file__)
    """
    expected = ("def first(x):\n    # a comment\n    return x + 1\n"
                "    def m(self):\n        return 2\nTrue True\n")
    for before in ["", ", linecache"]:
        # linecache imported before or after the notebook
        write(tmp_path / "main.py", driver.format(before=before))
        r = run([apyrun, "main.py"], cwd=tmp_path)
        assert r == type(r)(0, expected, ""), before


def test_traceback_points_at_the_json_lines(apyrun, tmp_path):
    nb = write_nb(tmp_path / "nb.ipynb",
                  code("def inner():\n    return 1 / 0"),
                  markdown("the failing call"),
                  code("x = 1\ninner()"))
    write(tmp_path / "main.py", """
        import traceback
        try:
            import nb
        except ZeroDivisionError:
            for f in traceback.extract_tb(__import__('sys').exc_info()[2]):
                print(f.filename.rsplit('/', 1)[-1], f.lineno, f.name, f.line)
        import sys
        print('nb' in sys.modules)
        import nb
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    call, div = json_line(nb, "inner()"), json_line(nb, "    return 1 / 0")
    assert r.returncode == 1
    assert r.stdout == (f"main.py 3 <module> import nb\n"
                        f"nb.ipynb {call} <module> inner()\n"
                        f"nb.ipynb {div} inner return 1 / 0\nFalse\n")
    # python's own report of the uncaught error names the same lines
    assert f'File "{nb}", line {call}, in <module>' in r.stderr
    assert f'File "{nb}", line {div}, in inner' in r.stderr
    assert "importlib" not in r.stderr
    assert r.stderr.rstrip().endswith("ZeroDivisionError: division by zero")


def test_syntax_error_names_the_json_line(apyrun, tmp_path):
    nb = write_nb(tmp_path / "nb.ipynb",
                  code("ok = 1"), markdown("next: broken"),
                  code("x = 1\ny = (2 +\nz = 3"))
    write(tmp_path / "main.py", """
        try:
            import nb
        except SyntaxError as e:
            print(type(e).__name__, e.filename.rsplit('/', 1)[-1], e.lineno)
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    line = json_line(nb, "y = (2 +")
    assert r == type(r)(0, f"SyntaxError nb.ipynb {line}\n", "")


def test_other_notebook_layouts_import(apyrun, tmp_path):
    # sources as single strings (not Jupyter's list of lines), nbformat 3
    write_nb(tmp_path / "one.ipynb", "A = 1\nB = 2", "C = A + B",
             one_string=True)
    v3 = {"nbformat": 3, "nbformat_minor": 0, "metadata": {},
          "worksheets": [{"cells": [
              {"cell_type": "code", "input": ["D = 4\n", "E = D * 2"],
               "language": "python", "outputs": []},
              {"cell_type": "heading", "level": 1, "source": ["Title"]}]}]}
    (tmp_path / "three.ipynb").write_text(json.dumps(v3, indent=1))
    write(tmp_path / "main.py", """
        import one, three
        print(one.C, three.E)
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "3 8\n", "")


def test_future_import_in_the_first_cell(apyrun, tmp_path):
    write_nb(tmp_path / "nb.ipynb", markdown("intro"),
             code('"""Docstring."""\nfrom __future__ import annotations'),
             code("def f(x: Undefined) -> Nope:\n    return x"))
    write(tmp_path / "main.py", """
        import nb
        print(nb.__doc__, nb.f.__annotations__)
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "Docstring. {'x': 'Undefined', 'return': "
                           "'Nope'}\n", "")


def test_a_bad_notebook_is_an_import_error(apyrun, tmp_path):
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    write_nb(tmp_path / "rnb.ipynb", "x = 1", kernel_language="R")
    write(tmp_path / "main.py", """
        import sys
        for name in ['broken', 'rnb']:
            try:
                __import__(name)
            except ImportError as e:
                print(type(e).__name__, e.path.rsplit('/', 1)[-1],
                      name in sys.modules)
                print(str(e).rsplit('/', 1)[-1])
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == "ImportError broken.ipynb False"
    assert lines[1].startswith("broken.ipynb: not valid JSON")
    assert lines[2] == "ImportError rnb.ipynb False"
    assert lines[3] == "rnb.ipynb: kernel language is 'R', not Python"


def test_magics_behave_as_when_the_notebook_runs(apyrun, tmp_path):
    write_nb(tmp_path / "mnb.ipynb",
             code("x = 1\n!echo shell says hi\n%env APYRUN_TEST_VAR=set"),
             code("import os\nprint('env', os.environ['APYRUN_TEST_VAR'])"),
             code("%%bash\necho from bash"))
    ran = run([apyrun, "mnb.ipynb"], cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    write(tmp_path / "main.py", "import mnb\n")
    imported = run([apyrun, "main.py"], cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == ran.stdout
    assert "shell says hi" in ran.stdout and "from bash" in ran.stdout


def test_python_cannot_import_what_apyrun_cached(apyrun, tmp_path):
    write_nb(tmp_path / "nb.ipynb", "VALUE = 3")
    write(tmp_path / "main.py", "import nb\nprint(nb.VALUE)\n")
    assert run([apyrun, "main.py"], cwd=tmp_path).stdout == "3\n"
    r = run([REF_PYTHON, "main.py"], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.endswith("ModuleNotFoundError: No module named 'nb'\n")


def test_no_sys_path_means_nothing_to_search(apyrun, tmp_path):
    # With sys.path gone (and python's own finders out of the way, which
    # would fail first), the notebook finder searches nothing: None, then
    # ModuleNotFoundError, never a SystemError for a NULL return without
    # an exception.
    write_nb(tmp_path / "nb.ipynb", "VALUE = 3")
    write(tmp_path / "main.py", """
        import sys
        finder = sys.meta_path[-1]
        print(type(finder).__name__)
        sys.meta_path[:] = [finder]
        del sys.path
        print(finder.find_spec('nb'))
        try:
            import nb
        except ModuleNotFoundError as e:
            print(type(e).__name__, e.name)
    """)
    r = run([apyrun, "main.py"], cwd=tmp_path)
    assert r == type(r)(0, "NotebookFinder\nNone\nModuleNotFoundError nb\n",
                        "")
