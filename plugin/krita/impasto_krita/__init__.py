"""Impasto for Krita: Tools › Scripts › Impasto Style Transfer.

The installer vendors the client (and pyzmq/msgpack when Krita's Python lacks them)
into ``vendor/`` beside this file; it goes first on sys.path so Krita uses that copy.
"""

import os
import sys

_VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)

try:
    from krita import Krita
except ImportError:  # imported outside Krita (e.g. by a linter): nothing to register
    Krita = None

if Krita is not None:
    from .extension import ImpastoExtension

    Krita.instance().addExtension(ImpastoExtension(Krita.instance()))
