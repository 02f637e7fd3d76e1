"""``python -m iwae_np``: the command-line interface (see app/cli.py)."""

import sys

from .app.cli import main

sys.exit(main())
