# SPDX-License-Identifier: MIT
# Smoke tests of apyrun.Loop, run by the built apyrun binary: scheduling,
# timers, thread-safe calls, readers/writers, signals, subprocesses, TCP,
# sock_* methods, exception routing and stall detection. Each test method
# is its own ctest entry (tests/unit/CMakeLists.txt).
import asyncio
import gc
import os
import signal
import socket
import sys
import threading
import time
import unittest
import warnings

import apyrun


class LoopSmokeTests(unittest.TestCase):
    def setUp(self):
        self.loop = apyrun.Loop()
        asyncio.set_event_loop(None)

    def tearDown(self):
        if not self.loop.is_closed():
            self.loop.close()

    def run_coro(self, coro, timeout=10):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def test_is_asyncio_loop(self):
        self.assertIsInstance(self.loop, asyncio.AbstractEventLoop)
        self.assertIsInstance(self.loop, asyncio.BaseEventLoop)
        self.assertFalse(self.loop.is_running())
        self.assertFalse(self.loop.is_closed())

    def test_call_soon_order_and_context(self):
        import contextvars
        var = contextvars.ContextVar('var', default='outer')
        out = []
        ctx = contextvars.copy_context()
        ctx.run(var.set, 'inner')
        self.loop.call_soon(out.append, 1)
        self.loop.call_soon(lambda: out.append(var.get()), context=ctx)
        self.loop.call_soon(lambda: out.append(var.get()))
        self.loop.call_soon(self.loop.stop)
        self.loop.call_soon(out.append, 'after stop still runs')
        self.loop.run_forever()
        self.assertEqual(out, [1, 'inner', 'outer', 'after stop still runs'])

    def test_call_later_order_and_time(self):
        out = []
        t0 = self.loop.time()
        self.assertLess(abs(t0 - time.monotonic()), 0.01)
        self.loop.call_later(0.03, out.append, 3)
        self.loop.call_later(0.01, out.append, 1)
        self.loop.call_at(t0 + 0.02, out.append, 2)
        for i in range(5):  # equal deadlines keep call order
            self.loop.call_at(t0 + 0.025, out.append, 'eq%d' % i)
        h = self.loop.call_later(0.015, out.append, 'cancelled')
        h.cancel()
        self.assertTrue(h.cancelled())
        self.loop.call_later(0.05, self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(out, [1, 2, 'eq0', 'eq1', 'eq2', 'eq3', 'eq4', 3])
        self.assertGreaterEqual(self.loop.time() - t0, 0.05)

    def test_many_cancelled_timers_compact(self):
        handles = [self.loop.call_later(100 + i, lambda: None)
                   for i in range(1000)]
        for h in handles[:900]:
            h.cancel()
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertLessEqual(len(self.loop._scheduled), 100)
        self.assertEqual(self.loop._timer_cancelled_count, 0)

    def test_many_random_timers_never_hang(self):
        # Regression: a deadline already due when uv_run starts fired
        # before libuv computed its poll timeout, and the poll then slept
        # with no deadline (found by test_tasks.test_context_3). The race
        # needs >= 1 ms between arming and uv_run, so this stress test
        # catches a regression only some of the time; each round must
        # still finish, and the whole test is bounded by ctest's timeout.
        import random
        rng = random.Random(1234)
        for _ in range(60):
            loop = apyrun.new_event_loop()
            try:
                fut = loop.create_future()
                left = [500]

                def tick():
                    left[0] -= 1
                    if left[0] == 0:
                        fut.set_result(None)
                for _ in range(500):
                    loop.call_later(rng.uniform(0.001, 0.03), tick)
                loop.run_until_complete(fut)
            finally:
                loop.close()

    def test_timer_handle_api(self):
        h = self.loop.call_at(self.loop.time() + 10, print)
        h2 = self.loop.call_at(h.when() + 1, print)
        self.assertLess(h, h2)
        self.assertEqual(h, h)
        self.assertIn('when=', repr(h))
        h.cancel()
        self.assertIn('cancelled', repr(h))
        h2.cancel()

    def test_threadsafe_wakes_blocked_loop(self):
        fut = self.loop.create_future()

        def worker():
            time.sleep(0.05)
            self.loop.call_soon_threadsafe(fut.set_result, 'done')
        threading.Thread(target=worker).start()
        t0 = time.monotonic()
        self.assertEqual(self.loop.run_until_complete(fut), 'done')
        self.assertLess(time.monotonic() - t0, 2)

    def test_exception_in_callback_goes_to_handler(self):
        seen = []
        self.loop.set_exception_handler(lambda loop, ctx: seen.append(ctx))

        def boom():
            raise ValueError('boom')
        h = self.loop.call_soon(boom)
        self.loop.call_soon(self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(len(seen), 1)
        self.assertIsInstance(seen[0]['exception'], ValueError)
        self.assertIs(seen[0]['handle'], h)
        self.assertTrue(seen[0]['message'].startswith('Exception in callback'))

    def test_keyboard_interrupt_from_callback_propagates(self):
        def ki():
            raise KeyboardInterrupt
        self.loop.call_soon(ki)
        with self.assertRaises(KeyboardInterrupt):
            self.loop.run_forever()
        self.assertFalse(self.loop.is_running())

    def test_run_until_complete_semantics(self):
        async def coro():
            await asyncio.sleep(0)
            return 7
        self.assertEqual(self.loop.run_until_complete(coro()), 7)
        fut = self.loop.create_future()
        self.loop.call_soon(self.loop.stop)
        with self.assertRaisesRegex(RuntimeError, 'stopped before Future'):
            self.loop.run_until_complete(fut)

        async def nested():
            self.loop.run_forever()
        with self.assertRaisesRegex(RuntimeError, 'already running'):
            self.loop.run_until_complete(nested())

    def test_reader_writer(self):
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        got = []

        def on_read():
            got.append(b.recv(100))
            self.loop.remove_reader(b)
            self.loop.stop()
        self.loop.add_reader(b, on_read)
        self.loop.add_writer(a.fileno(),
                             lambda: (a.send(b'ping'),
                                      self.loop.remove_writer(a.fileno())))
        self.loop.run_forever()
        self.assertEqual(got, [b'ping'])
        self.assertFalse(self.loop.remove_reader(b))
        self.assertFalse(self.loop.remove_writer(a))
        # The fd's blocking mode is left alone, as with asyncio.
        c, d = socket.socketpair()
        self.loop.add_reader(c, lambda: None)
        self.assertTrue(c.getblocking())
        self.assertTrue(self.loop.remove_reader(c))
        for s in (a, b, c, d):
            s.close()

    def test_reader_on_closed_fd_does_not_abort(self):
        a, b = socket.socketpair()
        self.loop.add_reader(a, lambda: None)
        fd = a.fileno()
        a.close()  # closed while registered: libuv would abort()
        self.loop.call_later(0.01, self.loop.stop)
        self.loop.run_forever()
        self.assertTrue(self.loop.remove_reader(fd))
        b.close()
        with self.assertRaises(ValueError):
            self.loop.add_reader(-1, print)

    def test_remove_reader_of_closed_socket(self):
        # selectors finds a closed socket (fileno() -1) by the object it
        # was registered with; anyio's close_during_receive relies on it.
        def scenario(loop):
            def attempt(f):
                try:
                    return f()
                except (ValueError, OSError) as exc:
                    return f'{type(exc).__name__}: {exc}'
            a, b = socket.socketpair()
            loop.add_reader(a, lambda: None)
            out = [loop._selector.get_key(a).fileobj is a]
            a.close()
            out.append(loop._selector.get_key(a).fd >= 0)
            out += [attempt(lambda: loop.remove_reader(a)),
                    attempt(lambda: loop.remove_reader(a)),
                    attempt(lambda: loop.remove_writer(a))]
            fresh = socket.socket()
            out.append(attempt(lambda: loop.remove_reader(fresh)))
            loop.add_writer(fresh, lambda: None)
            fresh.close()
            out.append(attempt(lambda: loop.remove_writer(fresh)))
            b.close()
            return out
        stdlib = asyncio.SelectorEventLoop()
        try:
            want = scenario(stdlib)
        finally:
            stdlib.close()
        self.assertEqual(scenario(self.loop), want)
        self.assertEqual(want[:3], [True, True, True])

    def test_signal_handler(self):
        got = []
        self.loop.add_signal_handler(signal.SIGUSR1, got.append, 'usr1')
        self.loop.call_later(0.02, os.kill, os.getpid(), signal.SIGUSR1)
        self.loop.call_later(0.1, self.loop.stop)
        self.loop.run_forever()
        self.assertEqual(got, ['usr1'])
        self.assertTrue(self.loop.remove_signal_handler(signal.SIGUSR1))
        self.assertEqual(signal.getsignal(signal.SIGUSR1), signal.SIG_DFL)
        with self.assertRaises(RuntimeError):
            self.loop.add_signal_handler(signal.SIGKILL, print)

    def test_sigint_interrupts_blocked_loop(self):
        # Delivered while the loop sleeps with no deadline: the default
        # handler's KeyboardInterrupt must surface at once.
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
        t0 = time.monotonic()
        with self.assertRaises(KeyboardInterrupt):
            self.loop.run_forever()
        self.assertLess(time.monotonic() - t0, 2)

    def test_python_signal_handler_runs_promptly(self):
        got = []
        old = signal.signal(signal.SIGUSR2,
                            lambda s, f: (got.append(s), self.loop.stop()))
        try:
            threading.Timer(0.1, os.kill,
                            (os.getpid(), signal.SIGUSR2)).start()
            t0 = time.monotonic()
            self.loop.run_forever()
            self.assertLess(time.monotonic() - t0, 2)
        finally:
            signal.signal(signal.SIGUSR2, old)
        self.assertEqual(got, [signal.SIGUSR2])

    def test_subprocess(self):
        async def main():
            proc = await asyncio.create_subprocess_exec(
                sys.executable, '-c', 'import sys; print(sys.stdin.read())',
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate(b'hi')
            return out, proc.returncode
        asyncio.set_event_loop(self.loop)  # the child watcher attaches
        try:
            self.assertEqual(self.run_coro(main()), (b'hi\n', 0))
        finally:
            asyncio.set_event_loop(None)

    def test_tcp_echo(self):
        async def handle(reader, writer):
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        async def main():
            server = await asyncio.start_server(handle, '127.0.0.1', 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            writer.write(b'echo me')
            data = await reader.read()
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
            return data
        self.assertEqual(self.run_coro(main()), b'echo me')

    def test_sock_methods(self):
        async def main():
            srv = socket.socket()
            srv.bind(('127.0.0.1', 0))
            srv.listen()
            srv.setblocking(False)
            cli = socket.socket()
            cli.setblocking(False)
            await self.loop.sock_connect(cli, srv.getsockname())
            conn, _ = await self.loop.sock_accept(srv)
            await self.loop.sock_sendall(cli, b'x' * 100000)
            total = 0
            while total < 100000:
                total += len(await self.loop.sock_recv(conn, 65536))
            for s in (srv, cli, conn):
                s.close()
            return total
        self.assertEqual(self.run_coro(main()), 100000)

    def test_executor_and_dns(self):
        async def main():
            r = await self.loop.run_in_executor(None, sum, [1, 2, 3])
            info = await self.loop.getaddrinfo('127.0.0.1', 80)
            await self.loop.shutdown_default_executor()
            return r, info[0][4][0]
        self.assertEqual(self.run_coro(main()), (6, '127.0.0.1'))

    def test_stall_detection(self):
        self.assertTrue(apyrun._set_stall_check(self.loop, True))
        self.assertFalse(apyrun._set_stall_check(object(), True))
        fut = self.loop.create_future()
        with self.assertRaises(apyrun.NeverCompletedError) as cm:
            self.loop.run_until_complete(fut)
        self.assertIsInstance(cm.exception, RuntimeError)
        self.assertIs(cm.exception.future, fut)
        # A thread that eventually calls back is waited for.
        fut = self.loop.create_future()

        def worker():
            time.sleep(0.3)
            self.loop.call_soon_threadsafe(fut.set_result, 1)
        threading.Thread(target=worker).start()
        self.assertEqual(self.loop.run_until_complete(fut), 1)
        # Idle executor workers do not count as progress.
        self.run_coro(self.loop.run_in_executor(None, time.sleep, 0.01))
        with self.assertRaises(apyrun.NeverCompletedError):
            self.loop.run_until_complete(self.loop.create_future())
        # A timer is progress.
        fut = self.loop.create_future()
        self.loop.call_later(0.05, fut.set_result, 2)
        self.assertEqual(self.loop.run_until_complete(fut), 2)

    def test_unclosed_loop_warns(self):
        loop = apyrun.Loop()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            del loop
            gc.collect()
        self.assertTrue(any(issubclass(x.category, ResourceWarning)
                            for x in w))

    def test_close_semantics(self):
        self.loop.call_soon(print)
        self.loop.call_later(1, print)
        self.loop.close()
        self.assertTrue(self.loop.is_closed())
        self.loop.close()  # idempotent
        with self.assertRaisesRegex(RuntimeError, 'closed'):
            self.loop.call_soon(print)
        with self.assertRaisesRegex(RuntimeError, 'closed'):
            self.loop.run_forever()

    def test_apyrun_run_and_policy(self):
        async def main():
            return type(asyncio.get_running_loop())
        self.assertIs(apyrun.run(main()), apyrun.Loop)
        old = asyncio.get_event_loop_policy()
        try:
            apyrun.install()
            loop = asyncio.new_event_loop()
            self.assertIsInstance(loop, apyrun.Loop)
            loop.close()
        finally:
            asyncio.set_event_loop_policy(old)


if __name__ == '__main__':
    unittest.main()
