"""NCHW vs NHWC on this machine: one PSPNet-R50 OS8 training step and one eval forward, in one process.

    python benchmarks/experiments/data_format_speed.py [--size 256] [--batch 2] [--repeats 3]

Both layouts hold the same weights; the measurements alternate (NCHW, NHWC, NCHW, ...) after one warm-up
each, and the median of ``--repeats`` is printed with the load average before and after (the machine may
be shared).
"""
import argparse
import os
import statistics
import time

from paddle_psp.core import runtime


def build(data_format, num_classes=19):
    """Zoo PSPNet-R50 OS8 (pyramid 1024 channels, bins 1-2-3-6, auxiliary head), loss, SGD."""
    import paddle  # lazy: after the CPU tuning
    from paddle_psp.models.losses import ZooCrossEntropyLoss
    from paddle_psp.models.pspnet import ZooPSPNet
    from paddle_psp.models.resnet_vd import ResNetVd
    paddle.seed(0)
    model = ZooPSPNet(num_classes, ResNetVd(50, 8, data_format=data_format), data_format=data_format)
    loss = ZooCrossEntropyLoss(data_format=data_format)
    optimizer = paddle.optimizer.Momentum(0.01, 0.9, parameters=model.parameters())
    return model, loss, optimizer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    runtime.apply_cpu_tuning()
    import paddle  # lazy: after the CPU tuning
    load_before = os.getloadavg()
    images = paddle.randn([args.batch, 3, args.size, args.size])
    labels = paddle.randint(0, 19, [args.batch, args.size, args.size])
    runs = {}
    for data_format in ('NCHW', 'NHWC'):
        model, loss, optimizer = build(data_format)
        x = images if data_format == 'NCHW' else images.transpose([0, 2, 3, 1])
        runs[data_format] = (model, loss, optimizer, x)
    runs['NHWC'][0].set_state_dict(runs['NCHW'][0].state_dict())

    def train_step(data_format):
        model, loss, optimizer, x = runs[data_format]
        model.train()
        start = time.perf_counter()
        logits = model(x)
        total = loss(logits[0], labels) + 0.4 * loss(logits[1], labels)
        total.backward()
        optimizer.step()
        optimizer.clear_grad()
        float(total)
        return time.perf_counter() - start

    def eval_forward(data_format):
        model, _, _, x = runs[data_format]
        model.eval()
        start = time.perf_counter()
        with paddle.no_grad():
            model(x)[0].numpy()
        return time.perf_counter() - start

    times = {(kind, f): [] for kind in ('train step', 'eval forward') for f in runs}
    for kind, measure in (('train step', train_step), ('eval forward', eval_forward)):
        for data_format in runs:
            measure(data_format)  # warm-up
        for _ in range(args.repeats):
            for data_format in runs:
                times[(kind, data_format)].append(measure(data_format))
    load_after = os.getloadavg()
    print(f'PSPNet-R50 OS8, {args.size}x{args.size}, batch {args.batch}, median of {args.repeats}, '
          f'{os.cpu_count()} CPUs, load average before {load_before[0]:.2f} after {load_after[0]:.2f}')
    for kind in ('train step', 'eval forward'):
        nchw, nhwc = (statistics.median(times[(kind, f)]) for f in ('NCHW', 'NHWC'))
        print(f'{kind}: NCHW {nchw:.2f} s, NHWC {nhwc:.2f} s, NHWC/NCHW {nhwc / nchw:.2f}')


if __name__ == '__main__':
    main()
