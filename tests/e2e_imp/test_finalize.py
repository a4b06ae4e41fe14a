# SPDX-License-Identifier: MIT
"""Nothing of the importer outlives Py_Finalize (sanitizer build only).

An awaited import once left the importer's module, its state and types,
and all of asyncio alive at exit: the state kept _asyncio's
_get_running_loop, whose module's C globals hold asyncio, whose modules
hold the importer's loaders, whose types hold the module: a cycle through
C statics that no GC sees.  With PYTHONMALLOC=malloc, LeakSanitizer
cannot tell (leftover objects stay reachable through the GC's lists).
Under pymalloc (-E ignores PYTHONMALLOC) it counts the blocks left at
exit that it cannot reach: CPython leaves some by design, so the measure
is differential: TLA code with awaited imports, or a TLA module imported
from plain code, leaves exactly what the same imports leave without
top-level await.
"""
import pathlib
import re

import pytest

from conftest import child_env, run, write

SUMMARY = re.compile(r"SUMMARY: AddressSanitizer: (\d+) byte\(s\) leaked "
                     r"in (\d+) allocation")

PLAIN = """
    import asyncio, json
    asyncio.run(asyncio.sleep(0))
    print("done")
"""

AWAITED = """
    import asyncio, json
    await asyncio.sleep(0)
    print("done")
"""

IMPORTS_TLA = """
    import asyncio, json
    import tla_mod
    asyncio.run(asyncio.sleep(0))
    print("done")
"""

TLA_MOD = """
    import asyncio
    await asyncio.sleep(0)
"""


@pytest.fixture(scope="module")
def sanitized(apyrun):
    if b"__asan_init" not in pathlib.Path(apyrun).read_bytes():
        pytest.skip("apyrun is not built with AddressSanitizer")


def left_at_exit(apyrun, tmp_path, name, source):
    """(bytes, blocks) LeakSanitizer finds left at exit of a pymalloc run
    of `source` (no suppressions: CPython's own count too)."""
    write(tmp_path / name, source)
    write(tmp_path / "tla_mod.py", TLA_MOD)
    log = tmp_path / f"lsan-{name}"
    env = child_env({"ASAN_OPTIONS": "detect_leaks=1",
                     "LSAN_OPTIONS": f"exitcode=0:log_path={log}"})
    r = run([apyrun, "-E", name], cwd=tmp_path, env=env)
    assert (r.returncode, r.stdout) == (0, "done\n"), r.stderr
    reports = "".join(p.read_text() for p in tmp_path.glob(f"{log.name}.*"))
    m = SUMMARY.search(reports)
    return (int(m[1]), int(m[2])) if m else (0, 0)


def test_awaited_imports_leave_nothing_more(apyrun, tmp_path, sanitized):
    plain = left_at_exit(apyrun, tmp_path, "plain.py", PLAIN)
    assert left_at_exit(apyrun, tmp_path, "awaited.py", AWAITED) == plain


def test_tla_module_imported_leaves_nothing_more(apyrun, tmp_path,
                                                 sanitized):
    plain = left_at_exit(apyrun, tmp_path, "plain.py", PLAIN)
    assert left_at_exit(apyrun, tmp_path, "imports.py", IMPORTS_TLA) == plain
