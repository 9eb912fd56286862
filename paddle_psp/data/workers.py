"""Reading a ``paddle.io.DataLoader`` so that its worker processes stop when the reader does.

Paddle's multi-process iterator stops its workers at the end of the data only: its own thread holds a
reference to it, so an iterator dropped before the end (training's endless batches, an evaluation that
stops at a bad label) keeps them alive until interpreter exit, where they log errors.
"""


def read(loader):
    """The items of ``loader`` (a generator); closing it (``contextlib.closing``) stops the loader's worker
    processes at once, also before the end of the data.

    Args:
        loader (paddle.io.DataLoader): With any ``num_workers``.
    """
    iterator = iter(loader)
    try:
        yield from iterator
    finally:
        shutdown = getattr(iterator, '_try_shutdown_all', None)  # Paddle's own shutdown; none without workers
        if shutdown is not None:
            shutdown()
