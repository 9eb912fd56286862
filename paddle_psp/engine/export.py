"""``paddleseg export``: a Paddle Inference model (``model.pdmodel`` + ``model.pdiparams``) and ``deploy.yaml``.

Paddle 3 saves the new-IR ``model.json`` by default, on which oneDNN fails (bilinear_interp); the old
``.pdmodel`` format runs with oneDNN (2-3x faster on CPU). It is written only when
``FLAGS_enable_pir_api=0`` is set before paddle is imported (``paddle.set_flags`` at run time still gives
``model.json``), so the export runs in a child Python process with that variable unless the current
process already has it.

``deploy.yaml`` has PaddleSeg's layout: ``Deploy: {model, params, transforms, input_shape, output_op,
output_dtype}``; the transforms are the config's val transforms. :func:`inference_forward` turns an
exported folder into a ``forward(batch) -> logits`` callable for :mod:`paddle_psp.engine.infer`.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import paddle
import paddle.nn.functional as F
import yaml

from paddle_psp.core.atomic import write_text
from paddle_psp.config import add_config_arguments, load_config
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.weights.state_dict import load_for_eval

OUTPUT_OPS = ('argmax', 'softmax', 'none')
MODEL_FILES = ('model.pdmodel', 'model.pdiparams')
CHILD_FLAG = '--in_this_process'
ERROR_PREFIX = 'paddle_psp.export.UserError: '


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


def pir_enabled():
    """Whether paddle saves the new-IR format in this process."""
    return bool(paddle.get_flags(['FLAGS_enable_pir_api'])['FLAGS_enable_pir_api'])


def export(config, model_path, save_dir, input_shape=None, output_op='argmax', opts=None):
    """Export the config's model with checkpoint ``model_path`` to ``save_dir``.

    Args:
        config (str): YAML config path.
        model_path (str): Checkpoint (file, folder, URL or zoo name).
        save_dir (str): Output folder; gets model.pdmodel, model.pdiparams and deploy.yaml.
        input_shape (list, optional): [N, 3, H, W], -1 / None for dynamic. Default: all dynamic but C.
        output_op (str, optional): 'argmax', 'softmax' or 'none'. Default: 'argmax'.
        opts (list[str], optional): Config overrides. Default: None.

    Returns:
        str: Path of the written ``deploy.yaml``.

    Raises:
        UserError: Bad arguments, config or checkpoint.
    """
    shape = check_input_shape(input_shape)
    if output_op not in OUTPUT_OPS:
        raise UserError(f'--output_op {output_op}: expected one of {", ".join(OUTPUT_OPS)}')
    cfg = load_config(config, opts=opts)
    transforms = _plain(cfg.section('val_dataset').get('transforms', []))
    if pir_enabled():
        _export_in_child(config, model_path, save_dir, shape, output_op, opts)
    else:
        save_static_model(load_for_eval(cfg.model, model_path), save_dir, shape, output_op)
    deploy = {'Deploy': {'model': MODEL_FILES[0], 'params': MODEL_FILES[1], 'transforms': transforms,
                         'input_shape': shape, 'output_op': output_op,
                         'output_dtype': 'int32' if output_op == 'argmax' else 'float32'}}
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


def save_static_model(model, save_dir, shape, output_op):
    """Trace ``model`` (+ output op) and save it as ``save_dir/model.pdmodel`` / ``.pdiparams``.

    Needs ``FLAGS_enable_pir_api=0`` in this process. Files are written to a temporary folder first and
    moved into place, so ``save_dir`` never holds half an export.
    """
    layer = OutputOp(model, output_op)
    layer.eval()
    static = paddle.jit.to_static(layer, input_spec=[paddle.static.InputSpec(shape, 'float32', 'x')],
                                  full_graph=True)
    os.makedirs(save_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=save_dir, prefix='.export.') as tmp:
        paddle.jit.save(static, os.path.join(tmp, 'model'))
        missing = [name for name in MODEL_FILES if not os.path.isfile(os.path.join(tmp, name))]
        if missing:
            raise RuntimeError(f'paddle.jit.save wrote {sorted(os.listdir(tmp))}, not {", ".join(missing)}; '
                               'is FLAGS_enable_pir_api=0 set before paddle is imported?')
        for name in MODEL_FILES:
            shutil.move(os.path.join(tmp, name), os.path.join(save_dir, name))


def _export_in_child(config, model_path, save_dir, shape, output_op, opts):
    """Run :func:`save_static_model` in a child Python with ``FLAGS_enable_pir_api=0``."""
    command = [sys.executable, '-m', 'paddle_psp.engine.export', CHILD_FLAG, '--config', config,
               '--model_path', os.fspath(model_path), '--save_dir', save_dir, '--output_op', output_op,
               '--input_shape', *[str(-1 if v is None else v) for v in shape]]
    if opts:
        command += ['--opts', *opts]
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    python_path = os.pathsep.join(p for p in (package_parent, os.environ.get('PYTHONPATH')) if p)
    env = dict(os.environ, FLAGS_enable_pir_api='0', PYTHONPATH=python_path)
    result = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
    if result.returncode == 0:
        return
    errors = [line[len(ERROR_PREFIX):] for line in result.stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    if errors:
        raise UserError(errors[-1])
    raise RuntimeError(f'export process failed (exit {result.returncode}):\n{result.stderr[-4000:]}')


def _child_main(args):
    """The child process: load, trace and save the model; UserErrors go to stderr with a marker."""
    try:
        cfg = load_config(args.config, opts=args.opts)
        model = load_for_eval(cfg.model, args.model_path)
        save_static_model(model, args.save_dir, check_input_shape(args.input_shape), args.output_op)
    except UserError as err:
        print(ERROR_PREFIX + str(err), file=sys.stderr)
        return 2
    return 0


# Ops that run on oneDNN: every op of the exported models except pool2d. oneDNN's adaptive pool2d keeps the
# kernel of the first input size for later, larger inputs (5 % of pixels changed class after a 96x192 then a
# 128x256 input) and fails on maps smaller than the bin; Paddle's own kernel is exact, and no slower
# overall (PSPNet R50 512x512: 1.84 s either way).
ONEDNN_OPS = {'conv2d', 'fused_conv2d', 'batch_norm', 'relu', 'elementwise_add', 'concat', 'matmul', 'matmul_v2',
              'fc', 'bilinear_interp_v2', 'scale', 'softmax', 'transpose2', 'reshape2', 'slice', 'fill_constant',
              'eye', 'shape', 'cast', 'dropout', 'top_k_v2', 'arg_max'}
# oneDNN keeps primitives and reordered weights per input shape: ~250 MB per shape for PSPNet R50, without
# limit by default (12 image sizes: 3.9 GB). 4 covers 3-scale TTA; a shape not cached costs ~30 % of a forward.
ONEDNN_SHAPE_CACHE = 4


def inference_forward(model_dir, use_mkldnn=True, cpu_threads=None, shape_cache=ONEDNN_SHAPE_CACHE):
    """A ``forward(batch) -> np.ndarray`` running an exported model with Paddle Inference on CPU.

    Args:
        model_dir (str): Folder with model.pdmodel and model.pdiparams.
        use_mkldnn (bool, optional): Use oneDNN kernels (all ops but pool2d, see ``ONEDNN_OPS``). Default: True.
        cpu_threads (int, optional): Math library threads. Default: Paddle's default.
        shape_cache (int, optional): Input shapes whose oneDNN primitives stay cached. Default:
            ``ONEDNN_SHAPE_CACHE``.
    """
    from paddle import inference
    paths = [os.path.join(model_dir, name) for name in MODEL_FILES]
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f'{path}: missing; expected a folder written by paddleseg export')
    config = inference.Config(*paths)
    config.disable_gpu()
    config.disable_glog_info()
    if use_mkldnn:
        config.enable_onednn()
        config.set_onednn_op(ONEDNN_OPS)
        config.set_onednn_cache_capacity(shape_cache)
    else:
        config.disable_onednn()
    config.enable_memory_optim()  # reuses intermediate buffers: -0.5 GiB peak RSS for PSPNet, same speed
    if cpu_threads:
        config.set_cpu_math_library_num_threads(int(cpu_threads))
    predictor = inference.create_predictor(config)
    source = predictor.get_input_handle(predictor.get_input_names()[0])
    target = predictor.get_output_handle(predictor.get_output_names()[0])

    def forward(batch):
        batch = np.ascontiguousarray(batch, np.float32)
        source.reshape(batch.shape)
        source.copy_from_cpu(batch)
        predictor.run()
        return target.copy_to_cpu()
    forward.kind = 'paddle-inference'
    return forward


def build_parser():
    """The ``paddleseg export`` argument parser."""
    parser = argparse.ArgumentParser(
        prog='paddleseg export', description='Export a Paddle Inference model (model.pdmodel, model.pdiparams) '
        'and deploy.yaml for the model of a config and a checkpoint.')
    add_config_arguments(parser, 'YAML config (model and val_dataset transforms)')
    parser.add_argument('--save_dir', default='./output/inference_model',
                        help='output folder (default ./output/inference_model)')
    parser.add_argument('--input_shape', nargs=4, type=int, default=None, metavar=('N', 'C', 'H', 'W'),
                        help='fixed input shape, -1 for any size (default -1 3 -1 -1)')
    parser.add_argument('--output_op', choices=OUTPUT_OPS, default='argmax',
                        help='appended to the logits: argmax (int32 class ids, default), softmax or none')
    parser.add_argument('--opts', nargs='+', default=[], metavar='KEY=VALUE', help='config overrides')
    parser.add_argument(CHILD_FLAG, action='store_true', help=argparse.SUPPRESS)
    return parser


def main(argv):
    """``paddleseg export``: returns 0 after writing the model and deploy.yaml."""
    args = build_parser().parse_args(argv)
    if getattr(args, CHILD_FLAG.lstrip('-')):
        return _child_main(args)
    export(args.config, args.model_path, args.save_dir, args.input_shape, args.output_op, args.opts)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
