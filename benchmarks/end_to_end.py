"""End to end: ``paddleseg predict`` against PaddleSeg's own predict, each run a fresh process from start to exit.

Usage (from the repository root; a few minutes at the defaults, most of them PaddleSeg's forward passes)::

    python benchmarks/end_to_end.py                       # PSPNet R50 OS8, 10 images of 512x512
    python benchmarks/end_to_end.py --model deeplabv3 --repeats 2 --work /tmp/e2e

Prepared under ``--work`` (kept between runs when given): the model config (``ZooPSPNet`` or
``ZooDeepLabV3`` on ``ZooResNet50_vd`` OS8, 19 classes, the zoo's hyperparameters), seeded random weights
(:func:`speed_paths.make_weights`: the same state-dict keys as PaddleSeg's model, about 270 MB for PSPNet)
and ``--images`` synthetic street scenes (:func:`paddle_psp.data.synthetic.make_cityscapes_like`).

Measured, for 1 and ``--images`` images:

- ``PaddleSeg``: one process that does what PaddleSeg's ``tools/predict.py`` does, as its users run it (no
  tuning variables, PaddleSeg imported as it imports itself): import Paddle and PaddleSeg, build
  ``paddleseg.models.PSPNet`` / ``DeepLabV3`` on ``paddleseg.models.backbones.ResNet50_vd`` (the arguments of
  :func:`speed_paths.build_model`), then ``paddleseg.core.predict``: load the weights, and per image read it
  (cv2), normalize it (the val transforms), forward in dygraph under ``paddle.no_grad``, argmax, write the
  overlay and the pseudo-colour PNG. PaddleSeg has no cache: one kind of run.
- ``ours, cold``: ``paddleseg predict --profile`` with the export cache folder removed first.
- ``ours, warm``: the same again with the cache filled (``--repeats`` runs).

Printed: the header of ``speed.py`` (date, CPU, MKL code path), the load average before and after, each
run's wall time (process start to exit, measured here), its time to the first image (process start to the
start of the first forward: from the ``--profile`` breakdown, or a forward pre-hook in PaddleSeg's
process) and its breakdown, then the ratios ours / PaddleSeg of the wall times, and how many pixels of
the two predictions agree. It also times ``paddleseg --version`` and ``paddleseg val --help``. Absolute
times on a shared machine are noisy: compare the ratios, and the load average printed beside them.

This module imports only the standard library at the top: it is also PaddleSeg's measured process
(``--paddleseg_child``), which must import nothing of paddle-psp.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {  # what speed_paths.build_model builds, as config sections
    'pspnet': {'type': 'ZooPSPNet', 'num_classes': 19, 'pretrained': None,
               'backbone': {'type': 'ZooResNet50_vd', 'output_stride': 8}},
    'deeplabv3': {'type': 'ZooDeepLabV3', 'num_classes': 19, 'pretrained': None, 'aspp_ratios': [1, 12, 24, 36],
                  'backbone': {'type': 'ZooResNet50_vd', 'output_stride': 8, 'multi_grid': [1, 2, 4]}},
}


# ---------------------------------------------------------------------------------------- PaddleSeg's run
def paddleseg_child(spec):
    """PaddleSeg's predict in this process; prints ``RESULT {json}`` with wall-clock stamps (time.time())."""
    stamps = {}
    import paddle  # noqa: F401  (timed: the import is part of the work)
    import paddleseg
    from paddleseg.core.predict import predict
    from paddleseg.transforms import Compose, Normalize
    from speed_paths import build_model
    stamps['imported'] = time.time()
    model = build_model(spec['model'], paddleseg=True)

    def first_forward(layer, inputs):  # returns None: a pre-hook's return value would replace the inputs
        stamps.setdefault('first_forward', time.time())
    model.register_forward_pre_hook(first_forward)
    stamps['built'] = time.time()
    predict(model, spec['weights'], Compose([Normalize()]), spec['images'], save_dir=spec['save_dir'])
    stamps['done'] = time.time()
    print('RESULT ' + json.dumps(dict(stamps, paddleseg=paddleseg.__version__)), flush=True)


# ------------------------------------------------------------------------------------------- preparation
def prepare(work, model, size, count):
    """Config, weights and images under ``work`` (reused when there); returns (config, weights, images)."""
    import yaml
    from paddle_psp.data.synthetic import make_cityscapes_like  # lazy: see the module docstring
    from speed_paths import make_weights

    height, width = size
    root = make_cityscapes_like(os.path.join(work, f'data_{width}x{height}_{count}'), num_train=1,
                                num_val=count, size=(width, height), seed=0)
    config = os.path.join(work, f'{model}.yml')
    with open(config, 'w', encoding='utf-8') as handle:
        yaml.safe_dump({'batch_size': 1, 'iters': 1, 'model': MODELS[model],
                        'val_dataset': {'type': 'Cityscapes', 'dataset_root': root, 'mode': 'val',
                                        'transforms': [{'type': 'Normalize'}]}}, handle)
    weights = os.path.join(work, f'{model}.pdparams')
    if not os.path.exists(weights):
        print(f'preparing {model} random weights ...', flush=True)
        make_weights(model, weights + '.partial')
        os.replace(weights + '.partial', weights)
    images = sorted(glob.glob(os.path.join(root, 'leftImg8bit', 'val', '*', '*.png')))
    return config, weights, images


# ----------------------------------------------------------------------------------------------- running
def run(command, env):
    """(wall seconds, spawn time, stdout, stderr) of one process; exits with its stderr when it fails."""
    spawned = time.time()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f'{" ".join(command)} failed:\n{done.stderr[-3000:]}')
    return seconds, spawned, done.stdout, done.stderr


def ours(argv, env):
    """One ``paddleseg`` process: (wall seconds, seconds to the first forward or None, breakdown)."""
    seconds, _, _, stderr = run([sys.executable, '-m', 'paddle_psp_cli', *argv], env)
    found = re.search(r'start-up: (.*)', stderr)
    if not found:
        return seconds, None, ''
    stages = re.findall(r'([a-z][a-z ]*?) (\d+\.\d+) s', found.group(1))
    names = [name for name, _ in stages]
    first = (sum(float(value) for _, value in stages[:names.index('first forward')])
             if 'first forward' in names else None)
    rest = seconds - float(stages[-1][1])  # --profile's total ends with the first forward
    return seconds, first, f'{found.group(1)}; then the other images, the outputs and exit {rest:.2f} s'


def theirs(spec, env):
    """PaddleSeg's process: (wall seconds, seconds to the first forward, breakdown)."""
    seconds, spawned, stdout, _ = run([sys.executable, os.path.abspath(__file__), '--paddleseg_child',
                                       json.dumps(spec)], env)
    stamps = json.loads(re.search(r'^RESULT (.*)$', stdout, re.M).group(1))
    first = stamps['first_forward'] - spawned
    count = len(spec['images'])
    parts = [('imports', stamps['imported'] - spawned), ('model build', stamps['built'] - stamps['imported']),
             ('checkpoint and first read', stamps['first_forward'] - stamps['built']),
             (f'{count} image(s)', stamps['done'] - stamps['first_forward']), ('total', stamps['done'] - spawned)]
    breakdown = (', '.join(f'{name} {value:.2f} s' for name, value in parts)
                 + f'; then exit {seconds - parts[-1][1]:.2f} s (PaddleSeg {stamps["paddleseg"]})')
    return seconds, first, breakdown


def agreement(ours_dir, theirs_dir):
    """Fraction of pixels whose class is the same in both folders' pseudo-colour PNGs (matched by name)."""
    import numpy as np
    from PIL import Image
    same = total = 0
    for path in glob.glob(os.path.join(theirs_dir, 'pseudo_color_prediction', '**', '*.png'), recursive=True):
        mine = glob.glob(os.path.join(ours_dir, 'pseudo_color_prediction', '**', os.path.basename(path)),
                         recursive=True)
        a, b = np.asarray(Image.open(path)), np.asarray(Image.open(mine[0]))
        same, total = same + int((a == b).sum()), total + a.size
    return same / total if total else float('nan')


def row(label, seconds, first, breakdown):
    first_text = f'{first:6.2f} s' if first is not None else '       -'
    print(f'{label:<34} {seconds:7.2f} s  {first_text}  {breakdown}', flush=True)


def measure(args, work):
    """Every run, printed as it ends; returns {(who, count, cache): [(wall, first image)]}, the output folders
    {(who, count): folder} and the image counts."""
    import speed  # imported by main() already
    from paddle_psp.core import machine, runtime

    default = speed.default_env()
    user = {key: value for key, value in default.items() if key != runtime.NO_TUNING_VAR}  # tunes itself
    for env in (default, user):
        env['PYTHONPATH'] = os.pathsep.join([HERE] + sys.path)
        env['PADDLE_PSP_CACHE'] = os.path.join(work, 'cache')
    print(speed.header_line({'default': default, 'tuned': speed.tuned_env()}, 'end_to_end.py'))
    config, weights, images = prepare(work, args.model, args.size, args.images)
    print(f'{machine.usable_cpus()} usable CPUs; load average before: {machine.load_average_text()}')
    print(f'{"run":<34} {"wall":>9}  {"1st image":>8}  breakdown (1st image: process start to the first forward)')
    for label, argv in (('paddleseg --version', ['--version']), ('paddleseg val --help', ['val', '--help'])):
        row(label, *ours(argv, user))
    walls, outputs = {}, {}
    counts = sorted({1, args.images})
    for count in counts:
        listing = os.path.join(work, f'images{count}.txt')
        with open(listing, 'w', encoding='utf-8') as handle:
            handle.write(''.join(path + '\n' for path in images[:count]))
        plan = [('PaddleSeg', 'none')] * args.repeats + [('ours', 'cold')] + [('ours', 'warm')] * args.repeats
        for who, cache in plan:
            save_dir = outputs[who, count] = os.path.join(work, 'out', f'{who}_{count}')
            shutil.rmtree(save_dir, ignore_errors=True)
            if who == 'PaddleSeg':
                spec = {'model': args.model, 'weights': weights, 'images': images[:count], 'save_dir': save_dir}
                result = theirs(spec, default)
            else:
                if cache == 'cold':
                    shutil.rmtree(user['PADDLE_PSP_CACHE'], ignore_errors=True)
                result = ours(['predict', '--config', config, '--model_path', weights, '--image_path', listing,
                               '--save_dir', save_dir, '--profile'], user)
            walls.setdefault((who, count, cache), []).append(result[:2])
            label = f'{who}, {count} image(s)' + ('' if cache == 'none' else f', {cache} cache')
            row(label, *result)
    return walls, outputs, counts


def report(walls, outputs, counts):
    """The ratio lines: medians of the wall times and of the times to the first image."""
    import statistics
    from paddle_psp.core import machine  # imported by measure() already
    median = {key: statistics.median(wall for wall, _ in runs) for key, runs in walls.items()}
    first = {key: statistics.median(seconds for _, seconds in runs) for key, runs in walls.items()}
    print()
    for count in counts:
        reference = median['PaddleSeg', count, 'none']
        print(f'{count} image(s): wall ours / PaddleSeg = cold {median["ours", count, "cold"] / reference:.2f}x, '
              f'warm {median["ours", count, "warm"] / reference:.2f}x (PaddleSeg {reference:.2f} s); first image '
              f'after cold {first["ours", count, "cold"]:.2f} s, warm {first["ours", count, "warm"]:.2f} s, PaddleSeg '
              f'{first["PaddleSeg", count, "none"]:.2f} s; predictions agree on '
              f'{100 * agreement(outputs["ours", count], outputs["PaddleSeg", count]):.2f}% of pixels')
    print(f'load average after: {machine.load_average_text()}')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', default='512x512', help='image HEIGHTxWIDTH (512x512)')
    parser.add_argument('--images', type=int, default=10, help='images of the longer runs (10)')
    parser.add_argument('--model', choices=sorted(MODELS), default='pspnet', help='(pspnet)')
    parser.add_argument('--work', help='working folder, kept (default: a temporary one, removed)')
    parser.add_argument('--repeats', type=int, default=1, help='runs of each PaddleSeg and warm measurement (1)')
    parser.add_argument('--paddleseg_child', metavar='JSON', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.paddleseg_child:
        return paddleseg_child(json.loads(args.paddleseg_child))
    if args.images < 1 or args.repeats < 1:
        parser.error('--images and --repeats: expected at least 1')
    sys.path.insert(0, HERE)
    from paddle_psp_cli import quiet
    quiet.silence_known_warnings()
    import speed  # lazy: imports Paddle and paddle-psp, which PaddleSeg's process (above) must not
    try:
        args.size = speed.parse_size(args.size)
    except argparse.ArgumentTypeError as err:
        parser.error(f'--size {err}')
    work = args.work or tempfile.mkdtemp(prefix='paddle-psp-e2e-')
    try:
        report(*measure(args, work))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
