"""Do oneDNN's kernels speed up training convolutions, where a static program lets Paddle use them?

Usage (from the repository root; a few minutes on 2 cores, on an otherwise idle machine)::

    python benchmarks/experiments/onednn_train_ops.py
    python benchmarks/experiments/onednn_train_ops.py --repeat 5

Dygraph never dispatches to oneDNN; a ``paddle.jit.to_static`` program run with ``FLAGS_use_mkldnn`` does,
for the operators that have oneDNN kernels. Two parts, each variant in its own child process (the flag is
process-wide), under the CPU tuning of a training process:

1. Convolution shapes of ResNet50 OS8 at a 512x512 crop, batch 2: four conv -> batch norm -> ReLU blocks,
   forward and backward to the input, as dygraph, as a static program, and as a static program with
   oneDNN. GFLOP/s counts the convolutions' forward and backward (3 x the forward MACs x 2); the last
   column is the input gradient's relative difference to dygraph's (summation order only).
2. Whole parts of the model as a static program with oneDNN, training forward and backward: the model
   (its bilinear resizes), and the backbone alone (its pooling). Each prints how it ends.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
from speed import tuned_env, where_and_when  # noqa: E402 (after the path)

# (label, channels, feature size, kernel, dilation): the convolutions that dominate a training step
SHAPES = [('stage 1, 3x3', 64, 128, 3, 1), ('stage 3, 1x1', 1024, 64, 1, 1), ('stage 3, 3x3 dilation 2', 256, 64, 3, 2),
          ('stage 4, 3x3 dilation 4', 512, 64, 3, 4)]
VARIANTS = ('dygraph', 'static', 'static + oneDNN')
PARTS = ('model', 'backbone')


def chain_child(spec):
    """Time forward + backward of four conv-BN-ReLU blocks; print ``RESULT {median_s}`` (the input gradient
    goes to ``spec['grad_file']``)."""
    import paddle
    from paddle_psp.core import runtime
    runtime.apply_cpu_tuning(training=True)
    channels, size, kernel, dilation = spec['channels'], spec['size'], spec['kernel'], spec['dilation']
    paddle.seed(0)
    layers = []
    for _ in range(4):
        layers += [paddle.nn.Conv2D(channels, channels, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                                    bias_attr=False), paddle.nn.BatchNorm2D(channels), paddle.nn.ReLU()]
    net = paddle.nn.Sequential(*layers)
    forward = net if spec['variant'] == 'dygraph' else paddle.jit.to_static(net, full_graph=True)
    if spec['variant'].endswith('oneDNN'):
        paddle.set_flags({'FLAGS_use_mkldnn': True})
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, channels, size, size)).astype('float32'))
    x.stop_gradient = False
    times = []
    for _ in range(spec['repeat'] + 1):
        start = time.perf_counter()
        out = forward(x)
        (out * out).mean().backward()
        grad = x.grad.numpy()
        x.clear_gradient()
        times.append(time.perf_counter() - start)
    np.save(spec['grad_file'], grad)
    print('RESULT ' + json.dumps({'median_s': float(np.median(times[1:]))}), flush=True)


def part_child(spec):
    """One training step of ``spec['part']`` as a static program with oneDNN; print ``RESULT {ok}``."""
    import paddle
    from paddle_psp.core import runtime
    from speed_paths import build_model
    runtime.apply_cpu_tuning(training=True)
    model = build_model('deeplabv3', paddleseg=False)
    model.train()
    layer = model if spec['part'] == 'model' else model.backbone
    forward = paddle.jit.to_static(layer.forward, full_graph=True)
    paddle.set_flags({'FLAGS_use_mkldnn': True})
    outputs = forward(paddle.randn([2, 3, 128, 128]))
    paddle.add_n([out.mean() for out in outputs]).backward()
    print('RESULT ' + json.dumps({'ok': True}), flush=True)


def run(kind, spec):
    """A child's result dict, or {'error': the last lines it wrote} when it failed or crashed."""
    process = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', json.dumps(dict(spec, kind=kind))],
                             env=tuned_env(training=True), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith('RESULT ')]
    if lines:
        return json.loads(lines[-1][len('RESULT '):])
    clues = [line.strip() for line in process.stderr.splitlines()
             if 'raises an exception' in line or 'Error' in line or 'what()' in line]
    return {'error': f'exit {process.returncode}: ' + ' / '.join(clues[-3:])[:400]}


def main(argv=None):
    """Both parts; a markdown table, then one line per model part."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeat', type=int, default=3, help='timed runs after one warm-up (default 3)')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        return chain_child(spec) if spec['kind'] == 'chain' else part_child(spec)
    print(where_and_when('onednn_train_ops.py', None) + f'; load average {os.getloadavg()[0]:.2f}', flush=True)
    print()
    print('| convolutions (4 x conv-BN-ReLU, batch 2) | ' + ' | '.join(f'{v} GFLOP/s' for v in VARIANTS)
          + ' | oneDNN / dygraph time | oneDNN input gradient vs dygraph (max relative) |')
    print('|---|' + '---|' * (len(VARIANTS) + 2))
    with tempfile.TemporaryDirectory(prefix='psp_onednn_') as work:
        for label, channels, size, kernel, dilation in SHAPES:
            flops = 2 * 3 * 4 * 2 * channels * channels * kernel * kernel * size * size
            times, grads = {}, {}
            for variant in VARIANTS:
                grad_file = os.path.join(work, f'{len(grads)}.npy')
                result = run('chain', {'variant': variant, 'channels': channels, 'size': size, 'kernel': kernel,
                                       'dilation': dilation, 'repeat': args.repeat, 'grad_file': grad_file})
                times[variant] = result.get('median_s')
                grads[variant] = np.load(grad_file) if 'median_s' in result else None
            rates = [f'{flops / times[v] / 1e9:.0f}' if times[v] else 'failed' for v in VARIANTS]
            ratio = (f'{times["static + oneDNN"] / times["dygraph"]:.2f}'
                     if times['dygraph'] and times['static + oneDNN'] else '-')
            base, other = grads['dygraph'], grads['static + oneDNN']
            diff = (f'{np.abs(other - base).max() / np.abs(base).max():.1e}'
                    if base is not None and other is not None else '-')
            print(f'| {label}: {channels} channels, {size}x{size}, {kernel}x{kernel} dilation {dilation} | '
                  + ' | '.join(rates) + f' | {ratio} | {diff} |', flush=True)
    print()
    for part in PARTS:
        result = run('part', {'part': part})
        print(f'- DeepLabV3 R50 OS8 {part}, static + oneDNN, one training step at 128x128: '
              + ('ran' if result.get('ok') else result['error']), flush=True)
    print(f'\nload average at the end: {os.getloadavg()[0]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
