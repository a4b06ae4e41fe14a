# SPDX-License-Identifier: MIT
"""Notebooks as ordinary pytest items: node ids, pytest-xdist, pytest's
--junitxml, -k and --lf."""
import re
import xml.etree.ElementTree as ET

import pytest

from conftest import inner_pytest, make_tree, write_nb

TREE = {
    "a/one.ipynb": ["x = 1"],
    "a/two.ipynb": ["print('two')"],
    "b/three.ipynb": ["import asyncio\nawait asyncio.sleep(0)"],
    "b/sub/bad.ipynb": ["x = 1", "raise ValueError('boom')"],
}
BAD_MESSAGE = "cell 2: ValueError: boom"


def test_node_ids_are_paths_from_the_rootdir(tmp_path, batch):
    tree = make_tree(tmp_path, TREE)
    # From a subdirectory: the ids are still the rootdir's.
    r = inner_pytest(tree, "--apyrun", "--collect-only", "-q", "--rootdir",
                     str(tree), str(tree), cwd=tree / "b", binary=batch)
    assert r.returncode == 0, r
    ids = [line for line in r.stdout.splitlines() if line.endswith(".ipynb")]
    assert sorted(ids) == sorted(TREE), r


def test_xdist_runs_every_notebook_on_two_workers(tmp_path, batch):
    tree = make_tree(tmp_path, TREE)
    r = inner_pytest(tree, "--apyrun", "-n", "2", "-v", binary=batch)
    assert r.returncode == 1, r
    out = r.stdout
    # Both workers collected the 4 items, and each ran some: xdist's load
    # scheduling hands out 2 each to start with.
    assert "gw0 [4] / gw1 [4]" in out, r
    ran = dict((m[3], (m[1], m[2])) for m in re.finditer(
        r"^\[(gw[01])\] \[ *\d+%\] (PASSED|FAILED) (\S+)", out, re.M))
    assert sorted(ran) == sorted(TREE), r
    assert {worker for worker, _ in ran.values()} == {"gw0", "gw1"}, r
    for path, (_, word) in ran.items():
        assert word == ("FAILED" if "bad" in path else "PASSED"), r
    # The report came from a worker whole: message line and traceback.
    assert f"FAILED b/sub/bad.ipynb - {BAD_MESSAGE}" in out, r
    assert "raise ValueError('boom')" in out, r
    assert "1 failed, 3 passed" in out, r


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_junitxml(tmp_path, batch, xdist):
    tree = make_tree(tmp_path, TREE)
    write_nb(tree / "r.ipynb", ["x <- 1"], language="R")
    report = tmp_path / "report.xml"
    r = inner_pytest(tree, "--apyrun", "--junitxml", str(report), *xdist,
                     binary=batch)
    assert r.returncode == 1, r
    suite = ET.parse(report).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"),
            suite.get("errors")) == ("5", "1", "1", "0")
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    # pytest names a case by its node id with '/' as '.'.
    assert sorted(cases) == sorted(p.replace("/", ".")
                                   for p in [*TREE, "r.ipynb"])
    failure = cases["b.sub.bad.ipynb"].find("failure")
    assert failure.get("message") == BAD_MESSAGE
    assert "Traceback (most recent call last):" in failure.text
    assert "ValueError: boom" in failure.text
    skipped = cases["r.ipynb"].find("skipped")
    assert "kernel language is 'R'" in skipped.get("message")
    for name in ("a.one.ipynb", "a.two.ipynb", "b.three.ipynb"):
        assert list(cases[name]) == [], name


def test_k_selects_by_path(tmp_path, batch):
    tree = make_tree(tmp_path, TREE)
    r = inner_pytest(tree, "--apyrun", "-v", "-k", "a/", binary=batch)
    assert r.returncode == 0, r
    assert "PASSED a/one.ipynb" not in r.stdout  # -v without xdist
    assert "a/one.ipynb PASSED" in r.stdout and "a/two.ipynb PASSED" \
        in r.stdout, r
    assert "2 passed, 2 deselected" in r.stdout, r
    r = inner_pytest(tree, "--apyrun", "-v", "-k", "b/sub and not one",
                     binary=batch)
    assert r.returncode == 1, r
    assert "1 failed, 3 deselected" in r.stdout, r


def test_lf_reruns_only_the_failed(tmp_path, batch):
    tree = make_tree(tmp_path, TREE)
    r = inner_pytest(tree, "--apyrun", binary=batch)
    assert r.returncode == 1, r
    assert "1 failed, 3 passed" in r.stdout, r
    r = inner_pytest(tree, "--apyrun", "--lf", "-v", binary=batch)
    assert r.returncode == 1, r
    assert "b/sub/bad.ipynb FAILED" in r.stdout, r
    assert "1 failed, 3 deselected" in r.stdout, r
    # Fixed, it passes; then --lf has no failure left and runs them all.
    write_nb(tree / "b/sub/bad.ipynb", ["x = 1"])
    r = inner_pytest(tree, "--apyrun", "--lf", "-v", binary=batch)
    assert r.returncode == 0, r
    assert "1 passed, 3 deselected" in r.stdout, r
    r = inner_pytest(tree, "--apyrun", "--lf", binary=batch)
    assert r.returncode == 0, r
    assert "4 passed" in r.stdout, r
