"""``python -m streams`` is the same as the ``leadstream`` command."""

import sys

from streams.ops.cli import main

sys.exit(main())
