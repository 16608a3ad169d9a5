"""A TCP relay on 127.0.0.1 whose connections can be dropped silently, as a NAT or load balancer
that forgets a connection does: no FIN, no RST, the bytes just stop arriving."""

from __future__ import annotations

import contextlib
import socket
import threading


class SilentDropProxy:
    """Relays each connection to ``target``. ``drop()`` turns every open connection into a black
    hole: what either side sends is read and discarded, nothing is forwarded, nothing is closed.
    Connections made after it are relayed as before."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._open: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return len(self._open)

    def drop(self) -> None:
        with self._lock:
            for _, _, dropped in self._open:
                dropped.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            dropped = threading.Event()
            with self._lock:
                self._open.append((client, upstream, dropped))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, dropped), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, dropped: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not dropped.is_set():
                    sink.sendall(data)

    def close(self) -> None:
        with self._lock:
            self._listener.close()
            for client, upstream, _ in self._open:
                client.close()
                upstream.close()

    def __enter__(self) -> SilentDropProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
