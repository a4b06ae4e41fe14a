# SPDX-License-Identifier: MIT
"""Parameters as papermill (issue 3 section 2): -p NAME VALUE typed as
True/False/None/int/float else str, --params-file F.json, and the
injected-parameters cell after the first parameters-tagged cell (or
first), replacing an old one."""
import json

import pytest

from conftest import cell, executed, outputs, read_valid, run, stream_text
from conftest import write_nb

SHOW = ("for k in ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']:\n"
        "    v = globals().get(k, '<unset>')\n"
        "    print(k, type(v).__name__, repr(v))")


def test_values_are_typed_as_papermill(apyrun, tmp_path):
    nb = write_nb(tmp_path / "p.ipynb", [
        cell("a = b = c = d = e = f = g = h = 'default'",
             tags=["parameters"]), SHOW])
    r = run([apyrun, "-p", "a", "True", "-p", "b", "False", "-p", "c",
             "None", "-p", "d", "42", "-p", "e", "-1.5e3", "-p", "f",
             "hello world", "-p", "g", "007", "-p", "h", "'quoted'", nb],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "a bool True", "b bool False", "c NoneType None", "d int 42",
        "e float -1500.0", "f str 'hello world'", "g int 7",
        "h str \"'quoted'\""]


def test_params_file_and_precedence(apyrun, tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"a": [1, {"x": None}], "b": 2.5,
                                  "c": "from file", "d": True}))
    nb = write_nb(tmp_path / "nbs" / "p.ipynb", [SHOW])
    r = run([apyrun, "--params-file", "params.json", "-p", "c", "cli", nb],
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:4] == [
        "a list [1, {'x': None}]", "b float 2.5", "c str 'cli'",
        "d bool True"]


def test_nan_and_infinities_anywhere_in_values(apyrun, tmp_path):
    # Found by tests/fuzz/fuzz_params.c: NaN and the infinities have no
    # literal; nested in a list or an object, repr() gave `[nan]`, a
    # NameError when the injected cell ran.
    (tmp_path / "params.json").write_text(
        '{"a": [1.5, NaN, Infinity], "b": {"k": [-Infinity]}, "c": NaN}')
    nb = write_nb(tmp_path / "p.ipynb", [
        "import math\n"
        "print(a[0], math.isnan(a[1]), a[2], b['k'][0], math.isnan(c))"])
    r = run([apyrun, "--params-file", "params.json", nb], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "1.5 True inf -inf True\n"), \
        r.stderr


def test_a_parameter_named_float_does_not_break_nan(apyrun, tmp_path):
    # Found by tests/fuzz/fuzz_params.c in CI: with papermill's spelling,
    # float('nan'), a parameter named float made a later NaN a TypeError.
    (tmp_path / "params.json").write_text(
        '{"float": {"k": null}, "z": [NaN, Infinity, -Infinity]}')
    nb = write_nb(tmp_path / "p.ipynb", [
        "import math\nprint(float, math.isnan(z[0]), z[1], z[2])"])
    r = run([apyrun, "--params-file", "params.json", nb], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "{'k': None} True inf -inf\n"), \
        r.stderr


def test_values_decode_as_argv_does(apyrun, tmp_path):
    # Bytes that are not UTF-8 used to be "out of memory"; they decode as
    # sys.argv does (surrogateescape), and as a name they are refused.
    nb = write_nb(tmp_path / "p.ipynb", ["print(ascii(v))"])
    r = run([apyrun, "-p", "v", b"caf\xe9", nb], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "'caf\\udce9'\n"), r.stderr
    r = run([apyrun, "-p", b"n\xe9", "1", nb], cwd=tmp_path)
    assert r.returncode == 2 and "identifier" in r.stderr


def test_injected_cell_placement_and_recording(apyrun, tmp_path):
    nb = write_nb(tmp_path / "p.ipynb", [
        "print('first', a)",
        cell("a = 'default'", tags=["parameters"]),
        cell("a = 'stale injection'", tags=["injected-parameters"]),
        "print('last', a)",
    ])
    r = run([apyrun, "-p", "a", "new"], cwd=tmp_path)
    assert r.returncode == 2, "a notebook option without a notebook"
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "-p", "a", "new", "-o", out, nb], cwd=tmp_path)
    # Cell 1 runs before any parameter: a is not defined yet.
    assert r.returncode == 1
    assert "NameError" in r.stderr
    nb2 = write_nb(tmp_path / "q.ipynb", [
        "print('first')",
        cell("a = 'default'", tags=["parameters"]),
        cell("a = 'stale injection'", tags=["injected-parameters"]),
        "print('last', a)",
    ])
    r = run([apyrun, "-p", "a", "new", "-o", out, nb2], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "first\nlast new\n"
    got = read_valid(out)
    tags = [c.metadata.get("tags") for c in got.cells]
    assert tags == [None, ["parameters"], ["injected-parameters"], None]
    assert "stale" not in got.cells[2].source
    assert "a = 'new'" in got.cells[2].source
    assert executed(got) == [1, 2, 3, 4]
    assert stream_text(outputs(got, 3)) == "last new\n"
    ids = [c.get("id") for c in got.cells]
    assert all(ids) and len(set(ids)) == 4


def test_no_parameters_cell_injects_first(apyrun, tmp_path):
    nb = write_nb(tmp_path / "p.ipynb", ["print(x)"])
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "-p", "x", "3", "-o", out, nb], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "3\n")
    got = read_valid(out)
    assert got.cells[0].metadata["tags"] == ["injected-parameters"]
    assert got.cells[1].source == "print(x)"
    # The input is untouched.
    assert len(read_valid(nb).cells) == 1


@pytest.mark.parametrize("args,word", [
    (["-p", "not an identifier", "1"], "identifier"),
    (["-p", "class", "1"], "identifier"),
    (["--params-file", "missing.json"], "missing.json"),
    (["--params-file", "list.json"], "object"),
    (["--params-file", "broken.json"], "broken.json"),
    # Found by tests/fuzz/fuzz_params.c: each made a cell that does not
    # compile, or one that assigns another name.
    (["-p", "__debug__", "1"], "__debug__"),
    (["-p", "\ufb01", "1"], "'fi'"),  # the ligature: python reads `fi`
    (["--params-file", "deep.json"], "nests deeper than 100 levels"),
    (["--params-file", "newline.json"], "'a\\nb'"),
])
def test_bad_parameters_are_usage_errors(apyrun, tmp_path, args, word):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text("{oops")
    (tmp_path / "deep.json").write_text('{"a": ' + "[" * 101 + "]" * 101
                                        + "}")
    (tmp_path / "newline.json").write_text('{"a\\nb": 1}')
    nb = write_nb(tmp_path / "p.ipynb", ["print('ran')"])
    r = run([apyrun, *args, nb], cwd=tmp_path)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and word in r.stderr
