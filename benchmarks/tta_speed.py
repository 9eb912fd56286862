"""Cost of test-time augmentation on the fast path: one ms+flip evaluation against 6 single forwards.

Usage (from the repository root; a few minutes on 2 cores; timings are only meaningful on an otherwise idle
machine, so the load average is printed beside each figure)::

    python benchmarks/tta_speed.py                                   # PSPNet R50 OS8, 1024x512, 3 images
    python benchmarks/tta_speed.py --scales 0.5 0.75 1.0 1.25 1.5 1.75 --images 3
    python benchmarks/tta_speed.py --slide 512 512 384 384           # also ms+flip with sliding windows

A full-size PSPNet ResNet50 OS8 (19 classes) gets seeded random weights
(:func:`paddle_psp.weights.state_dict.randomize`) and runs through
:func:`paddle_psp.inference.forward.model_forward` with a fresh export cache. For each random image, after
one warm-up image, it times one ms+flip inference (:func:`paddle_psp.inference.tta.infer_logits`: one
forward per scale, the flips batched) and six forwards of the image at its own size, and prints the median
over the images. A shape whose oneDNN primitives are re-created on every image shows up as a per-shape
forward time well above the warm one (``per shape`` lines). The export count checks that every shape runs
from the one exported model.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_psp.core import machine  # noqa: E402 (stdlib only; after the path)

NUM_CLASSES = 19


def load():
    """``'load '`` and the load averages."""
    return 'load ' + machine.load_average_text()


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


class ShapeTimes:
    """A forward that records the seconds of each call by input shape."""

    def __init__(self, forward):
        self.forward, self.times = forward, {}

    def __call__(self, batch):
        seconds, logits = timed(self.forward, batch)
        self.times.setdefault(tuple(batch.shape), []).append(seconds)
        return logits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--size', nargs=2, type=int, default=(1024, 512), metavar=('W', 'H'))
    parser.add_argument('--scales', nargs='+', type=float, default=(0.75, 1.0, 1.25))
    parser.add_argument('--images', type=int, default=3, help='timed images (after one warm-up image)')
    parser.add_argument('--slide', nargs=4, type=int, metavar=('CW', 'CH', 'SW', 'SH'),
                        help='also time ms+flip with sliding windows of CW x CH every SW x SH')
    parser.add_argument('--shape_cache', type=int, default=None,
                        help='oneDNN shape cache capacity (default: the fast path\'s)')
    args = parser.parse_args(argv)

    from paddle_psp.core import runtime
    runtime.apply_cpu_tuning()
    import paddle
    from paddle_psp.inference import entry, runner, tta
    from paddle_psp.models import ZooPSPNet, ZooResNet50_vd
    from paddle_psp.weights.state_dict import randomize

    paddle.seed(0)
    model = randomize(ZooPSPNet(NUM_CLASSES, ZooResNet50_vd(output_stride=8)), 0, size=128)
    width, height = args.size
    print(f'PSPNet R50 OS8, {width}x{height}, scales {args.scales} + flip, {runtime.physical_cores()} threads, '
          f'{load()}', flush=True)
    with tempfile.TemporaryDirectory() as cache_dir:
        seconds, model_dir = timed(entry.exported_model_dir, model, cache_dir)
        print(f'export: {seconds:.1f} s ({load()})', flush=True)
        kwargs = {} if args.shape_cache is None else {'shape_cache': args.shape_cache}
        forward = ShapeTimes(runner.inference_forward(model_dir, cpu_threads=runtime.physical_cores(),
                                                      **kwargs))
        modes = {'ms+flip': tta.InferOptions.create(aug=True, scales=args.scales, flip_horizontal=True)}
        if args.slide:
            modes['ms+flip slide'] = tta.InferOptions.create(
                aug=True, scales=args.scales, flip_horizontal=True, is_slide=True,
                crop_size=args.slide[:2], stride=args.slide[2:])
        rng = np.random.default_rng(0)
        images = [rng.uniform(-1, 1, (3, height, width)).astype('float32') for _ in range(args.images + 1)]
        results = {name: [] for name in ['6 x single'] + list(modes)}
        for index, image in enumerate(images):
            forward.times.clear()
            single = sum(timed(forward, image[np.newaxis])[0] for _ in range(6))
            line = [f'image {index}{" (warm-up)" if index == 0 else ""}: 6 x single {single:.2f} s']
            results['6 x single'].append(single)
            for name, options in modes.items():
                seconds, _ = timed(tta.infer_logits, forward, image, options=options)
                results[name].append(seconds)
                line.append(f'{name} {seconds:.2f} s')
            print(', '.join(line) + f' ({load()})', flush=True)
            print('  per shape: ' + ', '.join(f'{"x".join(map(str, shape))}: '
                                              + '/'.join(f'{t:.2f}' for t in times)
                                              for shape, times in forward.times.items()), flush=True)
        entries = [name for name in os.listdir(cache_dir) if not name.startswith('.')]
    print(f'exported models in the cache after all shapes: {len(entries)}')
    base = statistics.median(results['6 x single'][1:])
    for name, values in results.items():
        median = statistics.median(values[1:])
        print(f'median of {args.images} warm images: {name}: {median:.2f} s/image '
              f'({median / base:.2f} x 6 single) ({load()})')
    pixels = 2 * sum(int(height * s + 0.5) * int(width * s + 0.5) for s in args.scales) / (6 * height * width)
    print(f'pixels of ms+flip / pixels of 6 single forwards: {pixels:.3f}')


if __name__ == '__main__':
    main()
