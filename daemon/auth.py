"""Who is asking: the ZAP handler that turns a connection into a proven identity.

libzmq asks the ZAP handler (an inproc socket at ``inproc://zeromq.zap.01``) about every
new connection, and stamps every message on it with the ``User-Id`` we answer. That is
the identity jobs belong to and fairness is keyed on; nothing a client writes in a
message can change it.

* local daemon (loopback): ZeroMQ PLAIN with user ``local`` and the secret token from the
  user-only runtime folder as password (only the daemon's user can read it);
* CURVE daemon: the client's public key, if it is in ``authorized_keys/`` (re-read on
  each connection, a bad file skipped and logged);
* ``--insecure`` non-loopback daemon: no handler, everyone is ``anonymous``.

The handler is polled by the server's loop, so there is no extra thread to die or hang
on shutdown, and it never raises: any problem denies that one connection.
"""

from __future__ import annotations

import logging

import zmq
from zmq.utils import z85

from impasto.shared import keys

log = logging.getLogger("impasto.daemon.auth")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ANONYMOUS = "anonymous"


class ZapHandler:
    def __init__(self, ctx: zmq.Context, token: str | None, curve: bool):
        self.token = token
        self.curve = curve
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ZAP_ENDPOINT)

    def handle(self) -> None:
        """Answer every pending ZAP request."""
        while True:
            try:
                request = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = self._decide(request)
            except Exception as exc:  # never let a bad file or request kill auth
                log.warning("CURVE/PLAIN check failed: %s", exc)
                reply = [
                    b"1.0",
                    request[1] if len(request) > 1 else b"",
                    b"500",
                    b"error",
                    b"",
                    b"",
                ]
            self.sock.send_multipart(reply)

    def _decide(self, request: list[bytes]) -> list[bytes]:
        version, request_id, _domain, address, _routing, mechanism, *credentials = request
        user = None
        if mechanism == b"PLAIN" and len(credentials) == 2 and not self.curve:
            name, password = credentials
            if name == keys.LOCAL_USER.encode() and keys.same_token(password, self.token):
                user = keys.LOCAL_USER
        elif mechanism == b"CURVE" and len(credentials) == 1 and self.curve:
            key = z85.encode(credentials[0]).decode("ascii")
            names = [n for n, k in keys.authorized_keys().items() if k == key]
            if names:
                log.info("CURVE: allowed client key %s (%s)", key, names[0])
                user = key
            else:
                log.warning("CURVE: DENIED unknown client key %s from %s", key, address.decode())
        if user is None:
            if mechanism == b"PLAIN":
                log.warning("refused a local client without the right token (%s)", address.decode())
            return [version, request_id, b"400", b"not allowed", b"", b""]
        return [version, request_id, b"200", b"OK", user.encode(), b""]

    def close(self) -> None:
        self.sock.close(linger=0)
