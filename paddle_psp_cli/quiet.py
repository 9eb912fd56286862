"""Third-party warnings a normal ``paddleseg`` run would print, each filtered by its message and module.

Only warnings that say nothing about the user's run are listed; everything else still shows. The filters
are installed by the command line before Paddle is imported (``import paddle_psp`` in a user's program
keeps Python's default warning behaviour).
"""
import warnings

# (message regex, category, module regex): matched as warnings.filterwarnings matches them.
KNOWN_NOISE = (
    # Paddle's C++-extension helper, at ``import paddle``: about compiling custom ops, which no verb does.
    (r'No ccache found', UserWarning, r'paddle\.utils\.cpp_extension\.extension_utils'),
)


def silence_known_warnings():
    """Ignore the warnings of ``KNOWN_NOISE`` (and nothing else)."""
    for message, category, module in KNOWN_NOISE:
        warnings.filterwarnings('ignore', message=message, category=category, module=module)
