"""Impasto for Krita: Tools › Scripts › Impasto Style Transfer.

The installer (or the plug-in zip) vendors the client into ``vendor/`` beside this file,
and pyzmq/msgpack wheels per Python ABI into ``vendor/wheels/<tag>``; the client goes
first on sys.path, with only the wheels built for the Python this Krita runs.
"""

import os
import sys

_VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor")
if os.path.isdir(_VENDOR) and _VENDOR not in sys.path:
    sys.path.insert(0, _VENDOR)
    from impasto.plugin import binary_deps

    binary_deps.activate(_VENDOR)

try:
    from krita import Krita
except ImportError:  # imported outside Krita (e.g. by a linter): nothing to register
    Krita = None

if Krita is not None:
    from .extension import ImpastoExtension

    Krita.instance().addExtension(ImpastoExtension(Krita.instance()))
