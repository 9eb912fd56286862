"""INT8 models: Paddle's post-training quantization of an exported model (``--quantize int8``, not default).

:func:`quantize_model` runs ``paddle.static.quantization.PostTrainingQuantization`` on a model written by
:func:`paddle_psp.inference.export.save_static_model`: weights channel-wise abs-max, activation ranges the
largest absolute value seen on ``--calib_images`` images of the config's train_dataset (with its
transforms). The saved model keeps the fake quant / dequant ops: any Paddle Inference runs it, and with
``Config.enable_onednn_int8()`` (:func:`paddle_psp.inference.runner.inference_forward` with
``int8=True``) oneDNN's int8 kernels do.

Calibration is 'abs_max' on images of the train split through the val transforms, the most accurate of
the algorithms tried. The convolutions at fine resolution (output at 1/4 of the image or finer: a ResNet's
stem and first stage, :func:`fine_resolution_filters`) stay fp32: their 8-bit activations cost a briefly
trained model most of its int8 accuracy loss, for a small part of the speed-up (docs/performance.md has
the comparisons and the speed-ups, per CPU, with the scripts that measure them). int8 runs only on CPUs
whose int8 dot products do not saturate (:func:`int8_refusal`).
"""
import os

import numpy as np
import paddle

from paddle_psp.config import build_component
from paddle_psp.core import machine
from paddle_psp.core.errors import UserError
from paddle_psp.inference.flags import DEFAULT_CALIB_IMAGES, QUANTIZE_CHOICES  # noqa: F401  (re-exported)


CALIBRATION_ALGO = 'abs_max'
# Convolutions whose output is at most this many times coarser than the input image stay fp32.
FP32_MAX_STRIDE = 4
# CPU flags (Linux /proc/cpuinfo) of the instructions that multiply u8 x s8 into 32-bit sums. Without them
# oneDNN's int8 convolutions use AVX2's vpmaddubsw, whose 16-bit pair sums saturate for 8-bit weights and
# activations (255 * 127 * 2 > 32767): the outputs then disagree with fp32 wholesale, not by rounding.
# Paddle Inference's oneDNN int8 takes 8-bit weights only, so 7-bit weights cannot avoid it.
INT8_CPU_FLAGS = ('avx512_vnni', 'avx_vnni', 'amx_int8')
# oneDNN's ONEDNN_MAX_CPU_ISA / DNNL_MAX_CPU_ISA values that cap it below those instructions.
ISAS_WITHOUT_VNNI = ('SSE41', 'AVX', 'AVX2', 'AVX512_CORE', 'AVX512_MIC', 'AVX512_MIC_4OPS')
UNSAFE_INT8_VAR = 'PADDLE_PSP_UNSAFE_INT8'


def int8_refusal(cpuinfo=None, environ=None):
    """Why oneDNN's int8 kernels would be wrong here, or None where they are right.

    Args:
        cpuinfo (str, optional): The text of /proc/cpuinfo. Default: read from the system.
        environ (dict, optional): The environment. Default: ``os.environ``.

    Returns:
        str: One line naming the missing CPU feature or the oneDNN cap, or None (int8 offered). Unknown CPU
        flags (no /proc/cpuinfo) offer it; ``PADDLE_PSP_UNSAFE_INT8=1`` offers it whatever the CPU.
    """
    environ = os.environ if environ is None else environ
    if environ.get(UNSAFE_INT8_VAR) == '1':
        return None
    for name in ('ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA'):
        if environ.get(name, '').upper() in ISAS_WITHOUT_VNNI:
            return (f'{name}={environ[name]} caps oneDNN below VNNI, where its int8 convolutions saturate and '
                    f'disagree with fp32; expected that variable unset, or --quantize none')
    cpuinfo = machine.read_cpuinfo() if cpuinfo is None else cpuinfo
    flags = machine.cpu_flags(cpuinfo)
    if flags and not flags & set(INT8_CPU_FLAGS):
        return (f'this CPU ({machine.cpu_name(cpuinfo) or "unknown"}) has no VNNI (none of the CPU flags '
                f'{", ".join(INT8_CPU_FLAGS)}): oneDNN\'s int8 convolutions saturate there and disagree with '
                f'fp32; expected --quantize none ({UNSAFE_INT8_VAR}=1 runs int8 anyway)')
    return None


def check_quantize(quantize, calib_images, fast=True, runs=True):
    """Whether ``--quantize`` / ``--calib_images`` ask for int8 (False: fp32).

    Args:
        quantize (str): 'none' or 'int8'.
        calib_images (int): Calibration images.
        fast (bool, optional): Whether the forward is the fast CPU path (false: ``--dygraph``). Default: True.
        runs (bool, optional): Whether int8 runs here (val, predict, benchmark); false for ``export``, which
            only writes the model for another machine. Default: True.

    Raises:
        UserError: An unknown ``quantize``, ``calib_images`` < 1, 'int8' off the fast CPU path, or 'int8' to
            run on a CPU where it is wrong (:func:`int8_refusal`).
    """
    if quantize not in QUANTIZE_CHOICES:
        raise UserError(f'--quantize {quantize}: expected one of {", ".join(QUANTIZE_CHOICES)}')
    if quantize != 'none' and not fast:
        raise UserError(f'--quantize {quantize}: runs on the fast CPU path; expected it without --dygraph')
    if calib_images < 1:
        raise UserError(f'--calib_images {calib_images}: expected a positive number of images')
    refusal = int8_refusal() if quantize == 'int8' and runs else None
    if refusal:
        raise UserError(f'--quantize int8: {refusal}')
    return quantize == 'int8'


def calibration_section(cfg):
    """The config's train_dataset section with the val_dataset's transforms (deterministic, whole images: the
    training images as inference sees them), from which the calibration images come.

    Raises:
        UserError: The config has no train_dataset.
    """
    train = cfg.section('train_dataset')  # a UserError naming the config when it is missing
    return dict(train, transforms=cfg.dic.get('val_dataset', {}).get('transforms', train.get('transforms')))


def config_calibration(cfg, quantize, calib_images=DEFAULT_CALIB_IMAGES, runs=True):
    """The calibration batches ``--quantize`` / ``--calib_images`` ask for: None for 'none' (fp32), else
    the first ``calib_images`` images of the config's train_dataset, through the val_dataset's transforms.

    Raises:
        UserError: See :func:`check_quantize`; a config without train_dataset, or a bad one.
    """
    if not check_quantize(quantize, calib_images, runs=runs):
        return None
    return calibration_batches(cfg.build_dataset('train_dataset', calibration_section(cfg)), calib_images)


def calibration_recipe(cfg, calib_images):
    """What :func:`config_calibration` of ``calib_images`` images is made of, known without running the
    transforms or reading an image: the calibration algorithm, the count, the train_dataset section with the
    val transforms, and the paths of the image and label files of the first ``calib_images`` samples (see
    :func:`paddle_psp.inference.cache_key.recipe_key`, which identifies those files).

    Returns:
        dict: The facts, or None when the dataset cannot be listed (the full start reports why).
    """
    try:
        section = calibration_section(cfg)
        dataset = build_component(section, 'train_dataset', cfg.path)  # lists the files, reads none
        pairs = dataset.file_list[:calib_images]
    except Exception:  # noqa: BLE001 (any failure: no shortcut; config_calibration raises it properly)
        return None
    return {'algo': CALIBRATION_ALGO, 'fp32_max_stride': FP32_MAX_STRIDE, 'images': calib_images, 'dataset': section,
            'files': [path for pair in pairs for path in pair if path is not None]}


def calibration_batches(dataset, count):
    """The images of the first ``count`` samples of ``dataset``, each a 1 x C x H x W float32 array."""
    return [np.asarray(dataset[index]['img'], np.float32)[None] for index in range(min(count, len(dataset)))]


def fine_resolution_filters(program, max_stride=FP32_MAX_STRIDE):
    """The filter names of the convolutions of ``program`` whose output is at most ``max_stride`` times coarser
    than the fed image.

    Each variable's stride (how many times coarser than the image it is) follows the ops in program order: a
    convolution or pooling multiplies its input's stride by its own, any other op passes on the largest stride
    of its inputs, and adaptive or global pooling (whose output size does not follow its input's) gives no
    stride, so nothing after it counts as fine.

    Args:
        program (paddle.static.Program): An exported inference program (old IR).
        max_stride (int, optional): The coarsest output that counts as fine. Default: FP32_MAX_STRIDE.

    Returns:
        list: Filter (weight) names, in program order.
    """
    block = program.global_block()
    stride = {op.output('Out')[0]: 1 for op in block.ops if op.type == 'feed'}
    fine = []
    for op in block.ops:
        known = [stride[name] for slot in op.input_names for name in op.input(slot) if name in stride]
        value = max(known) if known else None
        if value is not None and op.type in ('conv2d', 'depthwise_conv2d', 'pool2d'):
            pooled_to_size = op.type == 'pool2d' and (op.attr('adaptive') or op.attr('global_pooling'))
            value = None if pooled_to_size else value * max(op.attr('strides'))
            if op.type != 'pool2d' and value <= max_stride:
                fine.append(op.input('Filter')[0])
        for slot in op.output_names:
            for name in op.output(slot):
                if value is not None:
                    stride[name] = value
    return fine


def quantize_model(fp32_dir, save_dir, files, batches, algo=CALIBRATION_ALGO):
    """Write the int8 version of the exported model in ``fp32_dir`` to ``save_dir``.

    The convolutions of :func:`fine_resolution_filters` keep fp32 weights and inputs.

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
            with open(os.path.join(fp32_dir, files[0]), 'rb') as file:  # the program only: PTQ loads the weights
                program = paddle.static.Program.parse_from_string(file.read())
            ptq = PostTrainingQuantization(
                paddle.static.Executor(paddle.CPUPlace()), fp32_dir, scope=scope, model_filename=files[0],
                params_filename=files[1], data_loader=lambda: ({'x': batch} for batch in batches),
                batch_nums=len(batches), algo=algo, skip_tensor_list=fine_resolution_filters(program))
            ptq.quantize()
            ptq.save_quantized_model(save_dir, model_filename=files[0])
        finally:
            paddle.disable_static()
