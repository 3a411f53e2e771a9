"""``python -m oppcore``: the same as the ``oppcore`` command."""

import sys

from oppcore.cli import main

sys.exit(main())
