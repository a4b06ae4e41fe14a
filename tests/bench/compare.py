# SPDX-License-Identifier: MIT
"""Two apyrun binaries side by side on run.py's workloads: is a change
slower? (A refactor must not be: issue 10.)

    /usr/bin/python3.11 tests/bench/compare.py --base OLD/apyrun \\
        --new build/apyrun [--reps 9] [--only call_soon,sleep0]
    ... --callgrind        # instructions instead of seconds

Wall time: the median over --reps fresh processes of each workload on
apyrun.Loop, the two binaries interleaved (ABAB, then BABA) so drift hits
both alike; the last column is new/base. With --callgrind each workload
runs once per binary under valgrind at a tenth of its size with
PYTHONHASHSEED=0, and the figures are instructions of the whole process:
repeatable to a few hundredths of a percent on a busy machine, where
wall time moves by several percent. Nothing here asserts anything.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import WORKLOADS, WORKLOADS_PY  # noqa: E402


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    return env


def wall(binary, workload, n):
    out = subprocess.run([binary, WORKLOADS_PY, "--loop", "apyrun",
                          "--workload", workload, "--n", str(n)],
                         capture_output=True, text=True, env=clean_env(),
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["secs"]


def instructions(binary, workload, n):
    out = subprocess.run(["valgrind", "--tool=callgrind",
                          "--callgrind-out-file=/dev/null", binary,
                          WORKLOADS_PY, "--loop", "apyrun", "--workload",
                          workload, "--n", str(n)],
                         capture_output=True, text=True, env=clean_env(),
                         check=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if m is None:
        raise SystemExit(f"compare: no callgrind total for {workload}")
    return int(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--only")
    ap.add_argument("--callgrind", action="store_true")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else list(WORKLOADS)
    bins = {"base": args.base, "new": args.new}
    unit = "instructions" if args.callgrind else "seconds"
    print(f"{'workload':22} {'base ' + unit:>16} {'new ' + unit:>16} "
          f"{'new/base':>9}")
    for name in names:
        n = WORKLOADS[name][0]
        if args.callgrind:
            fig = {b: instructions(path, name, n // 10)
                   for b, path in bins.items()}
        else:
            runs = {"base": [], "new": []}
            for r in range(args.reps):
                for b in (("base", "new") if r % 2 == 0 else ("new", "base")):
                    runs[b].append(wall(bins[b], name, n))
            fig = {b: statistics.median(v) for b, v in runs.items()}
        fmt = "{:16,d}" if args.callgrind else "{:16.4f}"
        print(f"{name:22} {fmt.format(fig['base'])} "
              f"{fmt.format(fig['new'])} {fig['new'] / fig['base']:9.4f}",
              flush=True)


if __name__ == "__main__":
    main()
