"""The Krita Extension: one action, ``impasto_style_transfer``, under Tools › Scripts."""

from __future__ import annotations

from krita import Extension, Krita

ACTION_ID = "impasto_style_transfer"


class ImpastoExtension(Extension):
    """Registers the menu action; the dialog is created only when it is used."""

    def __init__(self, parent):
        super().__init__(parent)
        self.dialog = None

    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:
        action = window.createAction(ACTION_ID, "Neural Style Transfer…", "tools/scripts")
        action.setToolTip("Stylise the active layer with a painting (neural style transfer)")
        action.triggered.connect(self.show_dialog)

    def show_dialog(self) -> None:
        from .dialog import StyleTransferDialog

        if self.dialog is None:
            window = Krita.instance().activeWindow()
            self.dialog = StyleTransferDialog(window.qwindow() if window else None)
        self.dialog.refresh_sources()
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
