# SPDX-License-Identifier: MIT
"""apyrun as a drop-in python3 (DESIGN 1): targets, options, environment.

Code without top-level await must behave exactly as under python3.11, so
most tests here are differential: the same case file and arguments under
/usr/bin/python3.11 and apyrun give the same stdout, stderr and exit code.
"""
import os
import re
import subprocess

import pytest

from conftest import (PROBE, REF_PYTHON, Result, assert_like_python,
                      child_env, copy_binary, has_option, link_as_apyrun,
                      run, write)

ARGS = ["a b", "-c", "--loop", "asyncio", "-m", "x"]


@pytest.fixture
def tree(tmp_path):
    """tmp_path with the probe as a script, a module and a package."""
    write(tmp_path / "sub" / "probe.py", PROBE)
    write(tmp_path / "sub" / "pkg" / "__init__.py", "")
    write(tmp_path / "sub" / "pkg" / "__main__.py", PROBE)
    (tmp_path / "links").mkdir()
    os.symlink("../sub/probe.py", tmp_path / "links" / "probe_link.py")
    return tmp_path


# Each target: (argv before ARGS, cwd relative to tmp_path, stdin).
TARGETS = {
    "relative file": (["sub/probe.py"], ".", None),
    "absolute file": (["{tmp}/sub/probe.py"], ".", None),
    "file in cwd": (["probe.py"], "sub", None),
    # python puts the symlink's *target* directory in sys.path[0].
    "symlinked file": (["links/probe_link.py"], ".", None),
    "-m module": (["-m", "probe"], "sub", None),
    "-m package": (["-m", "pkg"], "sub", None),
    "-c": (["-c", PROBE], ".", None),
    "- (stdin)": (["-"], ".", PROBE),
}


# apyrun's notebook options and "--" after a script, -c, -m or - are the
# program's too, as python3 has it: only a notebook takes apyrun's options
# after itself (DESIGN 1, 3).
NB_ARGS = ["-o", "x", "-p", "a", "b", "--inplace", "--timeout", "3",
           "--bogus", "--", "-oout.ipynb", "--"]


@pytest.mark.parametrize("args", [ARGS, NB_ARGS],
                         ids=["args", "notebook options"])
@pytest.mark.parametrize("target", TARGETS)
def test_target_sees_what_python_shows(apyrun, tree, target, args):
    argv, cwd, stdin = TARGETS[target]
    argv = [a.replace("{tmp}", str(tree)) for a in argv]
    got = assert_like_python(apyrun, [*argv, *args], cwd=tree / cwd,
                             input=stdin)
    assert got.returncode == 0
    # Everything after the target belongs to the program, even apyrun's own
    # option names.
    assert f"{args}"[1:] + "\n" in got.stdout


def test_script_gets_dash_o_as_python_gives_it(apyrun, tmp_path):
    write(tmp_path / "s.py", "import sys\nprint(sys.argv)\n")
    assert_like_python(apyrun, ["s.py", "-o", "x"], cwd=tmp_path,
                       expected=Result(0, "['s.py', '-o', 'x']\n", ""))
    assert not os.path.exists(tmp_path / "x")


def test_apyrun_options_then_python_options(apyrun, tmp_path):
    # apyrun's options go first and never reach the program or CPython.
    code = ("import sys; print(sys.flags.isolated, sys.stdout.write_through,"
            " sys.argv)")
    r = run([apyrun, "--loop", "asyncio", "-I", "-u", "-c", code, "--loop",
             "x"], cwd=tmp_path)
    assert r == Result(0, "1 True ['-c', '--loop', 'x']\n", "")


def test_script_piped_on_stdin_without_dash(apyrun, tree):
    got = assert_like_python(apyrun, [], cwd=tree, input=PROBE)
    assert "argv ['']\n" in got.stdout


def test_stdlib_path_is_pythons(apyrun, tmp_path):
    code = "import sys, os; print(sys.prefix, sys.base_prefix, os.__file__)"
    assert_like_python(apyrun, ["-c", code], cwd=tmp_path, expected=Result(
        0, "/usr /usr /usr/lib/python3.11/os.py\n", ""))


def test_compiled_pyc_file_runs(apyrun, tmp_path):
    write(tmp_path / "src.py", 'print("from pyc", __name__)\n')
    subprocess.run([REF_PYTHON, "-c",
                    "import py_compile; py_compile.compile('src.py', "
                    "cfile='compiled.pyc')"], cwd=tmp_path, check=True,
                   env=child_env())
    assert_like_python(apyrun, ["compiled.pyc"], cwd=tmp_path,
                       expected=Result(0, "from pyc __main__\n", ""))


def test_directory_with_main_runs(apyrun, tmp_path):
    write(tmp_path / "app" / "__main__.py", PROBE)
    assert_like_python(apyrun, ["app", "x"], cwd=tmp_path)


def test_zip_with_main_runs(apyrun, tmp_path):
    import zipfile
    with zipfile.ZipFile(tmp_path / "app.zip", "w") as zf:
        zf.writestr("__main__.py", PROBE)
    assert_like_python(apyrun, ["app.zip", "x"], cwd=tmp_path)


# -- python options and PYTHON* variables ----------------------------------

FLAGS_PROBE = """\
import sys
f = sys.flags
print("isolated", f.isolated, "ignore_environment", f.ignore_environment,
      "no_site", f.no_site, "safe_path", f.safe_path,
      "optimize", f.optimize)
print("script dir on path", sys.path.count(sys.argv[0].rpartition("/")[0]))
print("extra on path", any(p.endswith("extra") for p in sys.path))
print("site imported", "site" in sys.modules)
"""


@pytest.mark.parametrize("args, env, expected", [
    ([], {}, "isolated 0 ignore_environment 0 no_site 0 safe_path False "
             "optimize 0\nscript dir on path 1\nextra on path True\n"
             "site imported True\n"),
    (["-I"], {}, "isolated 1 ignore_environment 1 no_site 0 safe_path True "
                 "optimize 0\nscript dir on path 0\n"
                 "extra on path False\nsite imported True\n"),
    (["-E"], {}, "isolated 0 ignore_environment 1 no_site 0 safe_path False "
                 "optimize 0\nscript dir on path 1\nextra on path False\n"
                 "site imported True\n"),
    (["-S"], {}, "isolated 0 ignore_environment 0 no_site 1 safe_path False "
                 "optimize 0\nscript dir on path 1\nextra on path True\n"
                 "site imported False\n"),
    (["-P"], {}, "isolated 0 ignore_environment 0 no_site 0 safe_path True "
                 "optimize 0\nscript dir on path 0\n"
                 "extra on path True\nsite imported True\n"),
    ([], {"PYTHONSAFEPATH": "1"},
     "isolated 0 ignore_environment 0 no_site 0 safe_path True "
     "optimize 0\nscript dir on path 0\n"
     "extra on path True\nsite imported True\n"),
    (["-O"], {}, "isolated 0 ignore_environment 0 no_site 0 safe_path False "
                 "optimize 1\nscript dir on path 1\nextra on path True\n"
                 "site imported True\n"),
    ([], {"PYTHONOPTIMIZE": "2"},
     "isolated 0 ignore_environment 0 no_site 0 safe_path False "
     "optimize 2\nscript dir on path 1\nextra on path True\n"
     "site imported True\n"),
], ids=["none", "-I", "-E", "-S", "-P", "PYTHONSAFEPATH", "-O",
        "PYTHONOPTIMIZE"])
def test_interpreter_flags(apyrun, tmp_path, args, env, expected):
    write(tmp_path / "flags.py", FLAGS_PROBE)  # run as {tmp}/flags.py
    (tmp_path / "extra").mkdir()
    env = child_env({"PYTHONPATH": str(tmp_path / "extra"), **env})
    assert_like_python(apyrun, [*args, str(tmp_path / "flags.py")],
                       cwd=tmp_path, env=env,
                       expected=Result(0, expected.format(tmp=tmp_path), ""))


def test_pythonpath_module_is_importable(apyrun, tmp_path):
    write(tmp_path / "extra" / "extramod.py", "VALUE = 42\n")
    env = child_env({"PYTHONPATH": str(tmp_path / "extra")})
    code = "import extramod; print(extramod.VALUE, extramod.__file__)"
    assert_like_python(apyrun, ["-c", code], cwd=tmp_path, env=env,
                       expected=Result(
                           0, f"42 {tmp_path}/extra/extramod.py\n", ""))


ASSERTS = """\
def f():
    "docstring"
assert False, "asserts are on"
print("__debug__", __debug__, "doc", f.__doc__)
"""


@pytest.mark.parametrize("args, expected", [
    ([], Result(1, "", 'Traceback (most recent call last):\n'
                       '  File "{tmp}/asserts.py", line 3, in <module>\n'
                       '    assert False, "asserts are on"\n'
                       'AssertionError: asserts are on\n')),
    (["-O"], Result(0, "__debug__ False doc docstring\n", "")),
    (["-OO"], Result(0, "__debug__ False doc None\n", "")),
], ids=["none", "-O", "-OO"])
def test_optimize_removes_asserts_and_docstrings(apyrun, tmp_path, args,
                                                 expected):
    write(tmp_path / "asserts.py", ASSERTS)
    expected.stderr = expected.stderr.format(tmp=tmp_path)
    assert_like_python(apyrun, [*args, "asserts.py"], cwd=tmp_path,
                       expected=expected)


WARNS = """\
import warnings
warnings.warn("careful")
print("after")
"""


@pytest.mark.parametrize("args, env, expected", [
    ([], {}, Result(0, "after\n", '{tmp}/warns.py:2: UserWarning: careful\n'
                                  '  warnings.warn("careful")\n')),
    (["-W", "error"], {},
     Result(1, "", 'Traceback (most recent call last):\n'
                   '  File "{tmp}/warns.py", line 2, in <module>\n'
                   '    warnings.warn("careful")\n'
                   'UserWarning: careful\n')),
    (["-W", "ignore"], {}, Result(0, "after\n", "")),
    ([], {"PYTHONWARNINGS": "ignore"}, Result(0, "after\n", "")),
], ids=["none", "-W error", "-W ignore", "PYTHONWARNINGS"])
def test_warning_options(apyrun, tmp_path, args, env, expected):
    write(tmp_path / "warns.py", WARNS)
    expected.stderr = expected.stderr.format(tmp=tmp_path)
    assert_like_python(apyrun, [*args, "warns.py"], cwd=tmp_path,
                       env=child_env(env), expected=expected)


# print() goes through a buffer; os.write does not.  Unbuffered, the "a"
# reaches the pipe first.
UNBUFFERED = """\
import os
print("a", end="")
os.write(1, b"b")
"""


@pytest.mark.parametrize("args, env, expected", [
    ([], {}, "ba"),
    (["-u"], {}, "ab"),
    ([], {"PYTHONUNBUFFERED": "1"}, "ab"),
], ids=["buffered", "-u", "PYTHONUNBUFFERED"])
def test_unbuffered(apyrun, tmp_path, args, env, expected):
    write(tmp_path / "unbuf.py", UNBUFFERED)
    assert_like_python(apyrun, [*args, "unbuf.py"], cwd=tmp_path,
                       env=child_env(env), expected=Result(0, expected, ""))


@pytest.mark.parametrize("args, env, writes_bytecode", [
    ([], {}, True),
    (["-B"], {}, False),
    ([], {"PYTHONDONTWRITEBYTECODE": "1"}, False),
], ids=["default", "-B", "PYTHONDONTWRITEBYTECODE"])
def test_bytecode_writing(apyrun, tmp_path, args, env, writes_bytecode):
    for name, exe in [("python", REF_PYTHON), ("apyrun", apyrun)]:
        d = tmp_path / name
        write(d / "helper.py", "X = 1\n")
        write(d / "main.py", "import helper\nprint(helper.X)\n")
        r = run([exe, *args, "main.py"], cwd=d, env=child_env(env))
        assert r == Result(0, "1\n", ""), name
        assert (d / "__pycache__").exists() == writes_bytecode, name


def test_importtime(apyrun, tmp_path):
    for exe in (REF_PYTHON, apyrun):
        r = run([exe, "-X", "importtime", "-c",
                 "import colorsys; print('ok')"], cwd=tmp_path)
        assert (r.returncode, r.stdout) == (0, "ok\n"), exe
        lines = r.stderr.splitlines()
        assert lines[0] == "import time: self [us] | cumulative | " \
                           "imported package", exe
        assert all(line.startswith("import time:") for line in lines), exe
        assert any(line.endswith("| colorsys") for line in lines), exe


@pytest.mark.parametrize("args", [["-q", "-i"], ["-i"]], ids=["-q", "banner"])
def test_interactive_banner(apyrun, tmp_path, args):
    got = assert_like_python(apyrun, args, cwd=tmp_path,
                             input="print(6 * 7)\n")
    assert got.stdout == "42\n"
    assert ("Python 3.11" in got.stderr) == ("-q" not in args)


# -- finding the binary, the stdlib and virtualenvs -------------------------

LOCATION = """\
import os, sys, json
print(sys.executable)
print(sys.prefix, sys.base_prefix, sys.exec_prefix)
print(os.__file__, json.__file__)
import _ctypes, _decimal
print("extensions ok")
"""


def location_output(executable):
    return (f"{executable}\n/usr /usr /usr\n"
            "/usr/lib/python3.11/os.py /usr/lib/python3.11/json/__init__.py\n"
            "extensions ok\n")


def test_copied_binary_uses_system_stdlib(apyrun, tmp_path):
    exe = copy_binary(apyrun, tmp_path / "bin" / "apyrun")
    r = run([exe, "-c", LOCATION], cwd=tmp_path)
    assert r == Result(0, location_output(exe), "")


def test_symlinked_binary_uses_system_stdlib(apyrun, tmp_path):
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin" / "apyrun"
    os.symlink(apyrun, exe)
    r = run([exe, "-c", LOCATION], cwd=tmp_path)
    assert r == Result(0, location_output(exe), "")


def test_binary_beside_another_stdlib_still_uses_its_own(apyrun, tmp_path):
    # A prefix that looks like another Python's (as pyenv's would): python
    # would take it; apyrun must keep the stdlib libpython was built for.
    exe = copy_binary(apyrun, tmp_path / "prefix" / "bin" / "apyrun")
    write(tmp_path / "prefix" / "lib" / "python3.11" / "os.py",
          "raise SystemExit('wrong stdlib')\n")
    r = run([exe, "-c", LOCATION], cwd=tmp_path)
    assert r == Result(0, location_output(exe), "")


@pytest.fixture
def venv(tmp_path):
    d = tmp_path / "venv"
    subprocess.run([REF_PYTHON, "-m", "venv", "--without-pip", str(d)],
                   check=True, env=child_env(), timeout=120)
    site = d / "lib" / "python3.11" / "site-packages"
    write(site / "venvonly.py", "WHERE = 'venv'\n")
    return d


VENV_PROBE = """\
import os, sys
print(sys.executable)
print(sys.prefix)
print(sys.base_prefix)
print(os.__file__)
import venvonly
print(venvonly.WHERE, venvonly.__file__)
"""


def venv_output(exe, venv):
    return (f"{exe}\n{venv}\n/usr\n/usr/lib/python3.11/os.py\n"
            f"venv {venv}/lib/python3.11/site-packages/venvonly.py\n")


def test_symlink_in_venv_uses_the_venv(apyrun, venv, tmp_path):
    # The venv's own python shows what its apyrun must.
    python = venv / "bin" / "python3.11"
    assert run([python, "-c", VENV_PROBE], cwd=tmp_path) == Result(
        0, venv_output(python, venv), "")
    exe = venv / "bin" / "apyrun"
    os.symlink(apyrun, exe)
    assert run([exe, "-c", VENV_PROBE], cwd=tmp_path) == Result(
        0, venv_output(exe, venv), "")
    # As an activated venv runs it: by name, through PATH.
    env = child_env(path_prepend=venv / "bin")
    assert run(["apyrun", "-c", VENV_PROBE], cwd=tmp_path, env=env) \
        == Result(0, venv_output(exe, venv), "")


def test_shebang_env_apyrun(apyrun, tmp_path):
    bindir = link_as_apyrun(apyrun, tmp_path / "bin")
    script = write(tmp_path / "tool", """\
        #!/usr/bin/env apyrun
        import sys
        print(sys.argv)
        print(sys.path[0])
        print(__name__, __file__)
        print(sys.executable)
        """, mode=0o755)
    env = child_env(path_prepend=bindir)
    r = run([script, "one", "--two"], cwd=tmp_path, env=env)
    assert r == Result(0, f"['{script}', 'one', '--two']\n{tmp_path}\n"
                          f"__main__ {script}\n"
                          f"{os.path.join(bindir, 'apyrun')}\n", "")


# -- child processes ---------------------------------------------------------

SUBPROCESS = """\
import os, subprocess, sys
print(sys.executable)
child = subprocess.run(
    [sys.executable, "-c",
     "import os, sys; print(os.readlink('/proc/self/exe')); "
     "print(sys.executable); print(sys.argv)", "arg"],
    capture_output=True, text=True, check=True)
print(child.stdout, end="")
print(child.stderr, end="")
"""


def test_subprocess_of_sys_executable_runs_apyrun(apyrun, tmp_path):
    write(tmp_path / "parent.py", SUBPROCESS)
    r = run([apyrun, "parent.py"], cwd=tmp_path)
    assert r == Result(0, f"{apyrun}\n{os.path.realpath(apyrun)}\n{apyrun}\n"
                          "['-c', 'arg']\n", "")


MULTIPROCESSING = """\
import multiprocessing, os

def square(x):
    return x * x

def executable(_):
    return os.readlink("/proc/self/exe")

if __name__ == "__main__":
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        print(pool.map(square, range(6)))
        print(sorted(set(pool.map(executable, range(4)))))
"""


def test_multiprocessing_spawn_pool(apyrun, tmp_path):
    write(tmp_path / "mp.py", MULTIPROCESSING)
    r = run([apyrun, "mp.py"], cwd=tmp_path, timeout=60)
    assert r == Result(
        0, f"[0, 1, 4, 9, 16, 25]\n['{os.path.realpath(apyrun)}']\n", "")


# -- help and version --------------------------------------------------------

@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(apyrun, tmp_path, flag, is_validation_run):
    r = run([apyrun, flag], cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")
    assert re.search("usage", r.stdout, re.I)
    # Python's own options are named too.
    for option in ["-c", "-m", "-I", "-O", "-u", "-W", "-X"]:
        assert has_option(r.stdout, option), option
    if is_validation_run:
        return
    assert has_option(r.stdout, "--loop"), "apyrun's own options"
    assert "apyrun" in r.stdout


def pkg_config_version(name):
    try:
        out = subprocess.run(["pkg-config", "--modversion", name],
                             capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(apyrun, tmp_path, flag):
    r = run([apyrun, flag], cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, "")
    text = r.stdout
    py = run([REF_PYTHON, "-c", "import platform; "
              "print(platform.python_version())"], cwd=tmp_path).stdout.strip()
    assert re.search(rf"\bPython\W+{re.escape(py)}\b", text), text
    assert re.search(r"\bapyrun\W+\d+\.\d+\.\d+", text), text
    uv = pkg_config_version("libuv") or r"\d+\.\d+\.\d+"
    cjson = pkg_config_version("libcjson") or r"\d+\.\d+\.\d+"
    assert re.search(rf"\blibuv\W+{uv}\b", text, re.I), text
    assert re.search(rf"\bcJSON\W+{cjson}\b", text, re.I), text
