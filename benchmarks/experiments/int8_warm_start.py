"""Warm ``paddleseg predict --quantize int8``: this checkout against an earlier revision, each run a fresh process.

Usage (from the repository root of a git checkout; the first run quantizes the model once per revision)::

    python benchmarks/experiments/int8_warm_start.py --before main --repeats 5
    python benchmarks/experiments/int8_warm_start.py --before 0dc9252 --model deeplabv3 --calib_images 8 --work /tmp/w8

``--before REV``'s package (``paddle_psp/`` and ``paddle_psp_cli/`` as committed at REV) is unpacked under
``--work`` with ``git archive`` and run beside this checkout's (``after``): each with its own export cache
folder, filled by one cold run, then ``--repeats`` warm runs of each, interleaved (before, after, before, ...),
so that a change of load hits both alike. Prepared under ``--work`` (see :func:`end_to_end.prepare`): the
model config (``ZooPSPNet`` or ``ZooDeepLabV3`` R50 OS8, 19 classes) with a train_dataset of
``--calib_images`` synthetic scenes (the calibration images) and one val image predicted per run, and
seeded random weights.

Printed: the header of ``speed.py`` (date, CPU, MKL code path), the load average before and after, each
run's wall time (process start to exit) and time to the first image (process start to the start of the
first forward, from the ``--profile`` breakdown) with its breakdown, then the medians and the ratios
after / before, and how many pixels of the two revisions' predictions agree (each quantizes the model in its
own cold run, so a difference would come from the quantization, not from the warm start; on the 2-core Intel
Xeon, 2026-11-29, they agreed on 100.00 %, and quantizing one small PSPNet several times in one process gave
bit-identical fake-quant outputs).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import yaml
from PIL import Image

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # benchmarks/, where speed.py is
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import end_to_end  # noqa: E402  (benchmarks/ beside this file)
import speed  # noqa: E402


def unpack(revision, folder):
    """The packages as committed at ``revision`` of this checkout, under ``folder`` (made afresh)."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    archive = subprocess.run(['git', '-C', REPO, 'archive', revision, 'paddle_psp', 'paddle_psp_cli'],
                             capture_output=True, check=True).stdout
    subprocess.run(['tar', '-x', '-C', folder], input=archive, check=True)
    return folder


def prepare(work, model, size, calib_images):
    """Config (with a train_dataset of ``calib_images`` scenes), weights and one val image under ``work``."""
    from paddle_psp.data.synthetic import make_cityscapes_like
    config, weights, images = end_to_end.prepare(work, model, size, 1)
    height, width = size
    root = make_cityscapes_like(os.path.join(work, f'calib_{width}x{height}_{calib_images}'),
                                num_train=calib_images, num_val=1, size=(width, height), seed=1)
    with open(config, encoding='utf-8') as handle:
        dic = yaml.safe_load(handle)
    dic['train_dataset'] = {'type': 'Cityscapes', 'dataset_root': root, 'mode': 'train',
                            'transforms': [{'type': 'Normalize'}]}
    int8_config = os.path.join(work, f'{model}_int8.yml')
    with open(int8_config, 'w', encoding='utf-8') as handle:
        yaml.safe_dump(dic, handle)
    return int8_config, weights, images[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--before', default='main', help='git revision to compare with (main)')
    parser.add_argument('--model', choices=sorted(end_to_end.MODELS), default='pspnet', help='(pspnet)')
    parser.add_argument('--size', default='512x512', help='image HEIGHTxWIDTH (512x512)')
    parser.add_argument('--calib_images', type=int, default=32, help='--calib_images of the runs (32)')
    parser.add_argument('--repeats', type=int, default=5, help='warm runs of each revision (5)')
    parser.add_argument('--work', help='working folder, kept (default: a temporary one, removed)')
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.calib_images < 1:
        parser.error('--repeats and --calib_images: expected at least 1')
    if args.work:
        os.makedirs(args.work, exist_ok=True)
        return measure(args, os.path.abspath(args.work))
    with tempfile.TemporaryDirectory(prefix='paddle-psp-int8-warm-') as work:
        return measure(args, work)


def measure(args, work):
    """Every run, printed as it ends, then the medians and ratios; returns 0."""
    from paddle_psp.core import machine, runtime
    os.chdir(work)  # `python -m` puts the working folder first on sys.path: not this checkout's packages
    sources = {'before': unpack(args.before, os.path.join(work, 'before_src')), 'after': REPO}
    default = speed.default_env()
    print(speed.header_line({'default': default, 'tuned': speed.tuned_env()}, 'int8_warm_start.py')
          + f'; before = {args.before}, after = this checkout')
    config, weights, image = prepare(work, args.model, speed.parse_size(args.size), args.calib_images)
    envs = {}
    for name, source in sources.items():
        env = {key: value for key, value in default.items() if key != runtime.NO_TUNING_VAR}
        env.update(PYTHONPATH=os.pathsep.join([source, HERE]), PADDLE_PSP_CACHE=os.path.join(work, f'cache_{name}'))
        shutil.rmtree(env['PADDLE_PSP_CACHE'], ignore_errors=True)
        envs[name] = env
    print(f'{machine.usable_cpus()} usable CPUs; load average before: {machine.load_average_text()}')
    print(f'{"run":<24} {"wall":>9}  {"1st image":>8}  breakdown (1st image: process start to the first forward)')
    runs = {name: [] for name in sources}
    plan = [(name, 'cold') for name in sources] + [(name, 'warm') for _ in range(args.repeats) for name in sources]
    for name, kind in plan:
        save_dir = os.path.join(work, 'out', name)
        shutil.rmtree(save_dir, ignore_errors=True)
        result = end_to_end.ours(['predict', '--config', config, '--model_path', weights, '--image_path', image,
                                  '--save_dir', save_dir, '--profile', '--quantize', 'int8', '--calib_images',
                                  str(args.calib_images)], envs[name])
        if kind == 'warm':
            runs[name].append(result[:2])
        end_to_end.row(f'{name}, {kind}', *result)
    median = {name: (statistics.median(w for w, _ in got), statistics.median(f for _, f in got))
              for name, got in runs.items()}
    pngs = [np.asarray(Image.open(os.path.join(work, 'out', name, 'pseudo_color_prediction',
                                               os.path.basename(image)))) for name in sources]
    print(f'\nwarm medians of {args.repeats}: first image before {median["before"][1]:.2f} s, after '
          f'{median["after"][1]:.2f} s, after / before {median["after"][1] / median["before"][1]:.2f}x; '
          f'wall before {median["before"][0]:.2f} s, after {median["after"][0]:.2f} s, after / before '
          f'{median["after"][0] / median["before"][0]:.2f}x; the two predictions agree on '
          f'{100 * np.mean(pngs[0] == pngs[1]):.2f}% of pixels (each revision quantized the model in its own '
          'cold run)')
    print(f'load average after: {machine.load_average_text()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
