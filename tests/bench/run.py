# SPDX-License-Identifier: MIT
"""apyrun's loop beside stdlib asyncio and uvloop, measured in one run.

    /usr/bin/python3.11 tests/bench/run.py --apyrun build/apyrun [--json]

Columns:
  asyncio         /usr/bin/python3.11, the stdlib SelectorEventLoop
  uvloop          /usr/bin/python3.11, Debian's python3-uvloop
  apyrun          the apyrun binary, apyrun.Loop
  asyncio@apyrun  the apyrun binary with APYRUN_LOOP=asyncio, the stdlib
                  loop (cross-check: the binary itself, loop aside)

Each scheduling/network figure is the median over --reps fresh processes of
one workload (workloads.py); runs are interleaved across columns so drift
hits every column alike.  Startup is the wall time of a whole process
running `await asyncio.sleep(0)` at top level (apyrun) or the same code
through asyncio.run (python3.11).  Peak RSS is wait4()'s ru_maxrss of each
child.  Nothing here asserts a timing: --smoke only checks that every
workload runs and yields a number.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS_PY = os.path.join(HERE, 'workloads.py')
SYSTEM_PYTHON = '/usr/bin/python3.11'

# Workload -> operations per timed run, sized so that one run takes about
# a quarter of a second on the stdlib loop on the 2-core reference machine.
WORKLOADS = {
    'call_soon': (400_000, 'callbacks'),
    'sleep0': (200_000, 'sleep(0)s'),
    'tasks_gather': (60_000, 'tasks'),
    'call_later': (80_000, 'timers'),
    'tcp_echo_protocol': (15_000, 'round trips'),
    'tcp_echo_streams': (10_000, 'round trips'),
    'unix_echo_protocol': (20_000, 'round trips'),
}
SMOKE_DIVISOR = 100

COLUMNS = ('asyncio', 'uvloop', 'apyrun', 'asyncio@apyrun')
EXPECTED_KIND = {'asyncio': 'asyncio', 'uvloop': 'uvloop',
                 'apyrun': 'apyrun', 'asyncio@apyrun': 'asyncio'}

# Each startup script ends by printing which loop ran it, so that no column
# can silently measure another loop.
REPORT_KIND = ('import sys\n'
               'loop = asyncio.get_running_loop()\n'
               'apyrun = sys.modules.get("apyrun")\n'
               'print("apyrun" if apyrun and isinstance(loop, getattr('
               'apyrun, "Loop", ())) else type(loop).__module__'
               '.split(".")[0])\n')
TLA_SCRIPT = 'import asyncio\nawait asyncio.sleep(0)\n' + REPORT_KIND
RUN_SCRIPT = ('import asyncio\n'
              'async def main():\n'
              '    await asyncio.sleep(0)\n'
              + ''.join('    ' + ln + '\n' for ln in REPORT_KIND.splitlines())
              + 'asyncio.run(main())\n')
UVLOOP_SCRIPT = RUN_SCRIPT.replace(
    'asyncio.run(main())\n',
    'import uvloop\n'
    'with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:\n'
    '    runner.run(main())\n')


class Column:
    """How to start a process for one column."""

    def __init__(self, name, interpreter, loop, env_extra=None):
        self.name = name
        self.interpreter = interpreter
        self.loop = loop
        self.env = dict(os.environ)
        self.env.pop('APYRUN_LOOP', None)
        self.env.pop('PYTHONASYNCIODEBUG', None)
        self.env.update(env_extra or {})


def spawn(argv, env, capture=True):
    """Run argv to completion; return (status, stdout, stderr, wall seconds,
    peak RSS in KiB) with the RSS from wait4 for this very child."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    out, err = proc.stdout.read() if capture else b'', b''
    err = proc.stderr.read()
    _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (proc.returncode, out.decode(errors='replace'),
            err.decode(errors='replace'), wall, rusage.ru_maxrss)


def median(values):
    return statistics.median(values) if values else None


def run_workloads(columns, reps, divisor, only, log):
    """Return {workload: {column: {'ops_s': [...], 'rss': [...],
    'error': str|None, 'loop_type': str}}}."""
    results = {w: {c.name: {'ops_s': [], 'rss_kib': [], 'error': None}
                   for c in columns} for w in WORKLOADS if w in only}
    for rep in range(reps):
        for workload in results:
            n = max(WORKLOADS[workload][0] // divisor, 1000)
            for col in columns:
                cell = results[workload][col.name]
                if cell['error']:
                    continue
                rc, out, err, _, rss = spawn(
                    [col.interpreter, WORKLOADS_PY, '--loop', col.loop,
                     '--workload', workload, '--n', str(n)], col.env)
                if rc != 0:
                    first = (err.strip().splitlines() or ['no output'])[-1]
                    cell['error'] = (f'not measured (loop missing): {first}'
                                     if rc == 3 else
                                     f'exit status {rc}: {first}')
                    continue
                try:
                    rec = json.loads(out.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    cell['error'] = f'no result printed: {out[-200:]!r}'
                    continue
                if rec['loop_kind'] != EXPECTED_KIND[col.name]:
                    cell['error'] = (f'ran on the {rec["loop_kind"]} loop, '
                                     f'not {EXPECTED_KIND[col.name]}')
                    continue
                cell['ops_s'].append(rec['ops'] / rec['secs'])
                cell['rss_kib'].append(rss)
            log(f'rep {rep + 1}/{reps} {workload} done')
    return results


def run_startup(columns, reps, log):
    """Return {column: {'ms': [...], 'rss_kib': [...], 'error': ...}}."""
    tmp = tempfile.mkdtemp(prefix='apyrun-bench-')
    scripts = {}
    for name, text in (('tla', TLA_SCRIPT), ('run', RUN_SCRIPT),
                       ('uvloop', UVLOOP_SCRIPT)):
        scripts[name] = os.path.join(tmp, f'startup_{name}.py')
        with open(scripts[name], 'w') as f:
            f.write(text)
    script_for = {'asyncio': 'run', 'uvloop': 'uvloop', 'apyrun': 'tla',
                  'asyncio@apyrun': 'tla'}
    results = {c.name: {'ms': [], 'rss_kib': [], 'error': None}
               for c in columns}
    try:
        # One unmeasured round first: page cache, pyc files.
        for rep in range(reps + 1):
            for col in columns:
                cell = results[col.name]
                if cell['error']:
                    continue
                rc, out, err, wall, rss = spawn(
                    [col.interpreter, scripts[script_for[col.name]]],
                    col.env)
                if rc != 0:
                    first = (err.strip().splitlines() or ['no output'])[-1]
                    cell['error'] = f'exit status {rc}: {first}'
                    continue
                if out.strip() != EXPECTED_KIND[col.name]:
                    cell['error'] = (f'ran on the {out.strip()!r} loop, not '
                                     f'{EXPECTED_KIND[col.name]}')
                    continue
                if rep:
                    cell['ms'].append(wall * 1000)
                    cell['rss_kib'].append(rss)
        log('startup done')
    finally:
        for path in scripts.values():
            os.unlink(path)
        os.rmdir(tmp)
    return results


def fmt_rate(value):
    if value is None:
        return 'n/a'
    for unit, scale in (('M', 1e6), ('k', 1e3)):
        if value >= scale:
            return f'{value / scale:.2f}{unit}/s'
    return f'{value:.0f}/s'


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return 'n/a'
    return f'{a / b:.2f}x'


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header])
              for i in range(len(header))]
    lines = ['  '.join(str(h).ljust(w) if i == 0 else str(h).rjust(w)
                       for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append('  '.join('-' * w for w in widths))
    for r in rows:
        lines.append('  '.join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))))
    return '\n'.join(lines)


def summarize(work, startup, columns):
    """Medians per cell, for both the table and --json."""
    summary = {'workloads': {}, 'startup': {}}
    for workload, cells in work.items():
        row = {}
        for col in columns:
            cell = cells[col.name]
            row[col.name] = {
                'ops_per_s': median(cell['ops_s']),
                'peak_rss_kib': median(cell['rss_kib']),
                'runs': len(cell['ops_s']),
                'error': cell['error']}
        a = row.get('apyrun', {}).get('ops_per_s')
        u = row.get('uvloop', {}).get('ops_per_s')
        row['apyrun_vs_uvloop'] = a / u if a and u else None
        summary['workloads'][workload] = row
    if startup:
        for col in columns:
            cell = startup[col.name]
            summary['startup'][col.name] = {
                'ms': median(cell['ms']),
                'peak_rss_kib': median(cell['rss_kib']),
                'runs': len(cell['ms']), 'error': cell['error']}
    return summary


def render(summary, columns, args):
    names = [c.name for c in columns]
    out = [f'apyrun bench: median of {args.reps} fresh processes per cell '
           f'(startup: {args.startup_reps}); higher ops/s is better']
    rows = []
    for workload, row in summary['workloads'].items():
        n = max(WORKLOADS[workload][0] // args.divisor, 1000)
        rows.append([f'{workload} ({n} {WORKLOADS[workload][1]})']
                    + [fmt_rate(row[c]['ops_per_s']) for c in names]
                    + [fmt_ratio(row['apyrun'].get('ops_per_s'),
                                 row['uvloop'].get('ops_per_s'))
                       if 'apyrun' in row and 'uvloop' in row else 'n/a'])
    if rows:
        out += ['', table(rows, ['workload'] + names + ['apyrun/uvloop'])]
        rows = [[w] + [f'{row[c]["peak_rss_kib"] / 1024:.1f}'
                       if row[c]['peak_rss_kib'] else 'n/a' for c in names]
                for w, row in summary['workloads'].items()]
        out += ['', 'peak RSS per process, MiB (median)',
                table(rows, ['workload'] + names)]
    if summary['startup']:
        st = summary['startup']
        ms = [f'{st[c]["ms"]:.1f}' if st[c]['ms'] else 'n/a' for c in names]
        rss = [f'{st[c]["peak_rss_kib"] / 1024:.1f}'
               if st[c]['peak_rss_kib'] else 'n/a' for c in names]
        ratio = (f'{st["apyrun"]["ms"] / st["asyncio"]["ms"]:.2f}x'
                 if st.get('apyrun', {}).get('ms') and
                 st.get('asyncio', {}).get('ms') else 'n/a')
        out += ['', 'startup of `await asyncio.sleep(0)` (apyrun: top-level '
                'await; python3.11: asyncio.run); lower is better',
                table([['wall ms'] + ms + [ratio], ['peak RSS MiB'] + rss
                       + ['']], ['startup'] + names + ['apyrun/python'])]
    errors = []
    for workload, row in summary['workloads'].items():
        for c in names:
            if row[c]['error']:
                errors.append(f'{workload} [{c}]: {row[c]["error"]}')
    for c in names:
        if summary['startup'].get(c, {}).get('error'):
            errors.append(f'startup [{c}]: {summary["startup"][c]["error"]}')
    if errors:
        out += ['', 'not measured:'] + [f'  {e}' for e in errors]
    return '\n'.join(out), errors


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n\n'.join(__doc__.split('\n\n')[1:]))
    ap.add_argument('--apyrun', help='the apyrun binary')
    ap.add_argument('--python', default=SYSTEM_PYTHON,
                    help=f'Debian python for asyncio/uvloop '
                    f'(default {SYSTEM_PYTHON})')
    ap.add_argument('--reps', type=int, default=7)
    ap.add_argument('--startup-reps', type=int, default=20)
    ap.add_argument('--only', help='comma-separated workloads (and/or '
                    '"startup") to run; default all')
    ap.add_argument('--columns', default=','.join(COLUMNS),
                    help='comma-separated columns; default all four')
    ap.add_argument('--json', action='store_true',
                    help='print JSON (medians and raw samples) instead of '
                    'the table')
    ap.add_argument('--smoke', action='store_true',
                    help=f'tiny counts (1/{SMOKE_DIVISOR}), one repetition; '
                    'fail unless every cell yields a number')
    ap.add_argument('-q', '--quiet', action='store_true',
                    help='no progress lines on stderr')
    args = ap.parse_args()

    args.divisor = 1
    if args.smoke:
        args.divisor, args.reps, args.startup_reps = SMOKE_DIVISOR, 1, 1
    wanted = args.columns.split(',')
    bad = [c for c in wanted if c not in COLUMNS]
    if bad:
        ap.error(f'unknown column(s) {bad}; choose from {COLUMNS}')
    if any(c in ('apyrun', 'asyncio@apyrun') for c in wanted):
        if not args.apyrun:
            ap.error('give --apyrun PATH (or --columns asyncio,uvloop)')
        args.apyrun = os.path.abspath(args.apyrun)
    only = set(args.only.split(',')) if args.only else \
        set(WORKLOADS) | {'startup'}
    unknown = only - set(WORKLOADS) - {'startup'}
    if unknown:
        ap.error(f'unknown workload(s) {sorted(unknown)}')

    all_columns = {
        'asyncio': Column('asyncio', args.python, 'asyncio'),
        'uvloop': Column('uvloop', args.python, 'uvloop'),
        'apyrun': Column('apyrun', args.apyrun, 'apyrun'),
        'asyncio@apyrun': Column('asyncio@apyrun', args.apyrun, 'asyncio',
                                 {'APYRUN_LOOP': 'asyncio'}),
    }
    columns = [all_columns[c] for c in COLUMNS if c in wanted]

    def log(msg):
        if not args.quiet:
            print(f'bench: {msg}', file=sys.stderr, flush=True)

    t0 = time.monotonic()
    work = run_workloads(columns, args.reps, args.divisor, only, log)
    startup = run_startup(columns, args.startup_reps, log) \
        if 'startup' in only else {}
    summary = summarize(work, startup, columns)
    text, errors = render(summary, columns, args)
    summary['seconds'] = round(time.monotonic() - t0, 1)
    if args.json:
        summary['raw'] = {'workloads': work, 'startup': startup}
        summary['columns'] = [c.name for c in columns]
        summary['reps'] = args.reps
        print(json.dumps(summary, indent=1))
    else:
        print(text)
        print(f'\n({summary["seconds"]:.0f} s)')
    if args.smoke:
        bad = list(errors)
        for workload, row in summary['workloads'].items():
            for c in columns:
                v = row[c.name]['ops_per_s']
                if not row[c.name]['error'] and \
                        not (v and math.isfinite(v) and v > 0):
                    bad.append(f'{workload} [{c.name}]: no positive number')
        if bad:
            print('bench smoke: FAILED, not every workload gave a number:',
                  *bad, sep='\n  ', file=sys.stderr)
            return 1
        print('bench smoke: every workload ran and gave a number',
              file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main())
