"""Read checkpoint files (``.pdparams``, ``.pdopt``): the one reader every checkpoint goes through.

:func:`load_file` returns what ``paddle.load`` returns, built from :mod:`paddle_psp.weights.safe_pickle`,
which admits only data: a file that names a callable such as ``os.system`` is refused in one line before
any of it runs. :func:`read_state_dict` also checks that the file is a non-empty dict of tensors.

Below both :mod:`paddle_psp.weights.hub` (which checks every download with it) and
:mod:`paddle_psp.weights.state_dict` (which loads what the hub resolved), so neither imports the other
backwards; the engine's checkpoints (:mod:`paddle_psp.engine.checkpoint`) are read with it too.
"""
import numpy as np
import paddle
from paddle.framework import io as paddle_io

from paddle_psp.core.errors import UserError, one_line
from paddle_psp.weights import safe_pickle

NAME_TABLE = 'StructuredToParameterName@@'  # Paddle 2.0's table of tensor names
SECURITY_DOC = 'docs/security.md'


def load_file(path, return_numpy=False, label=None):
    """``paddle.load(path, return_numpy=...)`` of a checkpoint file, admitting only data.

    Args:
        path (str): A file written by ``paddle.save`` (a state dict, an optimizer state, ...).
        return_numpy (bool, optional): Arrays as numpy arrays instead of tensors, as in ``paddle.load``.
            Default: False.
        label (str, optional): What to name in an error (e.g. the URL it came from). Default: ``path``.

    Returns:
        object: What ``paddle.load`` returns for the file (tensors named as it names them).

    Raises:
        UserError: The file names a forbidden global or holds something other than data (one line naming
            the file and it; nothing of the file has run), or it is not a readable ``paddle.save`` pickle.
    """
    label = label or path
    try:
        with open(path, 'rb') as file:
            data = safe_pickle.load(file)
        return _as_paddle_loads(data, return_numpy)
    except safe_pickle.Refused as err:
        raise UserError(f'{label}: refused to load: the file {err}, which a checkpoint never does; expected '
                        f'only arrays, numbers and strings as paddle.save writes them (see {SECURITY_DOC})') from None
    except OSError as err:
        raise UserError(f'{label}: cannot read: {err.strerror or one_line(err)}; expected a readable '
                        'checkpoint file') from None
    except Exception as err:  # truncated, not a pickle, an archive, ...: many types
        raise UserError(f'{label}: not a Paddle checkpoint (a pickle written by paddle.save): '
                        f'{one_line(err)}') from None


def _as_paddle_loads(data, return_numpy):
    """Turn unpickled ``data`` into what ``paddle.load`` returns for it, with Paddle's own conversions: big
    parameters saved in slices joined, arrays to named tensors (unless ``return_numpy``)."""
    if not isinstance(data, dict):
        return paddle_io._parse_load_result(data, return_numpy)
    data = paddle_io._pack_loaded_dict(data)
    if NAME_TABLE not in data:
        return paddle_io._parse_load_result(data, return_numpy)
    for key, name in data[NAME_TABLE].items():  # Paddle 2.0: arrays, their names in a table
        if isinstance(data[key], np.ndarray):
            data[key] = paddle_io._ndarray_to_tensor(data[key], return_numpy)
            if not return_numpy and getattr(data[key], 'name', ''):
                data[key].name = name
    del data[NAME_TABLE]
    return data


def read_state_dict(path, label=None):
    """Read a Paddle state dict from ``path`` (through :func:`load_file`).

    Args:
        path (str): The ``.pdparams`` file.
        label (str, optional): What to name in an error (e.g. the URL it came from). Default: ``path``.

    Returns:
        dict: Parameter name -> numpy array (or tensor).

    Raises:
        UserError: The file is refused (see :func:`load_file`) or does not load as a non-empty dict of tensors.
    """
    label = label or path
    state = load_file(path, return_numpy=True, label=label)
    if not isinstance(state, dict) or not state or not all(
            isinstance(v, (paddle.Tensor, np.ndarray)) for v in state.values()):
        raise UserError(f'{label}: not a Paddle checkpoint (.pdparams state dict): loads as a {type(state).__name__}, '
                        'expected a dict of tensors')
    return state
