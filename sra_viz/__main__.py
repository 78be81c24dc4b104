"""``python -m sra_viz ...`` is the same as the ``sra-viz`` console script."""

import sys

from .cli import main

sys.exit(main())
