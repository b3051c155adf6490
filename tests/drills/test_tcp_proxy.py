"""The drills' TCP proxy in front of the real PostgreSQL: forwards, cuts fast, restores."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from drills.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_target() -> tuple[str, str, int]:
    """(url, host, port) of the test PostgreSQL server; skips when it is not reachable."""
    psycopg = pytest.importorskip("psycopg")
    from sqlalchemy.engine import make_url

    url = make_url(os.environ.get("QC_TEST_POSTGRES_URL", _DEFAULT)).set(drivername="postgresql")
    plain = url.render_as_string(hide_password=False)
    try:
        psycopg.connect(plain, connect_timeout=5).close()
    except psycopg.Error as e:
        pytest.skip(f"PostgreSQL not reachable at {url.render_as_string()}: start it or set QC_TEST_POSTGRES_URL ({e})")
    return plain, url.host or "127.0.0.1", url.port or 5432


@pytest.fixture
def proxy(pg_target: tuple[str, str, int]) -> Iterator[TcpProxy]:
    _, host, port = pg_target
    with TcpProxy(host, port) as p:
        yield p


def _via(pg_target: tuple[str, str, int], proxy: TcpProxy) -> str:
    from sqlalchemy.engine import make_url

    return make_url(pg_target[0]).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


@pytest.mark.parametrize("mode", ["reset", "refuse"])
def test_cut_breaks_open_and_new_connections_fast_and_restore_heals(
    pg_target: tuple[str, str, int], proxy: TcpProxy, mode: str
) -> None:
    import psycopg

    url = _via(pg_target, proxy)
    conn = psycopg.connect(url, connect_timeout=5, autocommit=True)
    assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    assert proxy.open_connections() == 1

    proxy.cut(mode)  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=5)
    assert time.monotonic() - started < 3.0, "a cut must fail clients at once, not after their timeout"
    conn.close()

    proxy.restore()
    with psycopg.connect(url, connect_timeout=5, autocommit=True) as again:
        assert again.execute("SELECT 7").fetchone() == (7,)
    assert proxy.port == int(url.rsplit(":", 1)[1].split("/")[0])


def test_blackhole_accepts_and_never_answers(pg_target: tuple[str, str, int], proxy: TcpProxy) -> None:
    import psycopg

    url = _via(pg_target, proxy)
    proxy.cut("blackhole")
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)  # the TCP handshake succeeds
    raw.settimeout(0.3)
    raw.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # SSLRequest: a real server answers one byte
    with pytest.raises(TimeoutError):
        raw.recv(1)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=1)
    proxy.restore()
    raw.settimeout(2)
    assert raw.recv(1) == b""  # held client released on restore
    raw.close()
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    stats = proxy.stats()
    assert stats["turned_away"] >= 2 and stats["forwarded"] >= 1 and stats["cut"] is None


def test_unknown_mode_and_closed_proxy(pg_target: tuple[str, str, int]) -> None:
    _, host, port = pg_target
    p = TcpProxy(host, port)
    with pytest.raises(ValueError, match="unknown cut mode"):
        p.cut("unplug")  # type: ignore[arg-type]
    p.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", p.port), timeout=1).recv(1)
    with pytest.raises(RuntimeError):
        p.start()


def test_stall_keeps_the_connection_but_delivers_nothing_until_restored() -> None:
    """A half-dead link: the socket stays open, bytes sent vanish (no echo comes back), restore heals."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    import threading

    threading.Thread(target=echo, daemon=True).start()
    with TcpProxy("127.0.0.1", port) as p, socket.create_connection(("127.0.0.1", p.port), timeout=5) as client:
        client.sendall(b"ping")
        assert client.recv(16) == b"ping"
        p.stall()
        client.sendall(b"lost")
        client.settimeout(0.5)
        with pytest.raises(socket.timeout):
            client.recv(16)
        assert p.open_connections() == 1  # still connected: nothing tells the client the link is dead
        p.restore()
        client.settimeout(5)
        client.sendall(b"back")
        assert client.recv(16) == b"back"
    server.close()
