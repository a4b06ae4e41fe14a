# SPDX-License-Identifier: MIT
"""apyrun --test: what is collected (--list, -k, hidden and checkpoint
directories, files named, other kernel languages), the shards, and the
usage errors (exit 2) and the empty collection (exit 5)."""
import os

import pytest

from conftest import run, summary, verdicts, write_nb


def tree(tmp_path):
    """A repository-like tree; returns the notebooks that must be found."""
    found = ["a.ipynb", "docs/b.ipynb", "docs/sub/c.ipynb", "z/d.ipynb"]
    for p in found:
        write_nb(tmp_path / p, "x = 1")
    write_nb(tmp_path / ".hidden" / "h.ipynb", "x = 1")
    write_nb(tmp_path / "docs" / ".ipynb_checkpoints" / "b-checkpoint.ipynb",
             "x = 1")
    write_nb(tmp_path / "docs" / ".dot.ipynb", "x = 1")
    (tmp_path / "docs" / "notes.txt").write_text("not a notebook")
    (tmp_path / "script.py").write_text("print('not collected from a dir')")
    return found


def listed(apyrun, cwd, *args):
    r = run([apyrun, "--test", "--list", *args], cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_list_walks_directories_skipping_hidden_and_checkpoints(apyrun,
                                                                tmp_path):
    found = tree(tmp_path)
    assert listed(apyrun, tmp_path) == found


def test_list_of_named_paths_sorted_once_each(apyrun, tmp_path):
    tree(tmp_path)
    assert listed(apyrun, tmp_path, "z", "./docs/sub/c.ipynb", "script.py",
                  "docs") == ["docs/b.ipynb", "docs/sub/c.ipynb",
                              "script.py", "z/d.ipynb"]


def test_symlinked_directory_not_followed_symlinked_notebook_is(apyrun,
                                                               tmp_path):
    write_nb(tmp_path / "real" / "n.ipynb", "x = 1")
    os.symlink("real", tmp_path / "loop")
    os.symlink("real/n.ipynb", tmp_path / "link.ipynb")
    os.symlink(".", tmp_path / "real" / "self")
    assert listed(apyrun, tmp_path) == ["link.ipynb", "real/n.ipynb"]


def test_k_keeps_paths_holding_any_substring(apyrun, tmp_path):
    tree(tmp_path)
    assert listed(apyrun, tmp_path, "-k", "sub") == ["docs/sub/c.ipynb"]
    assert listed(apyrun, tmp_path, "-k", "sub", "-k", "a.") == [
        "a.ipynb", "docs/sub/c.ipynb"]
    assert listed(apyrun, tmp_path, "-kd.ipynb") == ["z/d.ipynb"]


def test_other_kernel_language_is_skipped(apyrun, tmp_path):
    write_nb(tmp_path / "py.ipynb", "x = 1")
    write_nb(tmp_path / "r.ipynb", "x <- 1", language="R")
    r = run([apyrun, "--test", "--verbose", "-j1"], cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert verdicts(r) == {"py.ipynb": "PASSED", "r.ipynb": "SKIPPED"}
    assert summary(r) == (1, 0, 1)
    assert "kernel language is 'R', not Python" in r.stdout


def test_nothing_collected_is_exit_5(apyrun, tmp_path):
    (tmp_path / "empty").mkdir()
    r = run([apyrun, "--test", "empty"], cwd=tmp_path)
    assert r.returncode == 5
    assert "no notebooks collected" in r.stderr
    assert summary(r) == (0, 0, 0)
    write_nb(tmp_path / "a.ipynb", "x = 1")
    r = run([apyrun, "--test", "-k", "nomatch"], cwd=tmp_path)
    assert r.returncode == 5


@pytest.mark.parametrize("args, words", [
    (["missing"], "missing: No such file or directory"),
    (["notes.txt"], "notes.txt: not a directory, a notebook"),
    (["--shard", "0/3"], "--shard takes K/N"),
    (["--shard", "4/3"], "--shard takes K/N"),
    (["--shard", "x"], "--shard takes K/N"),
    (["--shard", "1/0"], "--shard takes K/N"),
    (["-j", "0"], "-j/--jobs takes a number"),
    (["--jobs=-2"], "-j/--jobs takes a number"),
    (["-j"], "option -j needs a value"),
    (["--bogus"], "unknown --test option '--bogus'"),
    (["--output", "x"], "--output is not a --test option"),
    (["--inplace"], "--inplace is not a --test option"),
    (["--capture=maybe"], "--capture takes"),
    (["--check-images"], "--check-images needs --check-outputs"),
    (["--timeout", "0"], "--timeout needs a positive number"),
])
def test_usage_errors_are_exit_2(apyrun, tmp_path, args, words):
    write_nb(tmp_path / "a.ipynb", "open('ran', 'w').close()")
    (tmp_path / "notes.txt").write_text("x")
    r = run([apyrun, "--test", *args], cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert words in r.stderr
    assert r.stderr.startswith("apyrun: ")
    assert not (tmp_path / "ran").exists()


def test_help(apyrun, tmp_path):
    r = run([apyrun, "--test", "--help"], cwd=tmp_path)
    assert r.returncode == 0
    for opt in ("--jobs", "--shard K/N", "--junit-xml", "--output-dir",
                "--exitfirst", "--durations", "--capture=no", "-k SUBSTR"):
        assert opt in r.stdout


def test_shards_partition_the_collection(apyrun, tmp_path):
    names = [f"d{i % 4}/n{i:02d}.ipynb" for i in range(23)]
    for i, p in enumerate(names):
        # Sizes differ, so the balance has something to do.
        write_nb(tmp_path / p, "x = 1\n" + "# pad\n" * (i * 37 % 50))
    every = listed(apyrun, tmp_path)
    assert sorted(every) == sorted(names)
    for n in (1, 2, 3, 5):
        shards = [listed(apyrun, tmp_path, "--shard", f"{k}/{n}")
                  for k in range(1, n + 1)]
        union = [p for s in shards for p in s]
        assert sorted(union) == sorted(every), n       # every file ...
        assert len(union) == len(set(union)), n        # ... exactly once
        for s in shards:
            assert s == sorted(s)                      # in sorted order
        # Deterministic: the same split again.
        assert shards == [listed(apyrun, tmp_path, "--shard", f"{k}/{n}")
                          for k in range(1, n + 1)]


def test_shards_balance_by_size(apyrun, tmp_path):
    write_nb(tmp_path / "big.ipynb", "x = 1\n" + "#" * 200000)
    for i in range(6):
        write_nb(tmp_path / f"small{i}.ipynb", "x = 1")
    one = listed(apyrun, tmp_path, "--shard", "1/2")
    two = listed(apyrun, tmp_path, "--shard", "2/2")
    # The heaviest goes first to shard 1, alone; the small ones to 2.
    assert one == ["big.ipynb"]
    assert len(two) == 6


def test_shard_runs_only_its_part(apyrun, tmp_path):
    for i in range(5):
        write_nb(tmp_path / f"n{i}.ipynb", "x = 1")
    part = listed(apyrun, tmp_path, "--shard", "2/2")
    r = run([apyrun, "--test", "--verbose", "--shard", "2/2"], cwd=tmp_path)
    assert r.returncode == 0
    assert sorted(verdicts(r)) == part
    assert summary(r) == (len(part), 0, 0)
