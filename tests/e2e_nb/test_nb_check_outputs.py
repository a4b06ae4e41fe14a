# SPDX-License-Identifier: MIT
"""--check-outputs: each code cell's new outputs against the stored ones,
by nbval's rules (streams merged and \\b/\\r applied, text/plain and the
other text types compared, images by presence unless --check-images,
metadata, tracebacks and counts ignored), its tags and comment markers,
--check-outputs=lax, --sanitize files, the diff and the exit codes; on
notebooks a Jupyter kernel executed (nbconvert) and on nbclient's own."""
import importlib.util
import os
import shutil

import nbformat
import pytest
from nbformat.v4 import new_output

from conftest import (NBCLIENT_DIR, REF_PYTHON, cell, child_env, read_valid,
                      run, write_nb)

HAVE_JUPYTER = (importlib.util.find_spec("nbconvert") is not None
                and importlib.util.find_spec("ipykernel") is not None)


def stored(path, cells, outputs, counts=None):
    """A notebook at path whose code cells hold the given outputs (a list
    a cell), as if a kernel had run them: counts 1, 2, ... unless given
    (None: the stored cell never ran)."""
    write_nb(path, cells)
    nb = nbformat.read(str(path), as_version=4)
    for i, (c, outs) in enumerate(zip(nb.cells, outputs)):
        c.outputs = [new_output(**o) for o in outs]
        c.execution_count = (i + 1) if counts is None else counts[i]
    nbformat.write(nb, str(path))
    return path


def out(text, name="stdout"):
    return {"output_type": "stream", "name": name, "text": text}


def result(text, count=1, **more):
    return {"output_type": "execute_result", "execution_count": count,
            "data": {"text/plain": text, **more}}


def display(**data):
    return {"output_type": "display_data", "data": data}


def check(apyrun, nb, *opts):
    return run([apyrun, "--check-outputs", *opts, nb.name], cwd=nb.parent)


def test_the_same_outputs_pass(apyrun, tmp_path):
    nb = stored(tmp_path / "nb.ipynb",
                ["print('hello')\nprint('world')", "6 * 7",
                 "import sys\nprint('oops', file=sys.stderr)", "x = 1"],
                [[out("hello\n"), out("world\n")], [result("42", 2)],
                 [out("oops\n", "stderr")], []])
    r = check(apyrun, nb)
    assert r.returncode == 0, r.stderr
    assert "differ" not in r.stderr
    # The notebook is not touched (no -o).
    assert read_valid(nb).cells[0].outputs[0].text == "hello\n"


@pytest.mark.parametrize("changed", [
    # (what the stored cell holds, what the diff shows of it)
    ([out("bye\n")], "-bye"),                       # another stream text
    ([out("hello\n", "stderr")], "-[stderr]"),      # another stream
    ([result("'hello'")], "-'hello'"),              # another result
    ([], "+[stdout]"),                              # an output too many
    ([out("hello\n"), display(**{"text/plain": "x"})],
     "-x"),                                         # one missing
])
def test_a_different_output_fails_with_a_diff(apyrun, tmp_path, changed):
    outputs, shown = changed
    nb = stored(tmp_path / "nb.ipynb", ["x = 1", "print('hello')", "y = 2"],
                [[], outputs, []])
    r = check(apyrun, nb)
    assert r.returncode == 1, r.stderr
    assert "apyrun: outputs differ in cell 2 of nb.ipynb" in r.stderr
    assert "--- expected\n+++ actual\n" in r.stderr
    assert shown in r.stderr.splitlines()
    # Only cell 2 differs; every cell ran.
    assert r.stderr.count("outputs differ") == 1


def test_errors_compare_name_and_value_not_traceback(apyrun, tmp_path):
    err = {"output_type": "error", "ename": "ZeroDivisionError",
           "evalue": "division by zero",
           "traceback": ["a traceback from another machine"]}
    src = ["1 / 0"]
    nb = stored(tmp_path / "nb.ipynb", [cell(src[0],
                                             tags=["raises-exception"])],
                [[err]])
    r = check(apyrun, nb)
    assert r.returncode == 0, r.stderr
    other = dict(err, evalue="another value")
    nb = stored(tmp_path / "nb2.ipynb", [cell(src[0],
                                              tags=["raises-exception"])],
                [[other]])
    r = check(apyrun, nb)
    assert r.returncode == 1
    assert "-another value" in r.stderr.splitlines()
    assert "+division by zero" in r.stderr.splitlines()


def test_streams_merge_and_erase_as_nbval(apyrun, tmp_path):
    # Stored as one stream; printed in pieces, with \r and \b progress.
    nb = stored(tmp_path / "nb.ipynb",
                ["import sys\nfor i in range(3):\n"
                 "    print(f'\\r{i}', end='')\n    sys.stdout.flush()\n"
                 "print()\nprint('ab\\bc')\nprint('end')"],
                [[out("2\nac\nend\n")]])
    r = check(apyrun, nb)
    assert r.returncode == 0, r.stderr


def test_images_by_presence_or_bytes(apyrun, tmp_path):
    src = ("from IPython.display import Image, display\n"
           "display(Image(data=b'\\x89PNG\\r\\n\\x1a\\n' + b'new', "
           "format='png'))")
    pytest.importorskip("IPython")
    nb = stored(tmp_path / "nb.ipynb", [src],
                [[display(**{"image/png": "b2xk",  # base64 of "old"
                             "text/plain": "<IPython.core.display.Image "
                                           "object>"})]])
    assert check(apyrun, nb).returncode == 0
    r = check(apyrun, nb, "--check-images")
    assert r.returncode == 1
    assert "-b2xk" in r.stderr.splitlines()
    # No image where one was stored: a difference without --check-images.
    nb = stored(tmp_path / "nb2.ipynb", ["print('no image')"],
                [[display(**{"image/png": "b2xk"})]])
    r = check(apyrun, nb)
    assert r.returncode == 1
    assert "-[image/png]" in r.stderr.splitlines()


def test_metadata_counts_and_key_order_are_ignored(apyrun, tmp_path):
    nb = stored(tmp_path / "nb.ipynb", ["x = 5", "x"],
                [[], [dict(result("5", 99), metadata={"any": "thing"})]])
    assert check(apyrun, nb).returncode == 0


def test_tags_and_markers(apyrun, tmp_path):
    cells = [
        # Ignored: another text, by tag and by comment marker.
        cell("print('now')", tags=["nbval-ignore-output"]),
        "# NBVAL_IGNORE_OUTPUT\nprint('now')",
        # Skipped: never run, so never writes its file.
        cell("open('ran', 'w').write('x')\n1 / 0", tags=["nbval-skip"]),
        "# NBVAL_SKIP\nopen('ran2', 'w').write('x')",
        # Checked.
        cell("print('same')", tags=["nbval-check-output"]),
        "print('other')",
    ]
    outputs = [[out("then\n")], [out("then\n")], [], [],
               [out("same\n")], [out("stored\n")]]
    nb = stored(tmp_path / "nb.ipynb", cells, outputs)
    r = check(apyrun, nb)
    assert r.returncode == 1
    assert "outputs differ in cell 6 " in r.stderr
    assert r.stderr.count("outputs differ") == 1
    assert not (tmp_path / "ran").exists()
    assert not (tmp_path / "ran2").exists()
    # lax: only the cells tagged nbval-check-output are compared.
    r = check(apyrun, nb, "--check-outputs=lax")
    assert r.returncode == 0, r.stderr
    # nbval-raises-exception: the error is expected, as raises-exception.
    nb = stored(tmp_path / "raises.ipynb",
                [cell("raise KeyError('k')", tags=["nbval-raises-exception"]),
                 "# NBVAL_RAISES_EXCEPTION\nraise ValueError('v')",
                 "print('after')"],
                [[{"output_type": "error", "ename": "KeyError",
                   "evalue": "'k'", "traceback": []}],
                 [{"output_type": "error", "ename": "ValueError",
                   "evalue": "v", "traceback": []}],
                 [out("after\n")]])
    r = check(apyrun, nb)
    assert r.returncode == 0, r.stderr
    # Without --check-outputs the nbval tags skip nothing.
    nb = write_nb(tmp_path / "plain.ipynb",
                  [cell("open('ran3', 'w').write('x')", tags=["nbval-skip"])])
    assert run([apyrun, nb], cwd=tmp_path).returncode == 0
    assert (tmp_path / "ran3").exists()


def test_unrun_stored_cells(apyrun, tmp_path):
    # Never run and empty: nothing to compare with.
    nb = stored(tmp_path / "nb.ipynb", ["print('new')"], [[]], counts=[None])
    assert check(apyrun, nb).returncode == 0
    # Never run, yet with outputs: nbval calls it an error.
    nb = stored(tmp_path / "nb2.ipynb", ["print('new')"], [[out("new\n")]],
                counts=[None])
    r = check(apyrun, nb)
    assert r.returncode == 1
    assert "the stored cell was never run, yet has outputs" in r.stderr


def test_update_display_and_clear_output_compare_the_final_outputs(
        apyrun, tmp_path):
    pytest.importorskip("IPython")
    nb = stored(tmp_path / "nb.ipynb",
                ["h = display('first', display_id='d')",
                 "h.update('second')",
                 "from IPython.display import clear_output\n"
                 "print('gone')\nclear_output()\nprint('kept')"],
                [[display(**{"text/plain": "'second'"})], [],
                 [out("kept\n")]])
    r = check(apyrun, nb)
    assert r.returncode == 0, r.stderr


# Applied in order, as nbval does: addresses first, or their digits
# would become NUMBER.
SANITIZE = """[addresses]
regex: 0x[0-9a-f]+
replace: ADDRESS

[numbers]
regex: \\d{4,}
replace: NUMBER
"""


def test_sanitizers(apyrun, tmp_path):
    nb = stored(tmp_path / "nb.ipynb",
                ["import time\nprint('took', 10000 + int(time.time()) % 9)",
                 "print(hex(id(object())))"],
                [[out("took 10007\n")], [out("0xdeadbeef\n")]])
    assert check(apyrun, nb).returncode == 1
    conf = tmp_path / "sanitize.cfg"
    conf.write_text(SANITIZE)
    r = check(apyrun, nb, "--sanitize", conf)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("content, message", [
    (None, "No such file or directory"),
    ("[x]\nregex: (\nreplace: y\n", "missing ), unterminated subpattern"),
    ("[x]\nregex: a\n", "no 'regex:' line followed by a 'replace:' line"),
    (b"\xff\xfe", "can't decode"),
])
def test_a_bad_sanitizer_file_is_a_usage_error(apyrun, tmp_path, content,
                                                message):
    nb = stored(tmp_path / "nb.ipynb", ["open('ran', 'w')"], [[]])
    conf = tmp_path / "sanitize.cfg"
    if isinstance(content, str):
        conf.write_text(content)
    elif content is not None:
        conf.write_bytes(content)
    before = nb.read_bytes()
    r = check(apyrun, nb, "--sanitize", conf)
    assert r.returncode == 2
    assert r.stderr.startswith(f"apyrun: --sanitize {conf}: ")
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "ran").exists()  # before any cell
    assert nb.read_bytes() == before


def test_usage_errors(apyrun, tmp_path):
    script = tmp_path / "s.py"
    script.write_text("print(1)\n")
    r = run([apyrun, "--check-outputs", script], cwd=tmp_path)
    assert r.returncode == 2
    assert "not a notebook" in r.stderr
    nb = stored(tmp_path / "nb.ipynb", ["x = 1"], [[]])
    r = run([apyrun, "--sanitize", "f.cfg", nb], cwd=tmp_path)
    assert r.returncode == 2
    assert "--sanitize needs --check-outputs" in r.stderr
    r = run([apyrun, "--check-outputs=loose", nb], cwd=tmp_path)
    assert r.returncode == 2


def test_with_output_file_and_allow_errors(apyrun, tmp_path):
    # -o still writes the new outputs; --allow-errors does not excuse a
    # difference.
    nb = stored(tmp_path / "nb.ipynb", ["1 / 0", "print('new')"],
                [[{"output_type": "error", "ename": "ZeroDivisionError",
                   "evalue": "division by zero", "traceback": []}],
                 [out("old\n")]])
    dst = tmp_path / "out.ipynb"
    r = run([apyrun, "--check-outputs", "--allow-errors", "-o", dst, nb],
            cwd=tmp_path)
    assert r.returncode == 1
    assert "outputs differ in cell 2 " in r.stderr
    assert read_valid(dst).cells[1].outputs[0].text == "new\n"


def test_batch_reports_the_difference(apyrun, tmp_path):
    stored(tmp_path / "good.ipynb", ["print('a')"], [[out("a\n")]])
    stored(tmp_path / "bad.ipynb", ["print('b')"], [[out("a\n")]])
    junit = tmp_path / "junit.xml"
    r = run([apyrun, "--test", "--verbose", "--check-outputs",
             "--junit-xml", junit, "."], cwd=tmp_path)
    assert r.returncode == 1
    assert "bad.ipynb FAILED" in r.stdout
    assert "good.ipynb PASSED" in r.stdout
    fail = r.stdout[r.stdout.index("FAILURES"):]
    assert "cell 1: outputs differ from the stored ones (cell 1)" in fail
    assert "-a\n+b" in fail
    assert 'message="cell 1: outputs differ' in junit.read_text()
    r = run([apyrun, "--test", "--check-outputs=lax", "."], cwd=tmp_path)
    assert r.returncode == 0, r.stdout


@pytest.mark.skipif(not HAVE_JUPYTER, reason="nbconvert or ipykernel "
                    "missing (Debian: python3-nbconvert, python3-ipykernel)")
def test_outputs_a_jupyter_kernel_recorded(apyrun, tmp_path):
    """nbconvert executes a notebook with a kernel; apyrun --check-outputs
    on what it recorded passes; one cell edited, it fails there."""
    cells = [
        "print('hello')\nimport sys\nprint('err', file=sys.stderr)",
        "import asyncio\nawait asyncio.sleep(0.01)\n[1, 2, 3]",
        "for i in range(3):\n    print(i, end=' ')\nprint()",
        "from IPython.display import HTML, Markdown, display\n"
        "display(HTML('<b>bold</b>'))\ndisplay(Markdown('*it*'))",
        "x = {'a': 1}\nx['a'] + 1",
        "# NBVAL_IGNORE_OUTPUT\nimport random\nrandom.random()",
        cell("int('x')", tags=["raises-exception"]),
    ]
    src = write_nb(tmp_path / "src.ipynb", cells)
    r = run([REF_PYTHON, "-m", "nbconvert", "--to", "notebook", "--execute",
             "--output", "nb.ipynb", src], cwd=tmp_path, env=child_env(),
            timeout=180)
    assert r.returncode == 0, r.stderr
    nb = tmp_path / "nb.ipynb"
    r = check(apyrun, nb)
    assert r.returncode == 0, r.stderr
    data = nbformat.read(str(nb), as_version=4)
    data.cells[4].source = "x = {'a': 1}\nx['a'] + 2"
    nbformat.write(data, str(nb))
    r = check(apyrun, nb)
    assert r.returncode == 1
    assert "apyrun: outputs differ in cell 5 of nb.ipynb" in r.stderr
    assert ["-2", "+3"] == [ln for ln in r.stderr.splitlines()
                            if ln in ("-2", "+3")]


# nbclient's notebooks (its test files, with the outputs nbclient
# recorded): those apyrun runs as a kernel does compare equal.
NBCLIENT_SAME = ["Clear Output", "Empty Cell", "Factorials", "HelloWorld",
                 "SVG", "Skip Exceptions with Cell Tags",
                 "Skip Execution with Cell Tag", "Sleep1s", "Unicode",
                 "UnicodePy3", "Error", "Skip Exceptions", "Disable Stdin"]


@pytest.mark.skipif(not os.path.isdir(NBCLIENT_DIR),
                    reason=f"{NBCLIENT_DIR} (nbclient's notebooks) is absent")
def test_nbclient_notebooks_match_what_nbclient_recorded(apyrun, tmp_path):
    pytest.importorskip("IPython")
    for name in NBCLIENT_SAME:
        src = os.path.join(NBCLIENT_DIR, name + ".ipynb")
        if os.path.exists(src):
            shutil.copy(src, tmp_path)
    if not any(tmp_path.iterdir()):
        pytest.skip(f"none of {NBCLIENT_SAME} in {NBCLIENT_DIR}")
    # nbclient ran them with allow_errors (Error, Skip Exceptions, Disable
    # Stdin raise, and recorded the error).
    r = run([apyrun, "--test", "--verbose", "--check-outputs",
             "--allow-errors", "."], cwd=tmp_path)
    assert r.returncode == 0, r.stdout
    assert "FAILED" not in r.stdout
