"""Per-image time of ``paddle_psp.Segmenter`` in a loop, against PaddleSeg's own model in plain Python.

Usage (from the repository root; timings mean something only on an otherwise idle machine, so the load
average is printed beside them)::

    python benchmarks/api_speed.py                          # PSPNet R50 OS8, 8 images of 512x256
    python benchmarks/api_speed.py --size 1024 512 --images 4 --repeats 3 --work /tmp/api_speed

Prepared under ``--work`` (kept between runs when given) by :func:`end_to_end.prepare`: a config
(``ZooPSPNet`` on ``ZooResNet50_vd`` OS8, 19 classes, val transform ``Normalize``), seeded random weights
with the same state-dict keys as PaddleSeg's model, and ``--images`` synthetic street scenes.

Two child processes, one after the other, each loading the same weights and looping over the same images
``--repeats`` times after one warm-up image:

- ``PaddleSeg``: what a PaddleSeg user writes in Python, in PaddleSeg's default environment (no tuning
  variables): ``paddleseg.models.PSPNet`` on ``ResNet50_vd`` (:func:`speed_paths.build_model`), the weights
  set, then per image: read and normalize (``paddleseg.transforms.Compose([Normalize()])``), forward in
  dygraph under ``paddle.no_grad``, argmax.
- ``Segmenter``: ``paddle_psp.Segmenter(weights, config)`` built once (its start-up timed: cold, with an
  empty export cache under ``--work``, then a second one, warm), then ``seg.predict(path)`` per image.

Printed: the header of ``speed.py`` (date, CPU, MKL code path), the load average before and after, each
path's start-up and its per-image time (the median over the passes of each pass's mean), the ratio
Segmenter / PaddleSeg, and how many pixels of the two label maps agree.

This module imports only the standard library at the top: it is also the measured children
(``--child``), and PaddleSeg's must import nothing of paddle-psp.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def paddleseg_child(spec):
    """PaddleSeg's model in plain Python; returns per-pass mean seconds per image and the label maps."""
    import numpy as np
    import paddle
    from paddleseg.transforms import Compose, Normalize
    from speed_paths import loaded_model
    start = time.time()
    model = loaded_model('pspnet', paddleseg=True, weights=spec['weights'])
    model.eval()
    transforms = Compose([Normalize()])

    def predict(path):
        data = transforms({'img': path})
        with paddle.no_grad():
            logits = model(paddle.to_tensor(data['img'][np.newaxis]))[0]
        return paddle.argmax(logits, axis=1)[0].numpy()
    return time.time() - start, None, predict


def segmenter_child(spec):
    """``paddle_psp.Segmenter`` built cold (empty cache), then warm; its ``predict`` per image."""
    os.environ['PADDLE_PSP_CACHE'] = spec['cache']
    import paddle_psp
    start = time.time()
    paddle_psp.Segmenter(spec['weights'], spec['config'])
    cold = time.time() - start
    start = time.time()
    seg = paddle_psp.Segmenter(spec['weights'], spec['config'])
    return cold, time.time() - start, lambda path: seg.predict(path).label_map


def child(spec):
    """Run one path (``spec['path']``) and print ``RESULT {json}``; label maps go to ``spec['labels']``."""
    import numpy as np
    startup, warm, predict = (paddleseg_child if spec['path'] == 'paddleseg' else segmenter_child)(spec)
    predict(spec['images'][0])  # warm-up
    passes = []
    for _ in range(spec['repeats']):
        start = time.time()
        labels = [predict(path) for path in spec['images']]
        passes.append((time.time() - start) / len(spec['images']))
    np.savez(spec['labels'], *labels)
    print('RESULT ' + json.dumps({'startup': startup, 'warm_startup': warm, 'passes': passes}), flush=True)


def run_child(spec, env):
    """Start one child with ``env``; returns its RESULT."""
    done = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', json.dumps(spec)], env=env,
                          capture_output=True, text=True, cwd=HERE)
    lines = [line for line in done.stdout.splitlines() if line.startswith('RESULT ')]
    if done.returncode or not lines:
        raise SystemExit(f'{spec["path"]} failed:\n{done.stderr[-3000:]}')
    return json.loads(lines[-1][len('RESULT '):])


def measure(args, work):
    """Prepare, run both children, print the table."""
    from end_to_end import prepare
    from speed import default_env, header_line, tuned_env
    config, weights, images = prepare(work, 'pspnet', (args.size[1], args.size[0]), args.images)
    print(header_line({'default': default_env(), 'tuned': tuned_env()}, script='api_speed.py'))
    print(f'PSPNet R50 OS8, {len(images)} images of {args.size[0]}x{args.size[1]}, {args.repeats} passes; '
          f'load average before {os.getloadavg()[0]:.2f}')
    cache = os.path.join(work, 'cache')
    shutil.rmtree(cache, ignore_errors=True)
    results = {}
    for path, env in (('paddleseg', default_env()), ('segmenter', os.environ.copy())):
        spec = {'path': path, 'weights': weights, 'config': config, 'images': images, 'repeats': args.repeats,
                'cache': cache, 'labels': os.path.join(work, f'labels_{path}.npz')}
        results[path] = run_child(spec, env)
    print(f'load average after {os.getloadavg()[0]:.2f}')
    report(results, work)


def report(results, work):
    """Print each path's start-up and per-image time, the ratio and the label agreement."""
    import numpy as np
    per_image = {path: statistics.median(r['passes']) for path, r in results.items()}
    for path, label in (('paddleseg', 'PaddleSeg PSPNet, plain Python'), ('segmenter', 'paddle_psp.Segmenter')):
        r = results[path]
        warm = f', warm start {r["warm_startup"]:.2f} s' if r['warm_startup'] is not None else ''
        print(f'{label:32s} start-up {r["startup"]:.2f} s{warm}; per image {per_image[path]:.3f} s '
              f'(passes {", ".join(f"{p:.3f}" for p in r["passes"])})')
    print(f'Segmenter / PaddleSeg per image: {per_image["segmenter"] / per_image["paddleseg"]:.2f}x')
    ours, theirs = (np.load(os.path.join(work, f'labels_{p}.npz')) for p in ('segmenter', 'paddleseg'))
    agree = [float((ours[k] == theirs[k]).mean()) for k in ours.files]
    print(f'label agreement: {100 * statistics.mean(agree):.2f} % of the pixels')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', nargs=2, type=int, default=(512, 256), metavar=('W', 'H'))
    parser.add_argument('--images', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--work', default=None, help='folder for the config, weights and images (kept)')
    parser.add_argument('--child', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    if args.work:
        os.makedirs(args.work, exist_ok=True)
        return measure(args, args.work)
    with tempfile.TemporaryDirectory() as work:
        return measure(args, work)


if __name__ == '__main__':
    main()
