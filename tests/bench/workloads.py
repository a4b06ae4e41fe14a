# SPDX-License-Identifier: MIT
"""One benchmark workload on one loop, in this (fresh) process.

    INTERPRETER workloads.py --loop {asyncio,uvloop,apyrun} --workload W --n N

run.py starts this under /usr/bin/python3.11 (asyncio, uvloop) or the
apyrun binary (apyrun; asyncio again as a cross-check), once per
repetition.  Each workload runs once at a tenth of its size to warm up,
then once timed; only the timed run's wall time counts.  Prints one JSON
line: the loop's kind, the operation count and the seconds it took.
Exit status 3 means the requested loop does not exist in this process.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

PAYLOAD = b'x' * 1024


def make_loop(name):
    if name == 'asyncio':
        return asyncio.SelectorEventLoop()
    if name == 'uvloop':
        try:
            import uvloop
        except ImportError as exc:
            print(f'workloads: uvloop is not importable: {exc}',
                  file=sys.stderr)
            sys.exit(3)
        return uvloop.new_event_loop()
    if name == 'apyrun':
        try:
            import apyrun
            loop_cls = apyrun.Loop
        except (ImportError, AttributeError) as exc:
            print(f'workloads: apyrun.Loop does not exist here: {exc}',
                  file=sys.stderr)
            sys.exit(3)
        loop = apyrun.new_event_loop()
        if not isinstance(loop, loop_cls):
            sys.exit(f'workloads: apyrun.new_event_loop() returned '
                     f'{type(loop)!r}, not apyrun.Loop')
        return loop
    sys.exit(f'workloads: unknown loop {name!r}')


def loop_kind(loop):
    """'apyrun', 'uvloop' or 'asyncio': which implementation this is."""
    apyrun = sys.modules.get('apyrun')
    if apyrun and isinstance(loop, getattr(apyrun, 'Loop', ())):
        return 'apyrun'
    return type(loop).__module__.split('.')[0]


# Each workload takes (loop, n), runs n operations to completion and
# returns the number of operations done.


def call_soon(loop, n):
    """n callbacks through loop.call_soon, scheduled 1000 at a time."""
    done = loop.create_future()
    state = {'left': n, 'ran': 0}

    def cb():
        state['ran'] += 1

    def batch():
        k = min(1000, state['left'])
        state['left'] -= k
        for _ in range(k):
            loop.call_soon(cb)
        if state['left']:
            loop.call_soon(batch)
        else:
            loop.call_soon(done.set_result, None)

    loop.call_soon(batch)
    loop.run_until_complete(done)
    assert state['ran'] == n, state
    return n


def sleep0(loop, n):
    """n `await asyncio.sleep(0)` spread over 10 concurrent tasks."""
    per_task = n // 10

    async def worker():
        for _ in range(per_task):
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(*(worker() for _ in range(10)))

    loop.run_until_complete(main())
    return per_task * 10


def tasks_gather(loop, n):
    """n tasks of a trivial coroutine, created 1000 at a time and gathered."""
    async def leaf(i):
        return i

    async def main():
        total = 0
        for _ in range(n // 1000):
            results = await asyncio.gather(
                *[loop.create_task(leaf(i)) for i in range(1000)])
            total += len(results)
        return total

    return loop.run_until_complete(main())


def call_later(loop, n):
    """n timers via loop.call_later with delays spread over 0-2 ms; every
    tenth is cancelled at once (a timeout that was not needed)."""
    done = loop.create_future()
    expected = n - n // 10
    state = {'fired': 0}

    def cb():
        state['fired'] += 1
        if state['fired'] == expected:
            done.set_result(None)

    for i in range(n):
        handle = loop.call_later((i % 200) * 1e-5, cb)
        if i % 10 == 9:
            handle.cancel()
    loop.run_until_complete(done)
    return n


class EchoServer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class PingClient(asyncio.Protocol):
    def __init__(self, n, done):
        self.n, self.done = n, done
        self.count = self.pending = 0

    def connection_made(self, transport):
        self.transport = transport
        transport.write(PAYLOAD)

    def data_received(self, data):
        self.pending += len(data)
        while self.pending >= len(PAYLOAD):
            self.pending -= len(PAYLOAD)
            self.count += 1
            if self.count == self.n:
                self.transport.close()
                if not self.done.done():
                    self.done.set_result(self.count)
                return
            self.transport.write(PAYLOAD)


def tcp_echo_protocol(loop, n):
    """n round trips of 1 KiB over loopback TCP, Protocol callbacks."""
    async def main():
        server = await loop.create_server(EchoServer, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        done = loop.create_future()
        await loop.create_connection(lambda: PingClient(n, done),
                                     '127.0.0.1', port)
        count = await done
        server.close()
        await server.wait_closed()
        return count

    return loop.run_until_complete(main())


def unix_echo_protocol(loop, n):
    """n round trips of 1 KiB over a Unix stream socket, Protocol
    callbacks."""
    async def main():
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, 'echo.sock')
            server = await loop.create_unix_server(EchoServer, path)
            done = loop.create_future()
            await loop.create_unix_connection(lambda: PingClient(n, done),
                                              path)
            count = await done
            server.close()
            await server.wait_closed()
        return count

    return loop.run_until_complete(main())


def tcp_echo_streams(loop, n):
    """n round trips of 1 KiB over loopback TCP, StreamReader/Writer."""
    async def handle(reader, writer):
        try:
            while True:
                data = await reader.readexactly(len(PAYLOAD))
                writer.write(data)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        for _ in range(n):
            writer.write(PAYLOAD)
            await writer.drain()
            await reader.readexactly(len(PAYLOAD))
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return n

    return loop.run_until_complete(main())


WORKLOADS = {
    'call_soon': call_soon,
    'sleep0': sleep0,
    'tasks_gather': tasks_gather,
    'call_later': call_later,
    'tcp_echo_protocol': tcp_echo_protocol,
    'tcp_echo_streams': tcp_echo_streams,
    'unix_echo_protocol': unix_echo_protocol,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--loop', required=True)
    ap.add_argument('--workload', required=True, choices=WORKLOADS)
    ap.add_argument('--n', type=int, required=True)
    args = ap.parse_args()

    loop = make_loop(args.loop)
    asyncio.set_event_loop(loop)
    work = WORKLOADS[args.workload]
    try:
        work(loop, max(args.n // 10, 1000))        # warm-up
        t0 = time.perf_counter()
        ops = work(loop, args.n)
        secs = time.perf_counter() - t0
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    print(json.dumps({'loop_kind': loop_kind(loop), 'ops': ops,
                      'secs': secs}))


if __name__ == '__main__':
    main()
