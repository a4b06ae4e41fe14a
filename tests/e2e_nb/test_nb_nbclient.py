# SPDX-License-Identifier: MIT
"""The real notebooks of nbclient's test suite (/work/shared/notebooks/
nbclient, with the outputs nbclient recorded): apyrun runs them and records
the same outputs cell by cell (output types, stream text, text/plain,
ename, mime types), except where a notebook needs a kernel."""
import datetime
import os
import shutil
import struct
import zlib

import pytest

from conftest import NBCLIENT_DIR, outputs, read_valid, run

pytestmark = pytest.mark.skipif(
    not os.path.isdir(NBCLIENT_DIR),
    reason=f"{NBCLIENT_DIR} (nbclient's notebooks) is absent")

# name -> (extra options, expected exit code, compare with nbclient's
# recorded outputs)
CASES = {
    "HelloWorld": ([], 0, True),
    "Factorials": ([], 0, True),
    "Unicode": ([], 0, True),
    "UnicodePy3": ([], 0, True),
    "Empty Cell": ([], 0, True),
    "Error": ([], 1, True),
    "Skip Exceptions": (["--allow-errors"], 1, True),
    "Skip Exceptions with Cell Tags": ([], 0, True),
    "Skip Execution with Cell Tag": ([], 0, True),
    "SVG": ([], 0, True),
    "Inline Image": ([], 0, True),
    "Clear Output": ([], 0, True),
}
NEEDS_IPYTHON = {"SVG", "Inline Image", "Clear Output"}


def summary(outs):
    """What must agree: types, stream text, text/plain, ename, mimes."""
    got = []
    for o in outs:
        kind = o["output_type"]
        if kind == "stream":
            got.append((kind, o["name"], o["text"]))
        elif kind in ("display_data", "execute_result"):
            got.append((kind, o["data"].get("text/plain"),
                        sorted(o["data"])))
        elif kind == "error":
            got.append((kind, o["ename"]))
    return got


def tiny_png(path):
    def chunk(kind, data):
        body = kind + data
        return (struct.pack(">I", len(data)) + body
                + struct.pack(">I", zlib.crc32(body)))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0,
                                                  0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
                     + chunk(b"IEND", b""))


def copy_in(tmp_path, name):
    src = os.path.join(NBCLIENT_DIR, name + ".ipynb")
    if not os.path.exists(src):
        pytest.skip(f"{src} is absent")
    dst = tmp_path / (name + ".ipynb")
    shutil.copy(src, dst)
    return src, dst


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_outputs_as_nbclient(apyrun, tmp_path, name):
    if name in NEEDS_IPYTHON:
        pytest.importorskip("IPython")
    opts, code, compare = CASES[name]
    src, nb = copy_in(tmp_path, name)
    if name == "Inline Image":
        tiny_png(tmp_path / "python.png")
    out = tmp_path / "out.ipynb"
    r = run([apyrun, *opts, "-o", out, nb], cwd=tmp_path)
    assert r.returncode == code, r.stderr
    got = read_valid(out)
    ref = read_valid(src)
    assert len(got.cells) == len(ref.cells)
    for i, (a, b) in enumerate(zip(ref.cells, got.cells)):
        assert a.cell_type == b.cell_type
        if a.cell_type == "code" and compare:
            assert summary(b.outputs) == summary(a.outputs), f"cell {i + 1}"
            assert (b.execution_count is None) == (a.execution_count is None)


def test_sleep1s(apyrun, tmp_path):
    _, nb = copy_in(tmp_path, "Sleep1s")
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "-o", out, nb], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = read_valid(out)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    t0 = datetime.datetime.strptime(outputs(got, 2)[0]["text"], fmt)
    t1 = datetime.datetime.strptime(outputs(got, 3)[0]["text"], fmt)
    assert 1.0 <= (t1 - t0).total_seconds() < 5
    assert [c.execution_count for c in got.cells] == [1, 2, 3, 4]


def test_interrupt_by_timeout(apyrun, tmp_path):
    # nbclient interrupts the endless loop on its timeout; so does apyrun,
    # and a timeout ends the run (exit 124).
    _, nb = copy_in(tmp_path, "Interrupt")
    out = tmp_path / "out.ipynb"
    r = run([apyrun, "--timeout", "1", "-o", out, nb], cwd=tmp_path)
    assert r.returncode == 124
    assert summary(outputs(read_valid(out), 0)) == [
        ("error", "KeyboardInterrupt")]


def test_disable_stdin(apyrun, tmp_path):
    # nbclient runs it with stdin disabled, so input() raises
    # StdinNotImplementedError (nbclient's test_disable_stdin checks that
    # error); so does apyrun's off a terminal, even with data piped in.
    _, nb = copy_in(tmp_path, "Disable Stdin")
    out = tmp_path / "out.ipynb"
    r = run([apyrun, nb, "-o", out], cwd=tmp_path, input="me\n")
    assert r.returncode == 1
    assert summary(outputs(read_valid(out), 0)) == [
        ("error", "StdinNotImplementedError")]


def test_update_display_id_needs_a_kernel(apyrun, tmp_path):
    pytest.skip("update-display-id.ipynb drives ip.kernel.iopub_socket "
                "itself: it needs a Jupyter kernel, which apyrun is not")
