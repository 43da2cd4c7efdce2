"""The Qt binding of the running Krita: PyQt6 in Krita 6, PyQt5 in Krita 5.

Krita 6 embeds PyQt6 and its own ``krita/__init__`` refuses PyQt5 on purpose
("This version of Krita is not compatible with PyQt5!"); Krita 5 has only PyQt5. Krita
itself decides with ``pykrita.qt_major_version()`` (Krita 5.3 and 6 have it; 5.1 and
5.2 do not, and are Qt 5), so we ask the same function.

Import Qt names from here, never from PyQt5/PyQt6: ``from .qt import Qt, QTimer,
QDialog``. Any class of QtCore, QtGui or QtWidgets resolves (QAction moved from
QtWidgets to QtGui in Qt 6; both spellings find it). Write enums fully scoped
(``Qt.AlignmentFlag.AlignCenter``) and ``exec()``: PyQt6 knows only those, and PyQt5
5.11+ accepts them too.
"""

from __future__ import annotations

import importlib


def qt_major_version() -> int:
    """6 or 5: what Krita was built with (5 outside Krita, where PyQt5 is the safe guess)."""
    try:
        import pykrita
    except ImportError:
        return 5
    probe = getattr(pykrita, "qt_major_version", None)
    return int(probe()) if probe is not None else 5


QT_MAJOR = qt_major_version()
BINDING = f"PyQt{QT_MAJOR}"
QtCore = importlib.import_module(f"{BINDING}.QtCore")
QtGui = importlib.import_module(f"{BINDING}.QtGui")
QtWidgets = importlib.import_module(f"{BINDING}.QtWidgets")
_MODULES = (QtCore, QtGui, QtWidgets)


def __getattr__(name: str):
    """``from .qt import QTimer``: the class from whichever Qt module holds it."""
    for module in _MODULES:
        if hasattr(module, name):
            value = getattr(module, name)
            globals()[name] = value  # found once, then a plain attribute
            return value
    raise AttributeError(f"{BINDING} has no {name} in QtCore, QtGui or QtWidgets")
