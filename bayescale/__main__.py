"""``python -m bayescale``: the same command line as ``bayescale``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
