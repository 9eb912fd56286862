"""``--device``: the device a verb runs on, chosen as PaddleSeg's ``utils.set_device`` chooses it."""
from paddle_psp.core.log import logger
from paddle_psp.core.machine import has_gpu


def resolve_device(requested=None):
    """'cpu' or 'gpu' for ``--device requested``, without setting it: 'gpu' (and no flag) means the GPU when this
    Paddle build has CUDA and sees one, else the CPU, as in PaddleSeg."""
    return 'cpu' if requested == 'cpu' or not has_gpu() else 'gpu'


def use_device(requested=None):
    """Set Paddle's device for ``--device requested`` and return it ('cpu' or 'gpu').

    As in PaddleSeg, 'gpu' (and no flag, PaddleSeg's default) means the GPU when this Paddle build has CUDA
    and sees one, else the CPU; an explicit ``--device gpu`` that falls back says so in one log line.

    Args:
        requested (str, optional): 'cpu', 'gpu' or None (the parsers refuse other values).

    Returns:
        str: 'cpu' or 'gpu'.
    """
    import paddle  # lazy: core stays importable (and cheap) without paddle
    device = resolve_device(requested)
    if requested == 'gpu' and device == 'cpu':
        logger.warning('--device gpu: this Paddle build has no CUDA or sees no GPU; running on the CPU, as '
                       'PaddleSeg does')
    paddle.set_device(device)
    return device
