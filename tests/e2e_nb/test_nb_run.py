# SPDX-License-Identifier: MIT
"""Running a notebook (DESIGN 3, issue 3 section 2): cells in order in one
__main__, TLA on one loop, tracebacks that point at the notebook, input(),
sys.exit(), tags, --allow-errors, bad input and misplaced options."""
import json
import os
import pty
import subprocess

import pytest

from conftest import cell, json_line, run, run_measured, write_nb

LOOPS = ["apyrun", "asyncio"]


def test_cells_share_main_and_see_the_notebook(apyrun, tmp_path):
    nbdir = tmp_path / "nbs"
    nb = write_nb(nbdir / "probe.ipynb", [
        "import os, sys\n"
        "x = 41\n"
        "print('main', sys.modules['__main__'].__dict__ is globals())\n"
        "print('file', __file__)\n"
        "print('path0', sys.path[0])\n"
        "print('cwd', os.getcwd())\n"
        "print('argv', sys.argv)",
        "print('x', x + 1)",
    ])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run([apyrun, nb, "a", "b c"], cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "main True",
        f"file {nb}",
        f"path0 {nbdir}",
        f"cwd {nbdir}",
        f"argv ['{nb}', 'a', 'b c']",
        "x 42",
    ]
    assert r.stderr == ""


def test_cwd_option(apyrun, tmp_path):
    nb = write_nb(tmp_path / "nbs" / "c.ipynb",
                  ["import os, sys\nprint(os.getcwd())\nprint(sys.path[0])"])
    (tmp_path / "work").mkdir()
    r = run([apyrun, "--cwd", "work", nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(tmp_path / "work"),
                                     str(tmp_path / "nbs")]
    r = run([apyrun, "--cwd", "missing", nb], cwd=tmp_path)
    assert r.returncode == 2
    assert "missing" in r.stderr


@pytest.mark.parametrize("loop", LOOPS)
def test_tla_tasks_survive_across_cells(apyrun, tmp_path, loop):
    nb = write_nb(tmp_path / "t.ipynb", [
        "import asyncio\n"
        "log = []\n"
        "async def worker():\n"
        "    for i in range(3):\n"
        "        await asyncio.sleep(0.01)\n"
        "        log.append(i)\n"
        "    return 'done'\n"
        "task = asyncio.create_task(worker())\n"
        "await asyncio.sleep(0)\n"
        "loop1 = asyncio.get_running_loop()",
        # As in a Jupyter kernel, a cell without await runs inside the
        # running loop too: it can create tasks, and asyncio.run() is
        # refused there as it is in Jupyter.
        "print('plain cell, same loop running:',"
        " asyncio.get_running_loop() is loop1)\n"
        "task2 = asyncio.create_task(asyncio.sleep(0.01, 'task2'))",
        "try:\n"
        "    asyncio.run(asyncio.sleep(0))\n"
        "except RuntimeError as e:\n"
        "    print('asyncio.run:', e)",
        "print(await task, log)\n"
        "print(await task2)\n"
        "print('same loop', asyncio.get_running_loop() is loop1)",
    ])
    r = run([apyrun, "--loop", loop, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "plain cell, same loop running: True",
        "asyncio.run: asyncio.run() cannot be called from a running"
        " event loop",
        "done [0, 1, 2]",
        "task2",
        "same loop True",
    ]


def test_future_flags_carry_to_later_cells(apyrun, tmp_path):
    nb = write_nb(tmp_path / "f.ipynb", [
        "from __future__ import annotations",
        "def f(x: NotDefinedAnywhere) -> AlsoNot: pass\n"
        "print(f.__annotations__)",
    ])
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("{'x': 'NotDefinedAnywhere', "
                        "'return': 'AlsoNot'}\n")


def test_markdown_and_raw_cells_never_run(apyrun, tmp_path):
    nb = write_nb(tmp_path / "m.ipynb", [
        cell("raise SystemExit(7)", kind="markdown"),
        cell("print('raw ran')\nraise SystemExit(8)", kind="raw"),
        "print('code ran')",
        cell("", kind="markdown"),
    ])
    r = run([apyrun, nb], cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "code ran\n", "")


def test_empty_notebook(apyrun, tmp_path):
    nb = write_nb(tmp_path / "e.ipynb", [])
    r = run([apyrun, nb], cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


@pytest.mark.parametrize("tla", [False, True])
def test_traceback_points_at_the_notebook(apyrun, tmp_path, tla):
    prefix = "import asyncio\nawait asyncio.sleep(0)\n" if tla else ""
    nb = write_nb(tmp_path / "tb.ipynb", [
        "x = 1",
        cell("not run", kind="markdown"),
        "def inner():\n"
        "    return 1 / 0  # the failing line\n",
        prefix + "y = 2\ninner()",
        "print('never')",
    ])
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == 1
    assert "never" not in r.stdout
    fail_line = json_line(nb, "the failing line")
    call_line = json_line(nb, '"inner()"')
    lines = r.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert f'  File "{nb}", line {call_line}, in <module>' in lines
    assert f'  File "{nb}", line {fail_line}, in inner' in lines
    # The source shown is the cell's code, not the JSON text.
    assert "    return 1 / 0  # the failing line" in lines
    assert "ZeroDivisionError: division by zero" in lines
    # No apyrun-internal or asyncio frames.
    frames = [ln for ln in lines if ln.startswith("  File ")]
    assert len(frames) == 2, r.stderr
    # The report names the cell: 4th cell of the file, 3rd code cell run.
    assert lines[-1] == f"apyrun: error in cell 4, In [3] of {nb}"


def test_syntax_error_points_at_the_notebook(apyrun, tmp_path):
    nb = write_nb(tmp_path / "se.ipynb", ["a = 1", "b = 2\nc = (3 +\n"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == 1
    assert f'File "{nb}", line {json_line(nb, "c = (3 +")}' in r.stderr
    assert "SyntaxError" in r.stderr
    assert r.stderr.splitlines()[-1] == f"apyrun: error in cell 2, In [2] of {nb}"


def test_last_expression_is_not_echoed(apyrun, tmp_path):
    nb = write_nb(tmp_path / "e.ipynb", ["'a value'", "1 + 1", "x = 3\nx"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_input_reads_a_terminal(apyrun, tmp_path):
    """On a terminal input() reads it, as python3's."""
    nb = write_nb(tmp_path / "i.ipynb", [
        "name = input('name? ')", "print('hello', name)"])
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(apyrun), str(nb)], cwd=tmp_path,
                            stdin=slave, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    os.close(slave)
    os.write(master, b"alice\n")
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(master)
    assert proc.returncode == 0, err
    assert out == b"name? hello alice\n"


def test_input_off_a_terminal_is_a_kernels(apyrun, tmp_path):
    """Off a terminal (a pipe, /dev/null, CI), input() and getpass raise
    StdinNotImplementedError as a kernel run by nbclient does, with
    ipykernel's words; nothing is read."""
    nb = write_nb(tmp_path / "i.ipynb", [
        "try:\n    input('name? ')\nexcept NotImplementedError as e:\n"
        "    print(type(e).__name__, e)",
        "import getpass\ngetpass.getpass()"])
    r = run([apyrun, nb], cwd=tmp_path, input="alice\n")
    assert r.returncode == 1
    assert r.stdout == ("StdinNotImplementedError raw_input was called, but "
                        "this frontend does not support input requests.\n")
    assert ("StdinNotImplementedError: getpass was called, but this "
            "frontend does not support input requests.") in r.stderr


@pytest.mark.parametrize("code,expected", [
    ("sys.exit(3)", 3), ("sys.exit(0)", 0), ("sys.exit()", 0),
    ("sys.exit('bye')", 1)])
def test_sys_exit_stops_with_its_code(apyrun, tmp_path, code, expected):
    nb = write_nb(tmp_path / "x.ipynb", [
        "import sys\nprint('before')", code, "print('after')"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == expected
    assert r.stdout == "before\n"
    if code == "sys.exit('bye')":
        assert r.stderr == "bye\n"


def test_sys_exit_goes_on_where_errors_may(apyrun, tmp_path):
    # As Jupyter: under --allow-errors, or in a raises-exception cell,
    # SystemExit is an error recorded like another; the run goes on.
    nb = write_nb(tmp_path / "x.ipynb", [
        "import sys\nprint('before')", "sys.exit(3)", "print('after')"])
    r = run([apyrun, "--allow-errors", nb], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stdout == "before\nafter\n"
    assert "SystemExit: 3" in r.stderr
    nb = write_nb(tmp_path / "y.ipynb", [
        cell("raise SystemExit(4)", tags=["raises-exception"]),
        "print('after')"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "after\n")


def test_skip_execution_tag(apyrun, tmp_path):
    nb = write_nb(tmp_path / "s.ipynb", [
        cell("print('skipped')\nraise SystemExit(5)",
             tags=["skip-execution"]),
        "print('ran')"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "ran\n")


def test_raises_exception_tag_goes_on(apyrun, tmp_path):
    nb = write_nb(tmp_path / "r.ipynb", [
        cell("raise ValueError('expected')", tags=["raises-exception"]),
        "print('went on')"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout == "went on\n"
    assert "ValueError: expected" in r.stderr


def test_allow_errors(apyrun, tmp_path):
    nb = write_nb(tmp_path / "a.ipynb", [
        "raise KeyError('k')", "print('went on')",
        cell("1/0", tags=["raises-exception"]), "print('end')"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    r = run([apyrun, "--allow-errors", nb], cwd=tmp_path)
    assert r.returncode == 1, "an unexpected error still fails the run"
    assert r.stdout == "went on\nend\n"
    assert f"apyrun: error in cell 1, In [1] of {nb}" in r.stderr
    # Only expected errors: success.
    nb2 = write_nb(tmp_path / "b.ipynb", [
        cell("1/0", tags=["raises-exception"]), "print('end')"])
    r = run([apyrun, "--allow-errors", nb2], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "end\n")


@pytest.mark.parametrize("content,word", [
    (b"{not json", "JSON"),
    (b'{"cells": 3, "nbformat": 4, "nbformat_minor": 5, "metadata": {}}',
     "cells"),
    (b"", "JSON"),
])
def test_bad_input_is_one_line_exit_2(apyrun, tmp_path, content, word):
    nb = tmp_path / "bad.ipynb"
    nb.write_bytes(content)
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert str(nb) in lines[0] and word in lines[0]


# A notebook that is not a regular file: sized before it is read, read in
# bounded chunks, never waited for (issue 9 item 6).
MAX_RSS_KIB = 200 * 1024


def test_notebook_linked_to_dev_zero_is_refused_at_once(apyrun, tmp_path):
    os.symlink("/dev/zero", tmp_path / "nb.ipynb")
    r, usage = run_measured([apyrun, "nb.ipynb"], cwd=tmp_path, timeout=20)
    # It used to read 2 GiB (the 1 GiB limit, doubled) in 4-7 s. CPU time,
    # not wall time, so that a loaded machine cannot fail the test.
    assert usage.ru_maxrss < MAX_RSS_KIB, f"peak RSS {usage.ru_maxrss} KiB"
    cpu = usage.ru_utime + usage.ru_stime
    assert cpu < 2, f"{cpu:.2f} s of CPU"
    assert (r.returncode, r.stdout) == (2, ""), r.stderr
    assert r.stderr == ("apyrun: nb.ipynb: not valid JSON: unexpected "
                        "character U+0000 (line 1, column 1)\n")


def test_fifo_without_a_writer_is_refused_not_waited_for(apyrun, tmp_path):
    os.mkfifo(tmp_path / "nb.ipynb")
    r = run([apyrun, "nb.ipynb"], cwd=tmp_path, timeout=20)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == ("apyrun: nb.ipynb: the notebook is empty (nothing "
                        "was written to the FIFO)\n")


def test_notebook_read_from_a_pipe(apyrun, tmp_path):
    nb = write_nb(tmp_path / "real.ipynb",
                  ["print('piped ' + 'x' * 100000 and 'ok')"])
    os.symlink("/dev/stdin", tmp_path / "nb.ipynb")
    r = run([apyrun, "nb.ipynb"], cwd=tmp_path, input=nb.read_text())
    assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", "")


def test_missing_notebook_exit_2(apyrun, tmp_path):
    r = run([apyrun, "nope.ipynb"], cwd=tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and "nope.ipynb" in r.stderr


@pytest.mark.parametrize("opts", [
    ["-o", "out.ipynb"], ["--inplace"], ["--timeout", "3"],
    ["--allow-errors"], ["-p", "a", "1"], ["--cwd", "."]])
def test_notebook_options_need_a_notebook(apyrun, tmp_path, opts):
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    r = run([apyrun, *opts, script], cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "notebook" in r.stderr
    r = run([apyrun, *opts, "-c", "print('ran')"], cwd=tmp_path)
    assert r.returncode == 2


def test_input_notebook_is_not_modified(apyrun, tmp_path):
    nb = write_nb(tmp_path / "n.ipynb", ["print('x')", "1/0"])
    before = nb.read_bytes()
    run([apyrun, nb], cwd=tmp_path)
    run([apyrun, "-o", tmp_path / "out.ipynb", nb], cwd=tmp_path)
    assert nb.read_bytes() == before
    assert os.path.exists(tmp_path / "out.ipynb")


def test_a_cell_that_can_never_finish_is_reported(apyrun, tmp_path):
    nb = write_nb(tmp_path / "stall.ipynb", [
        "print('one')",
        "import asyncio\nfut = asyncio.get_running_loop().create_future()\n"
        "await fut",
        "print('never')"])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "--loop", "apyrun", "-o", out, nb], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stdout == "one\n"
    assert "top-level await never completed" in r.stderr
    assert f'File "{nb}", line {json_line(nb, "await fut")}' in r.stderr
    assert r.stderr.splitlines()[-1] == (
        f"apyrun: top-level await never completed in cell 2, In [2] of {nb}")
    from conftest import outputs, read_valid
    assert outputs(read_valid(out), 1)[-1]["output_type"] == "error"


@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("record", [False, True])
def test_whole_cell_is_one_task(apyrun, tmp_path, loop, record):
    # The code before a cell's last expression runs in the same task as
    # the awaiting expression, recorded or not.
    nb = write_nb(tmp_path / "one.ipynb", [
        "import asyncio\n"
        "loop = asyncio.get_running_loop()\n"
        "task = asyncio.current_task()\n"
        "await asyncio.sleep(0)\n"
        "print(asyncio.current_task() is task)\n"
        "await asyncio.sleep(0, result='value')"])
    args = ["-o", tmp_path / "out.ipynb"] if record else []
    r = run([apyrun, "--loop", loop, *args, nb], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "True\n"), r.stderr


@pytest.mark.parametrize("indent", [1, None])
def test_traceback_with_source_as_one_string(apyrun, tmp_path, indent):
    # Not Jupyter's layout: every line of a cell is on the JSON line of
    # its string; tracebacks name that line (the code shown would be
    # ambiguous, so none is).
    import json
    nb = tmp_path / "one.ipynb"
    nb.write_text(json.dumps({
        "cells": [{"cell_type": "code", "metadata": {}, "outputs": [],
                   "execution_count": None,
                   "source": "def f():\n    return 1 / 0\n\nf()"}],
        "metadata": {"kernelspec": {"name": "python3",
                                    "language": "python",
                                    "display_name": "Python 3"}},
        "nbformat": 4, "nbformat_minor": 4}, indent=indent))
    for args in ([], ["-o", tmp_path / "out.ipynb"]):
        r = run([apyrun, *args, nb], cwd=tmp_path)
        assert r.returncode == 1
        line = json_line(nb, "return 1 / 0")
        assert f'File "{nb}", line {line}, in f' in r.stderr
        assert not [ln for ln in r.stderr.splitlines()
                    if ln.startswith("    ")], r.stderr
        assert "ZeroDivisionError" in r.stderr


def test_source_as_one_string_with_multi_line_code(apyrun, tmp_path):
    """A source given as one JSON string (sphinx-gallery writes them):
    every line of it is on one JSON line, so a node over two lines starts
    and ends there; it still compiles, and its errors name that line."""
    nb = tmp_path / "one.ipynb"
    nb.write_text(json.dumps({
        "cells": [{"cell_type": "code", "metadata": {}, "outputs": [],
                   "execution_count": None,
                   "source": "x = (1 +\n     2)\nprint(x, [i\n for i in "
                             "range(3)])\ny = {'a':\n 1}\ny['b'\n]"}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == 1
    assert r.stdout == "3 [0, 1, 2]\n"
    assert "KeyError: 'b'" in r.stderr
    assert f'File "{nb}", line 1' in r.stderr


@pytest.mark.parametrize("source", ["x = (1,\n  2", "if True:\n",
                                    "s = '''abc"])
def test_a_cell_that_ends_too_soon_is_incomplete_input(apyrun, tmp_path,
                                                       source):
    """Cells are parsed as IPython parses them (codeop's flags): one that
    ends inside a bracket, a block or a string is "incomplete input", the
    error a kernel records."""
    nb = write_nb(tmp_path / "s.ipynb", [source])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, nb, "-o", out], cwd=tmp_path)
    assert r.returncode == 1
    err = json.loads(out.read_text())["cells"][0]["outputs"][0]
    assert (err["ename"], err["evalue"].split(" (")[0]) == (
        "SyntaxError", "incomplete input")
