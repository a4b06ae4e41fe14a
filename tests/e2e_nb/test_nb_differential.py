# SPDX-License-Identifier: MIT
"""Differential: the same notebooks through apyrun and through Jupyter
(`python3.11 -m nbconvert --to notebook --execute`, Debian's nbconvert and
ipykernel), compared cell by cell: output types, stream text, text/plain,
ename, mime types, execution counts."""
import importlib.util
import re

import pytest

from conftest import (REF_PYTHON, cell, child_env, no_leak_check, read_valid,
                      run, write_nb)

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("nbconvert") is None
    or importlib.util.find_spec("ipykernel") is None,
    reason="nbconvert or ipykernel is not installed (Debian: "
           "python3-nbconvert python3-ipykernel)")

NOTEBOOKS = {
    "streams": [
        "print('hello')\nprint('world')",
        "import sys\nprint('to stderr', file=sys.stderr)",
        "for i in range(3):\n    print(i, end=' ')\nprint()",
        "print('unicode ☃ é')",
    ],
    "results": [
        "1 + 1",
        "'a string'",
        "[1, 'two', 3.0, None]",
        "{'a': 1, 'b': [1, 2]}",
        "None",
        "x = 5\nx;",
        "x * 2",
        "class R:\n    def _repr_html_(self): return '<b>R</b>'\n"
        "    def __repr__(self): return 'R()'\nR()",
    ],
    "displays": [
        "display('shown')\ndisplay(42)\n'result after display'",
        "class H:\n    def _repr_html_(self): return '<i>h</i>'\n"
        "    def _repr_markdown_(self): return '*h*'\n"
        "    def __repr__(self): return 'H()'\n"
        "print('before')\ndisplay(H())\nprint('after')",
        "from IPython.display import HTML, Markdown, display as d\n"
        "d(HTML('<p>x</p>'))\nMarkdown('**m**')",
    ],
    "errors": [
        "print('partial')\n1 / 0",
        "print('continues')",
        "raise ValueError('bad')",
        "def f():\n    raise KeyError('k')\nf()",
        "undefined_name",
    ],
    "tla": [
        "import asyncio\nawait asyncio.sleep(0.01)\nprint('awaited')",
        "async def twice(x):\n    await asyncio.sleep(0)\n    return 2 * x\n"
        "await twice(21)",
        "t = asyncio.ensure_future(twice(5))\nawait asyncio.sleep(0.01)",
        "await t",
        "[await twice(i) for i in range(3)]",
    ],
    "magics": [
        "!echo from shell",
        # On a pty as in ipykernel: "\r\n", a terminal of 80 columns,
        # a kernel's environment; `x = !cmd` and %%bash on pipes.
        "!printf 'a\\tb\\n'; [ -t 1 ] && echo tty; [ -t 2 ] && echo tty2;"
        " tput cols; echo $TERM $CLICOLOR $PAGER $GIT_PAGER",
        "!ls -C /usr/lib/python3.11/json",
        "!echo to stderr >&2; exit 3",
        "print(_exit_code)",
        "!exit 130", "!sleep 5 &  ",
        "print(_exit_code)",
        "x = !echo piped; [ -t 1 ] || echo not a tty\nprint(x)",
        "lines = !printf 'a\\nb\\n'\nprint(list(lines))",
        "%%bash\necho from bash",
        "%%writefile written.txt\nsome text\n",
        "print(open('written.txt').read(), end='')",
        "%%writefile nonl.txt\nno newline at the end",
        "print(repr(open('nonl.txt').read()))",
        "%%capture c\nprint('hidden')",
        "print(c.stdout, end='')",
        # IPython's CapturedIO, its outputs shown again by calling it.
        "type(c)", "%%capture d\ndisplay('x')\nprint('y')",
        "d()", "len(d.outputs)",
        "import os\n%env DIFF_VAR=1\nprint(os.environ['DIFF_VAR'])",
        "os.mkdir('sub')\n%cd -q sub\nprint(os.path.basename(os.getcwd()))",
        "%cd -q ..\nos.path.isdir('sub')",
    ],
    # Written to fds 1 and 2 by child processes, not through sys.stdout:
    # ipykernel (6.0 and later) records it, so apyrun does. ipykernel
    # forwards fd output from a thread, so whether it comes before or
    # after the cell's result, or in the cell at all on a loaded machine,
    # depends on timing there: no result here, and time for that thread.
    "fd_output": [
        "import os, subprocess, time\n"
        "rc = os.system('echo from os.system')\ntime.sleep(0.3)",
        "rc",
        "subprocess.run(['sh', '-c', 'echo from a child'])\ntime.sleep(0.3)",
        "subprocess.run(['sh', '-c', 'echo to fd 2 >&2'])\ntime.sleep(0.3)",
    ],
    "matplotlib": [
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\n"
        "print('before show')\nplt.show()\nprint('after show')",
        "fig, ax = plt.subplots()\nax.bar([1, 2], [3, 4]);",
        "print('no figure here')",
        # Figures drawn before an error show after it, as in a kernel.
        cell("plt.plot([1, 2])\nundefined_name", tags=["raises-exception"]),
    ],
    # matplotlib as a kernel sets it up (matplotlib-inline): %config
    # InlineBackend's figure formats, %matplotlib inline's backend,
    # %pylab. (Before %matplotlib, apyrun's backend is Agg where a
    # kernel's is already the inline one: no get_backend() there.)
    "matplotlib_inline": [
        "%config InlineBackend.figure_formats = ['svg']",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2]);",
        "%config InlineBackend.figure_format = 'retina'",
        "plt.plot([3, 1]);",
        "%matplotlib inline\nimport matplotlib\n"
        "print(matplotlib.get_backend(), plt.rcParams['figure.figsize'])",
        "fig, ax = plt.subplots()\nax.bar([1], [2])\nfig",
        "%pylab inline", "print(type(array), pi)",
        # A figure that cannot draw: the post_execute callbacks' errors
        # and the figure's text, as IPython reports them; the run goes on.
        "fig, ax = plt.subplots()\nax.set_xlabel(r'$\\\\tau$');",
        "print('next')",
    ],
    # %matplotlib agg: figures are not shown at a cell's end, as in a
    # kernel; %matplotlib inline shows them again.
    "matplotlib_agg": [
        "%matplotlib agg", "import matplotlib.pyplot as plt\nplt.plot([1]);",
        "%matplotlib inline", "plt.plot([2]);",
    ],
    # set_matplotlib_formats() makes IPython's shell itself first.
    "matplotlib_formats": [
        "import matplotlib.pyplot as plt\n"
        "from matplotlib_inline.backend_inline import "
        "set_matplotlib_formats\nset_matplotlib_formats('pdf', 'svg')",
        "plt.plot([1, 2]);",
        # A kernel's %matplotlib inline keeps the formats set before it.
        "%matplotlib inline", "plt.plot([2, 1]);",
    ],
    # Plain values need no printer: repr() is what IPython's gives, up to
    # the 79 columns where it starts breaking lines. No cell before the
    # last three needs IPython here, so they take that way.
    "plain": [
        "['a' * 35, 'b' * 35]", "['a' * 35, 'b' * 36]",
        "{'k': 'v' * 50, 2: [None, 1.5]}",
        "[[1, 2], {'x': (None, 1.5, 2j)}, b'z', True]",
        "['a' * 36, 'b' * 36]", "{'b', 'a', 'c'}", "('x' * 80,)",
    ],
    # text/plain: IPython's pretty printer, as ipykernel's (issue 12).
    "pretty": [
        "type(1)", "list(range(40))", "{i: 'x' * i for i in range(12)}",
        "from collections import defaultdict, Counter, deque\n"
        "defaultdict(list, {'a': [1]})",
        "Counter('abracadabra')", "deque(range(30))",
        "class P:\n    def _repr_pretty_(self, p, cycle):\n"
        "        p.text('pretty P')\nP()",
        "def f(a, b=1):\n    pass\nf", "{3, 1, 2}", "range(5)", "print",
        "import re\nre.compile('a+')", "b'bytes' * 30", "[[1, 2] * 10] * 3",
        "display(type(1), list(range(30)))",
        # A printer that raises: an error output instead, the cell goes on.
        "class Bad:\n    def _repr_pretty_(self, p, cycle):\n"
        "        raise ValueError('x')\n"
        "    def __repr__(self):\n        return 'Bad()'\n"
        "print('before')\nBad()",
        "display(Bad())\nprint('after')",
        # A printer registered on the shell's formatter applies.
        "get_ipython().display_formatter.formatters['text/plain']"
        ".for_type(int, lambda o, p, c: p.text('INT'))\n5",
        "[1, 2]",
        # A tuple result goes to the printer and the history as one value.
        "(3, 4)", "((1,), 'x', ())", "print(_, __)",
    ],
    # Printers registered on the shell's formatters: sympy's
    # init_printing adds text/latex and image/png ones.
    "sympy": [
        "from sympy import Symbol, Integral, solve, init_printing\n"
        "init_printing()\nx = Symbol('x')",
        "x**2 / 3", "solve(x**2 - 4, x)", "display(Integral(x, x))",
        "display(x, exclude=['image/png'])",
    ],
    # pandas decides its display from the shell (hasattr(ip, 'kernel'),
    # __IPYTHON__): 20 columns as in Jupyter, not a terminal's width.
    "pandas": [
        "import pandas as pd\n"
        "pd.DataFrame({f'col{i}': range(3) for i in range(30)})",
        "pd.DataFrame({'a' * 40: [1.5] * 70, 'b' * 40: ['x' * 30] * 70})",
        "print(pd.get_option('display.max_columns'))",
    ],
    # A _repr_*_ method that raises: an error output before the object's
    # (without that representation), and the cell goes on.
    "repr_errors": [
        "class H:\n    def _repr_html_(self):\n        raise ValueError('h')\n"
        "    def _repr_markdown_(self):\n        return '*md*'\n"
        "    def __repr__(self):\n        return 'H()'\nprint('x')\nH()",
        "display(H())\nprint('after')",
        "class M:\n    def _repr_mimebundle_(self, include=None, "
        "exclude=None):\n        raise KeyError('mb')\n"
        "    def __repr__(self):\n        return 'M()'\nM()",
    ],
    # IPython's syntax: pasted prompts, ';' before a comment, help (the
    # text goes to the pager, not the outputs; a missing name is printed).
    "syntax": [
        ">>> x = 1\n>>> x + 1", ">>> def f():\n...     return 5\n>>> f()",
        "In [1]: y = 2\n   ...: y * 3", "1 + 1;  # silenced",
        "1 + 1  # not silenced;", "'a;'  # x",
        "len?", "x??", "?len", "nosuch?", "import os\nos.path.join?",
        "?", "??", "%quickref", "get_ipython().run_line_magic('magic', '')",
        "%pinfo len", "os.*dir*?", "def g():\n    len?\n    return 1\ng()",
    ],
    # The history a kernel keeps: _, __, ___, _N, Out, _oh; In, _ih, _i,
    # _ii, _iii, _iN; kept by apyrun, then handed to IPython's shell.
    "history": [
        "1 + 1", "_ * 10",
        "print(_, __, _1, Out[2], len(In), _i2, _ii, repr(_iii))", "None",
        "x = 3", "x",
        "print(_, __, ___, sorted(Out), _oh is Out, In is _ih)",
        "'silenced';", "print(_)", "_ = 'mine'\n7", "print(_, _10)",
        "ip = get_ipython()\n8",
        "print(_, __, _12, sorted(Out), len(In), In[1])", "9",
        "print(_, __, ___, _14, _i14)",
    ],
    # `from __future__` anywhere at a cell's top level, as IPython takes
    # it; it applies to the cells after.
    "future": [
        "x = 1\nfrom __future__ import annotations\n"
        "def f(a: undefined_name) -> int:\n    return 2\n"
        "print(f.__annotations__)",
        "def g(b: other) -> str:\n    pass\ng.__annotations__",
        "y = 2\nfrom __future__ import nosuchfeature", "print('after')",
        "'doc'\nfrom __future__ import division\nz = 3\nz",
    ],
    # A magic IPython does not know: its UsageError on stderr, as
    # ipykernel shows it, no traceback.
    "usage": [
        "%nosuchmagic 1", "print('after')", "%%nosuchcell\nx",
        "%undefined-line-magic", "x = %not-a.magic 1",
        "get_ipython().run_line_magic('nosuch2', '')",
        # A kernel's own magic: its JavaScript and its words.
        "%autosave 60", "%autosave 0", "%autosave x",
    ],
    # display() as IPython's: include=, exclude=, raw=, display_<mime>(),
    # _ipython_display_, _repr_mimebundle_ given include and exclude.
    "display": [
        "class H:\n    def _repr_html_(self):\n        return '<b>h</b>'\n"
        "    def _repr_markdown_(self):\n        return '*h*'\n"
        "    def __repr__(self):\n        return 'H()'\n"
        "display(H(), include=['text/plain', 'text/html'])",
        "display(H(), exclude=['text/html'])",
        "display({'text/plain': 'raw plain', 'text/html': '<i>r</i>'}, "
        "raw=True)",
        "from IPython.display import display_html, display_markdown\n"
        "display_html(H())\ndisplay_markdown(H())",
        "display_html('<p>x</p>', raw=True)",
        # update=True changes the earlier output in place (ProgressBar).
        "from IPython.display import ProgressBar\n"
        "for i in ProgressBar(3):\n    pass",
        "display('first', display_id='u')\n"
        "display('second', display_id='u', update=True)",
        "class D:\n    def _ipython_display_(self):\n"
        "        print('custom display')\nD()",
        "display(D())",
        "class MB:\n    def _repr_mimebundle_(self, include=None, "
        "exclude=None):\n        return {'text/plain': f'mb {include} "
        "{exclude}'}\ndisplay(MB(), include=['text/plain'])\nMB()",
    ],
    # %%script and its named forms, with IPython's options; the program
    # reads the cell on its stdin. (IPython 8.5's --out keeps only the
    # last line, its issue #13499, and --bg hands out asyncio proxies:
    # one-line outputs here; test_nb_shell.py checks apyrun's own.)
    "script": [
        "%%bash --out o --err e\necho hello\necho oops >&2",
        "print(repr(o), repr(e))",
        "%%script --no-raise-error sh\necho x; exit 3",
        "%%bash\necho y\nexit 4",
        "%%script nosuchprog\nx",
        "%%python3\nimport sys; print(sys.argv, sys.stdin.isatty())",
        "%%bash -s a 'b c'\necho $1 / $2\nread -r line; echo \"[$line]\"\n"
        "the rest of the cell",
        "n = 3",
        "%%sh --err=e2\necho to stdout; echo to stderr >&2",
        "print(repr(e2))",
        "%%bash --bg\nsleep 30", "%killbgscripts",
    ],
    # No terminal on stdin: input() as a kernel with stdin disabled.
    "stdin": [
        "try:\n    input('x? ')\nexcept Exception as e:\n"
        "    print(type(e).__name__, e)",
        "input()", "import getpass\ngetpass.getpass('pw: ')",
    ],
    # Automagic: a cell of one line that starts with a magic's name that
    # nothing shadows runs as that magic, as a kernel's prefilter does.
    "automagic": [
        "import os\nos.mkdir('amdir')\nopen('amdir/f.txt', 'w').close()",
        "ls amdir", "env AM_VAR=1", "print(os.environ['AM_VAR'])",
        "ls = 3", "print(ls)", "ls", "undefined_name",
        "x = 1\nenv",
    ],
    # What a kernel adds: display ids as nbclient keeps them (a display
    # with an id changes the earlier ones), the shell's display_pub,
    # get_ipython().kernel's session.send, the kernel's magics.
    "kernel": [
        "display('a', display_id='k')",
        "display('b', display_id='k')",
        "from IPython.display import publish_display_data\n"
        "publish_display_data({'text/plain': 'pub', 'text/html': '<b>p</b>'})",
        "ip = get_ipython()\nk = ip.kernel\n"
        "k.session.send(k.iopub_socket, 'display_data', {'data': "
        "{'text/plain': 'sent'}, 'metadata': {}, 'transient': "
        "{'display_id': 'k'}}, parent=ip.parent_header);",
        "p = ip.parent_header\n"
        "k.session.send(k.iopub_socket, 'update_display_data', {'data': "
        "{'text/plain': 'updated'}, 'metadata': {}, 'transient': "
        "{'display_id': 'k'}}, parent=p);",
        # Only messages sent in answer to the cell's request are
        # recorded: none without a parent, none with an old cell's.
        "k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', "
        "'text': 'no parent\\n'})\n"
        "k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', "
        "'text': 'old parent\\n'}, parent=p)\n"
        "k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', "
        "'text': 'streamed\\n'}, parent=k.get_parent());",
        "k.session.send(k.iopub_socket, 'execute_result', {'data': "
        "{'text/plain': 'result'}, 'metadata': {}, 'execution_count': "
        "ip.execution_count}, parent=ip.parent_header);",
        "k.session.send(k.iopub_socket, 'error', {'ename': 'SentError', "
        "'evalue': 'v', 'traceback': ['tb']}, parent=ip.parent_header);",
        "print('gone')\nip.display_pub.clear_output()\nprint('kept')",
        "hasattr(ip, 'kernel')",
        "%lsmagic", "%autosave?", "%less /etc/hostname",
    ],
    # ipykernel's Comm finds its kernel (Kernel.instance(), which is
    # get_ipython().kernel): its messages are no cell's outputs.
    "comms": [
        "from ipykernel.comm import Comm\nc = Comm('t', data={'a': 1})",
        "c.send({'b': 2})",
        "k = get_ipython().kernel\n"
        "print(k.comm_manager.comms == {c.comm_id: c})",
        "c.close()\nprint(k.comm_manager.comms)",
        "from ipykernel.kernelbase import Kernel\n"
        "Kernel.instance() is get_ipython().kernel",
    ],
    # A finder the notebook adds to sys.meta_path imports its notebooks,
    # not apyrun's own (IPython's "Importing Notebooks" example).
    "finders": [
        "import json, sys, importlib.abc, importlib.util\n"
        "json.dump({'cells': [{'cell_type': 'code', 'metadata': {}, "
        "'execution_count': None, 'outputs': [], 'source': 'x = 1'}], "
        "'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}, "
        "open('nbmod.ipynb', 'w'))",
        "class Loader(importlib.abc.Loader):\n"
        "    def create_module(self, spec):\n        return None\n"
        "    def exec_module(self, module):\n"
        "        print('custom loader')\n        module.x = 2\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'nbmod':\n"
        "            return importlib.util.spec_from_loader(name, Loader())\n"
        "sys.meta_path.append(Finder())",
        "import nbmod\nprint(nbmod.x)",
    ],
    # Under --allow-errors SystemExit is recorded and the run goes on.
    "sysexit": [
        "print('a')", "import sys\nsys.exit(3)", "print('after')",
        "raise SystemExit", "print('end')",
        # exit() only asks a kernel's frontend, which nbclient ignores.
        "exit()", "quit(keep_kernel=True)", "print('after exit')",
    ],
    "tags": [
        cell("raise RuntimeError('expected')", tags=["raises-exception"]),
        cell("print('skipped')", tags=["skip-execution"]),
        "",
        "print('after')",
    ],
}


def summary(nb):
    cells = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        outs = []
        for o in c.outputs:
            kind = o["output_type"]
            if kind == "stream" and "UserWarning: To exit: use" in o["text"]:
                # IPython's shell warns on its stderr (naming its own
                # source line) after a SystemExit with a code; not a cell
                # output apyrun reproduces.
                continue
            if kind == "stream":
                # As written: `!cmd` runs on a pty in both ("\r\n");
                # objects' addresses aside.
                outs.append((kind, o["name"],
                             re.sub(r" at 0x[0-9a-f]+", " at 0x…",
                                    o["text"])))
            elif kind in ("display_data", "execute_result"):
                outs.append((kind, o["data"].get("text/plain"),
                             sorted(o["data"])))
            elif kind == "error":
                outs.append((kind, o["ename"]))
        cells.append((c.execution_count, merge_streams(outs)))
    return cells


def merge_streams(outs):
    """Joins consecutive stream outputs of one name: Jupyter may split a
    stream where apyrun does not, depending on flush timing."""
    merged = []
    for o in outs:
        if (o[0] == "stream" and merged and merged[-1][0] == "stream"
                and merged[-1][1] == o[1]):
            merged[-1] = ("stream", o[1], merged[-1][2] + o[2])
        else:
            merged.append(o)
    return merged


@pytest.fixture(scope="module")
def both(apyrun, tmp_path_factory):
    """Runs every notebook through nbconvert (one process) and apyrun."""
    base = tmp_path_factory.mktemp("diff")
    jupyter, ours = {}, {}
    env = child_env()
    # Each tool in its own directory: cells write files.
    for name, cells in NOTEBOOKS.items():
        nb = write_nb(base / "jupyter" / name / f"{name}.ipynb", cells)
        r = run([REF_PYTHON, "-m", "nbconvert", "--to", "notebook",
                 "--execute", "--allow-errors", "--output", "out.ipynb", nb],
                cwd=nb.parent, env=env, timeout=180)
        assert r.returncode == 0, r.stderr
        jupyter[name] = read_valid(nb.parent / "out.ipynb")
    for name, cells in NOTEBOOKS.items():
        nb = write_nb(base / "apyrun" / name / f"{name}.ipynb", cells)
        out = nb.parent / "out.ipynb"
        # pyplot and pandas import numpy, whose modules leak at import;
        # so does sympy's image/png printer, which draws with matplotlib,
        # and ipykernel's comms, which import zmq (`python3.11 -c "import
        # zmq"` under libasan reports the same 2552 bytes in 34 blocks).
        leaky = (no_leak_check()
                 if name.startswith("matplotlib")
                 or name in ("sympy", "pandas", "comms")
                 else {})
        run([apyrun, "--allow-errors", "-o", out, nb], cwd=nb.parent,
            env=child_env(leaky))
        ours[name] = read_valid(out)
    return jupyter, ours


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_same_outputs_as_jupyter(both, name):
    jupyter, ours = both
    want, got = summary(jupyter[name]), summary(ours[name])
    assert len(want) == len(got)
    for i, (w, g) in enumerate(zip(want, got), 1):
        assert g == w, f"code cell {i} of {name}"
