"""Reading a large checkpoint: the safe reader (``paddle_psp.weights.pdparams.load_file``) against ``paddle.load``.

Usage (from the repository root)::

    python benchmarks/experiments/checkpoint_read.py                      # 270 MB, 5 repeats of each
    python benchmarks/experiments/checkpoint_read.py --mb 500 --repeats 9 --work /tmp/ckpt

Written once under ``--work`` with ``paddle.save``: the state dict of a PSPNet ResNet50-vd OS8 (19 classes,
the zoo's model) with seeded random values, its tensors repeated under further keys until the file reaches
``--mb`` megabytes (a model's state dict is a dict of named float32 tensors, whatever their count). Then the
file is read ``--repeats`` times by each reader, alternating (``paddle.load``, safe, ``paddle.load``, ...) after
one unmeasured read of each (so both find the file in the page cache), with ``return_numpy`` False (as
``--resume_model`` reads) and True (as ``--model_path`` reads).

Printed: the CPU and load average, the file size, each reader's median seconds per setting, and the ratio
safe / ``paddle.load``.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)


def build_state(megabytes, seed=0):
    """``{key: float32 array}``: PSPNet R50 OS8's state dict layout, repeated until ``megabytes`` MB."""
    import paddle_psp  # noqa: F401  (registers the models)
    from paddle_psp.models.pspnet import ZooPSPNet
    from paddle_psp.models.resnet_vd import ZooResNet50_vd
    shapes = {k: v.shape for k, v in ZooPSPNet(19, ZooResNet50_vd(output_stride=8)).state_dict().items()}
    rng, state, total, copy = np.random.default_rng(seed), {}, 0, 0
    while total < megabytes * 1e6:
        for key, shape in shapes.items():
            name = key if copy == 0 else f'copy{copy}.{key}'
            state[name] = rng.standard_normal(shape, dtype=np.float32) if shape else np.float32(rng.random())
            total += state[name].nbytes
            if total >= megabytes * 1e6:
                break
        copy += 1
    return state


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def compare(path, repeats, return_numpy):
    """Median seconds of ``(paddle.load, load_file)`` over ``repeats`` alternating reads of ``path``."""
    import paddle
    from paddle_psp.weights.pdparams import load_file
    readers = [lambda: paddle.load(path, return_numpy=return_numpy),
               lambda: load_file(path, return_numpy=return_numpy)]
    for reader in readers:
        reader()  # unmeasured: the page cache and lazy imports
    times = [[], []]
    for _ in range(repeats):
        for index, reader in enumerate(readers):
            times[index].append(timed(reader))
    return [statistics.median(t) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--mb', type=float, default=270, help='checkpoint size in MB (default: 270)')
    parser.add_argument('--repeats', type=int, default=5, help='measured reads per reader (default: 5)')
    parser.add_argument('--work', default=None, help='folder for the checkpoint (default: a temporary one)')
    args = parser.parse_args(argv)
    import paddle
    from paddle_psp.core import machine
    work = args.work or tempfile.mkdtemp(prefix='checkpoint_read_')
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, f'pspnet_{args.mb:g}mb.pdparams')
    if not os.path.isfile(path):
        paddle.save({k: paddle.to_tensor(v) for k, v in build_state(args.mb).items()}, path)
    print(f'CPU: {machine.cpu_name()}, {machine.usable_cpus()} usable CPUs; load average before: '
          f'{machine.load_average_text()}; paddle {paddle.__version__}, numpy {np.__version__}')
    print(f'{path}: {os.path.getsize(path) / 1e6:.1f} MB, {args.repeats} reads of each reader, medians:')
    for return_numpy in (False, True):
        base, safe = compare(path, args.repeats, return_numpy)
        print(f'  return_numpy={return_numpy!s:5}  paddle.load {base:.3f} s  safe load_file {safe:.3f} s  '
              f'ratio {safe / base:.2f}x')
    print(f'load average after: {machine.load_average_text()}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
