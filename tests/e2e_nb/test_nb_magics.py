# SPDX-License-Identifier: MIT
"""IPython syntax without IPython (issue 3 section 2): !cmd, x = !cmd, %cd,
%env, %time, %%time, %%bash, %%sh, %%writefile, %%capture, %pip,
%matplotlib; other magics through IPython when importable, else a clear
error naming the cell and the magic; magic-looking text in strings is left
alone.  Outputs are checked live and in the recorded notebook."""
import importlib.util
import os
import re

import pytest

from conftest import json_line, outputs, read_valid, run, stream_text
from conftest import child_env, no_leak_check, write_nb

HAVE_IPYTHON = importlib.util.find_spec("IPython") is not None
TIMES = re.compile(r"CPU times: user [\d.]+ (s|ms|µs|ns), sys: [\d.]+ "
                   r"(s|ms|µs|ns), total: [\d.]+ (s|ms|µs|ns)\n"
                   r"Wall time: [\d.]+ (s|ms|µs|ns)\n")


def run_recorded(apyrun, tmp_path, cells, *args, name="m.ipynb", env=None):
    nb = write_nb(tmp_path / name, cells)
    out = tmp_path / ("out-" + name)
    r = run([apyrun, *args, "-o", out, nb], cwd=tmp_path, env=env)
    return r, read_valid(out), nb


def test_shell_commands(apyrun, tmp_path):
    r, got, _ = run_recorded(apyrun, tmp_path, [
        "!echo hello from sh\n"
        "files = !printf 'a\\nb\\n'\n"
        "print(files)\n"
        "name = 'world'\n"
        "!echo {name} $name {1 + 2} '$$NOT_EXPANDED' { name }\n"
        "!echo '{no_such_name}' $HOME_IS_SHELLS\n"
        "if True:\n"
        "    !echo indented\n"
        "!exit 3\n"
        "print('exit code', _exit_code)",
        "!echo to stderr >&2",
    ])
    assert r.returncode == 0, r.stderr
    # `{ name }`: blanks around the expression, as eval() takes them
    # (IPython expands it; tests/fuzz/fuzz_magics.c found it was not).
    # Recorded, `!cmd` runs on a pty as in ipykernel: "\r\n" (shown so
    # too); `x = !cmd` on a pipe.
    expected = ("hello from sh\r\n['a', 'b']\nworld world 3 "
                "$NOT_EXPANDED world\r\n{no_such_name}\r\nindented\r\n"
                "exit code 3\n")
    assert r.stdout.startswith(expected)
    assert stream_text(outputs(got, 0)) == expected
    # stderr is merged into the output, as in Jupyter.
    assert stream_text(outputs(got, 1)) == "to stderr\r\n"
    # Not recorded: on pipes, as before.
    r = run([apyrun, tmp_path / "m.ipynb"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == expected.replace("\r\n", "\n") + "to stderr\n"


def test_magic_text_in_strings_and_expressions_is_left_alone(apyrun,
                                                             tmp_path):
    nb = write_nb(tmp_path / "s.ipynb", [
        "s = '''\n!echo not run\n%cd /\n'''\n"
        "t = \"\"\"%%time\n!x\"\"\"\n"
        "x = (10\n%3)\n"
        "y = 7 \\\n% 4\n"
        "print(repr(s), repr(t), x, y)  # !echo in a comment",
    ])
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("'\\n!echo not run\\n%cd /\\n' '%%time\\n!x' 1 3\n")


def test_cd_and_env(apyrun, tmp_path):
    (tmp_path / "sub dir").mkdir()
    r, got, _ = run_recorded(apyrun, tmp_path, [
        "import os\n%cd sub dir\nprint(os.getcwd())\n%cd -\n"
        "print(os.getcwd())",
        "%env APYRUN_TEST_VAR=one two\n"
        "print(os.environ['APYRUN_TEST_VAR'])\n"
        "%env APYRUN_OTHER 5\n"
        "v = %env APYRUN_OTHER\n"
        "e = %env\n"
        "print(repr(v), type(e).__name__)\n"
        "!echo $APYRUN_OTHER",
    ])
    assert r.returncode == 0, r.stderr
    d = str(tmp_path / "sub dir")
    assert stream_text(outputs(got, 0)) == (
        f"{d}\n{d}\n{tmp_path}\n{tmp_path}\n")
    assert stream_text(outputs(got, 1)) == (
        "env: APYRUN_TEST_VAR=one two\none two\nenv: APYRUN_OTHER=5\n"
        "'5' dict\n5\r\n")


def test_time(apyrun, tmp_path):
    r, got, _ = run_recorded(apyrun, tmp_path, [
        "%time x = sum(range(10))\nprint(x)",
        "import asyncio\ny = %time await asyncio.sleep(0.01, result=7)\n"
        "print(y)\n%time 6 * 7",
        "%%time\nimport time\ntime.sleep(0.02)\nprint('timed body')\n"
        "'body value'",
    ])
    assert r.returncode == 0, r.stderr
    out0 = stream_text(outputs(got, 0))
    assert TIMES.fullmatch(out0.replace("45\n", "")), out0
    assert out0.endswith("45\n")
    out1 = outputs(got, 1)
    assert stream_text(out1).count("Wall time") == 2
    assert "\n7\n" in stream_text(out1)
    assert out1[-1]["output_type"] == "execute_result"
    assert out1[-1]["data"]["text/plain"] == "42"
    out2 = outputs(got, 2)
    text = stream_text(out2)
    assert text.startswith("timed body\nCPU times: ")
    wall = re.search(r"Wall time: ([\d.]+) (ms|s)", text)
    assert wall, text
    assert any(o["output_type"] == "execute_result"
               and o["data"]["text/plain"] == "'body value'" for o in out2)


def test_time_cell_error_points_at_the_notebook(apyrun, tmp_path):
    nb = write_nb(tmp_path / "t.ipynb", ["%%time\nx = 1\n1 / 0  # here"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert r.returncode == 1
    assert f'File "{nb}", line {json_line(nb, "# here")}' in r.stderr
    assert "    1 / 0  # here" in r.stderr


def test_bash_and_sh(apyrun, tmp_path):
    r, got, _ = run_recorded(apyrun, tmp_path, [
        "%%bash\necho out $((6 * 7))\necho err >&2\necho again",
        "%%sh\necho sh works",
        "%%bash\necho failing\nexit 4",
        "print('not reached')",
    ])
    assert r.returncode == 1
    assert [(o["name"], o["text"]) for o in outputs(got, 0)] in (
        [("stdout", "out 42\n"), ("stderr", "err\n"),
         ("stdout", "again\n")],
        [("stdout", "out 42\nagain\n"), ("stderr", "err\n")],
        [("stderr", "err\n"), ("stdout", "out 42\nagain\n")],
    )
    assert stream_text(outputs(got, 1)) == "sh works\n"
    err = [o for o in outputs(got, 2) if o["output_type"] == "error"]
    assert err[0]["ename"] == "CalledProcessError"
    assert "apyrun: error in cell 3, In [3]" in r.stderr
    assert "not reached" not in r.stdout


def test_script_options(apyrun, tmp_path):
    """%%script's --out keeps the whole text (IPython 8.5 kept the last
    line, its issue #13499); --bg hands out the pipe and the process; a
    cell bigger than a pipe's buffer reaches the program whole."""
    big = "x" * 200000
    r, got, _ = run_recorded(apyrun, tmp_path, [
        "%%bash --out o\necho one\necho two",
        "print(repr(o))",
        "%%bash --bg --out bo --err be --proc p\necho out; echo err >&2",
        "print(p.wait(), bo.read(), be.read())",
        f"%%python3 --out n\ns = '{big}'\nprint(len(s))",
        "print(n, end='')",
        "%%bash --o=short\necho prefix",
        "print(repr(short))",
        "%%bash --out\necho",
    ])
    assert r.returncode == 1
    texts = [stream_text(outputs(got, i)) for i in range(8)]
    assert texts == ["", "'one\\ntwo\\n'\n", "", "0 b'out\\n' b'err\\n'\n",
                     "", "200000\n", "", "'prefix\\n'\n"]
    err = [o for o in outputs(got, 8) if o["output_type"] == "error"]
    assert err[0]["evalue"] == "%%bash: option --out: expected one argument"


def test_script_bg_killed_at_exit(apyrun, tmp_path):
    """A --bg program still running when the notebook ends is ended, as
    IPython's atexit hook ends it: apyrun does not leave it behind."""
    pidfile = tmp_path / "pid"
    r, got, _ = run_recorded(apyrun, tmp_path, [
        f"%%bash --bg\necho $$ > {pidfile}; exec sleep 60",
        "import time\nfor _ in range(100):\n"
        f"    if open('{pidfile}').read().strip(): break\n"
        "    time.sleep(0.05)",
    ])
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive


def test_writefile(apyrun, tmp_path):
    r, got, _ = run_recorded(apyrun, tmp_path, [
        "%%writefile hello.py\nprint('written')\n",
        "%%writefile -a hello.py\nprint('appended')\n",
        "%%writefile hello.py\nprint('over')\n",
        "import hello",
    ])
    assert r.returncode == 0, r.stderr
    assert [stream_text(outputs(got, i)) for i in range(4)] == [
        "Writing hello.py\n", "Appending to hello.py\n",
        "Overwriting hello.py\n", "over\n"]
    assert (tmp_path / "hello.py").read_text() == "print('over')\n"


def test_capture(apyrun, tmp_path):
    r, got, _ = run_recorded(apyrun, tmp_path, [
        "%%capture cap\nimport sys\nprint('captured out')\n"
        "print('captured err', file=sys.stderr)\ndisplay('shown later')",
        "print(repr(cap.stdout), repr(cap.stderr), len(cap.outputs))",
        "cap.show()",
        "%%capture --no-stderr\nimport sys\nprint('gone')\n"
        "print('kept', file=sys.stderr)",
    ])
    assert r.returncode == 0, r.stderr
    assert outputs(got, 0) == []
    assert stream_text(outputs(got, 1)) == (
        "'captured out\\n' 'captured err\\n' 1\n")
    shown = outputs(got, 2)
    assert stream_text(shown) == "captured out\n"
    assert stream_text(shown, "stderr") == "captured err\n"
    assert shown[-1]["data"] == {"text/plain": "'shown later'"}
    assert stream_text(outputs(got, 3), "stderr") == "kept\n"
    assert "gone" not in r.stdout
    # Only show() put it on the terminal.
    assert r.stdout.splitlines().count("captured out") == 1


def test_capture_without_recording(apyrun, tmp_path):
    nb = write_nb(tmp_path / "c.ipynb", [
        "%%capture c\nprint('hidden')", "print(c.stdout, end='')"])
    r = run([apyrun, nb], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "hidden\n")


def test_pip(apyrun, tmp_path):
    pytest.importorskip("pip")
    r, got, _ = run_recorded(apyrun, tmp_path, ["%pip --version"])
    assert r.returncode == 0, r.stderr
    text = stream_text(outputs(got, 0))
    assert text.startswith("pip ") and "python 3.11" in text
    assert "restart the kernel" in text


def test_matplotlib_magic(apyrun, tmp_path):
    pytest.importorskip("matplotlib")
    # pyplot imports numpy, whose modules leak at import.
    # With IPython and matplotlib-inline, %matplotlib inline is theirs, as
    # in a kernel; without them (IPython hidden here), apyrun's Agg.
    inline = (HAVE_IPYTHON
              and importlib.util.find_spec("matplotlib_inline") is not None)
    for hide, backend in (("", "module://matplotlib_inline.backend_inline"
                           if inline else "agg"),
                          ("import sys\nsys.modules['IPython'] = None\n",
                           "agg")):
        r, got, _ = run_recorded(apyrun, tmp_path, [
            hide + "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
            "plt.plot([1, 2])\nprint(plt.get_backend())"],
            env=child_env(no_leak_check()))
        assert r.returncode == 0, r.stderr
        outs = outputs(got, 0)
        assert stream_text(outs).lower() == backend + "\n"
        assert any("image/png" in o.get("data", {}) for o in outs)


@pytest.mark.skipif(not HAVE_IPYTHON
                    or importlib.util.find_spec("matplotlib_inline") is None,
                    reason="IPython or matplotlib-inline is not installed")
def test_matplotlib_frontend_backends_say_they_need_one(apyrun, tmp_path):
    pytest.importorskip("matplotlib")
    r, got, _ = run_recorded(apyrun, tmp_path, [
        "%matplotlib notebook", "import matplotlib.pyplot as plt\n"
        "plt.plot([1])\nprint(plt.get_backend())", "%matplotlib widget"],
        env=child_env(no_leak_check()))
    assert r.returncode == 0, r.stderr
    for gui in ("notebook", "widget"):
        assert (f"apyrun: %matplotlib {gui} needs a Jupyter frontend"
                in r.stderr)
    assert outputs(got, 0) == [] and outputs(got, 2) == []
    outs = outputs(got, 1)
    assert stream_text(outs) == "module://matplotlib_inline.backend_inline\n"
    assert any("image/png" in o.get("data", {}) for o in outs)


@pytest.mark.skipif(not HAVE_IPYTHON, reason="IPython is not installed")
def test_other_magics_go_through_ipython(apyrun, tmp_path):
    r, got, _ = run_recorded(apyrun, tmp_path, [
        "a_name = 1\nnames = %who_ls\nprint(names)",
        "%%html\n<b>html</b>",
    ])
    assert r.returncode == 0, r.stderr
    assert stream_text(outputs(got, 0)) == "['a_name']\n"
    assert any("text/html" in o.get("data", {}) for o in outputs(got, 1))


def test_other_magic_without_ipython_is_a_clear_error(apyrun, tmp_path):
    # -S keeps dist-packages (and so IPython) off sys.path.
    nb = write_nb(tmp_path / "n.ipynb", ["x = 1", "%who_ls", "print('no')"])
    r = run([apyrun, "-S", nb], cwd=tmp_path)
    assert r.returncode == 1
    assert "%who_ls" in r.stderr and "IPython" in r.stderr
    assert r.stderr.splitlines()[-1] == f"apyrun: error in cell 2, In [2] of {nb}"
    assert r.stdout == ""
