# SPDX-License-Identifier: MIT
"""`cmake --install` of the plugin: the layout under the prefix, the
pytest11 entry point, the binary the installed module finds beside it, and
pytest --apyrun with nothing but PYTHONPATH pointing into the prefix.

The build installed is $APYRUN_BUILD_DIR (set by the ctest entry), else
the directory of the binary under test or <repo>/build if either is a
build directory.  A check by hand of a build without a working --test:
APYRUN_TEST_INSTALLED_BINARY=PATH copies PATH over the installed
bin/apyrun before the run (e.g. a snapshot of the batch branch).
"""
import glob
import os
import shutil
import stat
import subprocess

import pytest

from conftest import (PYTHON, REPO, child_env, has_batch_mode, inner_pytest,
                      make_tree, run)

SITE = os.path.join("lib", "python3", "dist-packages")
# A PATH without any apyrun on it (checked by the fixture).
BARE_PATH = "/usr/bin:/bin"


def build_dir(binary):
    for d in (os.environ.get("APYRUN_BUILD_DIR"), os.path.dirname(binary),
              os.path.join(REPO, "build")):
        if d and os.path.isfile(os.path.join(d, "CMakeCache.txt")):
            return d
    return None


@pytest.fixture(scope="module")
def prefix(tmp_path_factory, binary):
    """A fresh `cmake --install <build> --prefix <tmp>`; its path."""
    build = build_dir(binary)
    cmake = os.environ.get("APYRUN_CMAKE") or shutil.which("cmake")
    if build is None or cmake is None:
        pytest.skip("no build directory to install (set APYRUN_BUILD_DIR) "
                    "or no cmake (set APYRUN_CMAKE)")
    if shutil.which("apyrun", path=BARE_PATH):
        pytest.skip(f"an apyrun is installed in {BARE_PATH}: the binary "
                    f"the plugin finds could not be told apart")
    where = tmp_path_factory.mktemp("prefix")
    r = run([cmake, "--install", build, "--prefix", where], cwd=where)
    assert r.returncode == 0, r
    override = os.environ.get("APYRUN_TEST_INSTALLED_BINARY")
    if override:
        shutil.copy2(override, where / "bin" / "apyrun")
    return where


def installed_env(prefix, **extra):
    """Only PYTHONPATH into the prefix: no $APYRUN, no apyrun on PATH."""
    return child_env({"PYTHONPATH": str(prefix / SITE), "PATH": BARE_PATH,
                      "PYTHONDONTWRITEBYTECODE": "1", **extra})


def python_c(code, env, cwd):
    return run([PYTHON, "-c", code], cwd=cwd, env=env)


def test_layout(prefix):
    binary = prefix / "bin" / "apyrun"
    assert os.access(binary, os.X_OK)
    assert (prefix / SITE / "pytest_apyrun.py").is_file()
    version = subprocess.run([binary, "--version"], capture_output=True,
                             text=True).stdout.split()[1]
    [info] = glob.glob(str(prefix / SITE / "pytest_apyrun-*.dist-info"))
    assert os.path.basename(info) == f"pytest_apyrun-{version}.dist-info"
    with open(os.path.join(info, "METADATA")) as f:
        metadata = f.read().splitlines()
    assert "Name: pytest-apyrun" in metadata
    assert f"Version: {version}" in metadata
    with open(os.path.join(info, "entry_points.txt")) as f:
        assert f.read() == "[pytest11]\napyrun = pytest_apyrun\n"
    # Only what a distribution needs: no build leftovers.
    assert sorted(os.listdir(info)) == ["METADATA", "entry_points.txt",
                                        "top_level.txt"]


def test_entry_point_loads_the_installed_module(prefix, tmp_path):
    code = ("from importlib.metadata import distribution\n"
            "d = distribution('pytest-apyrun')\n"
            "[ep] = [e for e in d.entry_points if e.group == 'pytest11']\n"
            "print(ep.name, ep.value, ep.load().__file__)")
    r = python_c(code, installed_env(prefix), tmp_path)
    assert r.returncode == 0, r
    assert r.stdout.split() == ["apyrun", "pytest_apyrun",
                                str(prefix / SITE / "pytest_apyrun.py")]
    # pytest loads it by itself: its options are in --help, without -p.
    r = inner_pytest(tmp_path, "--help", load=(), env=installed_env(prefix))
    assert r.returncode == 0, r
    assert "--apyrun-timeout=S" in r.stdout, r


def test_installed_module_finds_the_binary_beside_it(prefix, tmp_path):
    code = "import pytest_apyrun as p; print(p.find_binary())"
    r = python_c(code, installed_env(prefix), tmp_path)
    assert r.returncode == 0, r
    assert r.stdout.strip() == str(prefix / "bin" / "apyrun")
    # Before an apyrun on PATH; after $APYRUN.
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "apyrun").write_text("#!/bin/sh\n")
    (decoy / "apyrun").chmod(stat.S_IRWXU)
    env = installed_env(prefix, PATH=f"{decoy}:{BARE_PATH}")
    assert python_c(code, env, tmp_path).stdout.strip() == \
        str(prefix / "bin" / "apyrun")
    env["APYRUN"] = str(decoy / "apyrun")
    assert python_c(code, env, tmp_path).stdout.strip() == \
        str(decoy / "apyrun")
    # The checkout's module knows of no installed binary.
    env = child_env({"PYTHONPATH": os.path.join(REPO, "python"),
                     "PATH": BARE_PATH})
    r = python_c(code, env, tmp_path)
    assert r.returncode == 1 and "no apyrun binary" in r.stderr, r


def test_installed_prefix_is_relocatable(prefix, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(prefix, moved, symlinks=True)
    code = "import pytest_apyrun as p; print(p.find_binary())"
    r = python_c(code, installed_env(moved), tmp_path)
    assert r.stdout.strip() == str(moved / "bin" / "apyrun"), r


def test_installed_plugin_runs_notebooks(prefix, tmp_path):
    binary = str(prefix / "bin" / "apyrun")
    if not has_batch_mode(binary):
        pytest.skip(f"the installed {binary} has no working --test yet "
                    f"(an empty batch does not exit 5); check by hand with "
                    f"APYRUN_TEST_INSTALLED_BINARY=PATH")
    tree = make_tree(tmp_path, {
        "ok.ipynb": ["x = 1"],
        "sub/bad.ipynb": ["import sys\nprint('run by', sys.executable)",
                          "1/0"]})
    r = inner_pytest(tree, "--apyrun", "-n", "2", load=(),
                     env=installed_env(prefix))
    assert r.returncode == 1, r
    assert "1 failed, 1 passed" in r.stdout, r
    assert "FAILED sub/bad.ipynb - cell 2: ZeroDivisionError" in r.stdout, r
    # The notebook ran in the binary installed beside the plugin.
    assert f"run by {binary}\n" in r.stdout, r
