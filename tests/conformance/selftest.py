# SPDX-License-Identifier: MIT
"""Prove that the conformance harness can fail (and can pass).

Runs run.py under Debian's python3.11 against fake `apyrun` modules put on
PYTHONPATH, so it needs no apyrun build:
  - a policy that hands out the stdlib loop instead of apyrun.Loop must be
    refused before any test runs (the suite must never silently test the
    stdlib loop);
  - a build without apyrun.Loop must fail every module;
  - a run that executes zero tests must fail;
  - a stale skips.txt entry must fail its module;
  - a well-behaved fake (a SelectorEventLoop subclass) must pass, with its
    tests counted as run on the loop under test.
"""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, 'run.py')
PYTHON = sys.executable

GOOD = '''
import asyncio
class Loop(asyncio.SelectorEventLoop):
    pass
class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    _loop_factory = Loop
'''

# The policy's loops are stdlib loops, not apyrun.Loop.
WRONG_POLICY = '''
import asyncio
class Loop(asyncio.SelectorEventLoop):
    pass
class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    pass
'''

NO_LOOP = 'version = "0"\n'


class HarnessSelfTest(unittest.TestCase):

    def run_harness(self, fake, *args, skips=''):
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, 'apyrun.py'), 'w') as f:
                f.write(fake)
            skips_path = os.path.join(tmp, 'skips.txt')
            with open(skips_path, 'w') as f:
                f.write(skips)
            env = dict(os.environ, PYTHONPATH=tmp)
            env.pop('APYRUN_LOOP', None)
            proc = subprocess.run(
                [PYTHON, RUN, '--python', PYTHON, '--loop', 'apyrun',
                 '--skips', skips_path, '--log-dir', os.path.join(tmp, 'logs'),
                 *args],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, timeout=300)
        return proc.returncode, proc.stdout

    def test_good_fake_passes(self):
        rc, out = self.run_harness(GOOD, 'test_queues', 'test_futures2')
        self.assertEqual(rc, 0, out)
        self.assertIn('test_queues: 44 passed, 0 failed', out)
        self.assertIn('of the executed tests 44 ran on it', out)
        self.assertRegex(out, r'(?m)^conformance: 47 passed, 0 failed, '
                              r'0 skipped$')

    def test_wrong_policy_is_refused(self):
        rc, out = self.run_harness(WRONG_POLICY, 'test_queues')
        self.assertEqual(rc, 1, out)
        self.assertIn('asyncio.new_event_loop() returned '
                      'asyncio.unix_events._UnixSelectorEventLoop', out)
        self.assertIn('MODULE FAILED: no test was executed', out)

    def test_missing_loop_fails(self):
        rc, out = self.run_harness(NO_LOOP, 'test_context')
        self.assertEqual(rc, 1, out)
        self.assertIn('the loop under test does not exist yet', out)

    def test_zero_tests_fails(self):
        rc, out = self.run_harness(GOOD, 'test_queues', '-k', 'no.such.*')
        self.assertEqual(rc, 1, out)
        self.assertIn('MODULE FAILED: no test was executed', out)

    def test_stale_skip_fails(self):
        rc, out = self.run_harness(
            GOOD, 'test_context',
            skips='test_context.NoSuchClass.test_x  gone long ago\n')
        self.assertEqual(rc, 1, out)
        self.assertIn('MODULE FAILED: stale skip entry: '
                      'test_context.NoSuchClass.test_x', out)

    def test_listed_skip_is_counted(self):
        rc, out = self.run_harness(
            GOOD, 'test_queues',
            skips='test_queues.QueueBasicTests.test_empty  selftest reason\n')
        self.assertEqual(rc, 0, out)
        self.assertIn('test_queues: 43 passed, 0 failed, 1 skipped', out)
        self.assertIn('by skips.txt 1', out)


if __name__ == '__main__':
    unittest.main()
