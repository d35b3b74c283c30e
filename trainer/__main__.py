"""``python -m trainer`` is ``python -m trainer.train``."""

import sys

from trainer.train import main

sys.exit(main())
