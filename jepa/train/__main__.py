"""``python -m jepa.train``: see :mod:`jepa.train.cli`."""
import sys

from jepa.train.cli import main

sys.exit(main())
