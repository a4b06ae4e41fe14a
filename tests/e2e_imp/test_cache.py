# SPDX-License-Identifier: MIT
"""Compiled notebooks and TLA modules are cached like pyc files (DESIGN
4): under names python never reads, invalidated when the source changes,
not written under -B / PYTHONDONTWRITEBYTECODE, under sys.pycache_prefix
when set; -X importtime reports these imports too."""
import os
import re

from conftest import (REF_PYTHON, child_env, code, python_cache, run, write,
                      write_nb)

TLA_SOURCE = """
    import asyncio
    await asyncio.sleep(0)
    VALUE = {value!r}
"""


def make_tree(tmp_path, value="one"):
    write(tmp_path / "tmod.py", TLA_SOURCE.format(value=value))
    write_nb(tmp_path / "nb.ipynb", code(f"NB = {value!r}"))
    write(tmp_path / "plain.py", "P = 1\n")
    write(tmp_path / "main.py", """
        import tmod, nb, plain
        print(tmod.VALUE, nb.NB)
    """)


def test_cache_names_and_reuse(apyrun, tmp_path):
    make_tree(tmp_path)
    env = child_env()
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "one one\n", "")
    assert python_cache(tmp_path) == [
        "__pycache__/nb.cpython-311.apyrun-ipynb.pyc",
        "__pycache__/plain.cpython-311.pyc",
        "__pycache__/tmod.cpython-311.apyrun-tla.pyc"]
    # The second run reads both caches (python's -v trace says so).
    r = run([apyrun, "-v", "main.py"], cwd=tmp_path, env=env)
    assert r.stdout == "one one\n"
    matches = re.findall(r"^# (\S+) matches (\S+)$", r.stderr, re.M)
    assert (f"{tmp_path}/__pycache__/tmod.cpython-311.apyrun-tla.pyc",
            f"{tmp_path}/tmod.py") in matches
    assert (f"{tmp_path}/__pycache__/nb.cpython-311.apyrun-ipynb.pyc",
            f"{tmp_path}/nb.ipynb") in matches
    assert "top-level await code object from" not in r.stderr


def test_changed_sources_are_compiled_again(apyrun, tmp_path):
    make_tree(tmp_path)
    env = child_env()
    assert run([apyrun, "main.py"], cwd=tmp_path, env=env).stdout == \
        "one one\n"
    make_tree(tmp_path, value="two, longer")
    for name in ["tmod.py", "nb.ipynb"]:
        os.utime(tmp_path / name, (2_000_000_000, 2_000_000_000))
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "two, longer two, longer\n", "")


def test_python_never_reads_apyrun_caches(apyrun, tmp_path):
    make_tree(tmp_path)
    env = child_env()
    run([apyrun, "main.py"], cwd=tmp_path, env=env)
    r = run([REF_PYTHON, "-c", "import tmod"], cwd=tmp_path, env=env)
    assert r.returncode == 1
    assert r.stderr.endswith("SyntaxError: 'await' outside function\n")
    r = run([REF_PYTHON, "-c", "import nb"], cwd=tmp_path, env=env)
    assert r.stderr.endswith("No module named 'nb'\n")


def test_no_cache_under_dash_B_or_the_variable(apyrun, tmp_path):
    make_tree(tmp_path)
    r = run([apyrun, "-B", "main.py"], cwd=tmp_path, env=child_env())
    assert r.stdout == "one one\n"
    r = run([apyrun, "main.py"], cwd=tmp_path,
            env=child_env({"PYTHONDONTWRITEBYTECODE": "1"}))
    assert r.stdout == "one one\n"
    assert python_cache(tmp_path) == []


def test_pycache_prefix(apyrun, tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    prefix = tmp_path / "prefix"
    for args, env in [(["-X", f"pycache_prefix={prefix}"], {}),
                      ([], {"PYTHONPYCACHEPREFIX": str(prefix)})]:
        r = run([apyrun, *args, "main.py"], cwd=src, env=child_env(env))
        assert r.stdout == "one one\n"
        assert python_cache(src) == []
        mirror = prefix / str(src).lstrip("/")
        assert sorted(os.listdir(mirror)) == [
            "nb.cpython-311.apyrun-ipynb.pyc",
            "plain.cpython-311.pyc",
            "tmod.cpython-311.apyrun-tla.pyc"]


def test_optimized_code_has_its_own_cache(apyrun, tmp_path):
    write(tmp_path / "tmod.py", """
        import asyncio
        await asyncio.sleep(0)
        assert False, "asserts run"
    """)
    write(tmp_path / "main.py", """
        try:
            import tmod
            print("no assert")
        except AssertionError as e:
            print(e)
    """)
    env = child_env()
    assert run([apyrun, "main.py"], cwd=tmp_path, env=env).stdout == \
        "asserts run\n"
    assert run([apyrun, "-O", "main.py"], cwd=tmp_path, env=env).stdout == \
        "no assert\n"
    assert run([apyrun, "main.py"], cwd=tmp_path, env=env).stdout == \
        "asserts run\n"
    assert python_cache(tmp_path) == [
        "__pycache__/tmod.cpython-311.apyrun-tla.pyc",
        "__pycache__/tmod.cpython-311.opt-1.apyrun-tla.pyc"]


def test_a_corrupt_cache_is_compiled_again(apyrun, tmp_path):
    make_tree(tmp_path)
    env = child_env()
    run([apyrun, "main.py"], cwd=tmp_path, env=env)
    # (python itself fails on a corrupt pyc body: only apyrun's caches)
    for name in python_cache(tmp_path):
        if ".apyrun-" not in name:
            continue
        path = tmp_path / name
        data = path.read_bytes()
        path.write_bytes(data[:16] + b"\xff" * 40)
    r = run([apyrun, "main.py"], cwd=tmp_path, env=env)
    assert r == type(r)(0, "one one\n", "")


def test_importtime_reports_notebooks_and_tla_modules(apyrun, tmp_path):
    make_tree(tmp_path)
    write(tmp_path / "awaited.py", TLA_SOURCE.format(value="a"))
    write(tmp_path / "outer.py", """
        import asyncio
        await asyncio.sleep(0)
        import awaited
    """)
    write(tmp_path / "main.py", "import tmod, nb, outer\n")
    r = run([apyrun, "-X", "importtime", "main.py"], cwd=tmp_path)
    assert r.returncode == 0
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$", r.stderr,
                       re.M)
    for name in ["tmod", "nb", "outer", "awaited"]:
        assert name in names, r.stderr
