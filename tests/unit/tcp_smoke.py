# SPDX-License-Identifier: MIT
# Tests of apyrun's native TCP transport (src/loop/handles/tcp.c, stream.c),
# run by the built apyrun binary: echo, flow control, half-close, abort,
# errors, resets, many connections, BufferedProtocol, start_tls, sendfile,
# lifetime. Each test method is its own ctest entry
# (tests/unit/CMakeLists.txt).
import asyncio
import gc
import hashlib
import os
import resource
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import unittest
import warnings
import weakref

import apyrun

CERT_DIR = '/usr/lib/python3.11/test'
CERT = os.path.join(CERT_DIR, 'keycert.pem')


class Recorder(asyncio.Protocol):
    """Records every callback; optionally echoes."""

    def __init__(self, loop, echo=False):
        self.echo = echo
        self.events = []
        self.data = bytearray()
        self.transport = None
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.eof = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append('made')
        self.made.set_result(transport)

    def data_received(self, data):
        self.events.append('data')
        self.data += data
        if self.echo:
            self.transport.write(data)

    def eof_received(self):
        self.events.append('eof')
        self.eof.set_result(None)

    def pause_writing(self):
        self.events.append('pause')

    def resume_writing(self):
        self.events.append('resume')

    def connection_lost(self, exc):
        self.events.append('lost')
        self.lost.set_result(exc)


class TcpTransportTests(unittest.TestCase):
    transport_type = apyrun.TCPTransport  # what pair() connects with

    def setUp(self):
        self.loop = apyrun.Loop()
        asyncio.set_event_loop(None)
        self.errors = []
        self.loop.set_exception_handler(
            lambda loop, ctx: self.errors.append(ctx))

    def tearDown(self):
        if not self.loop.is_closed():
            self.loop.close()

    def run_coro(self, coro, timeout=20):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    async def pair(self, server_factory=None, client_factory=None):
        """A connected (server protocol, client protocol, server)."""
        loop = self.loop
        server_protos = []

        def make_server():
            p = (server_factory or (lambda: Recorder(loop, echo=True)))()
            server_protos.append(p)
            return p
        server = await loop.create_server(make_server, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        _, client = await loop.create_connection(
            client_factory or (lambda: Recorder(loop)), '127.0.0.1', port)
        while not server_protos:
            await asyncio.sleep(0)
        await server_protos[0].made
        return server_protos[0], client, server

    def socket_pair(self):
        """A connected (socket, peer socket) of pair()'s kind; the socket's
        peer name is the listening address."""
        lsock = socket.socket()
        lsock.bind(('127.0.0.1', 0))
        lsock.listen()
        sock = socket.create_connection(lsock.getsockname())
        conn, _ = lsock.accept()
        lsock.close()
        return sock, conn

    async def close_server(self, server):
        server.close()
        await server.wait_closed()

    def test_native_transport_types(self):
        async def main():
            srv, cli, server = await self.pair()
            tr = cli.transport
            self.assertIs(type(tr), self.transport_type)
            self.assertIs(type(srv.transport), self.transport_type)
            self.assertIsInstance(tr, asyncio.Transport)
            self.assertIsInstance(tr, asyncio.transports._FlowControlMixin)
            self.assertTrue(tr._start_tls_compatible)
            self.assertIn(f'{self.transport_type.__name__} fd=', repr(tr))
            tr.close()
            await cli.lost
            await self.close_server(server)
        self.run_coro(main())

    def test_switch_falls_back_to_asyncio(self):
        self.loop._native_tcp = False

        async def main():
            srv, cli, server = await self.pair()
            names = (type(cli.transport).__name__,
                     type(srv.transport).__name__)
            cli.transport.close()
            await cli.lost
            await self.close_server(server)
            return names
        self.assertEqual(self.run_coro(main()),
                         ('_SelectorSocketTransport',) * 2)
        out = subprocess.run(
            [sys.executable, '-c',
             'import apyrun; l = apyrun.Loop(); print(l._native_tcp); '
             'l.close()'],
            env=dict(os.environ, APYRUN_NATIVE_TCP='0'),
            capture_output=True, text=True, check=True).stdout
        self.assertEqual(out.strip(), 'False')

    def test_echo_round_trips(self):
        async def main():
            srv, cli, server = await self.pair()
            for i in range(200):
                payload = (b'%05d' % i) * 200
                start = len(cli.data)
                cli.transport.write(payload)
                while len(cli.data) < start + len(payload):
                    await asyncio.sleep(0)
                self.assertEqual(bytes(cli.data[start:]), payload)
            cli.transport.close()
            self.assertIsNone(await cli.lost)
            self.assertIsNone(await srv.lost)  # EOF -> close
            self.assertEqual(srv.events[-2:], ['eof', 'lost'])
            await self.close_server(server)
        self.run_coro(main())

    def test_large_write_flow_control(self):
        blob = os.urandom(1 << 22)

        async def main():
            srv, cli, server = await self.pair(
                server_factory=lambda: Recorder(self.loop))
            srv.transport.pause_reading()
            self.assertFalse(srv.transport.is_reading())
            tr = cli.transport
            tr.set_write_buffer_limits(high=65536, low=1024)
            self.assertEqual(tr.get_write_buffer_limits(), (1024, 65536))
            tr.write(blob)
            self.assertEqual(cli.events[-1], 'pause')
            self.assertGreater(tr.get_write_buffer_size(), 65536)
            await asyncio.sleep(0.05)
            self.assertEqual(srv.data, b'')  # paused: nothing delivered
            srv.transport.resume_reading()
            while len(srv.data) < len(blob):
                await asyncio.sleep(0.001)
            self.assertIn('resume', cli.events)
            self.assertEqual(tr.get_write_buffer_size(), 0)
            self.assertEqual(hashlib.sha256(srv.data).digest(),
                             hashlib.sha256(blob).digest())
            tr.close()
            await cli.lost
            await self.close_server(server)
        self.run_coro(main())

    def test_write_buffer_limits_validation(self):
        async def main():
            srv, cli, server = await self.pair()
            tr = cli.transport
            self.assertEqual(tr.get_write_buffer_limits(), (16384, 65536))
            with self.assertRaisesRegex(ValueError, 'must be >='):
                tr.set_write_buffer_limits(high=1, low=2)
            with self.assertRaisesRegex(ValueError, 'must be >='):
                tr.set_write_buffer_limits(low=-1)
            tr.set_write_buffer_limits(low=100)
            self.assertEqual(tr.get_write_buffer_limits(), (100, 400))
            tr.set_write_buffer_limits(high=100)
            self.assertEqual(tr.get_write_buffer_limits(), (25, 100))
            tr.close()
            await cli.lost
            await self.close_server(server)
        self.run_coro(main())

    def test_write_types_and_copy_semantics(self):
        async def main():
            srv, cli, server = await self.pair(
                server_factory=lambda: Recorder(self.loop))
            tr = cli.transport
            with self.assertRaisesRegex(TypeError, 'bytes-like'):
                tr.write('text')
            srv.transport.pause_reading()
            big = bytearray(b'a' * (1 << 22))
            tr.write(big)               # mostly queued: must be copied
            big[:] = b'b' * len(big)    # later changes must not leak
            tr.write(memoryview(b'xyz')[1:])
            tr.writelines([b'1', bytearray(b'2'), memoryview(b'3')])
            tr.write(b'')
            srv.transport.resume_reading()
            want = b'a' * (1 << 22) + b'yz123'
            while len(srv.data) < len(want):
                await asyncio.sleep(0.001)
            self.assertEqual(bytes(srv.data), want)
            tr.close()
            await cli.lost
            await self.close_server(server)
        self.run_coro(main())

    def test_half_close_with_write_eof(self):
        class Server(Recorder):
            def eof_received(self):
                super().eof_received()
                self.transport.write(b'got ' + bytes(self.data))
                self.transport.close()
                return True  # keep open: we answer after the peer's EOF

        async def main():
            srv, cli, server = await self.pair(
                server_factory=lambda: Server(self.loop))
            tr = cli.transport
            self.assertTrue(tr.can_write_eof())
            tr.write(b'x' * 100000)
            tr.write_eof()
            with self.assertRaisesRegex(RuntimeError, 'write_eof'):
                tr.write(b'more')
            await cli.eof
            self.assertEqual(bytes(cli.data), b'got ' + b'x' * 100000)
            self.assertIsNone(await srv.lost)
            tr.close()
            self.assertIsNone(await cli.lost)
            await self.close_server(server)
        self.run_coro(main())

    def test_abort(self):
        async def main():
            srv, cli, server = await self.pair(
                server_factory=lambda: Recorder(self.loop))
            srv.transport.pause_reading()
            tr = cli.transport
            tr.write(b'z' * (1 << 22))
            self.assertGreater(tr.get_write_buffer_size(), 0)
            tr.abort()
            self.assertTrue(tr.is_closing())
            self.assertEqual(tr.get_write_buffer_size(), 0)
            tr.abort()
            tr.close()
            self.assertIsNone(await cli.lost)
            self.assertEqual(cli.events.count('lost'), 1)
            self.assertIsNone(tr.get_protocol())
            tr.write(b'ignored after the connection is lost')
            srv.transport.resume_reading()
            await srv.lost
            self.assertLess(len(srv.data), 1 << 22)
            await self.close_server(server)
        self.run_coro(main())

    def test_connection_refused_error_type(self):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()

        async def main():
            with self.assertRaises(ConnectionRefusedError):
                await self.loop.create_connection(asyncio.Protocol,
                                                  '127.0.0.1', port)
        self.run_coro(main())

    def test_peer_reset_error_type(self):
        async def main():
            lsock = socket.socket()
            lsock.bind(('127.0.0.1', 0))
            lsock.listen()
            lsock.setblocking(False)
            connect = self.loop.create_connection(
                lambda: Recorder(self.loop), *lsock.getsockname())
            accept = self.loop.sock_accept(lsock)
            (_, cli), (conn, _) = await asyncio.gather(connect, accept)
            await cli.made
            # An RST instead of a FIN: close with a zero linger time.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack('ii', 1, 0))
            conn.close()
            lsock.close()
            exc = await cli.lost
            self.assertIsInstance(exc, ConnectionResetError)
            self.assertEqual(exc.errno, 104)  # ECONNRESET
            self.assertTrue(cli.transport.is_closing())
        self.run_coro(main())

    def test_many_concurrent_connections(self):
        async def handle(reader, writer):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        async def client(port, i):
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            payload = b'%d:' % i * 1000
            writer.write(payload)
            writer.write_eof()
            got = await reader.read()
            writer.close()
            await writer.wait_closed()
            return got == payload

        async def main():
            server = await asyncio.start_server(handle, '127.0.0.1', 0,
                                                backlog=300)
            port = server.sockets[0].getsockname()[1]
            ok = await asyncio.gather(*(client(port, i) for i in range(200)))
            await self.close_server(server)
            return ok
        self.assertEqual(self.run_coro(main()), [True] * 200)
        self.assertEqual(self.errors, [])

    def test_accept_path(self):
        made = []
        calls = [0]

        def factory():
            calls[0] += 1
            if calls[0] == 2:
                raise ValueError('factory fails')
            p = Recorder(self.loop, echo=True)
            made.append(p)
            return p

        async def connect(port):
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            try:
                writer.write(b'hi')
                data = await reader.readexactly(2)
            except (asyncio.IncompleteReadError, ConnectionError):
                data = b''  # the server dropped the connection
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass
            return data, writer.get_extra_info('sockname')

        async def main():
            self.loop.set_debug(False)  # whatever PYTHONASYNCIODEBUG says
            server = await self.loop.create_server(factory, '127.0.0.1', 0)
            port = server.sockets[0].getsockname()[1]
            ok = await connect(port)
            self.assertEqual(ok[0], b'hi')
            tr = made[0].transport
            self.assertIs(type(tr), apyrun.TCPTransport)
            self.assertEqual(tr.get_extra_info('peername'), ok[1])
            self.assertEqual(tr.get_extra_info('socket').gettimeout(), 0)
            self.assertEqual((await connect(port))[0], b'')  # factory fails
            self.assertEqual(self.errors, [])  # reported in debug mode only
            self.loop.set_debug(True)
            calls[0] = 1
            self.assertEqual((await connect(port))[0], b'')
            self.assertEqual(self.errors[0]['message'],
                             'Error on transport creation for incoming '
                             'connection')
            self.assertIsInstance(self.errors[0]['exception'], ValueError)
            await made[0].lost
            self.assertEqual(server._active_count, 0)
            await self.close_server(server)
        self.run_coro(main())

    def test_accept_out_of_fds_retries(self):
        async def main():
            server = await self.loop.create_server(
                lambda: Recorder(self.loop), '127.0.0.1', 0)
            addr = server.sockets[0].getsockname()
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            probe = os.dup(0)
            os.close(probe)
            clients = []
            try:
                # No fd numbered from here on can be created: accept fails.
                resource.setrlimit(resource.RLIMIT_NOFILE, (probe + 3, hard))
                for _ in range(3):
                    clients.append(socket.create_connection(addr))
                await asyncio.sleep(0.1)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            self.assertEqual(self.errors[0]['message'],
                             'socket.accept() out of system resource')
            self.assertEqual(self.errors[0]['exception'].errno, 24)  # EMFILE
            self.assertEqual(server._active_count, 0)
            await asyncio.sleep(1.3)  # asyncio's ACCEPT_RETRY_DELAY is 1 s
            self.assertEqual(server._active_count, 3)
            for c in clients:
                c.close()
            while server._active_count:
                await asyncio.sleep(0.01)
            await self.close_server(server)
        self.run_coro(main())

    def test_transport_closed_while_reading(self):
        class Closer(Recorder):
            def data_received(self, data):
                super().data_received(data)
                self.transport.close()
                self.transport.close()  # idempotent
                self.closing_seen = self.transport.is_closing()

        async def main():
            srv, cli, server = await self.pair(
                server_factory=lambda: Closer(self.loop))
            cli.transport.write(b'first')
            self.assertIsNone(await srv.lost)
            self.assertTrue(srv.closing_seen)
            self.assertEqual(srv.events, ['made', 'data', 'lost'])
            self.assertEqual(bytes(srv.data), b'first')
            await cli.lost  # the server's close reaches the client
            await self.close_server(server)
        self.run_coro(main())

    def test_data_received_exception_is_fatal(self):
        class Bad(Recorder):
            def data_received(self, data):
                raise ZeroDivisionError('boom')

        async def main():
            srv, cli, server = await self.pair(
                server_factory=lambda: Bad(self.loop))
            cli.transport.write(b'x')
            exc = await srv.lost
            self.assertIsInstance(exc, ZeroDivisionError)
            await cli.lost
            await self.close_server(server)
        self.run_coro(main())
        self.assertEqual(len(self.errors), 1)
        self.assertEqual(self.errors[0]['message'],
                         'Fatal error: protocol.data_received() call failed.')
        self.assertIsInstance(self.errors[0]['transport'],
                              self.transport_type)

    def test_keyboard_interrupt_in_data_received_stops_loop(self):
        class Interrupt(Recorder):
            def data_received(self, data):
                raise KeyboardInterrupt

        async def main():
            srv, cli, server = await self.pair(
                server_factory=lambda: Interrupt(self.loop))
            self.objs = srv, cli, server
            cli.transport.write(b'x')
            await asyncio.sleep(10)
        with self.assertRaises(KeyboardInterrupt):
            self.loop.run_until_complete(main())
        srv, cli, server = self.objs
        cli.transport.close()
        srv.transport.close()
        server.close()
        self.loop.run_until_complete(server.wait_closed())

    def test_buffered_protocol(self):
        class Buffered(asyncio.BufferedProtocol):
            def __init__(self, loop):
                self.buf = bytearray(7)
                self.got = bytearray()
                self.calls = 0
                self.made = loop.create_future()
                self.lost = loop.create_future()

            def connection_made(self, transport):
                self.transport = transport
                self.made.set_result(None)

            def get_buffer(self, sizehint):
                self.calls += 1
                return self.buf

            def buffer_updated(self, nbytes):
                self.got += self.buf[:nbytes]
                self.buf = bytearray(7)  # resizing is allowed here

            def connection_lost(self, exc):
                self.lost.set_result(exc)

        async def main():
            srv, cli, server = await self.pair(
                server_factory=lambda: Buffered(self.loop))
            blob = os.urandom(50000)
            cli.transport.write(blob)
            cli.transport.close()
            await srv.lost
            self.assertEqual(bytes(srv.got), blob)
            self.assertGreaterEqual(srv.calls, 50000 // 7)
            await self.close_server(server)
        self.run_coro(main())

    def test_buffered_protocol_empty_buffer_is_fatal(self):
        class Empty(asyncio.BufferedProtocol):
            def __init__(self, loop):
                self.made = loop.create_future()
                self.lost = loop.create_future()

            def connection_made(self, transport):
                self.transport = transport
                self.made.set_result(None)

            def get_buffer(self, sizehint):
                return bytearray()

            def buffer_updated(self, nbytes):
                raise AssertionError('no buffer, no update')

            def connection_lost(self, exc):
                self.lost.set_result(exc)

        async def main():
            srv, cli, server = await self.pair(
                server_factory=lambda: Empty(self.loop))
            cli.transport.write(b'x')
            exc = await srv.lost
            self.assertIsInstance(exc, RuntimeError)
            self.assertIn('empty buffer', str(exc))
            cli.transport.close()
            await self.close_server(server)
        self.run_coro(main())
        self.assertEqual(self.errors[0]['message'],
                         'Fatal error: protocol.get_buffer() call failed.')

    def test_extra_info_and_socket_ownership(self):
        async def main():
            sock, conn = self.socket_pair()
            sockname, peername = sock.getsockname(), sock.getpeername()
            tr, cli = await self.loop.create_connection(
                lambda: Recorder(self.loop), sock=sock)
            self.assertIs(type(tr), self.transport_type)
            tsock = tr.get_extra_info('socket')
            self.assertIsInstance(tsock, asyncio.trsock.TransportSocket)
            self.assertEqual(tsock.fileno(), sock.fileno())
            self.assertEqual(tr.get_extra_info('sockname'), sockname)
            self.assertEqual(tr.get_extra_info('peername'), peername)
            self.assertIsNone(tr.get_extra_info('nope'))
            self.assertEqual(tr.get_extra_info('nope', 3), 3)
            if sock.family != socket.AF_UNIX:
                self.assertEqual(
                    tsock.getsockopt(socket.IPPROTO_TCP,
                                     socket.TCP_NODELAY) != 0,
                    sock.proto == socket.IPPROTO_TCP)
            conn.sendall(b'hello')
            while cli.data != b'hello':
                await asyncio.sleep(0.001)
            tr.close()
            await cli.lost
            self.assertEqual(sock.fileno(), -1)  # the transport closed it
            self.assertEqual(conn.recv(10), b'')
            conn.close()
        self.run_coro(main())

    def test_early_sock_close_keeps_fd_until_transport_closes(self):
        async def main():
            sock, conn = self.socket_pair()
            tr, cli = await self.loop.create_connection(
                lambda: Recorder(self.loop), sock=sock)
            self.assertIs(type(tr), self.transport_type)
            fd = sock.fileno()
            sock.close()  # the transport owns it: the fd must stay ours
            os.fstat(fd)
            conn.sendall(b'still here')
            while cli.data != b'still here':
                await asyncio.sleep(0.001)
            tr.close()
            await cli.lost
            with self.assertRaises(OSError):
                os.fstat(fd)  # closed with the transport, not before
            conn.close()
        self.run_coro(main())

    def test_connect_accepted_socket(self):
        async def main():
            cli_sock, conn = self.socket_pair()
            tr, proto = await self.loop.connect_accepted_socket(
                lambda: Recorder(self.loop, echo=True), conn)
            self.assertIs(type(tr), self.transport_type)
            cli_sock.setblocking(False)
            await self.loop.sock_sendall(cli_sock, b'ping')
            self.assertEqual(await self.loop.sock_recv(cli_sock, 10),
                             b'ping')
            cli_sock.close()
            await proto.lost
        self.run_coro(main())

    @unittest.skipUnless(os.path.exists(CERT), 'no test certificate')
    def test_start_tls_over_native_transport(self):
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(CERT)
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE

        async def handle(reader, writer):
            line = await reader.readline()
            await writer.start_tls(server_ctx)
            writer.write(line.upper() + await reader.readline())
            await writer.drain()
            writer.close()

        async def main():
            server = await asyncio.start_server(handle, '127.0.0.1', 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            raw = writer.transport
            self.assertIs(type(raw), apyrun.TCPTransport)
            writer.write(b'plain\n')
            await writer.drain()
            await writer.start_tls(client_ctx)
            self.assertIsNotNone(writer.get_extra_info('ssl_object'))
            writer.write(b'secret\n')
            data = await reader.read()
            writer.close()
            await writer.wait_closed()
            await self.close_server(server)
            return data
        self.assertEqual(self.run_coro(main()), b'PLAIN\nsecret\n')

    def test_sendfile(self):
        blob = os.urandom(300000)

        async def main():
            srv, cli, server = await self.pair(
                server_factory=lambda: Recorder(self.loop))
            with tempfile.TemporaryFile() as f:
                f.write(blob)
                f.seek(0)
                task = self.loop.create_task(
                    self.loop.sendfile(cli.transport, f))
                await asyncio.sleep(0)
                with self.assertRaisesRegex(RuntimeError, 'sendfile'):
                    cli.transport.write(b'not now')
                self.assertEqual(await task, len(blob))
            cli.transport.write(b'after')
            cli.transport.close()
            await srv.lost
            self.assertEqual(bytes(srv.data), blob + b'after')
            await self.close_server(server)
        self.run_coro(main())

    def test_loop_close_with_open_transport(self):
        async def main():
            return await self.pair()
        srv, cli, server = self.run_coro(main())
        ref = weakref.ref(cli.transport)
        server.close()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            self.loop.close()  # closes the handles under the transports
            srv = cli = server = None
            gc.collect()
        self.assertIsNone(ref())
        self.assertTrue(any('unclosed transport' in str(x.message)
                            for x in w))

    def test_closed_transport_is_freed(self):
        async def main():
            srv, cli, server = await self.pair()
            ref = weakref.ref(cli.transport)
            cli.transport.close()
            await cli.lost
            await srv.lost
            await self.close_server(server)
            return ref
        ref = self.run_coro(main())
        self.loop.run_until_complete(asyncio.sleep(0))
        gc.collect()
        self.assertIsNone(ref())


if __name__ == '__main__':
    unittest.main()
