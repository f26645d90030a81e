"""``python -m aeclust``: the ``aeclust`` command (what ``torchrun -m aeclust`` starts)."""

import sys

from aeclust.cli import main

sys.exit(main())
