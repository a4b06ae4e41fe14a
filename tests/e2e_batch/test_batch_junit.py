# SPDX-License-Identifier: MIT
"""apyrun --test --junit-xml: pytest's --junitxml shape, read back with
Python's xml module; --durations: a previous report balances --shard."""
import os
import subprocess
import xml.etree.ElementTree as ET

from conftest import REF_PYTHON, run, write_nb


def report(path):
    root = ET.parse(str(path)).getroot()
    assert root.tag == "testsuites"
    (suite,) = list(root)
    assert suite.tag == "testsuite"
    return suite, {(tc.get("classname"), tc.get("name")): tc
                   for tc in suite.iter("testcase")}


def test_junit_report_as_pytest_writes_it(apyrun, tmp_path):
    write_nb(tmp_path / "ok.ipynb", "print('out & <about>')")
    write_nb(tmp_path / "docs" / "sub" / "bad.ipynb",
             "import sys\n"
             "print('ctl \\x07\\x1b here', file=sys.stderr)\n"
             "1 / 0")
    write_nb(tmp_path / "docs" / "r.ipynb", "x <- 1", language="R")
    write_nb(tmp_path / "docs" / "crash.ipynb", "import os\nos.abort()")
    r = run([apyrun, "--test", "--junit-xml", "out/report.xml"],
            cwd=tmp_path)
    assert r.returncode == 1
    suite, cases = report(tmp_path / "out" / "report.xml")
    assert suite.get("name") == "apyrun"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped"),
            suite.get("errors")) == ("4", "2", "1", "0")
    assert float(suite.get("time")) > 0
    assert suite.get("timestamp") and suite.get("hostname") is not None
    assert set(cases) == {("", "ok.ipynb"), ("docs.sub", "bad.ipynb"),
                          ("docs", "r.ipynb"), ("docs", "crash.ipynb")}
    ok = cases[("", "ok.ipynb")]
    assert ok.find("failure") is None
    assert ok.find("system-out").text == "out & <about>\n"
    assert float(ok.get("time")) >= 0
    bad = cases[("docs.sub", "bad.ipynb")]
    failure = bad.find("failure")
    assert failure.get("message") == \
        "cell 1: ZeroDivisionError: division by zero"
    assert "Traceback (most recent call last):" in failure.text
    assert "apyrun: error in cell 1" in failure.text
    # Characters XML forbids are shown as pytest shows them.
    assert "ctl #x07#x1B here" in bad.find("system-err").text
    crash = cases[("docs", "crash.ipynb")]
    assert crash.find("failure").get("message") == \
        "killed by signal 6 (SIGABRT)"
    skipped = cases[("docs", "r.ipynb")].find("skipped")
    assert skipped.get("type") == "pytest.skip"
    assert "kernel language is 'R'" in skipped.get("message")
    # No temporary file is left beside it.
    assert os.listdir(tmp_path / "out") == ["report.xml"]


def test_junit_replaces_an_old_report_whole(apyrun, tmp_path):
    write_nb(tmp_path / "a.ipynb", "x = 1")
    old = tmp_path / "report.xml"
    old.write_text("old" * 100000)
    os.symlink("report.xml", tmp_path / "link.xml")
    r = run([apyrun, "--test", "--junit-xml", "link.xml", "a.ipynb"],
            cwd=tmp_path)
    assert r.returncode == 0
    # The link is replaced by the report; the file it named is untouched.
    assert old.read_text() == "old" * 100000
    assert not os.path.islink(tmp_path / "link.xml")
    _, cases = report(tmp_path / "link.xml")
    assert list(cases) == [("", "a.ipynb")]


def test_gitlab_and_jenkins_readers_accept_it(apyrun, tmp_path):
    # junitparser-like strictness with the stdlib: every attribute a
    # reader needs is there and numeric where it must be.
    write_nb(tmp_path / "a.ipynb", "1 / 0")
    run([apyrun, "--test", "--junit-xml", "r.xml"], cwd=tmp_path)
    suite, cases = report(tmp_path / "r.xml")
    for key in ("tests", "failures", "errors", "skipped"):
        int(suite.get(key))
    float(suite.get("time"))
    for tc in cases.values():
        float(tc.get("time"))
        assert tc.get("name") and tc.get("classname") is not None


def shard(apyrun, cwd, k, n, durations=None):
    extra = ["--durations", durations] if durations else []
    r = run([apyrun, "--test", "--list", "--shard", f"{k}/{n}", *extra],
            cwd=cwd)
    assert r.returncode in (0, 5), r.stderr
    return r.stdout.splitlines()


def test_durations_balance_shards_by_previous_times(apyrun, tmp_path):
    # Sizes say a.ipynb is the heaviest; the previous run says c.ipynb.
    write_nb(tmp_path / "a.ipynb", "x = 1\n" + "#" * 50000)
    for name in "bcde":
        write_nb(tmp_path / f"{name}.ipynb", "x = 1")
    assert shard(apyrun, tmp_path, 1, 2) == ["a.ipynb"]
    (tmp_path / "prev.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite>'
        '<testcase classname="" name="a.ipynb" time="0.1"/>'
        '<testcase classname="" name="b.ipynb" time="0.2"/>'
        '<testcase classname="" name="c.ipynb" time="9.0"/>'
        '<testcase classname="" name="d.ipynb" time="0.3"/>'
        '<testcase classname="x" name="gone.ipynb" time="50"/>'
        '</testsuite></testsuites>')
    one = shard(apyrun, tmp_path, 1, 2, "prev.xml")
    two = shard(apyrun, tmp_path, 2, 2, "prev.xml")
    assert one == ["c.ipynb"]
    assert sorted(one + two) == [f"{c}.ipynb" for c in "abcde"]


def test_durations_from_our_own_report(apyrun, tmp_path):
    for name in "abc":
        write_nb(tmp_path / f"{name}.ipynb",
                 "import time\ntime.sleep(%s)" % ("0.6" if name == "b"
                                                  else "0"))
    run([apyrun, "--test", "--junit-xml", "r.xml"], cwd=tmp_path)
    assert shard(apyrun, tmp_path, 1, 2, "r.xml") == ["b.ipynb"]


def test_durations_from_pytest_junitxml(apyrun, tmp_path):
    # pytest's own report of a file test: name is the test, classname
    # the module; none of ours match, so every weight is the same and
    # the split is still a partition.
    (tmp_path / "test_x.py").write_text("def test_a():\n    pass\n")
    subprocess.run([REF_PYTHON, "-m", "pytest", "-q", "-p",
                    "no:cacheprovider", "--junitxml", "py.xml", "test_x.py"],
                   cwd=tmp_path, capture_output=True, check=True)
    for name in "ab":
        write_nb(tmp_path / f"{name}.ipynb", "x = 1")
    parts = [shard(apyrun, tmp_path, k, 2, "py.xml") for k in (1, 2)]
    assert sorted(parts[0] + parts[1]) == ["a.ipynb", "b.ipynb"]


def test_durations_file_errors_are_usage_errors(apyrun, tmp_path):
    write_nb(tmp_path / "a.ipynb", "x = 1")
    (tmp_path / "bad.xml").write_text("<testsuites><testsuite>")
    r = run([apyrun, "--test", "--shard", "1/2", "--durations", "bad.xml"],
            cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("apyrun: --durations bad.xml: not XML: ")
    r = run([apyrun, "--test", "--shard", "1/2", "--durations", "no.xml"],
            cwd=tmp_path)
    assert r.returncode == 2
    assert "--durations no.xml: [Errno 2] No such file" in r.stderr
