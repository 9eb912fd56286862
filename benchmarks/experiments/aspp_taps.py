"""Can training skip the ASPP taps that fall on zero padding? One atrous 3x3 branch of DeepLabV3's ASPP
(2048 -> 256 channels on the 64x64 feature of a 512x512 crop, batch 2), forward and backward, two ways:

- ``conv``: Paddle's ``conv2d`` (im2col + GEMM), every tap of every position, zero padding included;
- ``taps``: one GEMM per tap over only the positions where that tap lands inside the feature map (its input
  window sliced, its output padded back and summed), the same sums without the zero terms.

At rate r on a 64-wide map a side tap is inside the map for 64 - r positions per axis, so ``taps`` executes
77 / 56 / 39 % of ``conv``'s MACs at rates 12 / 24 / 36 (the fast path's oneDNN kernels skip those taps in
evaluation). Printed per rate: the time of each way (median of ``--rounds``, interleaved, after a warm-up),
the GMAC each executes and the largest differences of output and gradients against ``conv``.

Usage (from the repository root; with paddle-psp's CPU tuning for training, on an otherwise idle machine)::

    python benchmarks/experiments/aspp_taps.py [--rates 12 24 36] [--rounds 3]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import paddle
import paddle.nn.functional as F

from paddle_psp.core import runtime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/
from speed import where_and_when  # noqa: E402 (after the path)

BATCH, IN_CHANNELS, OUT_CHANNELS, SIZE = 2, 2048, 256, 64


def conv(x, weight, rate):
    """The branch as Paddle computes it."""
    return F.conv2d(x, weight, padding=rate, dilation=rate)


def tap_windows(rate, size=SIZE):
    """(row, column, output window [y0, y1, x0, x1]) of each tap that lands inside the map somewhere."""
    windows = []
    for row in range(3):
        for column in range(3):
            dy, dx = (row - 1) * rate, (column - 1) * rate
            y0, y1, x0, x1 = max(0, -dy), min(size, size - dy), max(0, -dx), min(size, size - dx)
            if y0 < y1 and x0 < x1:
                windows.append((row, column, (y0, y1, x0, x1)))
    return windows


def taps(x, weight, rate):
    """The branch as one GEMM per tap over that tap's valid output window."""
    out = None
    for row, column, (y0, y1, x0, x1) in tap_windows(rate):
        dy, dx = (row - 1) * rate, (column - 1) * rate
        window = x[:, :, y0 + dy:y1 + dy, x0 + dx:x1 + dx].reshape([BATCH, IN_CHANNELS, -1])
        part = paddle.matmul(weight[:, :, row, column], window).reshape([BATCH, OUT_CHANNELS, y1 - y0, x1 - x0])
        part = F.pad(part, [x0, SIZE - x1, y0, SIZE - y1])
        out = part if out is None else out + part
    return out


def gmac(rate, skip):
    """MACs (x 1e9) of the branch: every tap everywhere, or (``skip``) only the valid windows."""
    positions = sum((y1 - y0) * (x1 - x0) for _, _, (y0, y1, x0, x1) in tap_windows(rate)) if skip \
        else 9 * SIZE * SIZE
    return BATCH * positions * IN_CHANNELS * OUT_CHANNELS / 1e9


def run(way, x0, weight0, grad_out, rate):
    """Seconds of forward + backward, and (output, input gradient, weight gradient) as arrays."""
    x, weight = x0.clone(), weight0.clone()
    x.stop_gradient = weight.stop_gradient = False
    start = time.perf_counter()
    out = way(x, weight, rate)
    (out * grad_out).sum().backward()
    seconds = time.perf_counter() - start
    return seconds, (out.numpy(), x.grad.numpy(), weight.grad.numpy())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rates', type=int, nargs='+', default=[12, 24, 36])
    parser.add_argument('--rounds', type=int, default=3)
    args = parser.parse_args()
    runtime.apply_cpu_tuning(training=True)
    print(f'{where_and_when("aspp_taps.py")}; math threads {runtime.math_threads()}; '
          f'load average at start: {os.getloadavg()[0]:.2f}', flush=True)
    paddle.seed(0)
    x0 = paddle.randn([BATCH, IN_CHANNELS, SIZE, SIZE])
    weight0 = paddle.randn([OUT_CHANNELS, IN_CHANNELS, 3, 3]) * 0.01
    grad_out = paddle.randn([BATCH, OUT_CHANNELS, SIZE, SIZE])
    print('| rate | conv (s) | taps (s) | taps / conv | GMAC conv / taps | max diff output / input grad / weight grad '
          '(over the largest value) |')
    print('|---|---|---|---|---|---|')
    for rate in args.rates:
        ways = {'conv': conv, 'taps': taps}
        times = {name: [] for name in ways}
        for name, way in ways.items():
            run(way, x0, weight0, grad_out, rate)  # warm-up
        for _ in range(args.rounds):
            results = {}
            for name, way in ways.items():
                seconds, results[name] = run(way, x0, weight0, grad_out, rate)
                times[name].append(seconds)
        diffs = ' / '.join(f'{np.abs(a - b).max() / np.abs(a).max():.1e}'
                           for a, b in zip(results['conv'], results['taps']))
        conv_s, taps_s = statistics.median(times['conv']), statistics.median(times['taps'])
        print(f'| {rate} | {conv_s:.3f} | {taps_s:.3f} | {taps_s / conv_s:.2f} | '
              f'{gmac(rate, False):.1f} / {gmac(rate, True):.1f} | {diffs} |', flush=True)
    print(f'load average at the end: {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()
