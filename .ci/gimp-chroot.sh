#!/bin/sh
# Build (or reuse) the cached chroots with GIMP 3 that tests/test_gimp*.py use (default: 3.0).
# Needs root and debootstrap. Location: $IMPASTO_GIMP_ROOT, default /var/cache/impasto/gimp3-trixie.
set -eu
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m tests.gimp_chroot build "$@"
