"""INT8 models: Paddle's post-training quantization of an exported model (``paddleseg export --quantize int8``).

:func:`quantize_model` runs ``paddle.static.quantization.PostTrainingQuantization`` on a model written by
:func:`paddle_psp.inference.export.save_static_model`: weights channel-wise abs-max, activation ranges
from a few calibration images of the training data (``algo='hist'``: the 99.999th percentile of each
activation's histogram; PaddleSlim's default 'KL' took 9 minutes per model in pure Python for the same
result class). The saved model keeps the fake quant / dequant ops: any Paddle Inference runs it, and with
``Config.enable_onednn_int8()`` (:func:`paddle_psp.inference.predictor.inference_forward` with
``int8=True``) oneDNN's int8 kernels do.

Measured 2026-11-29 on an Intel Xeon (family 6 model 207, AMX-INT8; shared machine, load ~7 on 2 cores,
fp32 and int8 interleaved): random PSPNet / DeepLabV3 R50 OS8 at 512x512 ran 4.3x / 3.5x faster than
the fp32 fast path; oneDNN runs the int8 convolutions on AMX (``avx10_1_512_amx``), so CPUs with VNNI
but no AMX gain less. ``benchmarks/int8_speed.py`` measures it, with the quickstart model's mIoU.
"""
import random

import numpy as np
import paddle

from paddle_psp.core.errors import UserError


QUANTIZE_CHOICES = ('none', 'int8')
CALIBRATION_ALGO = 'hist'
DEFAULT_CALIB_IMAGES = 8


def config_calibration(cfg, quantize, calib_images=DEFAULT_CALIB_IMAGES):
    """The calibration batches ``--quantize`` / ``--calib_images`` ask for: None for 'none' (fp32), else
    :func:`calibration_batches` of the config's train_dataset.

    Raises:
        UserError: An unknown ``quantize``, ``calib_images`` < 1, or a config without train_dataset.
    """
    if quantize not in QUANTIZE_CHOICES:
        raise UserError(f'--quantize {quantize}: expected one of {", ".join(QUANTIZE_CHOICES)}')
    if calib_images < 1:
        raise UserError(f'--calib_images {calib_images}: expected a positive number of images')
    if quantize == 'none':
        return None
    cfg.section('train_dataset')  # a UserError naming the config when it is missing
    return calibration_batches(cfg.train_dataset, calib_images)


def calibration_batches(dataset, count, seed=0):
    """The images of the first ``count`` samples of ``dataset`` (a training dataset: its transforms run,
    seeded), each a 1 x C x H x W float32 array."""
    random.seed(seed)
    np.random.seed(seed)
    return [np.asarray(dataset[index]['img'], np.float32)[None] for index in range(min(count, len(dataset)))]


def quantize_model(fp32_dir, save_dir, files, batches, algo=CALIBRATION_ALGO):
    """Write the int8 version of the exported model in ``fp32_dir`` to ``save_dir``.

    Args:
        fp32_dir (str): Folder with the exported model (old program format, input ``x``).
        save_dir (str): Output folder (the same file names).
        files (tuple): The model and parameter file names, e.g. ``export.MODEL_FILES``.
        batches (list): Calibration batches (float32 N x 3 x H x W arrays, any size).
        algo (str, optional): PostTrainingQuantization's activation calibration. Default: 'hist'.
    """
    from paddle.static.quantization import PostTrainingQuantization  # lazy: only int8 exports need it
    scope = paddle.static.Scope()  # a fresh one per model: the parameters of two exports share names
    with paddle.pir_utils.OldIrGuard(), paddle.static.scope_guard(scope):
        paddle.enable_static()
        try:
            ptq = PostTrainingQuantization(
                paddle.static.Executor(paddle.CPUPlace()), fp32_dir, scope=scope, model_filename=files[0],
                params_filename=files[1], data_loader=lambda: ({'x': batch} for batch in batches),
                batch_nums=len(batches), algo=algo)
            ptq.quantize()
            ptq.save_quantized_model(save_dir, model_filename=files[0])
        finally:
            paddle.disable_static()
