"""Errors with stable codes, shared by engine, daemon, protocol and clients.

A code is part of the wire protocol: clients branch on it, people read the message.
Every part raises ``ImpastoError`` (or a subclass) for problems a user can fix, so the
CLI prints one readable line and the daemon turns it into an error reply.
"""

from __future__ import annotations

# Stable codes. Add new ones at the end; never change a published one.
BAD_MESSAGE = "bad_message"  # undecodable, malformed, wrong types, unknown message type
BAD_OPTIONS = "bad_options"  # an option out of range or of the wrong type
BAD_IMAGE = "bad_image"  # corrupt, empty, unsupported format, inconsistent size
IMAGE_TOO_LARGE = "image_too_large"  # over the pixel limit
VERSION_MISMATCH = "version_mismatch"  # peers speak different protocol versions
UNKNOWN_JOB = "unknown_job"  # no such job id (or its result expired)
NOT_ALLOWED = "not_allowed"  # e.g. shutdown from a non-local client
WEIGHTS_MISSING = "weights_missing"  # model weights not installed / not downloadable
DEVICE_UNAVAILABLE = "device_unavailable"  # asked for cuda/mps where there is none
OUT_OF_MEMORY = "out_of_memory"
CANCELLED = "cancelled"
DAEMON_UNAVAILABLE = "daemon_unavailable"  # client side: nothing answers / daemon died
TIMEOUT = "timeout"
INTERNAL = "internal"  # a bug: the message says what failed
# the job's estimated peak memory exceeds the device's budget even tiled; the message
# names the budget and a size that fits
TOO_LARGE_FOR_DEVICE = "too_large_for_device"
QUEUE_FULL = "queue_full"  # a per-identity or total queue cap; the message names the limit


class ImpastoError(Exception):
    """A problem the user can understand; ``code`` is one of the constants above."""

    code = INTERNAL

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)
