"""``python -m paddle_psp_cli``: the ``paddleseg`` command."""
import sys

from paddle_psp_cli import main

sys.exit(main())
