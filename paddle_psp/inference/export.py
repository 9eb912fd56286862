"""``paddleseg export``: a Paddle Inference model (``model.pdmodel`` + ``model.pdiparams``) and ``deploy.yaml``.

:func:`save_static_model` is the one way a model is exported, by this verb and by the fast path's cache
(:mod:`paddle_psp.inference.entry`). Paddle 3 saves the new-IR ``model.json`` by default, on which
oneDNN fails (bilinear_interp); the old ``.pdmodel`` format runs with oneDNN. The trace therefore runs
under ``paddle.pir_utils.DygraphOldIrGuard``, which switches program construction to the old IR for its
duration and back, in this process (setting ``FLAGS_enable_pir_api`` with ``paddle.set_flags`` alone
still gives ``model.json``).

``deploy.yaml`` has PaddleSeg's layout: ``Deploy: {model, params, transforms, input_shape, output_op,
output_dtype}``; the transforms are the config's val transforms.
"""
import os
import shutil
import tempfile

import paddle
import paddle.nn.functional as F
import yaml

from paddle_psp.core.atomic import write_text
from paddle_psp.config import load_config
from paddle_psp.core.device import use_device
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.core.outputs import require_dir, require_file
from paddle_psp.inference import quantize as quantization
from paddle_psp.weights.state_dict import load_for_eval
from paddle_psp.inference.flags import OUTPUT_OPS, export_parser

MODEL_FILES = ('model.pdmodel', 'model.pdiparams')


class OutputOp(paddle.nn.Layer):
    """The model's main logits followed by ``argmax`` (int32 N x H x W), ``softmax`` or nothing ('none').

    The argmax is a top-1 ``topk``: Paddle 3.3's ``paddle.argmax`` cannot be traced into the old
    (``.pdmodel``) program format.
    """

    def __init__(self, model, output_op):
        super().__init__()
        self.model = model
        self.output_op = output_op

    def forward(self, x):
        logits = self.model(x)[0]
        if self.output_op == 'argmax':
            return paddle.cast(paddle.topk(logits, 1, axis=1)[1].squeeze(1), 'int32')
        if self.output_op == 'softmax':
            return F.softmax(logits, axis=1)
        return logits


def check_input_shape(values):
    """``--input_shape`` as [N, 3, H, W] with -1 (or None) for a dynamic size; a UserError otherwise."""
    if values is None:
        return [None, 3, None, None]
    shape = [None if v in (None, -1) else v for v in values]
    if len(shape) != 4 or shape[1] != 3 or any(v is not None and (not isinstance(v, int) or v <= 0)
                                               for v in shape):
        raise UserError(f'--input_shape {" ".join(map(str, values))}: expected N 3 H W, each a positive '
                        'integer or -1 for any size, e.g. 1 3 512 1024')
    return shape


def export(config, model_path, save_dir, input_shape=None, output_op='argmax', opts=None, quantize='none',
           calib_images=quantization.DEFAULT_CALIB_IMAGES):
    """Export the config's model with the weights file ``model_path`` to ``save_dir``.

    Args:
        config (str): YAML config path.
        model_path (str): The weights file (a path, a folder holding one, a URL or a zoo name).
        save_dir (str): Output folder; gets model.pdmodel, model.pdiparams and deploy.yaml.
        input_shape (list, optional): [N, 3, H, W], -1 / None for dynamic. Default: all dynamic but C.
        output_op (str, optional): 'argmax', 'softmax' or 'none'. Default: 'argmax'.
        opts (list[str], optional): Config overrides. Default: None.
        quantize (str, optional): 'int8': post-training quantization calibrated on the first
            ``calib_images`` images of the config's train_dataset (see :mod:`.quantize`); deploy.yaml then
            says ``quantize: int8``. Default: 'none' (fp32).
        calib_images (int, optional): Calibration images for 'int8'. Default: 32.

    Returns:
        str: Path of the written ``deploy.yaml``.

    Raises:
        UserError: Bad arguments, config or weights file.
    """
    shape = check_input_shape(input_shape)
    if output_op not in OUTPUT_OPS:
        raise UserError(f'--output_op {output_op}: expected one of {", ".join(OUTPUT_OPS)}')
    require_dir(save_dir, 'a folder for the exported model', '--save_dir')
    for name in MODEL_FILES + ('deploy.yaml',):
        require_file(os.path.join(save_dir, name), 'the exported model file')
    cfg = load_config(config, opts=opts)
    transforms = _plain(cfg.section('val_dataset').get('transforms', []))
    calibration = quantization.config_calibration(cfg, quantize, calib_images, runs=False)
    model = load_for_eval(cfg.build_model(pretrained=False), model_path)
    save_static_model(model, save_dir, shape, output_op, calibration)
    deploy = {'Deploy': {'model': MODEL_FILES[0], 'params': MODEL_FILES[1], 'transforms': transforms,
                         'input_shape': shape, 'output_op': output_op,
                         'output_dtype': 'int32' if output_op == 'argmax' else 'float32'}}
    if quantize != 'none':
        deploy['Deploy']['quantize'] = quantize
    path = os.path.join(save_dir, 'deploy.yaml')
    write_text(path, yaml.safe_dump(deploy, sort_keys=False))
    logger.info(f'[EXPORT] {os.path.join(save_dir, MODEL_FILES[0])}, {MODEL_FILES[1]} and deploy.yaml written')
    return path


def _plain(value):
    """``value`` with tuples turned into lists (recursively), so that safe YAML can hold it."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def save_static_model(model, save_dir, shape, output_op, calibration=None):
    """Trace ``model`` (+ output op) and save it as ``save_dir/model.pdmodel`` / ``.pdiparams``.

    Traced under the old IR (see the module docstring). Files are written to a temporary folder first
    and moved into place, so ``save_dir`` never holds half an export.

    Args:
        model (paddle.nn.Layer): A segmentation model whose output is ``[logits, ...]``.
        save_dir (str): Output folder.
        shape (list): Input shape [N, 3, H, W], None for a dynamic size (not modified; InputSpec would).
        output_op (str): 'argmax', 'softmax' or 'none' (see :class:`OutputOp`).
        calibration (list, optional): Calibration batches: when given, the saved model is the int8 one
            (:func:`.quantize.quantize_model`). Default: None (fp32).
    """
    layer = OutputOp(model, output_op)
    layer.eval()
    os.makedirs(save_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=save_dir, prefix='.export.') as tmp:
        with paddle.pir_utils.DygraphOldIrGuard():
            static = paddle.jit.to_static(layer, input_spec=[paddle.static.InputSpec(list(shape), 'float32', 'x')],
                                          full_graph=True)
            paddle.jit.save(static, os.path.join(tmp, 'model'))
        if calibration is not None:
            quantization.quantize_model(tmp, tmp, MODEL_FILES, calibration)
        missing = [name for name in MODEL_FILES if not os.path.isfile(os.path.join(tmp, name))]
        if missing:
            raise RuntimeError(f'paddle.jit.save wrote {sorted(os.listdir(tmp))}, not {", ".join(missing)}')
        for name in MODEL_FILES:
            shutil.move(os.path.join(tmp, name), os.path.join(save_dir, name))


def main(argv):
    """``paddleseg export``: returns 0 after writing the model and deploy.yaml."""
    args = export_parser().parse_args(argv)
    use_device(args.device)
    export(args.config, args.model_path, args.save_dir, args.input_shape, args.output_op, args.opts, args.quantize,
           args.calib_images)
    return 0
