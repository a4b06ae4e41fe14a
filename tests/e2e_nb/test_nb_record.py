# SPDX-License-Identifier: MIT
"""Recording the executed notebook (issue 3 section 3): -o and --inplace,
streams merged in order, execute_result, display_data (display(), _repr_*_
bundles, matplotlib figures), error outputs, execution counts, nbclient's
timing metadata, saving after every cell.  Every notebook written is
checked with nbformat's validator."""
import base64
import datetime
import os
import time

import pytest
from nbformat.v4 import new_output

from conftest import (cell, child_env, executed, outputs, read_valid, run,
                      spawn, stream_text, write_nb, kill_group, finish,
                      no_leak_check)


def test_streams_merged_in_order_and_live(apyrun, tmp_path):
    nb = write_nb(tmp_path / "s.ipynb", [
        "import sys\n"
        "print('a')\nprint('b')\n"
        "print('c', file=sys.stderr)\n"
        "sys.stdout.write('d')\nsys.stdout.writelines(['e', 'f\\n'])\n"
        "print('g', file=sys.stderr)",
        "print('second cell')",
    ])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "-o", out, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # Live on the terminal as well.
    assert r.stdout == "a\nb\ndef\nsecond cell\n"
    assert r.stderr == "c\ng\n"
    got = read_valid(out)
    assert [(o["output_type"], o["name"], o["text"])
            for o in outputs(got, 0)] == [
        ("stream", "stdout", "a\nb\n"), ("stream", "stderr", "c\n"),
        ("stream", "stdout", "def\n"), ("stream", "stderr", "g\n")]
    assert stream_text(outputs(got, 1)) == "second cell\n"


def test_fd_output_is_recorded_in_order_and_live(apyrun, tmp_path):
    # What reaches fds 1 and 2 without sys.stdout/sys.stderr: a child
    # process, C's stdio, a UTF-8 character split across two writes.
    split = ("import os, sys; os.write(1, b'\\xc3'); "
             "os.write(1, b'\\xa9 split\\n')")
    nb = write_nb(tmp_path / "f.ipynb", [
        "import os, subprocess, sys\n"
        "print('one')\nos.system('echo two')\nprint('three')\n"
        "subprocess.run(['sh', '-c', 'echo four >&2'])\n"
        "print('five', file=sys.stderr)",
        "import ctypes\nlibc = ctypes.CDLL(None)\n"
        "libc.printf(b'from C\\n')\nlibc.fflush(None)\nprint('six')",
        f"subprocess.run([sys.executable, '-c', {split!r}]);",
        "print(sys.stdout.isatty(), sys.stdout.encoding)",
        "print('last')",
    ])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "-o", out, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # Shown live too, every line once.
    assert sorted(r.stdout.splitlines()) == sorted([
        "one", "two", "three", "from C", "six", "é split",
        "False utf-8", "last"])
    assert sorted(r.stderr.splitlines()) == ["five", "four"]
    got = read_valid(out)
    assert [(o["output_type"], o["name"], o["text"])
            for o in outputs(got, 0)] == [
        ("stream", "stdout", "one\ntwo\nthree\n"),
        ("stream", "stderr", "four\nfive\n")]
    assert stream_text(outputs(got, 1)) == "from C\nsix\n"
    assert stream_text(outputs(got, 2)) == "é split\n"
    assert stream_text(outputs(got, 4)) == "last\n"


def test_fd_output_without_recording_is_untouched(apyrun, tmp_path):
    # Not recording: fds 1 and 2 stay the program's own (our pipes here).
    nb = write_nb(tmp_path / "f.ipynb", [
        "import os, sys\n"
        "print(sys.stdout.fileno(), os.fstat(1).st_ino, os.fstat(2).st_ino)",
    ])
    proc = spawn([apyrun, nb], cwd=tmp_path)
    inodes = (os.fstat(proc.stdout.fileno()).st_ino,
              os.fstat(proc.stderr.fileno()).st_ino)
    r = finish(proc)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", str(inodes[0]), str(inodes[1])]


def test_fd_of_a_child_left_running_does_not_hang(apyrun, tmp_path):
    # A child that outlives the run keeps the captured fd 1 open: the run
    # still ends, and the notebook has what came while the cell ran (run()
    # kills the child's process group afterwards).
    nb = write_nb(tmp_path / "b.ipynb", [
        "import subprocess\n"
        "p = subprocess.Popen(['sh', '-c', 'echo started; sleep 30'])\n"
        "import time\ntime.sleep(0.5)",
        "print('end')",
    ])
    out = tmp_path / "out.ipynb"
    t0 = time.monotonic()
    r = run([apyrun, "-o", out, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 20
    got = read_valid(out)
    assert stream_text(outputs(got, 0)) == "started\n"
    assert stream_text(outputs(got, 1)) == "end\n"


def test_execute_result_and_counts(apyrun, tmp_path):
    nb = write_nb(tmp_path / "r.ipynb", [
        cell("# title", kind="markdown"),
        "1 + 1",
        cell("print('skip')", tags=["skip-execution"]),
        "x = [1, 2]\nx",
        "None",
        "x;",
        "import asyncio\nawait asyncio.sleep(0, result='awaited')",
    ])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "-o", out, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    got = read_valid(out)
    assert executed(got) == [1, None, 2, 3, 4, 5]
    res = outputs(got, 1)
    assert res == [{"output_type": "execute_result", "execution_count": 1,
                    "data": {"text/plain": "2"}, "metadata": {}}]
    assert outputs(got, 2) == []
    assert outputs(got, 3)[0]["data"]["text/plain"] == "[1, 2]"
    assert outputs(got, 3)[0]["execution_count"] == 2
    assert outputs(got, 4) == []  # None is not a result
    assert outputs(got, 5) == []  # a trailing ';' silences it
    assert outputs(got, 6)[0]["data"]["text/plain"] == "'awaited'"


def test_timing_metadata(apyrun, tmp_path):
    nb = write_nb(tmp_path / "t.ipynb", ["import time\ntime.sleep(0.05)"])
    out = tmp_path / "out.ipynb"
    assert run([apyrun, "-o", out, nb], cwd=tmp_path).returncode == 0
    ex = read_valid(out).cells[0].metadata["execution"]
    keys = ["iopub.status.busy", "iopub.execute_input",
            "shell.execute_reply", "iopub.status.idle"]
    assert sorted(ex) == sorted(keys)
    stamps = [datetime.datetime.strptime(ex[k], "%Y-%m-%dT%H:%M:%S.%fZ")
              for k in keys]
    assert stamps == sorted(stamps)
    assert (stamps[2] - stamps[1]).total_seconds() >= 0.05


def test_display_and_mime_bundles(apyrun, tmp_path):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    nb = write_nb(tmp_path / "d.ipynb", [
        "import base64\n"
        "class Rich:\n"
        "    def _repr_html_(self): return '<b>rich</b>'\n"
        "    def _repr_markdown_(self): return '**rich**'\n"
        f"    def _repr_png_(self): return base64.b64decode('{png}')\n"
        "    def _repr_svg_(self): return '<svg></svg>'\n"
        "    def _repr_json_(self): return {'k': [1, 2]}\n"
        "    def _repr_latex_(self): return '$x$'\n"
        "    def __repr__(self): return 'Rich()'\n"
        "class Bundle:\n"
        "    def _repr_mimebundle_(self, include=None, exclude=None):\n"
        "        return {'text/html': '<i>b</i>', 'text/plain': 'B'}, "
        "{'text/html': {'isolated': True}}\n"
        "class Broken:\n"
        "    def _repr_html_(self): raise ValueError('no html')\n"
        "    def __repr__(self): return 'Broken()'\n"
        "print('before')\n"
        "display(Rich())\n"
        "print('between')\n"
        "display(Bundle(), 'two')\n"
        "display(Broken())\n"
        "display({'text/plain': 'raw!'}, raw=True)\n"
        "Rich()",
    ])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "-o", out, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ValueError: no html" in r.stderr
    outs = outputs(read_valid(out), 0)
    kinds = [o["output_type"] for o in outs]
    assert kinds[:2] == ["stream", "display_data"]
    rich = outs[1]["data"]
    assert rich == {"text/html": "<b>rich</b>", "text/markdown": "**rich**",
                    "image/png": png, "image/svg+xml": "<svg></svg>",
                    "application/json": {"k": [1, 2]}, "text/latex": "$x$",
                    "text/plain": "Rich()"}
    assert outs[2]["text"] == "between\n"
    assert outs[3]["data"] == {"text/html": "<i>b</i>", "text/plain": "B"}
    assert outs[3]["metadata"] == {"text/html": {"isolated": True}}
    assert outs[4]["data"] == {"text/plain": "'two'"}
    broken = [o for o in outs if o.get("data", {}).get("text/plain")
              == "Broken()"]
    assert len(broken) == 1 and "text/html" not in broken[0]["data"]
    assert any(o.get("data") == {"text/plain": "raw!"} for o in outs)
    assert outs[-1]["output_type"] == "execute_result"
    assert outs[-1]["data"]["text/html"] == "<b>rich</b>"


def test_display_without_recording_prints_text(apyrun, tmp_path):
    nb = write_nb(tmp_path / "d.ipynb", [
        "class R:\n    def _repr_html_(self): return '<b/>'\n"
        "    def __repr__(self): return 'R()'\n"
        "display(R(), 'x')"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "R()\n'x'\n")


def test_error_outputs(apyrun, tmp_path):
    nb = write_nb(tmp_path / "e.ipynb", [
        "print('partial')\nraise ValueError('bad value')",
        "print('not run')"])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "-o", out, nb], cwd=tmp_path)
    assert r.returncode == 1
    got = read_valid(out)
    outs = outputs(got, 0)
    assert outs[0]["text"] == "partial\n"
    err = outs[1]
    assert err["output_type"] == "error"
    assert (err["ename"], err["evalue"]) == ("ValueError", "bad value")
    tb = "".join(err["traceback"])
    assert f'File "{nb}"' in tb and "ValueError: bad value" in tb
    assert executed(got) == [1, None]
    assert outputs(got, 1) == []


def test_matplotlib_figures_become_png(apyrun, tmp_path):
    pytest.importorskip("matplotlib")
    nb = write_nb(tmp_path / "m.ipynb", [
        "import matplotlib\nprint(matplotlib.get_backend())\n"
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\nplt.figure()\nplt.bar([1], [2])",
        "print(len(plt.get_fignums()))",
        "fig, ax = plt.subplots()\nax.plot([3, 2])\ndisplay(fig)\n"
        "plt.close(fig)",
    ])
    out = tmp_path / "out.ipynb"
    # pyplot imports numpy, whose modules leak at import.
    r = run([apyrun, "-o", out, nb], cwd=tmp_path,
            env=child_env(no_leak_check()))
    assert r.returncode == 0, r.stderr
    got = read_valid(out)
    outs = outputs(got, 0)
    assert outs[0]["text"].lower() == "agg\n"
    pngs = [o for o in outs if o["output_type"] == "display_data"]
    assert len(pngs) == 2
    for o in pngs:
        assert base64.b64decode(o["data"]["image/png"])[:4] == b"\x89PNG"
        assert o["data"]["text/plain"].startswith("<Figure size")
    assert stream_text(outputs(got, 1)) == "0\n"  # closed after the cell
    shown = [o for o in outputs(got, 2) if o["output_type"] == "display_data"]
    assert len(shown) == 1


def test_user_backend_is_kept(apyrun, tmp_path):
    pytest.importorskip("matplotlib")
    nb = write_nb(tmp_path / "m.ipynb", [
        "import matplotlib\nprint(matplotlib.get_backend())"])
    # matplotlib imports numpy, whose modules leak at import.
    r = run([apyrun, nb], cwd=tmp_path,
            env={**os.environ, "MPLBACKEND": "svg", **no_leak_check()})
    assert r.stdout == "svg\n"


def test_inplace(apyrun, tmp_path):
    nb = write_nb(tmp_path / "i.ipynb", ["print('in place')"])
    r = run([apyrun, "--inplace", nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = read_valid(nb)
    assert stream_text(outputs(got, 0)) == "in place\n"
    assert os.listdir(tmp_path) == ["i.ipynb"]  # no temporary files left


def test_stale_outputs_are_cleared(apyrun, tmp_path):
    stale = cell("print('new')")
    stale.outputs = [new_output("stream", name="stdout", text="old\n")]
    stale.execution_count = 9
    later = cell("print('later')")
    later.outputs = [new_output("stream", name="stdout",
                                text="old later\n")]
    later.execution_count = 10
    nb = write_nb(tmp_path / "s.ipynb", ["1/0", stale, later])
    out = tmp_path / "out.ipynb"
    run([apyrun, "-o", out, nb], cwd=tmp_path)
    got = read_valid(out)
    assert executed(got) == [1, None, None]
    assert outputs(got, 1) == [] and outputs(got, 2) == []


def test_saved_after_a_cell_a_second_after_the_last_save(apyrun, tmp_path):
    # Saves are throttled to one a second (DESIGN 3): the second cell ends
    # more than a second into the run, so the file holds both cells when
    # the third is killed, where nothing can be saved.
    nb = write_nb(tmp_path / "k.ipynb", [
        "print('first')", "import time\ntime.sleep(1.2)\nprint('second')",
        "import time\nprint('third, partial', flush=True)\ntime.sleep(60)"])
    out = tmp_path / "out.ipynb"
    proc = spawn([apyrun, "-o", out, nb], cwd=tmp_path)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if proc.stdout.readline().startswith(b"third"):
                break
        else:
            pytest.fail("the third cell never started")
        kill_group(proc)  # SIGKILL: nothing can be saved at this point
        proc.wait()
    finally:
        kill_group(proc)
    got = read_valid(out)
    assert stream_text(outputs(got, 0)) == "first\n"
    assert stream_text(outputs(got, 1)) == "second\n"
    assert executed(got)[:2] == [1, 2]
    assert [p for p in os.listdir(tmp_path)
            if p not in ("k.ipynb", "out.ipynb")] == []


def test_unwritable_output_is_exit_2(apyrun, tmp_path):
    nb = write_nb(tmp_path / "w.ipynb", ["print('should not run')"])
    r = run([apyrun, "-o", tmp_path / "no" / "such" / "dir.ipynb", nb],
            cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert "dir.ipynb" in r.stderr


def test_output_relative_to_invocation_dir(apyrun, tmp_path):
    nb = write_nb(tmp_path / "sub" / "n.ipynb", ["print(1)"])
    r = run([apyrun, "-o", "result.ipynb", "sub/n.ipynb"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    read_valid(tmp_path / "result.ipynb")
    assert not (tmp_path / "sub" / "result.ipynb").exists()


def test_which_cells_have_a_result(apyrun, tmp_path):
    # Recorded cells skip the AST pass when their code cannot end with an
    # expression (cells.c may_end_with_expr); constant expressions, which
    # the compiler drops, and docstrings must still give results.
    cases = [("1 + 1", "2"), ("x = 1\n'abc'", "'abc'"), ("x = 1", None),
             ("x = 1; 'abc'", "'abc'"), ("def f():\n    return 3\nf()", "3"),
             ("import os", None), ("for i in range(2):\n    i", None),
             ("x = (1,\n 2)\n# c\n", None), ("None", None),
             ("...", "Ellipsis"), ("if True:\n    5", None),
             ("x = 2\nx", "2"), ("'''doc'''", "'doc'"),
             ("async def g():\n    return 7\nawait g()", "7"),
             ("y = [\n1,\n2]\ny\n\n# end", "[1, 2]"), ("x = 3;", None)]
    nb = write_nb(tmp_path / "e.ipynb", [src for src, _ in cases])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "-o", out, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = read_valid(out)
    results = [[o["data"]["text/plain"] for o in outputs(got, i)]
               for i in range(len(cases))]
    assert results == [[want] if want else [] for _, want in cases]


def test_blank_and_skipped_cells_keep_what_they_stored(apyrun, tmp_path):
    """nbclient skips a blank cell (and one tagged skip-execution) before
    it clears anything: both keep their stored outputs and counts."""
    stored = new_output("execute_result", {"text/plain": "7"},
                        execution_count=4)
    blank = cell("  \n")
    blank.execution_count = 0
    blank.outputs = [stored]
    skipped = cell("print('no')", tags=["skip-execution"])
    skipped.execution_count = 9
    skipped.outputs = [stored]
    ran = cell("print('yes')")
    ran.execution_count = 5
    ran.outputs = [stored]
    nb = write_nb(tmp_path / "b.ipynb", [blank, skipped, ran])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, nb, "-o", out], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = read_valid(out)
    assert [c.execution_count for c in got.cells] == [0, 9, 1]
    assert got.cells[0].outputs == [stored] == got.cells[1].outputs
    assert got.cells[2].outputs[0].text == "yes\n"
