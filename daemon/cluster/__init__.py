"""Optional Ray backend: the daemon runs jobs on a pool of Ray actors, one per GPU.

Ray is an extra (``pip install 'impasto[cluster]'``); nothing here imports it until a
daemon is started with ``--ray``, and a missing Ray is one clear line, not a traceback.
"""

from __future__ import annotations

import os

from impasto.shared.errors import ImpastoError

INSTALL_HINT = "--ray needs Ray, which is not installed: pip install 'impasto[cluster]'"


def require_ray(address: str | None = None) -> None:
    """Raise ImpastoError with the install line when Ray cannot be imported.

    For ``auto`` it also turns on Ray's token mode unless the environment says otherwise:
    Ray 2.60 starts clusters on one machine with token authentication (the token in
    ~/.ray/auth_token), and a driver presents it only in token mode, which Ray reads once,
    when it is imported.
    """
    if address == "auto":
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ImpastoError(INSTALL_HINT) from None


def __getattr__(name: str):
    if name == "RayBackend":  # lazily: the dispatcher imports ray
        require_ray()
        from .dispatcher import RayBackend

        return RayBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
