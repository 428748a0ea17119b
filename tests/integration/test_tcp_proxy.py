"""The tests' TCP proxy does to a client what a server restart does, and lets it back after."""

from __future__ import annotations

import asyncpg
import pytest

from tests.conftest import PG_ADMIN_URL
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres


async def test_cut_closes_open_connections_and_refuses_new_ones_until_restored(pg_url: str) -> None:
    """A query through the proxy works; after cut() the open connection fails and a new one is
    refused; after restore() a new connection works on the same port."""
    host_port = PG_ADMIN_URL.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        proxied = pg_url.replace(host_port, f"127.0.0.1:{proxy.port}")
        connection = await asyncpg.connect(proxied, timeout=5)
        assert await connection.fetchval("SELECT 1") == 1
        first_port = proxy.port

        proxy.cut()
        with pytest.raises((asyncpg.PostgresError, OSError, asyncpg.InterfaceError)):
            await connection.fetchval("SELECT 1")
        with pytest.raises(ConnectionRefusedError):
            await asyncpg.connect(proxied, timeout=2)

        proxy.restore()
        assert proxy.port == first_port
        again = await asyncpg.connect(proxied, timeout=5)
        try:
            assert await again.fetchval("SELECT 2") == 2
        finally:
            await again.close()
        await connection.close(timeout=1)
