# SPDX-License-Identifier: MIT
"""get_ipython() (issue 12, point 1): the shell exists in every cell, is
IPython.get_ipython()'s, runs magics by name, keeps the input history and
fires IPython's events around each cell; the same outputs as a Jupyter
kernel (nbconvert) records. Without IPython, apyrun's small shell. A
notebook that never asks for it never imports IPython."""
import importlib.util

import pytest

from conftest import REF_PYTHON, cell, child_env, read_valid, run, write_nb

HAVE_IPYTHON = importlib.util.find_spec("IPython") is not None
HAVE_JUPYTER = (HAVE_IPYTHON
                and importlib.util.find_spec("nbconvert") is not None
                and importlib.util.find_spec("ipykernel") is not None)

# Cells whose outputs a kernel and apyrun must record alike.
SHELL_CELLS = [
    "ip = get_ipython()\nimport IPython\n"
    "from IPython.core.interactiveshell import InteractiveShell\n"
    "print(IPython.get_ipython() is ip, isinstance(ip, InteractiveShell))\n"
    "print(ip.user_ns is globals(), ip.user_module.__name__)",
    "ip.run_line_magic('env', 'APY_SHELL=5')\nimport os\n"
    "print(os.environ['APY_SHELL'])",
    "def pre(info):\n    print('pre', repr(info.raw_cell[:9]))\n"
    "def post(result):\n    print('post', result.execution_count - "
    "ip.execution_count, result.success,\n"
    "          type(result.error_in_exec).__name__)\n"
    "ip.events.register('pre_run_cell', pre)\n"
    "ip.events.register('post_run_cell', post)",
    "x = 1",
    cell("1 / 0", tags=["raises-exception"]),
    "print(In[4], '|', _i4, '|', _ih[4])",
    "def twice(line):\n    return line * 2\n"
    "ip.register_magic_function(twice)\n"
    "print(ip.run_line_magic('twice', 'ab'))",
    "%twice cd",
    "ip.events.unregister('pre_run_cell', pre)\n"
    "ip.events.unregister('post_run_cell', post)\n"
    "print(sorted(ip.run_line_magic('who_ls', ''))[:3])",
    "ip.run_cell_magic('writefile', 'made.txt', 'text')\n"
    "print(open('made.txt').read())",
    "print(ip.getoutput('echo out'))\nip.system('echo system')",
    "with open('ext_mod.py', 'w') as f:\n"
    "    f.write('def load_ipython_extension(ip):\\n'\n"
    "            '    ip.register_magic_function(lambda l: l.upper(), "
    "magic_name=\"up\")\\n')\n"
    "import sys\nsys.path.insert(0, '.')\n%load_ext ext_mod\nx = %up abc\nprint(x)",
]


def streams(nb):
    """Each code cell's text outputs and errors, streams merged."""
    got = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        text, rest = "", []
        for o in c.outputs:
            if o.output_type == "stream":
                text += f"[{o.name}]" + o.text
            elif o.output_type == "error":
                text += f"[error {o.ename}]\n"
            else:
                text += "[data]" + o.data.get("text/plain", "") + "\n"
        got.append(text + "".join(rest))
    return got


@pytest.mark.skipif(not HAVE_JUPYTER, reason="nbconvert, ipykernel or "
                    "IPython missing (Debian: python3-nbconvert, "
                    "python3-ipykernel)")
def test_the_shell_as_a_kernel_records_it(apyrun, tmp_path):
    nb = write_nb(tmp_path / "jupyter" / "nb.ipynb", SHELL_CELLS)
    r = run([REF_PYTHON, "-m", "nbconvert", "--to", "notebook", "--execute",
             "--output", "out.ipynb", nb], cwd=nb.parent, env=child_env(),
            timeout=180)
    assert r.returncode == 0, r.stderr
    want = streams(read_valid(nb.parent / "out.ipynb"))
    ours = write_nb(tmp_path / "apyrun" / "nb.ipynb", SHELL_CELLS)
    out = ours.parent / "out.ipynb"
    r = run([apyrun, "-o", out, ours], cwd=ours.parent)
    assert r.returncode == 0, r.stderr
    got = streams(read_valid(out))
    assert got == want
    # What the events saw, spelled out (the kernel's own order: the error
    # is recorded before post_run_cell's output).
    assert got[4] == ("[stdout]pre '1 / 0'\n[error ZeroDivisionError]\n"
                      "[stdout]post -1 False ZeroDivisionError\n")


@pytest.mark.skipif(not HAVE_IPYTHON, reason="IPython is not installed")
def test_ipython_get_ipython_first_makes_the_same_shell(apyrun, tmp_path):
    nb = write_nb(tmp_path / "nb.ipynb", [
        "import IPython\nip = IPython.get_ipython()\n"
        "print(type(ip).__name__, ip is get_ipython())",
        "from IPython.core.getipython import get_ipython as g\n"
        "print(g() is ip)"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ApyrunShell True\nTrue\n"


def test_never_asked_never_imported(apyrun, tmp_path):
    nb = write_nb(tmp_path / "nb.ipynb", [
        "import sys\nprint('IPython' in sys.modules, "
        "callable(get_ipython))"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "False True\n"


@pytest.mark.skipif(not HAVE_IPYTHON, reason="IPython is not installed")
def test_exit_is_a_kernels(apyrun, tmp_path):
    """exit() and quit() only ask a kernel's frontend to close it, which
    nbclient ignores: the run goes on, nothing recorded; apyrun says so.
    sys.exit() still ends the run."""
    nb = write_nb(tmp_path / "nb.ipynb", [
        "exit()", "get_ipython()\nquit(keep_kernel=True)", "print('goes on')",
        "import sys\nsys.exit(3)", "print('not reached')"])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, nb, "-o", out], cwd=tmp_path)
    assert r.returncode == 3
    assert r.stdout == "goes on\n"
    assert r.stderr.count("apyrun: exit() does not end a notebook run") == 2
    got = read_valid(out)
    assert got.cells[0].outputs == [] and got.cells[1].outputs == []


def test_the_small_shell_without_ipython(apyrun, tmp_path):
    # -S: no site-packages, so no IPython.
    nb = write_nb(tmp_path / "nb.ipynb", [
        "ip = get_ipython()\nprint(type(ip).__name__, ip.execution_count, "
        "ip.user_ns is globals(), ip.get_ipython() is ip)",
        "ip.run_line_magic('env', 'APY_SMALL=7')\nimport os\n"
        "print(os.environ['APY_SMALL'])\nprint(ip.getoutput('echo hi'))",
        "def post(r):\n    print('post', r.execution_count, r.success)\n"
        "ip.events.register('post_run_cell', post)\n"
        "ip.events.register('pre_execute', lambda: 1 / 0)",
        "x = 1",
        "ip.events.unregister('post_run_cell', post)\n"
        "ip.run_cell_magic('writefile', 'f.txt', 'content')\n"
        "print(open('f.txt').read())",
        "try:\n    ip.events.register('nope', print)\n"
        "except KeyError as e:\n    print('KeyError', e)",
        cell("ip.run_line_magic('who', '')", tags=["raises-exception"]),
    ])
    r = run([apyrun, "-S", nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "Shell 1 True True", "env: APY_SMALL=7", "7", "['hi']",
        "post 3 True", "post 4 True", "Writing f.txt", "content",
        "KeyError \"Unknown event type: 'nope'\""]
    # A failing callback is reported and the cell still runs.
    assert r.stderr.count("Error in callback") == 4
    assert "ZeroDivisionError" in r.stderr
    assert "%who needs IPython, which cannot be imported" in r.stderr


def test_help_without_ipython(apyrun, tmp_path):
    # -S: no IPython; pydoc's text, on the terminal and not in the
    # outputs; a missing name is printed (and recorded), as IPython does.
    nb = write_nb(tmp_path / "nb.ipynb", ["len?", "nosuch?", "print('end')"])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "-S", "-o", out, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Return the number of items in a container." in r.stdout
    assert "Object `nosuch` not found." in r.stdout
    got = [[o.get("text") for o in c.outputs] for c in read_valid(out).cells]
    assert got == [[], ["Object `nosuch` not found.\n"], ["end\n"]]
