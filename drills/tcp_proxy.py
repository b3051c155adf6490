"""A loopback TCP proxy that a drill or a test can cut and restore: a network outage on demand.

The drills (and the outbox tests) need "the central database vanished for a minute" without ever
stopping the real server that other people use. Pointing the service at this proxy instead of at
PostgreSQL gives exactly that: ``cut()`` closes every open connection and turns new ones away,
``restore()`` lets them through again. Standard library only, one thread per direction per
connection, so it can be imported by tests of any package without a dependency.

Cut modes (what a client sees while the proxy is cut):

* ``"reset"``   - open connections are closed; new connections are accepted and closed at once
  (an immediate connection error: the server is down, the port is still bound).
* ``"refuse"``  - open connections are closed and the listening socket is closed, so a new connect gets
  ``ECONNREFUSED`` (the host is up, nothing listens). ``restore()`` listens again on the same port.
* ``"blackhole"`` - open connections are closed; new connections are accepted and never answered
  (a dead switch or a firewall dropping packets: clients hang until their own timeout).

``stall()`` is the half-dead link: open connections stay open, but the bytes sent either way vanish
(a client's messages are "sent" and never acknowledged) until ``cut()`` or ``restore()``.

Usage::

    with TcpProxy("127.0.0.1", 5432) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        ...
        proxy.cut()          # or proxy.cut(mode="blackhole")
        proxy.restore()

Run as a command to proxy by hand: ``python -m drills.tcp_proxy 5432`` (prints the listening port).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Literal, TypedDict

CutMode = Literal["reset", "refuse", "blackhole"]
_MODES: tuple[str, ...] = ("reset", "refuse", "blackhole")
_BUFFER = 65536

log = logging.getLogger(__name__)


class ProxyStats(TypedDict):
    port: int
    cut: str | None
    open: int
    accepted: int
    forwarded: int
    turned_away: int
    bytes_up: int
    bytes_down: int


class TcpProxy:
    """Forward ``listen_host:port`` (a free port unless given) to ``target_host:target_port``.

    Thread-safe; ``start()`` is called by the constructor unless ``start=False``. ``stats()`` says how many
    connections were forwarded, turned away while cut, and how many bytes went each way.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        connect_timeout_s: float = 5.0,
        start: bool = True,
    ) -> None:
        self.target = (target_host, int(target_port))
        self.listen_host = listen_host
        self._requested_port = int(listen_port)
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._port = 0
        self._cut_mode: CutMode | None = None
        self._stalled = False
        self._closed = False
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._held: set[socket.socket] = set()  # blackholed client sockets, never answered
        self._generation = 0  # bumps on every listener (re)open so a stale accept thread exits
        self.accepted = 0
        self.forwarded = 0
        self.turned_away = 0
        self.bytes_up = 0
        self.bytes_down = 0
        if start:
            self.start()

    # -- public ------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port clients connect to (stable across ``cut(mode="refuse")`` / ``restore()``)."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return (self.listen_host, self._port)

    @property
    def is_cut(self) -> bool:
        return self._cut_mode is not None

    def start(self) -> TcpProxy:
        with self._lock:
            if self._closed:
                raise RuntimeError("proxy is closed")
            if self._listener is None:
                self._open_listener()
        return self

    def cut(self, mode: CutMode = "reset") -> None:
        """Close every open connection and turn new ones away (see the module docstring for ``mode``)."""
        if mode not in _MODES:
            raise ValueError(f"unknown cut mode {mode!r}; expected one of {', '.join(_MODES)}")
        with self._lock:
            self._cut_mode = mode
            pairs = list(self._pairs)
            self._pairs.clear()
            if mode == "refuse":
                self._close_listener()
        for a, b in pairs:
            _close(a)
            _close(b)
        log.info("proxy %s -> %s:%s cut (%s), %d connections closed", self._port, *self.target, mode, len(pairs))

    def stall(self) -> None:
        """Keep every connection open but deliver nothing either way (bytes read are dropped)."""
        with self._lock:
            self._stalled = True
        log.info("proxy %s -> %s:%s stalled", self._port, *self.target)

    def restore(self) -> None:
        """Let connections through again (blackholed clients still waiting are closed, as after a real outage)."""
        with self._lock:
            self._cut_mode = None
            self._stalled = False
            held = list(self._held)
            self._held.clear()
            if self._listener is None and not self._closed:
                self._open_listener()
        for s in held:
            _close(s)
        log.info("proxy %s -> %s:%s restored", self._port, *self.target)

    def close(self) -> None:
        """Stop listening and close everything; the proxy cannot be restarted."""
        with self._lock:
            self._closed = True
            self._close_listener()
            pairs = list(self._pairs)
            self._pairs.clear()
            held = list(self._held)
            self._held.clear()
        for a, b in pairs:
            _close(a)
            _close(b)
        for s in held:
            _close(s)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def stats(self) -> ProxyStats:
        with self._lock:
            return {
                "port": self._port,
                "cut": self._cut_mode,
                "open": len(self._pairs),
                "accepted": self.accepted,
                "forwarded": self.forwarded,
                "turned_away": self.turned_away,
                "bytes_up": self.bytes_up,
                "bytes_down": self.bytes_down,
            }

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals (called with self._lock held where noted) ----------------------------------------------
    def _open_listener(self) -> None:  # lock held
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port = self._port or self._requested_port
        deadline = time.monotonic() + 5.0
        while True:
            try:
                srv.bind((self.listen_host, port))
                break
            except OSError:
                # Re-binding the same port right after a "refuse" cut can race the kernel briefly.
                if not port or time.monotonic() > deadline:
                    srv.close()
                    raise
                time.sleep(0.05)
        srv.listen(128)
        self._port = srv.getsockname()[1]
        self._listener = srv
        self._generation += 1
        t = threading.Thread(
            target=self._accept_loop, args=(srv, self._generation), name=f"tcp-proxy-{self._port}", daemon=True
        )
        self._accept_thread = t
        t.start()

    def _close_listener(self) -> None:  # lock held
        srv, self._listener = self._listener, None
        if srv is not None:
            with contextlib.suppress(OSError):
                srv.shutdown(socket.SHUT_RDWR)
            _close(srv)

    def _accept_loop(self, srv: socket.socket, generation: int) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return  # listener closed
            with self._lock:
                if self._closed or generation != self._generation:
                    _close(client)
                    return
                self.accepted += 1
                mode = self._cut_mode
                if mode == "blackhole":
                    self.turned_away += 1
                    self._held.add(client)
                    continue
                if mode is not None:
                    self.turned_away += 1
            if mode is not None:
                _close(client, reset=True)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=self.connect_timeout_s)
            upstream.settimeout(None)
        except OSError as e:
            log.warning("proxy %s: upstream %s:%s unreachable: %s", self._port, *self.target, e)
            _close(client, reset=True)
            return
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = (client, upstream)
        with self._lock:
            if self._cut_mode is not None or self._closed:
                self.turned_away += 1
                _close(client, reset=True)
                _close(upstream)
                return
            self._pairs.add(pair)
            self.forwarded += 1
        threading.Thread(target=self._pump, args=(pair, client, upstream, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(pair, upstream, client, False), daemon=True).start()

    def _pump(
        self, pair: tuple[socket.socket, socket.socket], src: socket.socket, dst: socket.socket, up: bool
    ) -> None:
        try:
            while True:
                data = src.recv(_BUFFER)
                if not data:
                    break
                with self._lock:
                    stalled = self._stalled
                if stalled:  # a half-dead link: read, never delivered
                    continue
                dst.sendall(data)
                with self._lock:
                    if up:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            _close(src)
            _close(dst)


def _close(s: socket.socket, *, reset: bool = False) -> None:
    """Close a socket; ``reset`` sends RST instead of FIN so the peer fails at once rather than reading EOF."""
    with contextlib.suppress(OSError):
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        else:
            s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import signal

    parser = argparse.ArgumentParser(description="Loopback TCP proxy (SIGUSR1 cuts, SIGUSR2 restores).")
    parser.add_argument("target_port", type=int)
    parser.add_argument("--target-host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="listen port (default: a free one)")
    parser.add_argument("--mode", choices=_MODES, default="reset", help="cut mode used on SIGUSR1")
    args = parser.parse_args(argv)
    proxy = TcpProxy(args.target_host, args.target_port, listen_port=args.port)
    signal.signal(signal.SIGUSR1, lambda *_: proxy.cut(args.mode))
    signal.signal(signal.SIGUSR2, lambda *_: proxy.restore())
    shown = {"listen": f"{proxy.listen_host}:{proxy.port}", "target": f"{args.target_host}:{args.target_port}"}
    print(json.dumps(shown), flush=True)
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
