"""TCP relays on 127.0.0.1 that stand between two real processes and misbehave as networks do.

``Relay`` accepts, connects each connection to its target and pumps both directions; a subclass
decides, chunk by chunk, what is passed on (``_gate``). ``SilentDropProxy`` forgets connections as
a NAT or load balancer does; ``HoldingProxy`` holds one request in flight for as long as a test likes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Self

Gate = Callable[[bytes], bool]
"""Told each chunk read from one side of one connection: True passes it on, False swallows it."""


class Relay:
    """Relays each connection to ``target`` (``host:port``) and passes on what ``_gate`` lets through."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.connections = 0
        """Connections accepted so far."""
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _gate(self, connection: int, outgoing: bool) -> Gate:
        """What passes on the ``connection``-th connection (from 0), in one direction (``outgoing``:
        towards the target); everything, unless a subclass says otherwise."""
        return lambda _data: True

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
                connection, self.connections = self.connections, self.connections + 1
            for source, sink, outgoing in ((client, upstream, True), (upstream, client, False)):
                gate = self._gate(connection, outgoing)
                threading.Thread(target=self._pump, args=(source, sink, gate), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, gate: Gate) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if gate(data):
                    sink.sendall(data)

    def close(self) -> None:
        with self._lock:
            self._listener.close()
            for item in self._sockets:
                item.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SilentDropProxy(Relay):
    """``drop()`` turns every open connection into a black hole: what either side sends is read and
    discarded, nothing is forwarded, nothing is closed (no FIN, no RST). Connections made after it
    are relayed as before."""

    def __init__(self, target: str) -> None:
        self._dropped: list[threading.Event] = []
        super().__init__(target)

    def _gate(self, connection: int, outgoing: bool) -> Gate:
        if outgoing:  # the first of a connection's two gates: one event for both directions
            self._dropped.append(threading.Event())
        dropped = self._dropped[connection]
        return lambda _data: not dropped.is_set()

    def drop(self) -> None:
        with self._lock:
            for dropped in self._dropped:
                dropped.set()


class HoldingProxy(Relay):
    """Passes everything on, except that once ``hold_after`` requests carrying ``marker`` have gone
    through, the next one is held: its bytes are taken and never sent on, so it stays in flight.
    ``holding`` is set once a request is held."""

    def __init__(self, target: str, marker: bytes, hold_after: int = 0) -> None:
        self._marker = marker
        self._hold_after = hold_after
        self._passed = 0
        self.holding = threading.Event()
        super().__init__(target)

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}"

    def _gate(self, connection: int, outgoing: bool) -> Gate:
        if not outgoing:
            return super()._gate(connection, outgoing)
        held = False

        def passes(data: bytes) -> bool:
            nonlocal held
            if not held and self._marker in data:
                with self._lock:
                    if self._passed >= self._hold_after:
                        held = True
                        self.holding.set()
                    self._passed += 1
            return not held

        return passes
