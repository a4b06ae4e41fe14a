# SPDX-License-Identifier: MIT
"""Progress (issue 3 section 2): on a terminal, stderr shows which cell of
how many runs and the time elapsed; nothing extra off a terminal; colour
only on a terminal and never with NO_COLOR."""
import os
import pty
import select
import subprocess
import time

from conftest import child_env, run, write_nb

ESC = "\x1b["


def run_on_tty(argv, cwd, env):
    """Runs argv with stderr on a pseudo-terminal; returns (rc, stdout,
    what the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            shown += data
        elif proc.poll() is not None:
            break
    os.close(master)
    out = proc.stdout.read()
    proc.wait(timeout=30)
    return proc.returncode, out.decode(), shown.decode(errors="replace")


def make(tmp_path):
    return write_nb(tmp_path / "p.ipynb", [
        "print('one')", "x = 1", "print('three')"])


def test_progress_on_a_terminal_with_colour(apyrun, tmp_path):
    nb = make(tmp_path)
    rc, out, shown = run_on_tty([apyrun, nb], tmp_path, child_env())
    assert rc == 0
    assert out == "one\nthree\n"
    for k in (1, 2, 3):
        assert f"cell {k} of 3" in shown, shown
    assert "In [3]" in shown
    assert ESC in shown


def test_no_colour_with_no_color(apyrun, tmp_path):
    nb = make(tmp_path)
    rc, _, shown = run_on_tty([apyrun, nb], tmp_path,
                              child_env({"NO_COLOR": "1"}))
    assert rc == 0
    assert "cell 3 of 3" in shown
    assert ESC not in shown


def test_error_report_colour_only_on_a_terminal(apyrun, tmp_path):
    nb = write_nb(tmp_path / "e.ipynb", ["1/0"])
    rc, _, shown = run_on_tty([apyrun, nb], tmp_path, child_env())
    assert rc == 1
    assert "apyrun: error in cell 1, In [1]" in shown and ESC in shown
    r = run([apyrun, nb], cwd=tmp_path)
    assert ESC not in r.stderr
    assert r.stderr.splitlines()[-1] == f"apyrun: error in cell 1, In [1] of {nb}"


def test_nothing_extra_off_a_terminal(apyrun, tmp_path):
    nb = make(tmp_path)
    r = run([apyrun, nb], cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "one\nthree\n", "")
