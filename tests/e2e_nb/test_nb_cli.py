# SPDX-License-Identifier: MIT
"""apyrun's options after the notebook (DESIGN 1 and 3, issue 9 item 5).

`apyrun nb.ipynb -o out.ipynb`, as papermill users type it, takes -o (it
used to become the notebook's argv and nothing was written); `--` ends
apyrun's options and passes the rest on unchanged; other words stay the
notebook's arguments; an unknown option before `--` is a usage error that
says where the notebook's own arguments go.  Scripts keep python's rule:
tests/e2e/test_launcher.py checks that differentially.
"""
import os

import pytest

from conftest import (cell, outputs, read_valid, run, stream_text,
                      write_nb)

ARGV = "import sys\nprint('argv', sys.argv[1:])"


def test_output_after_the_notebook(apyrun, tmp_path):
    nb = write_nb(tmp_path / "nb.ipynb", [ARGV])
    r = run([apyrun, "nb.ipynb", "-o", "out.ipynb"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "argv []\n"
    got = read_valid(tmp_path / "out.ipynb")
    assert stream_text(outputs(got, 0)) == "argv []\n"
    assert read_valid(nb).cells[0].outputs == []


@pytest.mark.parametrize("spelling", [
    ["-o", "out.ipynb"], ["-oout.ipynb"], ["--output", "out.ipynb"],
    ["--output=out.ipynb"]])
def test_output_spellings_after_the_notebook(apyrun, tmp_path, spelling):
    write_nb(tmp_path / "nb.ipynb", [ARGV])
    r = run([apyrun, "nb.ipynb", *spelling], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "argv []\n"), r.stderr
    assert stream_text(outputs(read_valid(tmp_path / "out.ipynb"), 0)) \
        == "argv []\n"


def test_parameters_after_the_notebook(apyrun, tmp_path):
    (tmp_path / "params.json").write_text('{"b": 2.5}')
    write_nb(tmp_path / "p.ipynb", [
        cell("a = b = 'default'", tags=["parameters"]),
        "print(repr(a), repr(b))\n" + ARGV])
    r = run([apyrun, "p.ipynb", "-p", "a", "42", "--params-file",
             "params.json"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "42 2.5\nargv []\n"


def test_timeout_after_the_notebook(apyrun, tmp_path):
    write_nb(tmp_path / "t.ipynb", ["import time\ntime.sleep(20)"])
    for timeout in (["--timeout", "0.5"], ["--timeout=0.5"],
                    ["--total-timeout", "0.5"]):
        r = run([apyrun, "t.ipynb", *timeout], cwd=tmp_path)
        assert r.returncode == 124, (timeout, r.stderr)
        assert "expired in cell 1" in r.stderr


def test_inplace_after_the_notebook(apyrun, tmp_path):
    nb = write_nb(tmp_path / "i.ipynb", [ARGV])
    r = run([apyrun, "i.ipynb", "--inplace"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert stream_text(outputs(read_valid(nb), 0)) == "argv []\n"


def test_allow_errors_and_cwd_after_the_notebook(apyrun, tmp_path):
    (tmp_path / "work").mkdir()
    write_nb(tmp_path / "nbs" / "a.ipynb", [
        "raise KeyError('k')", "import os\nprint(os.getcwd())\n" + ARGV])
    r = run([apyrun, "nbs/a.ipynb", "--allow-errors", "--cwd", "work"],
            cwd=tmp_path)
    assert r.returncode == 1, "the unexpected error still fails the run"
    assert r.stdout == f"{tmp_path / 'work'}\nargv []\n"
    assert "KeyError" in r.stderr


def test_loop_after_the_notebook(apyrun, tmp_path):
    write_nb(tmp_path / "l.ipynb", [
        "import asyncio\nprint(type(asyncio.get_running_loop()).__module__)"
        "\n" + ARGV])
    r = run([apyrun, "l.ipynb", "--loop", "asyncio"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "asyncio.unix_events\nargv []\n"


def test_double_dash_passes_the_rest_to_the_notebook(apyrun, tmp_path):
    write_nb(tmp_path / "nb.ipynb", [ARGV])
    r = run([apyrun, "nb.ipynb", "--", "-o", "x", "--bogus", "--", "-p"],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "argv ['-o', 'x', '--bogus', '--', '-p']\n"
    assert not os.path.exists(tmp_path / "x")


def test_words_stay_the_notebooks_wherever_they_are(apyrun, tmp_path):
    write_nb(tmp_path / "nb.ipynb", [ARGV])
    r = run([apyrun, "nb.ipynb", "data.csv", "-o", "out.ipynb", "-5", "-",
             "b c", "--", "-v"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "argv ['data.csv', '-5', '-', 'b c', '-v']\n"
    assert os.path.exists(tmp_path / "out.ipynb")


@pytest.mark.parametrize("args, bad", [
    (["--verbose"], "--verbose"),
    (["data.csv", "-v", "3"], "-v"),
    (["-X", "dev"], "-X"),
    (["--timout", "5"], "--timout"),
    (["--help"], "--help"),
])
def test_unknown_option_after_the_notebook_is_a_usage_error(
        apyrun, tmp_path, args, bad):
    write_nb(tmp_path / "nb.ipynb", ["print('must not run')"])
    r = run([apyrun, "nb.ipynb", *args], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (2, "")
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"apyrun: unknown option '{bad}' after the "
                               "notebook")
    assert f"apyrun nb.ipynb -- {bad}" in lines[0], "says where it goes"


@pytest.mark.parametrize("args, word", [
    (["--timeout", "soon"], "soon"), (["-o"], "-o"), (["-p", "a"], "-p"),
    (["--inplace", "-o", "x.ipynb"], "--inplace")])
def test_bad_option_after_the_notebook_is_a_usage_error(apyrun, tmp_path,
                                                        args, word):
    write_nb(tmp_path / "nb.ipynb", ["print('must not run')"])
    r = run([apyrun, "nb.ipynb", *args], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (2, "")
    assert len(r.stderr.splitlines()) == 1 and word in r.stderr, r.stderr
