"""``python -m impasto.daemon``: ``impasto-daemon`` where no script is on PATH."""

import sys

from impasto.daemon.service import main

if __name__ == "__main__":
    sys.exit(main())
