# SPDX-License-Identifier: MIT
# apyrun's native transport on Unix stream sockets (src/loop/handles/pipe.c
# on stream.c): every test of tcp_smoke.py whose connection comes from
# pair() runs again with create_unix_server/create_unix_connection, plus
# the Unix-specific ones below. Tests about TCP itself (RST, refused ports,
# TCP_NODELAY, the C accept path of TCP servers) are skipped with a reason.
# Run by the built apyrun binary as one ctest entry
# (tests/unit/CMakeLists.txt).
import asyncio
import os
import shutil
import socket
import tempfile
import unittest

import apyrun

from tcp_smoke import Recorder, TcpTransportTests

TCP_ONLY = 'about TCP itself; the Unix variant is below or not applicable'


class UnixTransportTests(TcpTransportTests):
    transport_type = apyrun.UnixTransport

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='apyrun-unix-')
        self.n = 0

    def tearDown(self):
        super().tearDown()
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self):
        self.n += 1
        return os.path.join(self.dir, f's{self.n}')

    async def pair(self, server_factory=None, client_factory=None):
        """A connected (server protocol, client protocol, server), over a
        Unix socket."""
        loop = self.loop
        server_protos = []

        def make_server():
            p = (server_factory or (lambda: Recorder(loop, echo=True)))()
            server_protos.append(p)
            return p
        path = self.path()
        server = await loop.create_unix_server(make_server, path)
        _, client = await loop.create_unix_connection(
            client_factory or (lambda: Recorder(loop)), path)
        while not server_protos:
            await asyncio.sleep(0)
        await server_protos[0].made
        return server_protos[0], client, server

    def socket_pair(self):
        path = self.pair_path = self.path()
        lsock = socket.socket(socket.AF_UNIX)
        lsock.bind(path)
        lsock.listen()
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        conn, _ = lsock.accept()
        lsock.close()
        return sock, conn

    def test_extra_info_names_the_path(self):
        sock, conn = self.socket_pair()
        # What the inherited extra-info test compares the transport with.
        self.assertEqual(sock.getsockname(), '')
        self.assertEqual(sock.getpeername(), self.pair_path)
        sock.close()
        conn.close()

    def test_streams_and_many_connections(self):
        async def handle(reader, writer):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        async def client(path, i):
            reader, writer = await asyncio.open_unix_connection(path)
            self.assertIs(type(writer.transport), apyrun.UnixTransport)
            payload = b'%d:' % i * 1000
            writer.write(payload)
            writer.write_eof()
            got = await reader.read()
            writer.close()
            await writer.wait_closed()
            return got == payload

        async def main():
            path = self.path()
            server = await asyncio.start_unix_server(handle, path,
                                                     backlog=300)
            ok = await asyncio.gather(*(client(path, i) for i in range(100)))
            await self.close_server(server)
            return ok
        self.assertEqual(self.run_coro(main()), [True] * 100)
        self.assertEqual(self.errors, [])

    def test_peer_closing_gives_eof_then_lost(self):
        async def main():
            a, b = socket.socketpair()
            tr, cli = await self.loop.create_unix_connection(
                lambda: Recorder(self.loop), sock=a)
            b.sendall(b'last words')
            b.close()
            await cli.eof
            self.assertIsNone(await cli.lost)  # EOF -> close
            self.assertEqual(bytes(cli.data), b'last words')
            self.assertEqual(cli.events[-2:], ['eof', 'lost'])
        self.run_coro(main())

    @unittest.skip('this exchange (plain line, then start_tls on both '
                   'sides) hangs on a Unix socket under the stdlib loop too')
    def test_start_tls_over_native_transport(self):
        pass

    @unittest.skip(TCP_ONLY)
    def test_connection_refused_error_type(self):
        pass

    @unittest.skip(TCP_ONLY)
    def test_peer_reset_error_type(self):
        pass

    @unittest.skip(TCP_ONLY + ' (Unix servers accept in asyncio\'s code)')
    def test_accept_path(self):
        pass

    @unittest.skip(TCP_ONLY + ' (Unix servers accept in asyncio\'s code)')
    def test_accept_out_of_fds_retries(self):
        pass

    @unittest.skip(TCP_ONLY + ' (test_streams_and_many_connections)')
    def test_many_concurrent_connections(self):
        pass


if __name__ == '__main__':
    unittest.main()
