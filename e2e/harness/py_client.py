"""python-socketio as a second, independent real client."""

import threading

import socketio

from .core import contract


class PyClient:
    """A python-socketio client that records events and the connect_error message."""

    def __init__(self):
        self.sio = socketio.Client(reconnection=False)
        self.events: list[tuple[str, object]] = []
        self.offsets: list[tuple[str, str | None]] = []
        self.connect_error: object = None
        self._lock = threading.Lock()

        @self.sio.event
        def connect_error(data):
            self.connect_error = data

        @self.sio.on("*")
        def any_event(event, data=None, *offset):
            # With history on, the server appends each event's offset (socket.io's
            # connection state recovery); python-socketio passes it as another argument.
            with self._lock:
                self.events.append((event, data))
                self.offsets.append((event, offset[-1] if offset else None))

    def connect(self, url: str, token: str | None = None, transports=("websocket",),
                headers: dict | None = None) -> bool:
        """True when connected; False (with `connect_error` set) when refused."""
        try:
            self.sio.connect(url, auth={"token": token} if token else None, transports=list(transports),
                             headers=headers or {}, wait_timeout=10)
            return True
        except socketio.exceptions.ConnectionError:
            return False

    def error_message(self) -> str:
        data = self.connect_error
        return data.get("message", "") if isinstance(data, dict) else str(data)

    def subscribe(self, *rooms: str) -> dict:
        return self.sio.call(contract()["socket"]["SUBSCRIBE"], {"rooms": list(rooms)}, timeout=10)

    def received(self, event: str) -> list:
        with self._lock:
            return [d for e, d in self.events if e == event]

    def close(self) -> None:
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001 (already gone)
            pass
