"""The one exception type the CLI turns into a one-line message, the one way to squeeze an error onto a line, and
the "did you mean" of every message that names a mistyped name."""
import difflib


class UserError(Exception):
    """Bad input from the user: a file, key or value, named in the message.

    The CLI prints ``paddleseg: error: <message>`` and exits with status 2.
    Subclasses ``Exception`` (not ``ValueError``) so that programming errors are
    never mistaken for user errors.
    """


def one_line(err, limit=200, last_line=False):
    """``err``'s message squeezed onto one line, or its type's name when the message is empty.

    The one way the package turns a foreign exception into text for a one-line :class:`UserError`.

    Args:
        err (BaseException|object): The exception (or anything with a ``str``).
        limit (int|None, optional): At most this many characters; None keeps them all. Default: 200.
        last_line (bool, optional): Keep only the last non-empty line, where a multi-line message (Paddle's
            C++ errors, with their traceback first) puts its summary. Default: False: join all lines.

    Returns:
        str: The message on one line.
    """
    lines = [' '.join(line.split()) for line in str(err).splitlines()]
    lines = [line for line in lines if line]
    text = (lines[-1] if last_line else ' '.join(lines)) if lines else ''
    return text[:limit] or type(err).__name__


def close_matches(name, names, limit=4):
    """Up to ``limit`` of ``names`` that look like ``name``: containing it (case-insensitively), then similar."""
    name = str(name)
    containing = [n for n in names if len(name) >= 3 and name.lower() in n.lower()]
    similar = difflib.get_close_matches(name, names, n=limit, cutoff=0.5)
    return list(dict.fromkeys(similar + containing))[:limit]


def env_choice(environ, name, choices, default):
    """The one of ``choices`` the environment variable ``name`` names (any case, surrounding spaces ignored), or
    ``default`` when it is unset or empty.

    Raises:
        UserError: Any other value, in one line naming the variable, its value and the choices.
    """
    value = environ.get(name, '').strip()
    if not value:
        return default
    for choice in choices:
        if choice.lower() == value.lower():
            return choice
    raise UserError(f'{name}={environ[name]!r}: expected one of {", ".join(choices)} (or unset: {default})')
