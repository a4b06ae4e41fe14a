# SPDX-License-Identifier: MIT
"""Run one CPython asyncio test module on the loop under test (child side).

run.py starts this file under the apyrun binary, once per module (again
after a crash or hang, with the finished tests excluded).  It installs the
loop under test as asyncio's policy, adds TestCase classes that run
CPython's per-loop mixins on it, records which kind of loop each test
really ran on, and streams one JSON line per test result to a progress
file.  It never decides pass or fail for the module: run.py does.

Loops:
  apyrun   apyrun.Loop / apyrun.EventLoopPolicy (the default)
  asyncio  the stdlib loop (cross-check of the harness itself)
  uvloop   Debian's uvloop (cross-check: which tests need stdlib internals)
"""

import argparse
import asyncio
import faulthandler
import fnmatch
import importlib
import json
import sys
import time
import unittest
from asyncio import base_events, events

PKG = 'test.test_asyncio'


# --------------------------------------------------------------------------
# The loop under test


class Target:
    """What "the loop under test" means for one --loop choice."""

    def __init__(self, name):
        self.name = name
        if name == 'apyrun':
            try:
                import apyrun
            except ImportError as exc:
                raise SystemExit(f'harness: cannot import apyrun: {exc}; '
                                 'run this under the apyrun binary')
            missing = [attr for attr in ('Loop', 'EventLoopPolicy')
                       if not hasattr(apyrun, attr)]
            if missing:
                raise SystemExit(
                    'harness: this apyrun build has no apyrun.'
                    + ', apyrun.'.join(missing)
                    + ': the loop under test does not exist yet')
            self.loop_cls = apyrun.Loop
            self.policy_cls = apyrun.EventLoopPolicy
        elif name == 'uvloop':
            import uvloop
            self.loop_cls = uvloop.Loop
            self.policy_cls = uvloop.EventLoopPolicy
        elif name == 'asyncio':
            self.loop_cls = asyncio.SelectorEventLoop
            self.policy_cls = asyncio.DefaultEventLoopPolicy
        else:
            raise SystemExit(f'harness: unknown loop {name!r}')


class LoopTracker:
    """Records every loop created while a test runs, by kind.

    kinds: 'target' (the loop under test), 'mock' (test_utils.TestLoop or a
    bare BaseEventLoop with a mocked selector, built by the test itself),
    'other' (any other real loop: a test that ran on the wrong loop).
    """

    def __init__(self, target):
        self.target = target
        self.kinds = {}
        self.other_types = set()

    def classify(self, loop):
        from test.test_asyncio.utils import TestLoop
        if isinstance(loop, TestLoop) or \
                type(loop) is base_events.BaseEventLoop:
            return 'mock'
        if isinstance(loop, self.target.loop_cls):
            return 'target'
        return 'other'

    def record(self, loop):
        kind = self.classify(loop)
        self.kinds[id(loop)] = kind
        if kind == 'other':
            self.other_types.add(f'{type(loop).__module__}.'
                                 f'{type(loop).__qualname__}')

    def take(self):
        """Return (kinds seen, foreign loop types) and start afresh."""
        kinds = set(self.kinds.values())
        others = sorted(self.other_types)
        self.kinds = {}
        self.other_types = set()
        return kinds, others


def install_target(target, tracker):
    """Make the loop under test asyncio's policy for the whole run.

    Returns a factory for fresh loops of the target (used by the mixin
    classes).  Tests reset the policy with set_event_loop_policy(None) in
    tearDown/tearDownModule; under the apyrun binary that must bring back
    apyrun's policy, not the stdlib's, so None is redirected here.
    """
    base = target.policy_cls

    try:
        class CheckedPolicy(base):
            def new_event_loop(self):
                loop = super().new_event_loop()
                tracker.record(loop)
                return loop
    except TypeError:
        # A C policy type that cannot be subclassed: wrap it instead.
        class CheckedPolicy(events.AbstractEventLoopPolicy):
            def __init__(self):
                self._inner = base()

            def __getattr__(self, name):
                return getattr(self._inner, name)

            def get_event_loop(self):
                return self._inner.get_event_loop()

            def set_event_loop(self, loop):
                return self._inner.set_event_loop(loop)

            def new_event_loop(self):
                loop = self._inner.new_event_loop()
                tracker.record(loop)
                return loop

            # Defined (raising NotImplementedError) on the abstract base,
            # so __getattr__ would never see them.
            def get_child_watcher(self):
                return self._inner.get_child_watcher()

            def set_child_watcher(self, watcher):
                return self._inner.set_child_watcher(watcher)

    orig_set_policy = events.set_event_loop_policy

    def set_event_loop_policy(policy):
        orig_set_policy(CheckedPolicy() if policy is None else policy)

    events.set_event_loop_policy = set_event_loop_policy
    asyncio.set_event_loop_policy = set_event_loop_policy
    # Some tests build asyncio.DefaultEventLoopPolicy() (or subclass it) to
    # test get_event_loop(); the loop under test is asyncio's default, so
    # that name gives the target's policy too.
    asyncio.DefaultEventLoopPolicy = CheckedPolicy
    set_event_loop_policy(None)

    # Any stdlib loop (TestLoop, mocks, a stray SelectorEventLoop) passes
    # through BaseEventLoop.__init__; record it so it cannot go unnoticed.
    orig_init = base_events.BaseEventLoop.__init__

    def base_init(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        tracker.record(self)

    base_events.BaseEventLoop.__init__ = base_init

    def factory():
        loop = target.loop_cls()
        tracker.record(loop)
        return loop

    # Prove it before any test runs: the policy hands out the target.
    probe = asyncio.new_event_loop()
    try:
        if not isinstance(probe, target.loop_cls):
            raise SystemExit(
                f'harness: asyncio.new_event_loop() returned '
                f'{type(probe).__module__}.{type(probe).__qualname__}, '
                f'not {target.loop_cls.__module__}.'
                f'{target.loop_cls.__qualname__}')
    finally:
        probe.close()
    tracker.take()
    return factory, CheckedPolicy


def adapt_close_loop(target, notices):
    """Let test_utils.TestCase.close_loop work on a loop that is not stdlib.

    close_loop reads loop._default_executor and policy.get_child_watcher(),
    both stdlib internals.  Only when the target lacks them is the helper
    replaced by one with the same effect (executor shut down, loop closed);
    a notice says so in the log.
    """
    from test.test_asyncio import utils as test_utils
    probe = target.loop_cls()
    has_executor_attr = hasattr(probe, '_default_executor')
    probe.close()
    policy = asyncio.get_event_loop_policy()
    has_watcher = hasattr(policy, 'get_child_watcher')
    if has_executor_attr and has_watcher:
        return
    orig = test_utils.TestCase.close_loop

    def close_loop(loop):
        if isinstance(loop, base_events.BaseEventLoop):
            return orig(loop)
        if not loop.is_closed():
            loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    test_utils.TestCase.close_loop = staticmethod(close_loop)
    notices.append('test_utils.TestCase.close_loop adapted: the target has '
                   + ('no loop._default_executor' if not has_executor_attr
                      else 'no policy.get_child_watcher()'))


# --------------------------------------------------------------------------
# Per-module adaptation: run CPython's per-loop mixins on the target.
#
# Classes that exist only to run a mixin on a stdlib selector or proactor
# loop are dropped (they test another loop); a class running the same
# mixin on the target is added in their place, named *_UnderTest.


SELECTOR_CLASSES = {'SelectEventLoopTests', 'EPollEventLoopTests',
                    'PollEventLoopTests', 'KqueueEventLoopTests',
                    'ProactorEventLoopTests'}


def _loop_class(name, bases, factory, method, extra=None):
    def make(self):
        return factory()
    ns = {method: make}
    ns.update(extra or {})
    return type(name, bases, ns)


def adapt_events(mod, factory, utils):
    # PolicyTests test the stdlib's DefaultEventLoopPolicy class itself and
    # build stdlib loops from it on purpose: not a test of the target.
    return SELECTOR_CLASSES | {'PolicyTests'}, [_loop_class(
        'EventLoopTests_UnderTest',
        (mod.EventLoopTestsMixin, mod.SubprocessTestsMixin, utils.TestCase),
        factory, 'create_event_loop')]


def adapt_sock_lowlevel(mod, factory, utils):
    return SELECTOR_CLASSES, [_loop_class(
        'SockTests_UnderTest', (mod.BaseSockTestsMixin, utils.TestCase),
        factory, 'create_event_loop')]


def adapt_sendfile(mod, factory, utils):
    return SELECTOR_CLASSES, [_loop_class(
        'SendfileTests_UnderTest', (mod.SendfileTestsBase, utils.TestCase),
        factory, 'create_event_loop')]


def adapt_server(mod, factory, utils):
    cls = _loop_class('StartServerTests_UnderTest',
                      (mod.BaseStartServer, unittest.TestCase),
                      factory, 'new_loop')
    # The Unix-socket test sits in the selector class, not the mixin; it
    # uses only public API, so it runs on the target too.
    cls.test_start_unix_server_1 = \
        mod.SelectorStartServerTests.test_start_unix_server_1
    return {'SelectorStartServerTests', 'ProactorStartServerTests'}, [cls]


def adapt_buffered_proto(mod, factory, utils):
    return ({'BufferedProtocolSelectorTests',
             'BufferedProtocolProactorTests'},
            [_loop_class('BufferedProtocolTests_UnderTest',
                         (mod.BaseTestBufferedProtocol, unittest.TestCase),
                         factory, 'new_loop')])


def adapt_sslproto(mod, factory, utils):
    return ({'SelectorStartTLSTests', 'ProactorStartTLSTests'},
            [_loop_class('StartTLSTests_UnderTest',
                         (mod.BaseStartTLS, unittest.TestCase),
                         factory, 'new_loop')])


def adapt_subprocess(mod, factory, utils):
    # SubprocessWatcherMixin runs SubprocessMixin once per stdlib child
    # watcher: those watchers are the stdlib loop's way of reaping children.
    # The same SubprocessMixin tests run once, watcher-free, on the target.
    def setUp(self):
        utils.TestCase.setUp(self)
        # A fresh policy: GenericWatcherTests leaves a mock child watcher
        # in the policy it ran with (CPython's watcher classes reset it in
        # their tearDown, which is dropped with them).
        asyncio.set_event_loop_policy(None)
        self.loop = factory()
        self.set_event_loop(self.loop)
    cls = type('SubprocessTests_UnderTest',
               (mod.SubprocessMixin, utils.TestCase), {'setUp': setUp})
    drop = {name for name in dir(mod)
            if name.startswith('Subprocess') and name.endswith('WatcherTests')}
    drop.add('SubprocessProactorTests')
    return drop, [cls]


def adapt_runners(mod, factory, utils, target, tracker):
    # RunTests and RunnerTests run asyncio.run/Runner on a bare stdlib
    # BaseEventLoop with a mocked selector (counted as 'mock').  The same
    # tests run again with the target as the loop: *_UnderTest.
    cache = {}

    def new_loop(self):
        if 'cls' not in cache:
            class TrackedLoop(target.loop_cls):
                shutdown_ag_run = False

                async def shutdown_asyncgens(self):
                    self.shutdown_ag_run = True
                    await super().shutdown_asyncgens()
            cache['cls'] = TrackedLoop
        loop = cache['cls']()
        tracker.record(loop)
        return loop

    added = [type(f'{name}_UnderTest', (getattr(mod, name),),
                  {'new_loop': new_loop})
             for name in ('RunTests', 'RunnerTests')]
    return set(), added


ADAPTERS = {
    'test_events': adapt_events,
    'test_sock_lowlevel': adapt_sock_lowlevel,
    'test_sendfile': adapt_sendfile,
    'test_server': adapt_server,
    'test_buffered_proto': adapt_buffered_proto,
    'test_sslproto': adapt_sslproto,
    'test_subprocess': adapt_subprocess,
}


# Modules that are mostly about the stdlib loop's internals (mocked
# selectors, the self-pipe, stdlib pipe transports, child watchers): only
# the classes listed, which use public loop API, run.
KEEP_ONLY = {
    'test_base_events': {'RunningLoopTests'},
    'test_unix_events': {'TestFunctional'},
}


def load_module_tests(name, target, tracker, factory):
    """Import test.test_asyncio.<name>, adapt it, return its tests in order."""
    from test.test_asyncio import utils as test_utils
    mod = importlib.import_module(f'{PKG}.{name}')
    drop, added = set(), []
    if name in ADAPTERS:
        drop, added = ADAPTERS[name](mod, factory, test_utils)
    elif name == 'test_runners':
        drop, added = adapt_runners(mod, factory, test_utils, target, tracker)
    for cls in added:
        # Live in the CPython module so its setUpModule/tearDownModule apply
        # and test ids read test_events.EventLoopTests_UnderTest.test_x.
        cls.__module__ = mod.__name__
        cls.__qualname__ = cls.__name__
        setattr(mod, cls.__name__, cls)
    suite = unittest.defaultTestLoader.loadTestsFromModule(mod)
    tests = []

    def flatten(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                flatten(t)
            else:
                tests.append(t)
    flatten(suite)
    keep = KEEP_ONLY.get(name)
    return [t for t in tests if type(t).__name__ not in drop
            and (keep is None or type(t).__name__ in keep)]


# --------------------------------------------------------------------------
# Skip list


def read_skips(path):
    """Return [(pattern, reason, line number)] from skips.txt."""
    skips = []
    if not path:
        return skips
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            pattern, _, reason = line.partition(' ')
            reason = reason.strip()
            if not reason:
                raise SystemExit(f'{path}:{lineno}: a skip needs a reason')
            skips.append((pattern, reason, lineno))
    return skips


def short_id(test):
    test_id = test.id()
    return test_id[len(PKG) + 1:] if test_id.startswith(PKG + '.') else test_id


def apply_skips(tests, module, skips):
    """Mark listed tests skipped; return the skip entries for this module
    that matched nothing (stale entries)."""
    mine = [s for s in skips if s[0].split('.', 1)[0] == module]
    used = set()
    for test in tests:
        sid = short_id(test)
        for pattern, reason, lineno in mine:
            if fnmatch.fnmatchcase(sid, pattern):
                used.add(lineno)

                def skipped(*args, _reason=reason, **kwargs):
                    raise unittest.SkipTest(_reason)
                skipped.__unittest_skip__ = True
                skipped.__unittest_skip_why__ = 'skips.txt: ' + reason
                setattr(test, test._testMethodName, skipped)
                break
    return [f'{pattern} (skips.txt line {lineno})'
            for pattern, _, lineno in mine if lineno not in used]


# --------------------------------------------------------------------------
# Result streaming


class StreamingResult(unittest.TestResult):
    """Writes a JSON line per event to the progress file, flushed at once
    so that a crash loses nothing but the running test."""

    def __init__(self, progress, tracker, target, policy_cls, test_timeout):
        super().__init__()
        self.progress = progress
        self.tracker = tracker
        self.target = target
        self.policy_cls = policy_cls
        self.test_timeout = test_timeout
        self.outcome = None
        self.detail = None
        self.started = 0.0
        self.policy_resets = 0

    def emit(self, **record):
        self.progress.write(json.dumps(record) + '\n')
        self.progress.flush()

    def startTest(self, test):
        super().startTest(test)
        if not isinstance(events._event_loop_policy, self.policy_cls):
            # A previous test left its own policy behind: put the target's
            # back so this test does not silently run on another loop.
            events.set_event_loop_policy(None)
            self.policy_resets += 1
        self.outcome, self.detail = None, None
        self.started = time.monotonic()
        self.emit(start=short_id(test), t=time.time())
        faulthandler.dump_traceback_later(self.test_timeout, exit=True)

    def set(self, outcome, detail=None):
        # The first bad outcome of a test (e.g. a failing subtest) wins.
        if self.outcome in (None, 'pass'):
            self.outcome, self.detail = outcome, detail

    def fmt(self, test, err):
        return self._exc_info_to_string(err, test)

    def addSuccess(self, test):
        self.set('pass')

    def addFailure(self, test, err):
        self.set('fail', self.fmt(test, err))

    def addError(self, test, err):
        if not isinstance(test, unittest.TestCase):
            # setUpModule / setUpClass / tearDownModule: no startTest.
            self.emit(end=str(test), outcome='error',
                      detail=self.fmt(test, err), kinds=[], secs=0)
            return
        self.set('error', self.fmt(test, err))

    def addSubTest(self, test, subtest, err):
        if err is not None:
            kind = 'fail' if issubclass(err[0], test.failureException) \
                else 'error'
            self.set(kind, f'{subtest.id()}\n' + self.fmt(subtest, err))

    def addSkip(self, test, reason):
        if not isinstance(test, unittest.TestCase):
            self.emit(end=str(test), outcome='skip', detail=reason,
                      kinds=[], secs=0)
            return
        self.set('listed' if reason.startswith('skips.txt: ') else 'skip',
                 reason)

    def addExpectedFailure(self, test, err):
        self.set('xfail', self.fmt(test, err))

    def addUnexpectedSuccess(self, test):
        self.set('xpass', 'unexpected success')

    def stopTest(self, test):
        # Still armed between tests: class and module fixtures can hang too.
        faulthandler.dump_traceback_later(self.test_timeout, exit=True)
        super().stopTest(test)
        kinds, others = self.tracker.take()
        outcome, detail = self.outcome or 'error', self.detail
        if self.outcome is None:
            detail = 'the test reported no outcome'
        if others and self.target.name != 'asyncio':
            outcome = 'error'
            detail = (f'harness: this test ran on {", ".join(others)}, not '
                      f'on the loop under test ({self.target.name})\n'
                      + (detail or ''))
        self.emit(end=short_id(test), outcome=outcome, detail=detail,
                  kinds=sorted(kinds),
                  secs=round(time.monotonic() - self.started, 3))


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--module', required=True)
    ap.add_argument('--loop', default='apyrun',
                    choices=('apyrun', 'asyncio', 'uvloop'))
    ap.add_argument('--progress', required=True)
    ap.add_argument('--exclude', help='JSON list of test ids not to run')
    ap.add_argument('--skips')
    ap.add_argument('--test-timeout', type=float, default=20.0)
    ap.add_argument('-k', dest='patterns', action='append', default=[],
                    help='only tests whose id matches this fnmatch pattern')
    args = ap.parse_args()

    progress = open(args.progress, 'a', encoding='utf-8')

    def emit(**record):
        progress.write(json.dumps(record) + '\n')
        progress.flush()

    # Imports and module fixtures get the same hang protection as a test.
    faulthandler.dump_traceback_later(args.test_timeout * 3, exit=True)

    target = Target(args.loop)
    tracker = LoopTracker(target)
    default_policy = type(asyncio.get_event_loop_policy())
    factory, policy_cls = install_target(target, tracker)
    notices = []
    adapt_close_loop(target, notices)

    tests = load_module_tests(args.module, target, tracker, factory)
    stale = apply_skips(tests, args.module, read_skips(args.skips))
    if args.patterns:
        tests = [t for t in tests
                 if any(fnmatch.fnmatchcase(short_id(t), p)
                        for p in args.patterns)]
    collected = len(tests)
    excluded = set()
    if args.exclude:
        with open(args.exclude, encoding='utf-8') as f:
            excluded = set(json.load(f))
    tests = [t for t in tests if short_id(t) not in excluded]
    emit(collected=collected, stale_skips=stale, notices=notices,
         loop=f'{target.loop_cls.__module__}.{target.loop_cls.__qualname__}',
         default_policy=f'{default_policy.__module__}.'
                        f'{default_policy.__qualname__}',
         executable=sys.executable)

    result = StreamingResult(progress, tracker, target, policy_cls,
                             args.test_timeout)
    faulthandler.dump_traceback_later(args.test_timeout, exit=True)
    # One flat suite: unittest still runs setUpClass/setUpModule and their
    # teardowns around each run of consecutive tests of a class/module.
    unittest.TestSuite(tests).run(result)
    faulthandler.cancel_dump_traceback_later()
    emit(finished=True, policy_resets=result.policy_resets)
    progress.close()


if __name__ == '__main__':
    main()
