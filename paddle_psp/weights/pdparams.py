"""Read a ``.pdparams`` file as a state dict: the one check a checkpoint file must pass.

Below both :mod:`paddle_psp.weights.hub` (which checks every download with it) and
:mod:`paddle_psp.weights.state_dict` (which loads what the hub resolved), so neither imports the other
backwards.
"""
import numpy as np
import paddle

from paddle_psp.core.errors import UserError, one_line


def read_state_dict(path, label=None):
    """Read a Paddle state dict from ``path``.

    Args:
        path (str): The ``.pdparams`` file.
        label (str, optional): What to name in an error (e.g. the URL it came from). Default: ``path``.

    Returns:
        dict: Parameter name -> numpy array (or tensor).

    Raises:
        UserError: The file does not load as a non-empty dict of tensors.
    """
    label = label or path
    try:
        state = paddle.load(path, return_numpy=True)
    except Exception as err:  # paddle raises many types for a foreign file
        raise UserError(f'{label}: not a Paddle checkpoint (.pdparams state dict): {one_line(err)}') from None
    if not isinstance(state, dict) or not state or not all(
            isinstance(v, (paddle.Tensor, np.ndarray)) for v in state.values()):
        raise UserError(f'{label}: not a Paddle checkpoint (.pdparams state dict): loads as a {type(state).__name__}, '
                        'expected a dict of tensors')
    return state
