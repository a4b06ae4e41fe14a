# SPDX-License-Identifier: MIT
"""pytest --apyrun on single notebooks: outcomes, reports, options, and
the usage errors of a missing or unfit binary."""
import stat

import nbformat

from conftest import PLUGIN_DIR, child_env, inner_pytest, make_tree, write_nb

FAILING = ["print('before the error')",
           "import sys\nprint('to stderr', file=sys.stderr)\nx = 1\n1/0"]


def test_passing_notebook(tmp_path, batch):
    tree = make_tree(tmp_path, {"ok.ipynb": ["x = 2", "print(x * 21)"]})
    r = inner_pytest(tree, "--apyrun", "-v", binary=batch)
    assert r.returncode == 0, r
    assert "ok.ipynb PASSED" in r.stdout
    assert "1 passed" in r.stdout


def test_failure_names_the_cell_and_shows_the_traceback(tmp_path, batch):
    tree = make_tree(tmp_path, {"bad.ipynb": FAILING})
    r = inner_pytest(tree, "--apyrun", binary=batch)
    assert r.returncode == 1, r
    out = r.stdout
    # The section: apyrun's message line, then its captured output.
    message = "cell 2: ZeroDivisionError: division by zero"
    section = out[out.index("[apyrun] bad.ipynb"):]
    lines = section.splitlines()
    assert lines[1] == message, section
    assert "----- captured stdout -----\nbefore the error\n" in section
    assert "----- captured stderr -----\nto stderr\n" in section
    assert "Traceback (most recent call last):" in section
    assert "    1/0\n" in section
    # The short summary carries the message; no traceback of the plugin.
    assert f"FAILED bad.ipynb - {message}" in out
    assert "pytest_apyrun.py" not in out
    assert "NotebookFailure" not in out
    assert "1 failed" in out


def test_tb_line_points_into_the_notebook(tmp_path, batch):
    tree = make_tree(tmp_path, {"bad.ipynb": FAILING})
    r = inner_pytest(tree, "--apyrun", "--tb=line", binary=batch)
    assert r.returncode == 1, r
    # apyrun's traceback gives the line of `1/0` in the .ipynb file.
    path = tree / "bad.ipynb"
    lineno = next(i for i, line in enumerate(
        path.read_text().splitlines(), 1) if "1/0" in line)
    assert (f"{path}:{lineno}: cell 2: ZeroDivisionError: division by zero"
            in r.stdout), r


def test_non_python_notebook_is_skipped(tmp_path, batch):
    tree = make_tree(tmp_path, {})
    write_nb(tree / "r.ipynb", ["x <- 1"], language="R")
    r = inner_pytest(tree, "--apyrun", "-rs", binary=batch)
    assert r.returncode == 0, r
    assert "1 skipped" in r.stdout
    # The reason is apyrun's, and the location the notebook's.
    assert "SKIPPED [1] r.ipynb:1: kernel language is 'R'" in r.stdout, r


def test_timeout(tmp_path, batch):
    tree = make_tree(tmp_path, {"slow.ipynb": ["import time",
                                               "time.sleep(4)"]})
    r = inner_pytest(tree, "--apyrun", "--apyrun-timeout", "1",
                     binary=batch)
    assert r.returncode == 1, r
    assert "cell 2: --timeout (1s) expired" in r.stdout, r
    # Without the option the same notebook passes.
    r = inner_pytest(tree, "--apyrun", binary=batch)
    assert r.returncode == 0, r


def test_total_timeout(tmp_path, batch):
    tree = make_tree(tmp_path, {"slow.ipynb": ["import time",
                                               "time.sleep(0.8)",
                                               "time.sleep(0.8)"]})
    r = inner_pytest(tree, "--apyrun", "--apyrun-total-timeout", "1",
                     binary=batch)
    assert r.returncode == 1, r
    assert "--total-timeout (1s) expired" in r.stdout, r


def test_params(tmp_path, batch):
    tree = make_tree(tmp_path, {})
    write_nb(tree / "p.ipynb",
             ["alpha = 1\nname = 'x'",
              "assert (alpha, name) == (5, 'a b'), (alpha, name)"],
             tags={0: ["parameters"]})
    r = inner_pytest(tree, "--apyrun", "--apyrun-param", "alpha=5",
                     "--apyrun-param", "name=a b", binary=batch)
    assert r.returncode == 0, r
    r = inner_pytest(tree, "--apyrun", "--apyrun-param", "alpha=5",
                     binary=batch)
    assert r.returncode == 1, r
    assert "AssertionError: (5, 'x')" in r.stdout


def test_params_file(tmp_path, batch):
    tree = make_tree(tmp_path, {})
    write_nb(tree / "sub" / "p.ipynb",
             ["alpha = 1", "assert alpha == 7, alpha"],
             tags={0: ["parameters"]})
    (tree / "params.json").write_text('{"alpha": 7}')
    # A relative path is the invocation directory's, here sub/'s parent.
    r = inner_pytest(tree, "--apyrun", "--apyrun-params-file",
                     "../params.json", "..", cwd=tree / "sub", binary=batch)
    assert r.returncode == 0, r


def test_allow_errors_and_output_dir(tmp_path, batch):
    tree = make_tree(tmp_path, {"sub/e.ipynb": ["1/0", "print('after')"]})
    r = inner_pytest(tree, "--apyrun", binary=batch)
    assert r.returncode == 1, r
    r = inner_pytest(tree, "--apyrun", "--apyrun-allow-errors",
                     "--apyrun-output-dir", "out", binary=batch)
    assert r.returncode == 0, r
    # The executed notebook is under DIR by its path from the rootdir, as
    # `apyrun --test -o DIR` started there writes it.
    executed = (tree / "out" / "sub" / "e.ipynb").read_text()
    assert "ZeroDivisionError" in executed and "after" in executed


def test_checkpoints_are_not_collected(tmp_path, batch):
    tree = make_tree(tmp_path, {"ok.ipynb": ["pass"],
                                ".ipynb_checkpoints/ok-checkpoint.ipynb":
                                    ["1/0"],
                                "d/.ipynb_checkpoints/x-checkpoint.ipynb":
                                    ["1/0"]})
    # pytest's default norecursedirs ('.*') and a project's own both.
    for ini in ("[pytest]\n", "[pytest]\nnorecursedirs = build\n"):
        (tree / "pytest.ini").write_text(ini)
        r = inner_pytest(tree, "--apyrun", "--collect-only", "-q",
                         binary=batch)
        assert r.returncode == 0, r
        assert r.stdout.splitlines()[0] == "ok.ipynb", r
        assert "1 test collected" in r.stdout, r
    # Named on the command line, a checkpoint runs, as in apyrun --test.
    r = inner_pytest(tree, "--apyrun", "--collect-only", "-q",
                     ".ipynb_checkpoints/ok-checkpoint.ipynb", binary=batch)
    assert r.returncode == 0, r
    assert r.stdout.splitlines()[0] == \
        ".ipynb_checkpoints/ok-checkpoint.ipynb", r


def test_not_collected_without_the_flag(tmp_path):
    tree = make_tree(tmp_path, {"a.ipynb": ["1/0"], "d/b.ipynb": ["1/0"]})
    # The plugin is loaded, but without --apyrun it collects nothing and
    # looks for no binary: pytest's "no tests ran".
    r = inner_pytest(tree, "-v", binary=str(tmp_path / "nope"))
    assert r.returncode == 5, r
    assert "collected 0 items" in r.stdout, r
    assert "no tests ran" in r.stdout, r


def test_missing_binary_is_a_usage_error(tmp_path):
    tree = make_tree(tmp_path, {"a.ipynb": ["pass"]})
    r = inner_pytest(tree, "--apyrun", binary=str(tmp_path / "nope"))
    assert r.returncode == 4, r
    assert f"$APYRUN={tmp_path / 'nope'} is not an executable file" \
        in r.stderr, r
    # No $APYRUN, none installed beside the checkout's plugin, none on PATH.
    env_dir = tmp_path / "bin"
    env_dir.mkdir()
    env = child_env({"PYTHONPATH": PLUGIN_DIR, "PATH": str(env_dir)})
    r = inner_pytest(tree, "--apyrun", env=env)
    assert r.returncode == 4, r
    assert "no apyrun binary: set $APYRUN=PATH" in r.stderr, r
    assert "Traceback" not in r.stderr


def test_binary_without_test_mode_is_a_usage_error(tmp_path):
    tree = make_tree(tmp_path, {"a.ipynb": ["pass"]})
    # As a build from before --test: it accepts the words, runs nothing.
    fake = tmp_path / "old-apyrun"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    r = inner_pytest(tree, "--apyrun", binary=str(fake))
    assert r.returncode == 4, r
    assert f"{fake} --test does not work" in r.stderr, r


def test_bad_option_values_are_usage_errors(tmp_path, binary):
    tree = make_tree(tmp_path, {"a.ipynb": ["pass"]})
    # apyrun's own message, once, before any notebook runs.
    r = inner_pytest(tree, "--apyrun", "--apyrun-timeout", "0",
                     binary=binary)
    assert r.returncode == 4, r
    assert "--timeout needs a positive number of seconds" in r.stderr, r
    r = inner_pytest(tree, "--apyrun", "--apyrun-param", "alpha",
                     binary=binary)
    assert r.returncode == 4, r
    assert "--apyrun-param 'alpha': give NAME=VALUE" in r.stderr, r
    r = inner_pytest(tree, "--apyrun", "--apyrun-check-outputs=some",
                     binary=binary)
    assert r.returncode == 4, r
    assert "invalid choice: 'some'" in r.stderr, r


def test_output_check_options_reach_apyrun(tmp_path, batch):
    # No output: a match under any comparison.
    tree = make_tree(tmp_path, {"ok.ipynb": ["x = 1"]})
    (tree / "sanitize.cfg").write_text("regex: 0x[0-9a-f]+\nreplace: ADDR\n")
    # apyrun's own rule, so the plugin passed --sanitize on.
    r = inner_pytest(tree, "--apyrun", "--apyrun-sanitize", "sanitize.cfg",
                     binary=batch)
    assert r.returncode == 4, r
    assert "--sanitize needs --check-outputs" in r.stderr, r
    for check in (["--apyrun-check-outputs=lax"],
                  ["--apyrun-check-outputs", "--apyrun-check-images"]):
        r = inner_pytest(tree, "--apyrun", "--apyrun-sanitize",
                         "sanitize.cfg", *check, "-q", binary=batch)
        assert r.returncode == 0, r
        assert "1 passed" in r.stdout, r


def test_an_output_difference_fails_the_item_with_its_diff(tmp_path, batch):
    tree = make_tree(tmp_path, {"nb.ipynb": ["print('new')"]})
    nb = nbformat.read(str(tree / "nb.ipynb"), as_version=4)
    nb.cells[0].outputs = [nbformat.v4.new_output(
        "stream", name="stdout", text="old\n")]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, str(tree / "nb.ipynb"))
    r = inner_pytest(tree, "--apyrun", "--apyrun-check-outputs", "-q",
                     binary=batch)
    assert r.returncode == 1, r
    assert "cell 1: outputs differ from the stored ones (cell 1)" in r.stdout
    assert "-old" in r.stdout.splitlines(), r
    assert "+new" in r.stdout.splitlines(), r
    # Not compared without the option, nor under lax (no tagged cell).
    for opts in ([], ["--apyrun-check-outputs=lax"]):
        r = inner_pytest(tree, "--apyrun", *opts, "-q", binary=batch)
        assert r.returncode == 0, r
