"""Speed of paddle-psp against PaddleSeg 2.8 on this machine: evaluation forward and training step.

Usage (from the repository root; takes ~20 minutes at 512x512 on 2 cores, mostly PaddleSeg's default
training step; timings are only meaningful on an otherwise idle machine, so the load average is printed)::

    python benchmarks/speed.py                      # PSPNet and DeepLabV3 R50 OS8, 512x512
    python benchmarks/speed.py --size 512x1024      # Cityscapes-like aspect
    python benchmarks/speed.py --models pspnet --no_train --repeat 5

Every measured path runs in its own Python subprocess, so environment variables (``MKL_DEBUG_CPU_TYPE``,
thread counts, ``FLAGS_*``, ``MALLOC_*``) apply from the start and peak RSS (``VmHWM`` of the child, see
:func:`paddle_psp.core.util.peak_rss_bytes`) is per path:

- ``PaddleSeg 2.8 dygraph, default env``: PaddleSeg's own model class (``paddleseg.models.PSPNet`` /
  ``DeepLabV3``) as its users run it: the environment without any of our tuning variables. In eval mode
  PaddleSeg's PSPNet also computes its auxiliary head; its output list starts with the main logits.
- ``paddle-psp dygraph, tuned``: our model under :func:`paddle_psp.core.runtime.tuning_env`.
- ``paddle-psp fast``: :func:`paddle_psp.inference.predictor.fast_forward` (Paddle Inference, oneDNN), tuned.

All paths load the same weights (random, seeded, with batch-norm statistics calibrated on a random image
and random conv biases so logits are not degenerate; or ``--weights`` checkpoints) and get the same
input. Times are the median of ``--repeat`` runs after one warm-up run; the export of the fast path is
cached and its one-off cost is reported separately. GMAC counts conv multiply-accumulates analytically
(forward hooks on every Conv2D, ``out_elements * in_channels / groups * kh * kw``); GFLOP/s = 2 x GMAC /
time, and the GEMM peak is the best fp32 GEMM (M = N = K = 4096: numpy, paddle.matmul, and oneDNN through
Paddle Inference as a 1x1 convolution) measured here on the same number of threads. The fast path's GMAC
are those it executes (its exact rewrite, without kernel taps on zero padding, which oneDNN skips).
Argmax agreement is against PaddleSeg's dygraph output.

The training step (batch 2, forward + backward + Momentum SGD step, weight decay 4e-5, loss = cross-
entropy on the main logits + 0.4 x on the auxiliary ones for PSPNet, ignore index 255) uses the same
code for both paths; PaddleSeg's own CrossEntropyLoss does not run on Paddle 3.3 (type-promotion
error), so both use paddle-psp's ZooCrossEntropyLoss.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

NUM_CLASSES = 19
# Variables that change Paddle's CPU speed or memory; stripped for the "default env" paths.
TUNING_VARIABLES = ('MKL_DEBUG_CPU_TYPE', 'MKL_ENABLE_INSTRUCTIONS', 'MKL_NUM_THREADS', 'MKL_DISABLE_FAST_MM',
                    'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'KMP_AFFINITY', 'KMP_BLOCKTIME',
                    'FLAGS_use_mkldnn', 'FLAGS_use_onednn', 'FLAGS_paddle_num_threads',
                    'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_TOP_PAD_', 'MALLOC_ARENA_MAX',
                    'GLIBC_TUNABLES')
MODELS = {'pspnet': 'PSPNet ResNet50 OS8', 'deeplabv3': 'DeepLabV3 ResNet50 OS8'}
AUX_COEF = 0.4
GIB = 2 ** 30


# ----------------------------------------------------------------------------------------------- models

def build_model(name, paddleseg):
    """PaddleSeg's or paddle-psp's model with the reference configs' arguments (19 classes)."""
    if paddleseg:
        from paddleseg.models import DeepLabV3, PSPNet
        from paddleseg.models.backbones import ResNet50_vd
        if name == 'pspnet':
            return PSPNet(NUM_CLASSES, ResNet50_vd(output_stride=8))
        return DeepLabV3(NUM_CLASSES, ResNet50_vd(output_stride=8, multi_grid=(1, 2, 4)),
                         aspp_ratios=(1, 12, 24, 36))
    from paddle_psp.models import ZooDeepLabV3, ZooPSPNet, ZooResNet50_vd
    if name == 'pspnet':
        return ZooPSPNet(NUM_CLASSES, ZooResNet50_vd(output_stride=8))
    return ZooDeepLabV3(NUM_CLASSES, ZooResNet50_vd(output_stride=8, multi_grid=(1, 2, 4)),
                        aspp_ratios=(1, 12, 24, 36))


def loaded_model(name, paddleseg, weights):
    import paddle
    model = build_model(name, paddleseg)
    state = paddle.load(weights)
    missing = set(model.state_dict()) ^ set(state)
    if missing:
        raise SystemExit(f'{weights}: keys differ from the model\'s: {sorted(missing)[:3]}')
    model.set_state_dict(state)
    return model


def make_weights(name, path, seed=0):
    """Seeded random weights with random conv biases and BN statistics calibrated on a random image."""
    import paddle
    from paddle_psp.weights.state_dict import randomize
    paddle.seed(seed)
    model = randomize(build_model(name, paddleseg=False), seed, size=128)
    paddle.save(model.state_dict(), path)


def conv_macs(model, shape, skip_padding=False):
    """Multiply-accumulates of every Conv2D in one forward of an input of ``shape`` (forward hooks), and of
    paddle-psp's factored pyramid pooling (its convolutions and interpolation products, counted from its
    shapes: it calls the functional ops on slices of its fusion conv's weight).

    With ``skip_padding`` the kernel taps that fall on the zero padding are not counted: oneDNN skips
    them, im2col + GEMM (Paddle's dygraph CPU convolution) multiplies them by zero. It matters for the
    ASPP convolutions with dilation 12-36 on a 64x64 feature map.
    """
    import paddle
    from paddle_psp.models.pspnet import PyramidPooling
    total = [0]

    def count(layer, inputs, output):
        kernel = layer.weight.shape  # out, in / groups, kh, kw
        if skip_padding:
            axes = zip(inputs[0].shape[2:], output.shape[2:], kernel[2:], layer._stride,
                       _pair(layer._padding), layer._dilation)
            taps = [_valid_taps(*axis) for axis in axes]
            total[0] += output.shape[0] * output.shape[1] * kernel[1] * taps[0] * taps[1]
        else:
            total[0] += int(np.prod(output.shape)) * kernel[1] * kernel[2] * kernel[3]

    def count_pyramid(layer, inputs, output):
        batch, channels, height, width = inputs[0].shape
        out, _, kernel, _ = layer.conv_bn_relu2._conv.weight.shape
        branch = layer.stages[0][1]._conv.weight.shape[0]
        taps = kernel * kernel
        if skip_padding:
            taps = _valid_taps(height, height, kernel, 1, kernel // 2, 1) * \
                _valid_taps(width, width, kernel, 1, kernel // 2, 1) / (height * width)
        direct = batch * out * channels * height * width * taps
        at_pooled = sum(batch * size * size * branch * kernel * kernel * out for size in layer.bin_sizes)
        vertical = sum(batch * out * kernel * size * kernel * size * height for size in layer.bin_sizes)
        horizontal = batch * out * height * kernel * sum(layer.bin_sizes) * width
        total[0] += int(direct) + at_pooled + vertical + horizontal

    hooks = [layer.register_forward_post_hook(count) for layer in model.sublayers()
             if isinstance(layer, paddle.nn.Conv2D)]
    hooks += [layer.register_forward_post_hook(count_pyramid) for layer in model.sublayers()
              if isinstance(layer, PyramidPooling)]
    with paddle.no_grad():
        model(paddle.zeros(shape, 'float32'))
    for hook in hooks:
        hook.remove()
    return total[0]


def _pair(padding):
    if isinstance(padding, int):
        return [padding, padding]
    if len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return list(padding)
    raise ValueError(f'padding {padding!r}: only symmetric integer paddings are counted')


def _valid_taps(size, out_size, kernel, stride, padding, dilation):
    """Sum over output positions of the kernel taps that land inside the input (one axis)."""
    positions = np.arange(out_size)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation
    return int(((positions >= 0) & (positions < size)).sum())


# ----------------------------------------------------------------------------------------------- children

def child_main(spec):
    """Run one measurement described by ``spec`` (a dict) and print ``RESULT <json>``."""
    from paddle_psp.core.util import peak_rss_bytes  # lazy, as everywhere here: it imports paddle
    started = os.getloadavg()[0]
    result = CHILD_TASKS[spec['task']](spec)
    result.update(peak_rss_gib=peak_rss_bytes() / GIB, load_before=started, load_after=os.getloadavg()[0])
    print('RESULT ' + json.dumps(result), flush=True)


def timed(function, repeat):
    """Median seconds of ``repeat`` calls after one warm-up call, and all the times."""
    function()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def eval_task(spec):
    import paddle
    model = loaded_model(spec['model'], spec['paddleseg'], spec['weights'])
    model.eval()
    batch = np.load(spec['input'])
    setup = 0.0
    if spec['fast']:
        from paddle_psp.inference.predictor import fast_forward
        start = time.perf_counter()
        forward = fast_forward(model, cache_dir=spec['cache_dir'])
        setup = time.perf_counter() - start
    else:
        def forward(array):
            with paddle.no_grad():
                return model(paddle.to_tensor(array))[0].numpy()
    logits = [None]

    def run():
        logits[0] = forward(batch)
    median, times = timed(run, spec['repeat'])
    np.save(spec['output'], logits[0])
    return {'median_s': median, 'times_s': times, 'setup_s': setup}


def train_task(spec):
    import paddle
    from paddle_psp.models.losses import ZooCrossEntropyLoss
    paddle.seed(0)
    model = loaded_model(spec['model'], spec['paddleseg'], spec['weights'])
    model.train()
    loss_layer = ZooCrossEntropyLoss(ignore_index=255)
    optimizer = paddle.optimizer.Momentum(0.01, momentum=0.9, parameters=model.parameters(),
                                          weight_decay=4e-5)
    rng = np.random.default_rng(0)
    height, width = spec['size']
    images = paddle.to_tensor(rng.uniform(-1, 1, (2, 3, height, width)).astype('float32'))
    labels = rng.integers(0, NUM_CLASSES, (2, height, width))
    labels[:, :height // 8] = 255
    labels = paddle.to_tensor(labels.astype('int64'))
    coefs = [1.0, AUX_COEF]
    losses, outputs = [], []

    def step():
        logits = model(images)
        loss = paddle.add_n([coef * loss_layer(logit, labels) for coef, logit in zip(coefs, logits)])
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(loss))
        outputs.append(len(logits))
    median, times = timed(step, spec['repeat'])
    return {'median_s': median, 'times_s': times, 'losses': losses, 'outputs': outputs[-1]}


def export_task(spec):
    """Fill the fast path's export cache (as the first ``fast_forward`` call of a model does)."""
    from paddle_psp.inference.predictor import exported_model_dir
    model = loaded_model(spec['model'], False, spec['weights'])
    model.eval()
    start = time.perf_counter()
    exported_model_dir(model, cache_dir=spec['cache_dir'])
    return {'export_s': time.perf_counter() - start}


def gemm_task(spec):
    """Best fp32 GEMM rate (M = N = K = 4096) of numpy (OpenBLAS), paddle.matmul (MKL) and oneDNN (a 1x1
    convolution, 4096 -> 4096 channels on 64x64 pixels, through the fast path's Paddle Inference), GFLOP/s."""
    import paddle
    from paddle_psp.inference.predictor import inference_forward
    from paddle_psp.inference.predictor import exported_model_dir
    size = 4096
    flops = 2 * size ** 3
    rng = np.random.default_rng(0)
    left, right = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    rates = {'numpy': flops / min(timed(lambda: left @ right, 3)[1]) / 1e9}
    a, b = paddle.to_tensor(left), paddle.to_tensor(right)
    rates['paddle.matmul'] = flops / min(timed(lambda: paddle.matmul(a, b).numpy(), 3)[1]) / 1e9
    gemm = one_by_one_conv(size)
    model_dir = exported_model_dir(gemm, cache_dir=spec['cache_dir'])
    forward = inference_forward(model_dir, cpu_threads=spec['threads'])
    pixels = left.reshape(1, size, 64, 64)
    rates['oneDNN'] = flops / min(timed(lambda: forward(pixels), 3)[1]) / 1e9
    return {'rates_gflops': rates}


def one_by_one_conv(channels):
    """A 1x1 convolution without bias, returning ``[output]`` like a segmentation model: a GEMM."""
    import paddle

    class Gemm(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(channels, channels, 1, bias_attr=False)

        def forward(self, x):
            return [self.conv(x)]
    return Gemm()


CHILD_TASKS = {'eval': eval_task, 'export': export_task, 'train': train_task, 'gemm': gemm_task}


# ----------------------------------------------------------------------------------------------- parent

def default_env():
    """This process' environment without anything that tunes Paddle's CPU speed."""
    env = {key: value for key, value in os.environ.items() if key not in TUNING_VARIABLES}
    env['PADDLE_PSP_NO_TUNING'] = '1'
    return env


def tuned_env():
    """The default environment plus paddle-psp's CPU tuning (what ``paddleseg`` applies)."""
    from paddle_psp.core.runtime import tuning_env
    env = default_env()
    env.pop('PADDLE_PSP_NO_TUNING')
    env.update(tuning_env(env))
    return env


def run_child(spec, env, label):
    """Run ``spec`` in a subprocess with ``env``; its result dict (exits with the child's error)."""
    print(f'  {label} ...', end='', flush=True)
    start = time.perf_counter()
    command = [sys.executable, os.path.abspath(__file__), '--child', json.dumps(spec)]
    process = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith('RESULT ')]
    if process.returncode != 0 or not lines:
        print(process.stdout[-3000:], process.stderr[-3000:], sep='\n', file=sys.stderr)
        raise SystemExit(f'{label}: child process failed (exit {process.returncode})')
    result = json.loads(lines[-1][len('RESULT '):])
    print(f' {result["median_s"]:.3f} s ({time.perf_counter() - start:.0f} s in all, load '
          f'{result["load_before"]:.2f} -> {result["load_after"]:.2f})' if 'median_s' in result else ' done',
          flush=True)
    return result


def machine_description(rates, threads):
    import paddle
    import paddleseg
    from paddle_psp.core import runtime, util
    cpuinfo = util.read_cpuinfo()
    model = util.cpu_name(cpuinfo) or 'unknown CPU'
    family = util.cpuinfo_field('cpu family', cpuinfo)
    logical = util.usable_cpus()
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB
    isa = runtime.mkl_cpu_type(cpuinfo)[1] or 'no AVX2'
    tuning = ', '.join(f'{k}={v}' for k, v in tuned_env().items() if k in TUNING_VARIABLES) or 'none'
    gemms = ', '.join(f'{name} {rate:.0f}' for name, rate in rates.items())
    return (f'{model}' + (f' (family {family})' if family else '') + f', {threads} physical cores / '
            f'{logical} logical, {memory:.0f} GiB RAM, {isa}; Python {platform.python_version()}, Paddle '
            f'{paddle.__version__}, PaddleSeg {paddleseg.__version__}; tuning: {tuning}; fp32 GEMM '
            f'(4096^3, {threads} threads): {gemms} GFLOP/s')


def count_macs(name, size):
    """GMAC per image each path executes: PaddleSeg's eval forward (with PSPNet's auxiliary head), our
    model's, and the fast path's inference copy without the taps on zero padding (oneDNN skips them)."""
    from paddle_psp.inference.predictor import inference_copy
    shape = [1, 3, *size]
    theirs = build_model(name, paddleseg=True)
    theirs.eval()
    ours = build_model(name, paddleseg=False)
    ours.eval()
    return {'paddleseg': conv_macs(theirs, shape) / 1e9, 'model': conv_macs(ours, shape) / 1e9,
            'fast': conv_macs(inference_copy(ours), shape, skip_padding=True) / 1e9}


def agreement(reference, other):
    return float((np.load(reference).argmax(1) == np.load(other).argmax(1)).mean())


def benchmark_model(name, args, work, envs):
    """Eval and train rows for one model."""
    weights = os.path.join(work, f'{name}.pdparams')
    if args.weights.get(name):
        weights = args.weights[name]
    else:
        make_weights(name, weights)
    batch = os.path.join(work, 'input.npy')
    np.save(batch, np.random.default_rng(1).uniform(-1, 1, (1, 3, *args.size)).astype('float32'))
    common = {'task': 'eval', 'model': name, 'weights': weights, 'input': batch, 'repeat': args.repeat,
              'cache_dir': os.path.join(work, 'cache')}
    paths = [('PaddleSeg 2.8 dygraph, default env', 'default', True, False),
             ('paddle-psp dygraph, tuned', 'tuned', False, False),
             ('paddle-psp fast (Paddle Inference + oneDNN), tuned', 'tuned', False, True)]
    print(f'{MODELS[name]}, {args.size[0]}x{args.size[1]}: evaluation forward (batch 1)')
    rows = []
    for index, (label, env, paddleseg, fast) in enumerate(paths):
        output = os.path.join(work, f'{name}_{index}.npy')
        spec = dict(common, paddleseg=paddleseg, fast=fast, output=output)
        extra = run_child(dict(spec, task='export'), envs[env], 'export (once per weights)') if fast else {}
        rows.append(dict(run_child(spec, envs[env], label), label=label, fast=fast, paddleseg=paddleseg,
                         agreement=agreement(rows[0]['output'], output) if rows else None, output=output,
                         **extra))
    train_rows = []
    if args.train:
        print(f'{MODELS[name]}: training step (batch 2, {args.size[0]}x{args.size[1]})')
        for label, env, paddleseg in [('PaddleSeg 2.8 dygraph, default env', 'default', True),
                                      ('paddle-psp dygraph, tuned', 'tuned', False)]:
            spec = {'task': 'train', 'model': name, 'weights': weights, 'size': args.size,
                    'repeat': args.train_repeat, 'paddleseg': paddleseg}
            train_rows.append(dict(run_child(spec, envs[env], label), label=label))
    return rows, train_rows


def eval_table(results, macs, gemm_peak):
    lines = ['| model | path | time (s) | speed-up | GMAC | GFLOP/s | % of GEMM peak | argmax agreement '
             '| peak RSS (GiB) | load avg |', '|---|---|---|---|---|---|---|---|---|---|']
    for name, (rows, _) in results.items():
        base = rows[0]
        for row in rows:
            gmac = macs[name]['paddleseg' if row['paddleseg'] else ('fast' if row['fast'] else 'model')]
            gmac_text = f'{gmac:.0f}' + (f' (model {macs[name]["model"]:.0f})' if row['fast'] else '')
            rate = 2 * gmac / row['median_s']
            agree = 'reference' if row is base else f'{100 * row["agreement"]:.3f} %'
            lines.append(f'| {MODELS[name]} | {row["label"]} | {row["median_s"]:.2f} | '
                         f'{base["median_s"] / row["median_s"]:.1f}x | {gmac_text} | {rate:.0f} | '
                         f'{100 * rate / gemm_peak[0]:.0f} % | {agree} | {row["peak_rss_gib"]:.2f} | '
                         f'{load_range(row)} |')
    exports = ', '.join(f'{MODELS[name]} {rows[-1]["export_s"]:.0f} s' for name, (rows, _) in results.items())
    lines += ['', 'GMAC: multiply-accumulates of the convolutions the path executes per image (and of the '
              'small interpolation products of paddle-psp\'s factored PSP fusion conv, which computes the '
              'convolution over the upsampled pyramid at the pooled resolution). PaddleSeg\'s PSPNet also runs '
              'its auxiliary head in eval mode. The fast path folds conv biases into batch norm and oneDNN '
              'skips kernel taps that fall on zero padding (the dilated ASPP convs), so it executes fewer '
              'MACs than the dygraph model ("model" in brackets). One-off '
              f'export of the fast path (cached under a hash of the weights): {exports}.']
    return '\n'.join(lines)


def train_table(results):
    lines = ['| model | path | step (s) | speed-up | peak RSS (GiB) | load avg |',
             '|---|---|---|---|---|---|']
    for name, (_, rows) in results.items():
        for row in rows:
            lines.append(f'| {MODELS[name]} | {row["label"]} | {row["median_s"]:.2f} | '
                         f'{rows[0]["median_s"] / row["median_s"]:.1f}x | {row["peak_rss_gib"]:.2f} | '
                         f'{load_range(row)} |')
    return '\n'.join(lines)


def load_range(row):
    """The 1-minute load average when the path's child started and ended (2 cores: ~1 is the child)."""
    return f'{row["load_before"]:.1f}-{row["load_after"]:.1f}'


def target_lines(results):
    """The issue's targets: eval <= 1/4 time with >= 99.9 % agreement; train <= 1/2 time, RSS no higher."""
    lines = []
    for name, (rows, train_rows) in results.items():
        base, fast = rows[0], rows[-1]
        agree = fast['agreement']
        ok = fast['median_s'] <= base['median_s'] / 4 and agree >= 0.999
        lines.append(f'- {MODELS[name]} eval: {base["median_s"] / fast["median_s"]:.1f}x faster (target 4x), '
                     f'agreement {100 * agree:.3f} % (target 99.9 %): {"met" if ok else "NOT met"}')
        if train_rows:
            theirs, ours = train_rows
            ok = ours['median_s'] <= theirs['median_s'] / 2 and ours['peak_rss_gib'] <= theirs['peak_rss_gib']
            lines.append(f'- {MODELS[name]} train step: {theirs["median_s"] / ours["median_s"]:.1f}x faster '
                         f'(target 2x), peak RSS {ours["peak_rss_gib"]:.2f} vs {theirs["peak_rss_gib"]:.2f} '
                         f'GiB (target: no higher): {"met" if ok else "NOT met"}')
    return '\n'.join(lines)


def parse_size(text):
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r}: expected HEIGHTxWIDTH, e.g. 512x1024') from None
    if height < 64 or width < 64:
        raise argparse.ArgumentTypeError(f'{text!r}: expected sides of at least 64 pixels')
    return [height, width]


def parse_weights(items):
    weights = {}
    for item in items:
        name, _, path = item.partition('=')
        if name not in MODELS or not os.path.isfile(path):
            raise SystemExit(f'--weights {item}: expected MODEL=FILE with MODEL in {", ".join(MODELS)} and '
                             'an existing .pdparams file')
        weights[name] = path
    return weights


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=parse_size, default=[512, 512], help='HEIGHTxWIDTH (default 512x512)')
    parser.add_argument('--models', nargs='+', choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument('--repeat', type=int, default=3, help='timed eval runs after one warm-up (default 3)')
    parser.add_argument('--train_repeat', type=int, default=3, help='timed training steps after one warm-up')
    parser.add_argument('--no_train', dest='train', action='store_false', help='skip the training step')
    parser.add_argument('--weights', nargs='+', default=[], metavar='MODEL=FILE',
                        help='checkpoints to use instead of random weights, e.g. pspnet=model.pdparams')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.child:
        return child_main(json.loads(args.child))
    if args.repeat < 3 or args.train_repeat < 1:
        raise SystemExit('--repeat: expected at least 3 (median of 3 or more); --train_repeat at least 1')
    args.weights = parse_weights(args.weights)
    from paddle_psp.core.runtime import apply_cpu_tuning, physical_cores
    apply_cpu_tuning()  # for this process' MAC counting only; every timing runs in a child
    threads = physical_cores()
    envs = {'default': default_env(), 'tuned': tuned_env()}
    print(f'load average at start: {os.getloadavg()[0]:.2f} (timings are noisy above ~1.5 on 2 cores)')
    with tempfile.TemporaryDirectory(prefix='psp_speed_') as work:
        gemm = run_child({'task': 'gemm', 'threads': threads, 'cache_dir': os.path.join(work, 'cache')},
                         dict(envs['tuned'], OMP_NUM_THREADS=str(threads)), 'GEMM peak')
        best = max(gemm['rates_gflops'].items(), key=lambda item: item[1])
        gemm_peak = (best[1], best[0])
        results, macs = {}, {}
        for name in args.models:
            macs[name] = count_macs(name, args.size)
            results[name] = benchmark_model(name, args, work, envs)
    print()
    print(f'Machine: {machine_description(gemm["rates_gflops"], threads)}. Load average at the end: '
          f'{os.getloadavg()[0]:.2f}.')
    print()
    print(f'Evaluation forward, batch 1, {args.size[0]}x{args.size[1]}, fp32, median of {args.repeat} after '
          f'a warm-up; GEMM peak = best of the GEMMs above ({gemm_peak[1]}):')
    print()
    print(eval_table(results, macs, gemm_peak))
    if args.train:
        print()
        print(f'Training step, batch 2, {args.size[0]}x{args.size[1]}, median of {args.train_repeat} after a '
              'warm-up:')
        print()
        print(train_table(results))
    print()
    print(target_lines(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
