"""``python -m polymodal`` (what ``torchrun -m polymodal train ...`` runs): the command line."""

import sys

from polymodal.cli import main

sys.exit(main())
