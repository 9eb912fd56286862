"""The one exception type the CLI turns into a one-line message."""


class UserError(Exception):
    """Bad input from the user: a file, key or value, named in the message.

    The CLI prints ``paddleseg: error: <message>`` and exits with status 2.
    Subclasses ``Exception`` (not ``ValueError``) so that programming errors are
    never mistaken for user errors.
    """


def one_line(err):
    """``err``'s message squeezed onto one line (at most 200 characters), or its type's name."""
    return ' '.join(str(err).split())[:200] or type(err).__name__
