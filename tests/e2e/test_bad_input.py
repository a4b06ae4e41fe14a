# SPDX-License-Identifier: MIT
"""Bad command lines and bad input files (DESIGN 1, 6).

apyrun's own usage errors and unrunnable targets: exactly one clear line on
stderr naming the problem, exit code 2, no traceback, no crash.  Where
python3.11 already has an answer (a missing file, a bad python option, a
source file it cannot decode) apyrun gives the same answer.
"""
import os
import zipfile

import pytest

from conftest import (Result, assert_like_python, run, run_measured,
                      stderr_lines, write)


def assert_usage_error(result, *names):
    """Exit 2, nothing on stdout, one stderr line naming every name."""
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = stderr_lines(result)
    assert len(lines) == 1, f"want exactly one line, got:\n{result.stderr}"
    for name in names:
        assert name in lines[0], f"{name!r} not named in {lines[0]!r}"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv, names", [
    (["--bogus"], ["--bogus"]),
    (["--bogus", "script.py"], ["--bogus"]),
    (["--bogus=1", "-c", "pass"], ["--bogus"]),
    (["--loop"], ["--loop"]),
    (["--loop", "nosuchloop", "-c", "pass"], ["nosuchloop"]),
], ids=["--bogus", "--bogus before a file", "--bogus=1",
        "--loop without value", "--loop bad value"])
def test_bad_apyrun_option(apyrun, tmp_path, argv, names):
    write(tmp_path / "script.py", 'print("must not run")\n')
    assert_usage_error(run([apyrun, *argv], cwd=tmp_path), *names)


@pytest.mark.parametrize("target", ["missing.py", "{tmp}/missing.py",
                                    "nodir/missing.py"])
def test_missing_file(apyrun, tmp_path, target):
    target = target.replace("{tmp}", str(tmp_path))
    got = assert_like_python(apyrun, [target, "arg"], cwd=tmp_path,
                             expected=Result(
        2, "", f"<python>: can't open file '{tmp_path / target}': "
               "[Errno 2] No such file or directory\n"))
    assert_usage_error(got, str(tmp_path / target))


def test_directory_without_main(apyrun, tmp_path):
    write(tmp_path / "app" / "helper.py", 'print("must not run")\n')
    assert_usage_error(run([apyrun, "app"], cwd=tmp_path), "app", "__main__")


def test_zip_without_main(apyrun, tmp_path):
    with zipfile.ZipFile(tmp_path / "app.zip", "w") as zf:
        zf.writestr("helper.py", 'print("must not run")\n')
    assert_usage_error(run([apyrun, "app.zip"], cwd=tmp_path), "app.zip",
                       "__main__")


USAGE = ("usage: <python> [option] ... [-c cmd | -m mod | file | -] "
         "[arg] ...\n"
         "Try `python -h' for more information.\n")


@pytest.mark.parametrize("argv, expected", [
    (["-j"], Result(2, "", "Unknown option: -j\n" + USAGE)),
    (["-c"], Result(2, "", "Argument expected for the -c option\n" + USAGE)),
    (["-m"], Result(2, "", "Argument expected for the -m option\n" + USAGE)),
    (["-m", "no_such_module_xyz"],
     Result(1, "", "<python>: No module named no_such_module_xyz\n")),
    (["-c", "x = = 1"],
     Result(1, "", '  File "<string>", line 1\n    x = = 1\n        ^\n'
                   "SyntaxError: invalid syntax\n")),
], ids=["-j", "-c without code", "-m without module", "-m missing module",
        "-c syntax error"])
def test_python_usage_errors_like_python(apyrun, tmp_path, argv, expected):
    assert_like_python(apyrun, argv, cwd=tmp_path, expected=expected)


def test_script_linked_to_dev_zero_like_python(apyrun, tmp_path):
    # python refuses it after one read; apyrun's own look at the source
    # (is it TLA?) used to read on until memory ran out. The short timeout
    # bounds what a regression costs the machine.
    os.symlink("/dev/zero", tmp_path / "z.py")
    got = assert_like_python(apyrun, ["z.py"], cwd=tmp_path, timeout=5)
    assert got.returncode == 1
    assert got.stderr.endswith("SyntaxError: unknown parsing error\n")
    r, usage = run_measured([apyrun, "z.py"], cwd=tmp_path, timeout=5)
    assert usage.ru_maxrss < 200 * 1024, f"peak RSS {usage.ru_maxrss} KiB"


def test_undecodable_source_like_python(apyrun, tmp_path):
    (tmp_path / "latin.py").write_bytes(b'print("caf\xe9")\n')
    assert_like_python(apyrun, ["latin.py"], cwd=tmp_path, expected=Result(
        1, "", "SyntaxError: Non-UTF-8 code starting with '\\xe9' in file "
               f"{tmp_path}/latin.py on line 1, but no encoding declared; "
               "see https://peps.python.org/pep-0263/ for details\n"))


@pytest.mark.parametrize("source, output", [
    (b'# -*- coding: latin-1 -*-\nprint("caf\xe9")\n', "caf\u00e9\n"),
    (b'\xef\xbb\xbfprint("bom")\n', "bom\n"),
    (b"", ""),
    (b'print("crlf")\r\nprint("lines")\r\n', "crlf\nlines\n"),
], ids=["coding declaration", "utf-8 BOM", "empty", "CRLF"])
def test_source_encodings_like_python(apyrun, tmp_path, source, output):
    (tmp_path / "enc.py").write_bytes(source)
    assert_like_python(apyrun, ["enc.py"], cwd=tmp_path,
                       expected=Result(0, output, ""))

