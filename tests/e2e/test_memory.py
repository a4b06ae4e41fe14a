# SPDX-License-Identifier: MIT
"""pymalloc's arenas on transparent huge pages (src/embed/arena.c).

apyrun hands CPython's small-object allocator arenas carved from 2 MiB
regions marked MADV_HUGEPAGE; APYRUN_HUGEPAGES=0 keeps CPython's own
allocator.  These tests check that the regions really get huge pages where
the kernel offers them, that the opt-out works, and that arenas freed and
mapped again in waves neither break programs nor keep memory.
"""
import os
import re

import pytest

from conftest import REF_PYTHON, child_env, run, write

THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"

# Prints the kB of anonymous huge pages the process has, after filling a
# few arenas (a million small objects).
HUGE = """\
keep = [(i, i * 2.0) for i in range(1_000_000)]
total = 0
with open('/proc/self/smaps') as f:
    for line in f:
        if line.startswith('AnonHugePages:'):
            total += int(line.split()[1])
print('AnonHugePages', total)
"""

# Allocates and frees some 40 MB of small objects six times: pymalloc
# frees an arena once it is empty and maps a new one when it needs it, so
# arenas are unmapped from the middle of regions and mapped again.
CHURN = """\
def rss_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])

base = rss_kib()
total = 0
for wave in range(6):
    xs = [(i, str(i)) for i in range(300_000)]
    total += sum(len(s) for _, s in xs) + len(xs)
    del xs
print('total', total)
print('kept MiB', (rss_kib() - base) // 1024)
"""


def thp_mode():
    try:
        with open(THP_ENABLED) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"\[(\w+)\]", text)
    return m.group(1) if m else None


def vmstat(name):
    with open("/proc/vmstat") as f:
        for line in f:
            key, value = line.split()
            if key == name:
                return int(value)
    return 0


def uses_pymalloc():
    return not os.environ.get("PYTHONMALLOC", "").startswith("malloc")


def anon_huge_kib(apyrun, tmp_path, extra=None):
    write(tmp_path / "huge.py", HUGE)
    r = run([apyrun, "huge.py"], cwd=tmp_path, env=child_env(extra))
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[1])


@pytest.mark.skipif(thp_mode() not in ("always", "madvise"),
                    reason="the kernel offers no transparent huge pages")
@pytest.mark.skipif(not uses_pymalloc(),
                    reason="PYTHONMALLOC=malloc: pymalloc's arenas unused")
def test_arenas_get_huge_pages(apyrun, tmp_path):
    fallbacks = vmstat("thp_fault_fallback")
    kib = anon_huge_kib(apyrun, tmp_path)
    if kib == 0 and vmstat("thp_fault_fallback") > fallbacks:
        pytest.skip("the kernel had no free huge page (thp_fault_fallback)")
    assert kib >= 2048


@pytest.mark.skipif(thp_mode() != "madvise",
                    reason="only with THP on madvise is nothing else huge")
@pytest.mark.skipif(not uses_pymalloc(),
                    reason="PYTHONMALLOC=malloc: pymalloc's arenas unused")
def test_hugepages_zero_keeps_cpythons_allocator(apyrun, tmp_path):
    assert anon_huge_kib(apyrun, tmp_path, {"APYRUN_HUGEPAGES": "0"}) == 0


@pytest.mark.parametrize("hugepages", ["1", "0"])
def test_arenas_freed_and_mapped_again(apyrun, tmp_path, hugepages):
    write(tmp_path / "churn.py", CHURN)
    env = child_env({"APYRUN_HUGEPAGES": hugepages})
    ours = run([apyrun, "churn.py"], cwd=tmp_path, env=env)
    ref = run([REF_PYTHON, "churn.py"], cwd=tmp_path, env=child_env())
    assert ours.returncode == 0, ours.stderr
    assert ref.returncode == 0, ref.stderr
    # Same result as python3; and the freed arenas went back to the
    # kernel: a wave alone is some 40 MB.  (Under PYTHONMALLOC=malloc, as
    # in the sanitizer build, there are no arenas: the allocator under
    # test is the sanitizer's, which keeps freed memory in quarantine.)
    assert ours.stdout.splitlines()[0] == ref.stdout.splitlines()[0]
    if uses_pymalloc():
        kept = int(ours.stdout.splitlines()[1].split()[-1])
        assert kept < 16, ours.stdout
