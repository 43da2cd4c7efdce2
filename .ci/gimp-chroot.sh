#!/bin/sh
# Build (or reuse) the cached Debian 13 chroot with GIMP 3 that tests/test_gimp*.py use.
# Needs root and debootstrap. Location: $IMPASTO_GIMP_ROOT, default /var/cache/impasto/gimp3-trixie.
set -eu
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" tests/gimp_chroot.py build
