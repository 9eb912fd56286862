"""``python -m paddle_psp_cli``: the ``paddleseg`` command."""
from paddle_psp_cli import console_main

console_main()
