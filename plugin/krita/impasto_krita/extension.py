"""The Krita Extension: two actions under Tools › Scripts, ``impasto_style_transfer`` and
``impasto_stylize_animation`` (the same dialog, "Stylise animation" ticked)."""

from __future__ import annotations

from krita import Extension, Krita

ACTION_ID = "impasto_style_transfer"
ANIMATION_ACTION_ID = "impasto_stylize_animation"


class ImpastoExtension(Extension):
    """Registers the menu actions; the dialog is created only when it is used."""

    def __init__(self, parent):
        super().__init__(parent)
        self.dialog = None

    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:
        action = window.createAction(ACTION_ID, "Neural Style Transfer…", "tools/scripts")
        action.setToolTip("Stylise the active layer with a painting (neural style transfer)")
        action.triggered.connect(lambda: self.show_dialog(False))
        animation = window.createAction(
            ANIMATION_ACTION_ID, "Stylise Animation (Impasto)…", "tools/scripts"
        )
        animation.setToolTip("Stylise every keyframe of the active animated layer, without flicker")
        animation.triggered.connect(lambda: self.show_dialog(True))

    def show_dialog(self, animation: bool = False) -> None:
        from .dialog import StyleTransferDialog

        if self.dialog is None:
            window = Krita.instance().activeWindow()
            self.dialog = StyleTransferDialog(window.qwindow() if window else None)
        self.dialog.refresh_sources(animation)
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
