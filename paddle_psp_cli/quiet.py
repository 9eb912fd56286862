"""Third-party warnings a normal ``paddleseg`` run would print, each filtered by its message and module.

Only warnings that say nothing about the user's run are listed; everything else still shows. The filters
are installed by the command line before Paddle is imported (``import paddle_psp`` in a user's program
keeps Python's default warning behaviour).
"""
import os
import warnings

# Paddle's C++ log (glog): at its default level it prints INFO lines such as "New Executor is Running." when
# an exported model first runs. 2 keeps its errors (and fatal messages); a value the user set is kept.
GLOG_LEVEL_VAR = 'GLOG_minloglevel'
GLOG_QUIET_LEVEL = '2'

# (message regex, category, module regex): matched as warnings.filterwarnings matches them.
KNOWN_NOISE = (
    # Paddle's C++-extension helper, at ``import paddle``: about compiling custom ops, which no verb does.
    (r'No ccache found', UserWarning, r'paddle\.utils\.cpp_extension\.extension_utils'),
)


def silence_known_warnings():
    """Ignore the warnings of ``KNOWN_NOISE`` (and nothing else), and Paddle's C++ INFO and WARNING log lines
    unless the user set ``GLOG_minloglevel`` (read by Paddle when it is imported, so call this first)."""
    os.environ.setdefault(GLOG_LEVEL_VAR, GLOG_QUIET_LEVEL)
    for message, category, module in KNOWN_NOISE:
        warnings.filterwarnings('ignore', message=message, category=category, module=module)
