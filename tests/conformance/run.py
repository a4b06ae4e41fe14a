# SPDX-License-Identifier: MIT
"""Run CPython's asyncio test suite on apyrun's loop and report the counts.

    /usr/bin/python3.11 tests/conformance/run.py --apyrun build/apyrun all
    /usr/bin/python3.11 tests/conformance/run.py --apyrun build/apyrun \
        test_tasks -k 'test_tasks.CTask_CFuture_Tests.test_wait*' -v

Each module runs in a child process of the apyrun binary (harness.py).  When
the child crashes or a test hangs (killed after --test-timeout seconds, with
every thread's stack in the log), that test is reported as CRASH/TIMEOUT and
a new child carries on with the rest, until the module's time budget is
spent.  A module fails on any failure, error, crash, timeout, unexpected
success, test not run, stale skips.txt entry, on running zero tests, and on
running no test at all on the loop under test.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, 'harness.py')

# Module -> time budget in seconds (about ten times the stdlib loop's run
# time on the 2-core reference machine, at least 60 s).  ctest's TIMEOUT
# sits above the largest budget, so a report is always printed.
MODULES = {
    'test_tasks': 180,
    'test_futures': 60,
    'test_futures2': 60,
    'test_locks': 60,
    'test_queues': 60,
    'test_timeouts': 60,
    'test_taskgroups': 90,
    'test_waitfor': 60,
    'test_runners': 60,
    'test_streams': 60,
    'test_context': 60,
    'test_events': 120,
    'test_subprocess': 180,
    'test_pep492': 60,
    'test_sock_lowlevel': 60,
    'test_sendfile': 60,
    'test_server': 60,
    'test_buffered_proto': 60,
    'test_ssl': 150,
    'test_sslproto': 90,
    'test_threads': 60,
    'test_base_events': 60,     # RunningLoopTests only (harness KEEP_ONLY)
    'test_unix_events': 60,     # TestFunctional only (harness KEEP_ONLY)
}

# Modules whose tests run on test_utils.TestLoop or a mocked BaseEventLoop by
# design (they test Future and coroutine machinery, not the loop): they are
# not required to run a test on the loop under test.
MOCK_LOOP_MODULES = {'test_futures', 'test_pep492'}

EXECUTED = ('pass', 'fail', 'error', 'crash', 'timeout', 'xfail', 'xpass')
BAD = ('fail', 'error', 'crash', 'timeout', 'xpass', 'notrun')
LABEL = {'fail': 'FAIL', 'error': 'ERROR', 'crash': 'CRASH',
         'timeout': 'TIMEOUT', 'xpass': 'XPASS', 'notrun': 'NOTRUN'}
MAX_ATTEMPTS = 60


def one_line(detail, limit=200):
    """The line of a traceback that says what went wrong."""
    if not detail:
        return ''
    lines = [ln for ln in detail.strip().splitlines() if ln.strip()]
    if lines and lines[0].startswith('harness:'):
        line = lines[0]
    else:
        line = lines[-1] if lines else ''
        # Prefer the exception line when the traceback ends in log noise.
        for ln in reversed(lines):
            if not ln.startswith((' ', '\t')) and ':' in ln and \
                    not ln.startswith(('Traceback', 'During handling')):
                line = ln
                break
    line = line.strip()
    return line if len(line) <= limit else line[:limit - 3] + '...'


def signal_name(rc):
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f'signal {-rc}'


class ModuleRun:
    """Drives the children for one module and collects their records."""

    def __init__(self, name, opts):
        self.name = name
        self.opts = opts
        self.budget = opts.budget or MODULES.get(name, 60)
        self.results = {}       # test id -> end record, in order
        self.meta = {}
        self.errors = []        # module-level problems (strings)
        self.attempts = 0
        self.secs = 0.0
        self.log = os.path.join(opts.log_dir, f'{name}.log')

    def child_cmd(self, progress, exclude):
        cmd = [self.opts.interpreter, HARNESS, '--module', self.name,
               '--loop', self.opts.loop, '--progress', progress,
               '--exclude', exclude,
               '--test-timeout', str(self.opts.test_timeout)]
        if self.opts.skips:
            cmd += ['--skips', self.opts.skips]
        for pattern in self.opts.patterns:
            cmd += ['-k', pattern]
        return cmd

    def child_env(self):
        env = dict(os.environ)
        if self.opts.loop == 'asyncio':
            env['APYRUN_LOOP'] = 'asyncio'
        else:
            env.pop('APYRUN_LOOP', None)
        env.pop('PYTHONASYNCIODEBUG', None)
        return env

    def run(self):
        start = time.monotonic()
        deadline = start + self.budget
        workdir = tempfile.mkdtemp(prefix=f'apyrun-conf-{self.name}-')
        progress = os.path.join(workdir, 'progress.jsonl')
        exclude = os.path.join(workdir, 'exclude.json')
        open(self.log, 'w').close()
        try:
            while True:
                self.attempts += 1
                if not self.attempt(workdir, progress, exclude, deadline):
                    break
                if self.attempts >= MAX_ATTEMPTS:
                    self.errors.append(f'gave up after {MAX_ATTEMPTS} '
                                       'crashed runs')
                    break
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        self.secs = time.monotonic() - start
        collected = self.meta.get('collected')
        if collected is not None and len(self.results) < collected:
            missing = collected - len(
                [r for r in self.results.values() if not r.get('fixture')])
            if missing > 0:
                self.results[f'{self.name}: {missing} tests'] = {
                    'outcome': 'notrun', 'count': missing,
                    'detail': 'not run: the module time budget '
                              f'({self.budget} s) ran out or the run '
                              'stopped early'}
        return self

    def attempt(self, workdir, progress, exclude, deadline):
        """Run one child; return True when another child should continue."""
        with open(exclude, 'w') as f:
            json.dump(sorted(self.results), f)
        open(progress, 'w').close()
        remaining = deadline - time.monotonic()
        if remaining <= 1:
            return False
        with open(self.log, 'a') as log:
            log.write(f'==== run {self.attempts}: '
                      f'{" ".join(self.child_cmd(progress, exclude))}\n')
            log.flush()
            proc = subprocess.Popen(
                self.child_cmd(progress, exclude), stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                env=self.child_env(), start_new_session=True)
            self.opts.running.add(proc)
            try:
                rc = proc.wait(timeout=remaining)
                killed = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                rc = proc.wait()
                killed = True
            finally:
                self.opts.running.discard(proc)
            log.write(f'==== run {self.attempts} exit status {rc}\n')

        running, new_results, finished = None, 0, False
        with open(progress) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue        # a line cut short by a crash
                if 'collected' in rec:
                    if not self.meta:
                        self.meta = rec
                elif 'start' in rec:
                    running = rec
                elif 'end' in rec:
                    if running and running['start'] == rec['end']:
                        running = None
                    else:
                        rec['fixture'] = True
                    self.results[rec['end']] = rec
                    new_results += 1
                elif rec.get('finished'):
                    finished = True
                    self.meta['policy_resets'] = rec.get('policy_resets', 0)
        if finished and rc == 0:
            return False
        if running is not None:
            secs = time.time() - running['t']
            if killed:
                outcome = 'timeout'
                detail = (f'module time budget ran out while this test ran '
                          f'({secs:.0f} s)')
            elif rc < 0:
                outcome = 'crash'
                detail = f'the process died of {signal_name(rc)}'
            elif secs >= self.opts.test_timeout - 1:
                outcome = 'timeout'
                detail = (f'no result after {self.opts.test_timeout:g} s; '
                          f'stacks of all threads in {self.log}')
            else:
                outcome = 'crash'
                detail = f'the process exited with status {rc} in this test'
            self.results[running['start']] = {
                'end': running['start'], 'outcome': outcome,
                'detail': detail, 'kinds': [], 'secs': round(secs, 3)}
            return not killed
        if killed:
            self.errors.append('module time budget ran out outside a test')
            return False
        if new_results == 0:
            self.errors.append(
                f'the child exited with status {rc} before running any test: '
                + (tail(self.log) or 'no output'))
            return False
        if rc != 0:
            self.errors.append(f'the child exited with status {rc} outside '
                               f'a test (fixture?): {tail(self.log)}')
        return True

    # ------------------------------------------------------------------

    def counts(self):
        c = {k: 0 for k in ('pass', 'fail', 'error', 'crash', 'timeout',
                            'skip', 'listed', 'xfail', 'xpass', 'notrun')}
        loops = {'target': 0, 'mock': 0, 'none': 0}
        for rec in self.results.values():
            c[rec['outcome']] += rec.get('count', 1)
            if rec['outcome'] in EXECUTED and not rec.get('fixture'):
                kinds = rec.get('kinds', [])
                key = ('target' if 'target' in kinds else
                       'mock' if 'mock' in kinds else 'none')
                loops[key] += 1
        return c, loops

    def problems(self):
        """Module-level reasons to fail, besides failing tests."""
        c, loops = self.counts()
        out = list(self.errors)
        out += [f'stale skip entry: {s}'
                for s in self.meta.get('stale_skips', [])]
        executed = sum(c[k] for k in EXECUTED)
        if executed == 0:
            out.append('no test was executed')
        elif loops['target'] == 0 and not self.opts.patterns and \
                self.name not in MOCK_LOOP_MODULES:
            out.append('no test ran on the loop under test')
        return out

    def failed(self):
        c, _ = self.counts()
        return bool(self.problems()) or any(c[k] for k in BAD)

    def failures(self):
        return [(tid, rec) for tid, rec in self.results.items()
                if rec['outcome'] in BAD]

    def report(self):
        c, loops = self.counts()
        loop = self.meta.get('loop', self.opts.loop)
        failed = c['fail'] + c['error'] + c['crash'] + c['timeout'] + \
            c['xpass'] + c['notrun']
        lines = [
            f'{self.name}: {c["pass"]} passed, {failed} failed, '
            f'{c["skip"] + c["listed"]} skipped '
            f'[fail {c["fail"]}, error {c["error"]}, crash {c["crash"]}, '
            f'timeout {c["timeout"]}, xpass {c["xpass"]}, '
            f'not run {c["notrun"]}; skipped by CPython {c["skip"]}, '
            f'by skips.txt {c["listed"]}; xfail {c["xfail"]}]',
            f'  loop {loop}: of the executed tests {loops["target"]} ran on '
            f'it, {loops["mock"]} only on a mock loop (TestLoop), '
            f'{loops["none"]} created no loop; {self.secs:.1f} s, '
            f'{self.attempts} child run(s)']
        if self.meta.get('default_policy'):
            lines.append(f'  asyncio\'s policy at startup (before the harness '
                         f'set its own): {self.meta["default_policy"]}')
        for notice in self.meta.get('notices', []):
            lines.append(f'  note: {notice}')
        if self.meta.get('policy_resets'):
            lines.append(f'  note: {self.meta["policy_resets"]} tests left '
                         'another policy installed; reset before the next')
        for problem in self.problems():
            lines.append(f'  MODULE FAILED: {problem}')
        for tid, rec in self.failures():
            lines.append(f'  {LABEL[rec["outcome"]]:<7} {tid}: '
                         f'{one_line(rec.get("detail"))}')
            if self.opts.verbose and rec.get('detail'):
                lines += ['      ' + ln for ln in
                          rec['detail'].rstrip().splitlines()]
        if self.failures() or self.problems():
            lines.append(f'  details: {self.details_path()}  log: {self.log}')
        return '\n'.join(lines)

    def details_path(self):
        return os.path.join(self.opts.log_dir, f'{self.name}.failures.txt')

    def write_details(self):
        with open(self.details_path(), 'w') as f:
            for tid, rec in self.failures():
                f.write(f'==== {LABEL[rec["outcome"]]} {tid}\n'
                        f'{rec.get("detail") or ""}\n\n')

    def as_json(self):
        c, loops = self.counts()
        return {'module': self.name, 'counts': c, 'loops': loops,
                'secs': round(self.secs, 2), 'attempts': self.attempts,
                'loop': self.meta.get('loop'), 'problems': self.problems(),
                'failures': [{'id': tid, 'outcome': rec['outcome'],
                              'summary': one_line(rec.get('detail'))}
                             for tid, rec in self.failures()]}


def tail(path, nlines=6):
    try:
        with open(path, errors='replace') as f:
            lines = [ln.rstrip() for ln in f if not ln.startswith('====')]
    except OSError:
        return ''
    return ' | '.join(ln for ln in lines[-nlines:] if ln)


def write_status(path, runs, opts, command):
    total = {}
    rows = []
    for r in runs:
        c, loops = r.counts()
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
        rows.append(f'| {r.name} | {c["pass"]} | {c["fail"]} | '
                    f'{c["error"]} | {c["crash"] + c["timeout"]} | '
                    f'{c["notrun"]} | {c["skip"]} | {c["listed"]} | '
                    f'{loops["target"]} | {loops["mock"]} | '
                    f'{loops["none"]} | {r.secs:.0f} |')
    out = [f'Command: `{command}`', '',
           '| module | pass | fail | error | crash/timeout | not run | '
           'skip (CPython) | skip (skips.txt) | on loop | mock loop only | '
           'no loop | s |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|'] + rows
    out.append('')
    for r in runs:
        if r.failures() or r.problems():
            out.append(f'### {r.name}')
            for p in r.problems():
                out.append(f'- module: {p}')
            for tid, rec in r.failures():
                out.append(f'- `{tid}` ({LABEL[rec["outcome"]]}): '
                           f'{one_line(rec.get("detail"), 160)}')
            out.append('')
    with open(path, 'w') as f:
        f.write('\n'.join(out) + '\n')


def main():
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='modules: ' + ' '.join(MODULES) + ' (or "all")')
    ap.add_argument('modules', nargs='*')
    ap.add_argument('--list-modules', action='store_true',
                    help='print "module budget-seconds" lines and exit')
    ap.add_argument('--apyrun', help='the apyrun binary (runs the tests)')
    ap.add_argument('--python', help='run the tests under this interpreter '
                    'instead (e.g. /usr/bin/python3.11 with --loop uvloop)')
    ap.add_argument('--loop', default=os.environ.get(
                    'APYRUN_CONFORMANCE_LOOP', 'apyrun'),
                    choices=('apyrun', 'asyncio', 'uvloop'),
                    help='loop under test (default: apyrun, or '
                    '$APYRUN_CONFORMANCE_LOOP)')
    ap.add_argument('-j', '--jobs', type=int, default=1)
    ap.add_argument('--test-timeout', type=float, default=20.0,
                    help='seconds before a hung test is killed (default 20)')
    ap.add_argument('--budget', type=float,
                    help='seconds per module (default: per-module table)')
    ap.add_argument('--skips', default=os.path.join(HERE, 'skips.txt'),
                    help='skip list (default: skips.txt here; "" for none)')
    ap.add_argument('--log-dir')
    ap.add_argument('-k', dest='patterns', action='append', default=[],
                    help='only test ids matching this fnmatch pattern '
                    '(e.g. "test_tasks.*.test_gather*"); repeatable')
    ap.add_argument('-v', '--verbose', action='store_true',
                    help='print full tracebacks of failures')
    ap.add_argument('--json', metavar='FILE', help='write results as JSON')
    ap.add_argument('--status-md', metavar='FILE',
                    help='write a markdown summary (draft for STATUS.md)')
    opts = ap.parse_args()
    if opts.list_modules:
        for name, budget in MODULES.items():
            print(name, budget)
        return 0
    if not opts.modules:
        ap.error('name the modules to run, or "all"')

    if opts.python:
        opts.interpreter = opts.python
    elif opts.apyrun:
        opts.interpreter = os.path.abspath(opts.apyrun)
    else:
        ap.error('give --apyrun PATH (or --python PATH)')
    if not os.access(opts.interpreter, os.X_OK):
        ap.error(f'{opts.interpreter} is not executable')
    if opts.skips == '':
        opts.skips = None
    if opts.loop != 'apyrun':
        # skips.txt lists tests of other loops' internals that apyrun's
        # loop cannot pass; a cross-check loop runs everything.
        opts.skips = None
    modules = list(MODULES) if opts.modules == ['all'] else opts.modules
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        ap.error(f'unknown module(s): {" ".join(unknown)}')
    if not opts.log_dir:
        base = (os.path.dirname(opts.interpreter) if opts.apyrun and
                not opts.python else tempfile.gettempdir())
        opts.log_dir = os.path.join(base, 'conformance-logs', opts.loop)
    os.makedirs(opts.log_dir, exist_ok=True)
    opts.running = set()

    print(f'conformance: loop={opts.loop} interpreter={opts.interpreter} '
          f'modules={len(modules)} jobs={opts.jobs}', flush=True)
    lock = threading.Lock()
    runs = []

    def run_one(name):
        r = ModuleRun(name, opts).run()
        r.write_details()
        with lock:
            print(r.report(), flush=True)
        return r

    try:
        with concurrent.futures.ThreadPoolExecutor(opts.jobs) as pool:
            runs = list(pool.map(run_one, modules))
    except KeyboardInterrupt:
        for proc in list(opts.running):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        raise

    total = {}
    for r in runs:
        c, _ = r.counts()
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    failed = sum(total[k] for k in BAD)
    bad_modules = [r.name for r in runs if r.failed()]
    if len(runs) > 1:
        print(f'failing modules: {" ".join(bad_modules) or "none"}')
    command = ' '.join(['/usr/bin/python3.11', 'tests/conformance/run.py']
                       + sys.argv[1:])
    if opts.json:
        with open(opts.json, 'w') as f:
            json.dump({'loop': opts.loop, 'command': command,
                       'modules': [r.as_json() for r in runs]}, f, indent=1)
    if opts.status_md:
        write_status(opts.status_md, runs, opts, command)
    print(f'conformance: {total["pass"]} passed, {failed} failed, '
          f'{total["skip"] + total["listed"]} skipped')
    return 1 if bad_modules else 0


if __name__ == '__main__':
    sys.exit(main())
