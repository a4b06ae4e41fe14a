# SPDX-License-Identifier: MIT
"""A program that imports nothing unusual does not pay for the importer
(DESIGN 4): it imports no more modules than python3 does (asyncio and
linecache stay unimported) and lists no more directories, even when an
import fails."""
import re
import shutil

import pytest

from conftest import REF_PYTHON, child_env, no_leak_check, run, write

PROGRAM = """
    import sys, json, email.mime.text
    try:
        import no_such_module_here
    except ImportError:
        pass
    try:
        import nosuchmodulehere
    except ImportError:
        pass
    print(sorted(sys.modules))
"""


def test_no_extra_modules(apyrun, tmp_path):
    write(tmp_path / "main.py", PROGRAM)
    ref = run([REF_PYTHON, "main.py"], cwd=tmp_path)
    got = run([apyrun, "main.py"], cwd=tmp_path)
    assert ref.returncode == got.returncode == 0
    extra = set(eval(got.stdout)) - set(eval(ref.stdout))
    assert extra <= {"_apyrun_importer"}
    assert "asyncio" not in got.stdout and "linecache" not in got.stdout


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_no_extra_directory_listings(apyrun, tmp_path):
    write(tmp_path / "main.py", PROGRAM)

    def listed(exe):
        log = tmp_path / f"strace-{exe.replace('/', '_')}.txt"
        # LeakSanitizer cannot run under ptrace.
        r = run(["strace", "-f", "-qq", "-e", "trace=openat",
                 "-o", log, exe, "main.py"], cwd=tmp_path,
                env=child_env(no_leak_check()))
        assert r.returncode == 0, r.stderr
        dirs = re.findall(r'openat\([^,]+, "([^"]+)", [^)]*O_DIRECTORY',
                          log.read_text())
        return sorted(set(dirs))

    assert listed(apyrun) == listed(REF_PYTHON)
