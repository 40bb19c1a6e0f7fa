"""A backend on loopback for client events handed to it (`spec.backend`, #28): it checks
every request's signature, records it, and answers per event name."""

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SIGNING_KEY = "e2e-backend-signing-key"
SIGNATURE_HEADER = "X-Pushcluster-Signature"


class Backend:
    """A backend on loopback: checks every request's signature, records it, and answers
    per event name from `answers` (a function of the request body, or a status, body and
    delay triple)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.bad_signatures = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()
        self.answers: dict = {}
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signed = backend.verify(self.headers.get(SIGNATURE_HEADER, ""), body)
                event = json.loads(body)
                with backend.lock:
                    backend.requests.append({**event, "signed": signed, "at": time.monotonic()})
                    backend.in_flight += 1
                    backend.most_in_flight = max(backend.most_in_flight, backend.in_flight)
                    seen = sum(1 for r in backend.requests if r["id"] == event["id"])
                try:
                    status, answer, delay = backend.answers[event["event"]](event, seen)
                    time.sleep(delay)  # the backend's own work, which the test makes slow
                    payload = json.dumps(answer).encode() if answer is not None else b""
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the node gave up on it (its timeout)
                finally:
                    with backend.lock:
                        backend.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/socket-events"

    def verify(self, header: str, body: bytes) -> bool:
        """`t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`, t within 5 minutes."""
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        if "t" not in parts or "v1" not in parts:
            self.bad_signatures += 1
            return False
        want = hmac.new(SIGNING_KEY.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(want, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300
        self.bad_signatures += 0 if ok else 1
        return ok

    def of(self, event: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["event"] == event]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
