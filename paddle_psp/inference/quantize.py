"""INT8 models: Paddle's post-training quantization of an exported model (``--quantize int8``, not default).

:func:`quantize_model` runs ``paddle.static.quantization.PostTrainingQuantization`` on a model written by
:func:`paddle_psp.inference.export.save_static_model`: weights channel-wise abs-max, activation ranges the
largest absolute value seen on ``--calib_images`` images of the config's train_dataset (with its
transforms). The saved model keeps the fake quant / dequant ops: any Paddle Inference runs it, and with
``Config.enable_onednn_int8()`` (:func:`paddle_psp.inference.predictor.inference_forward` with
``int8=True``) oneDNN's int8 kernels do.

Tuning, measured 2026-11-29 on an Intel Xeon (family 6 model 207, AVX-512 VNNI + AMX-INT8; shared machine,
load 2-7 on 2 cores, fp32 and int8 interleaved, ``benchmarks/int8_speed.py``). Quickstart model, val mIoU
76.52 fp32: 'abs_max' calibrated on 8 / 16 / 32 train images through the val transforms gave 75.86 / 76.15
/ 76.28 (drops 0.66 / 0.37 / 0.24 points; on random training crops instead, 8 / 16 / 32 gave drops of
0.34 / -0.22 / -0.06, one other draw of 16: 0.60, i.e. the 8 val images and the calibration draw move it
by about half a point); 'hist' (8 crops) 1.11, 'avg' 4.83, 'mse' 24.2; PaddleSlim's default 'KL' took 9
minutes per model in pure Python. Quantizing only the convolutions (``enable_onednn_int8({'conv2d',
'fused_conv2d'})``) was no more accurate (drop 0.73, abs_max, 8 crops). Speed-up over the fp32 fast path:
3-4.8x on the quickstart model (128x256), 4.3x / 3.5x on random PSPNet / DeepLabV3 R50 OS8 at 512x512;
oneDNN runs the int8 convolutions on AMX (``avx10_1_512_amx``), so CPUs with VNNI and no AMX gain less.
Calibration runs the fp32 model on Paddle's static executor, one image at a time: slow for full-size
images.
"""
import numpy as np
import paddle

from paddle_psp.config import build_component
from paddle_psp.core.errors import UserError


QUANTIZE_CHOICES = ('none', 'int8')
CALIBRATION_ALGO = 'abs_max'
DEFAULT_CALIB_IMAGES = 32


def check_quantize(quantize, calib_images, fast=True):
    """Whether ``--quantize`` / ``--calib_images`` ask for int8 (False: fp32).

    Raises:
        UserError: An unknown ``quantize``, ``calib_images`` < 1, or 'int8' off the fast CPU path (``fast``
            false: ``--dygraph``).
    """
    if quantize not in QUANTIZE_CHOICES:
        raise UserError(f'--quantize {quantize}: expected one of {", ".join(QUANTIZE_CHOICES)}')
    if quantize != 'none' and not fast:
        raise UserError(f'--quantize {quantize}: runs on the fast CPU path; expected it without --dygraph')
    if calib_images < 1:
        raise UserError(f'--calib_images {calib_images}: expected a positive number of images')
    return quantize == 'int8'


def calibration_section(cfg):
    """The config's train_dataset section with the val_dataset's transforms (deterministic, whole images: the
    training images as inference sees them), from which the calibration images come.

    Raises:
        UserError: The config has no train_dataset.
    """
    train = cfg.section('train_dataset')  # a UserError naming the config when it is missing
    return dict(train, transforms=cfg.dic.get('val_dataset', {}).get('transforms', train.get('transforms')))


def config_calibration(cfg, quantize, calib_images=DEFAULT_CALIB_IMAGES):
    """The calibration batches ``--quantize`` / ``--calib_images`` ask for: None for 'none' (fp32), else
    the first ``calib_images`` images of the config's train_dataset, through the val_dataset's transforms.

    Raises:
        UserError: See :func:`check_quantize`; a config without train_dataset, or a bad one.
    """
    if not check_quantize(quantize, calib_images):
        return None
    return calibration_batches(cfg.build_dataset('train_dataset', calibration_section(cfg)), calib_images)


def calibration_recipe(cfg, calib_images):
    """What :func:`config_calibration` of ``calib_images`` images is made of, known without running the
    transforms or reading an image: the calibration algorithm, the count, the train_dataset section with the
    val transforms, and the paths of the image and label files of the first ``calib_images`` samples (see
    :func:`paddle_psp.inference.recipe.recipe_key`, which identifies those files).

    Returns:
        dict: The facts, or None when the dataset cannot be listed (the full start reports why).
    """
    try:
        section = calibration_section(cfg)
        dataset = build_component(section, 'train_dataset', cfg.path)  # lists the files, reads none
        pairs = dataset.file_list[:calib_images]
    except Exception:  # noqa: BLE001 (any failure: no shortcut; config_calibration raises it properly)
        return None
    return {'algo': CALIBRATION_ALGO, 'images': calib_images, 'dataset': section,
            'files': [path for pair in pairs for path in pair if path is not None]}


def calibration_batches(dataset, count):
    """The images of the first ``count`` samples of ``dataset``, each a 1 x C x H x W float32 array."""
    return [np.asarray(dataset[index]['img'], np.float32)[None] for index in range(min(count, len(dataset)))]


def quantize_model(fp32_dir, save_dir, files, batches, algo=CALIBRATION_ALGO):
    """Write the int8 version of the exported model in ``fp32_dir`` to ``save_dir``.

    Args:
        fp32_dir (str): Folder with the exported model (old program format, input ``x``).
        save_dir (str): Output folder (the same file names).
        files (tuple): The model and parameter file names, e.g. ``export.MODEL_FILES``.
        batches (list): Calibration batches (float32 N x 3 x H x W arrays, any size).
        algo (str, optional): PostTrainingQuantization's activation calibration. Default: 'abs_max'.
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
