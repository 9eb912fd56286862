"""Speed of paddle-psp against PaddleSeg 2.8 on this machine: evaluation forward and training step.

Usage (from the repository root; the default run is long, mostly PaddleSeg's training step, and timings
are only meaningful on an otherwise idle machine, so the load average is printed beside each)::

    python benchmarks/speed.py                      # PSPNet and DeepLabV3 R50 OS8, 512x512
    python benchmarks/speed.py --size 512x1024      # Cityscapes-like aspect
    python benchmarks/speed.py --models pspnet --no_train --repeat 5

It prints measurements and ratios, no pass/fail verdicts. The first line says when and where: the date,
the CPU, which code path Paddle's bundled MKL takes (``MKL_DEBUG_CPU_TYPE`` selects it on AMD CPUs; on
Intel CPUs MKL dispatches natively) and the tuning the tuned paths get.

Every measured path runs in its own Python subprocess (:mod:`speed_paths`), so environment variables
(``MKL_DEBUG_CPU_TYPE``, thread counts, ``FLAGS_*``, ``MALLOC_*``) apply from the start and peak RSS
(``VmHWM`` of the child, see :func:`paddle_psp.core.machine.peak_rss_bytes`) is per path:

- ``PaddleSeg 2.8 dygraph, default env``: PaddleSeg's own model class (``paddleseg.models.PSPNet`` /
  ``DeepLabV3``) as its users run it: the environment without any of our tuning variables. In eval mode
  PaddleSeg's PSPNet also computes its auxiliary head; its output list starts with the main logits.
- ``PaddleSeg 2.8 dygraph, paddle-psp tuning``: the same model and code in the environment ``paddleseg``
  gives its own processes (:func:`paddle_psp.core.runtime.tuning_env`: MKL code path, math threads and, for the
  training step, the malloc setting): what the tuning alone gives a PaddleSeg user.
- ``paddle-psp dygraph, tuned``: our model under :func:`paddle_psp.core.runtime.tuning_env` (its training
  step under the training tuning, as ``paddleseg train`` runs it).
- ``..., malloc reuse`` (training step only; ``--no_reuse`` skips them): the two tuned rows again with
  ``PADDLE_PSP_TRAIN_MALLOC=reuse``, the opt-in malloc setting that keeps freed blocks for reuse instead
  of returning them to the system (same numbers; less time, more peak RSS).
- ``paddle-psp fast``: :func:`paddle_psp.inference.forward.model_forward` (Paddle Inference, oneDNN), tuned.

All paths load the same weights (random, seeded, with batch-norm statistics calibrated on a random image and
random conv biases so logits are not degenerate; or ``--weights`` checkpoints) and get the same input. Times
are the median of ``--repeat`` runs after one warm-up run (the CPU column: the median CPU seconds, user +
system over all threads, which a busy machine inflates far less than the wall time); the export of the fast
path is cached and its one-off cost is reported separately. GMAC counts conv multiply-accumulates analytically
(:mod:`speed_macs`); GFLOP/s = 2 x GMAC / time, and the GEMM peak is the best fp32 GEMM (M = N = K = 4096:
numpy, paddle.matmul, and oneDNN through Paddle Inference as a 1x1 convolution) measured here on the same
number of threads. The fast path's GMAC are those it executes (its exact rewrite, without kernel taps on zero
padding, which oneDNN skips). Argmax agreement is against PaddleSeg's dygraph output.

The training step (batch 2, forward + backward + Momentum SGD step, weight decay 4e-5, loss = cross-
entropy on the main logits + 0.4 x on the auxiliary ones for PSPNet, ignore index 255) uses the same
code for every path, but for its end: PaddleSeg's model keeps its gradients and zeroes them, as PaddleSeg's
loop does, paddle-psp's frees them, as ``paddleseg train`` does (the same updates; a lower peak RSS).
PaddleSeg's own CrossEntropyLoss does not run on Paddle 3.3 (type-promotion error), so all use paddle-psp's
ZooCrossEntropyLoss.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import paddle
import paddleseg

from paddle_psp.core import machine, runtime
from speed_macs import count_macs
from speed_paths import GIB, make_weights

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PATHS_SCRIPT = os.path.join(HERE, 'speed_paths.py')
# Variables that change Paddle's CPU speed or memory; stripped for the "default env" paths.
TUNING_VARIABLES = ('MKL_DEBUG_CPU_TYPE', 'MKL_ENABLE_INSTRUCTIONS', 'MKL_NUM_THREADS', 'MKL_DISABLE_FAST_MM',
                    'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'KMP_AFFINITY', 'KMP_BLOCKTIME',
                    'FLAGS_use_mkldnn', 'FLAGS_use_onednn', 'FLAGS_paddle_num_threads',
                    'MALLOC_MMAP_THRESHOLD_', 'MALLOC_MMAP_MAX_', 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_TOP_PAD_',
                    'MALLOC_ARENA_MAX', 'GLIBC_TUNABLES', runtime.TRAIN_MALLOC_VAR)
MODELS = {'pspnet': 'PSPNet ResNet50 OS8', 'deeplabv3': 'DeepLabV3 ResNet50 OS8'}
PADDLESEG_TUNED = 'PaddleSeg 2.8 dygraph, paddle-psp tuning'


# ------------------------------------------------------------------------------------------ environments
def default_env():
    """This process' environment without anything that tunes Paddle's CPU speed."""
    env = {key: value for key, value in os.environ.items() if key not in TUNING_VARIABLES}
    env[runtime.NO_TUNING_VAR] = '1'
    return env


def tuned_env(training=False, malloc=None):
    """The default environment plus paddle-psp's CPU tuning (what ``paddleseg`` applies to an evaluating or,
    with ``training``, a training process; ``malloc``: its ``PADDLE_PSP_TRAIN_MALLOC``, default unset)."""
    env = default_env()
    env.pop(runtime.NO_TUNING_VAR)
    if malloc:
        env[runtime.TRAIN_MALLOC_VAR] = malloc
    env.update(runtime.tuning_env(env, training=training))
    return env


def tuning_text(env):
    """The tuning variables set in ``env``, as ``KEY=VALUE, ...`` ('none' when there are none)."""
    return ', '.join(f'{key}={value}' for key, value in env.items() if key in TUNING_VARIABLES) or 'none'


def mkl_code_path(env, cpuinfo):
    """Which code path Paddle's bundled MKL takes in a process with environment ``env``.

    ``MKL_DEBUG_CPU_TYPE`` only matters on AMD CPUs, where MKL otherwise runs its generic SSE path; on
    Intel CPUs MKL dispatches to its best path natively.
    """
    value = env.get('MKL_DEBUG_CPU_TYPE')
    if machine.cpu_vendor(cpuinfo) == 'GenuineIntel':
        return 'native dispatch (Intel)'
    if not runtime.is_amd_cpu(cpuinfo):
        return f'MKL_DEBUG_CPU_TYPE={value or "unset"} (CPU neither Intel nor AMD: dispatch unknown)'
    if value is None:
        return 'generic SSE path (AMD, MKL_DEBUG_CPU_TYPE unset)'
    isa = {code: name for code, _, name in runtime.MKL_CPU_TYPES}.get(value, 'a path paddle-psp does not pick')
    return f'MKL_DEBUG_CPU_TYPE={value}: {isa} (AMD)'


ISA_FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'amx_int8')


def cpu_kind(cpuinfo):
    """' (family F model M; flags ...)': the cpuinfo family and model, which tell CPU generations apart when
    the model name does not (a virtual machine's 'AMD EPYC'), and which of :data:`ISA_FLAGS` it has."""
    family, model = (machine.cpuinfo_field(name, cpuinfo) for name in ('cpu family', 'model'))
    flags = machine.cpu_flags(cpuinfo)
    if not (family or flags):
        return ''
    have = [flag for flag in ISA_FLAGS if flag in flags]
    lacks = [flag for flag in ISA_FLAGS if flag not in flags]
    return (f' (family {family or "?"} model {model or "?"}; flags {" ".join(have) or "none of these"}'
            + (f'; no {" ".join(lacks)})' if lacks else ')'))


def code_version():
    """The project's commit (``git describe --always --dirty``), or 'unknown' outside a git checkout."""
    try:
        return subprocess.run(['git', 'describe', '--always', '--dirty'], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip() or 'unknown'
    except (OSError, subprocess.SubprocessError):
        return 'unknown'


def where_and_when(script, cpuinfo=None):
    """The start of every benchmark's header: ``script``, the date, the commit, the CPU's vendor, name, family,
    model and instruction sets (:func:`cpu_kind`)."""
    cpuinfo = machine.read_cpuinfo() if cpuinfo is None else cpuinfo
    vendor = machine.cpu_vendor(cpuinfo) or 'unknown vendor'
    model = machine.cpu_name(cpuinfo) or 'unknown CPU'
    date = datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')
    return f'{script}, {date}, code at {code_version()}: CPU {vendor} {model}{cpu_kind(cpuinfo)}'


def header_line(envs, script='speed.py'):
    """When and where (:func:`where_and_when`), MKL's code path and the tuning of each path kind (``envs``:
    {'default': env, 'tuned': env})."""
    cpuinfo = machine.read_cpuinfo()
    paths = {kind: mkl_code_path(env, cpuinfo) for kind, env in envs.items()}
    mkl = (paths['tuned'] + ' on every path' if paths['default'] == paths['tuned']
           else f'default env: {paths["default"]}; tuned: {paths["tuned"]}')
    train, reuse = envs.get('tuned train'), envs.get('tuned train reuse')
    return (where_and_when(script, cpuinfo)
            + f'; MKL code path: {mkl}; tuning of the tuned paths: {tuning_text(envs["tuned"])}'
            + (f', of the tuned training step: {tuning_text(train)}' if train else '')
            + (f', of its malloc reuse rows: {tuning_text(reuse)}' if reuse else '') + ' (default env paths: none)')


def machine_line(rates, threads):
    """Cores, memory, ISA, versions and the fp32 GEMM rates measured in the GEMM child."""
    logical = machine.usable_cpus()
    memory = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB
    isa = runtime.mkl_cpu_type()[1] or 'no AVX2'
    gemms = ', '.join(f'{name} {rate:.0f}' for name, rate in rates.items())
    return (f'{threads} physical cores / {logical} logical, {memory:.0f} GiB RAM, {isa}; Python '
            f'{platform.python_version()}, Paddle {paddle.__version__}, PaddleSeg {paddleseg.__version__}; '
            f'fp32 GEMM (4096^3, {threads} threads): {gemms} GFLOP/s')


# ----------------------------------------------------------------------------------------------- running
def run_child(spec, env, label):
    """Run ``spec`` in a :mod:`speed_paths` subprocess with ``env``; its result dict (exits on failure)."""
    print(f'  {label} ...', end='', flush=True)
    start = time.perf_counter()
    command = [sys.executable, PATHS_SCRIPT, json.dumps(spec)]
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


def agreement(reference, other):
    """Fraction of pixels whose argmax agrees between two saved logits arrays."""
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
             (PADDLESEG_TUNED, 'tuned', True, False),
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
        paths = [('PaddleSeg 2.8 dygraph, default env', 'default', True),
                 (PADDLESEG_TUNED, 'tuned train', True),
                 ('paddle-psp dygraph, tuned', 'tuned train', False)]
        if 'tuned train reuse' in envs:
            paths += [(PADDLESEG_TUNED + ', malloc reuse', 'tuned train reuse', True),
                      ('paddle-psp dygraph, tuned, malloc reuse', 'tuned train reuse', False)]
        for label, env, paddleseg in paths:
            spec = {'task': 'train', 'model': name, 'weights': weights, 'size': args.size,
                    'repeat': args.train_repeat, 'paddleseg': paddleseg}
            train_rows.append(dict(run_child(spec, envs[env], label), label=label))
    return rows, train_rows


# ------------------------------------------------------------------------------------------------ tables
def eval_table(results, macs, gemm_peak):
    """The evaluation-forward table (markdown) and its note on GMAC and the one-off export."""
    lines = ['| model | path | time (s) | speed-up | CPU (s) | GMAC | GFLOP/s | % of GEMM peak | argmax agreement '
             '| peak RSS (GiB) | load avg |', '|---|---|---|---|---|---|---|---|---|---|---|']
    for name, (rows, _) in results.items():
        base = rows[0]
        for row in rows:
            gmac = macs[name]['paddleseg' if row['paddleseg'] else ('fast' if row['fast'] else 'model')]
            gmac_text = f'{gmac:.0f}' + (f' (model {macs[name]["model"]:.0f})' if row['fast'] else '')
            rate = 2 * gmac / row['median_s']
            agree = 'reference' if row is base else f'{100 * row["agreement"]:.3f} %'
            lines.append(f'| {MODELS[name]} | {row["label"]} | {row["median_s"]:.2f} | '
                         f'{base["median_s"] / row["median_s"]:.1f}x | {row["cpu_s"]:.2f} | {gmac_text} | {rate:.0f} | '
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
    """The training-step table (markdown)."""
    lines = ['| model | path | step (s) | speed-up | CPU (s) | peak RSS (GiB) | load avg |',
             '|---|---|---|---|---|---|---|']
    for name, (_, rows) in results.items():
        for row in rows:
            lines.append(f'| {MODELS[name]} | {row["label"]} | {row["median_s"]:.2f} | '
                         f'{rows[0]["median_s"] / row["median_s"]:.1f}x | {row["cpu_s"]:.2f} | '
                         f'{row["peak_rss_gib"]:.2f} | {load_range(row)} |')
    return '\n'.join(lines)


def load_range(row):
    """The 1-minute load average when the path's child started and ended (2 cores: ~1 is the child)."""
    return f'{row["load_before"]:.1f}-{row["load_after"]:.1f}'


def ratio_lines(results):
    """Per model and task, three time ratios (no verdicts): the tuning alone (PaddleSeg default env / PaddleSeg
    under paddle-psp's tuning), paddle-psp's code on top (PaddleSeg tuned / paddle-psp's fastest path), and
    both (PaddleSeg default env / paddle-psp), with argmax agreement (eval) or peak RSS (train)."""
    lines = []
    for name, (rows, train_rows) in results.items():
        lines.append(f'- {MODELS[name]} eval: ' + three_ratios(rows[0], rows[1], rows[-1], 'fast path')
                     + f', argmax agreement {100 * rows[-1]["agreement"]:.3f} %')
        if train_rows:
            theirs, tuned, ours = train_rows[:3]
            lines.append(f'- {MODELS[name]} train step: ' + three_ratios(theirs, tuned, ours, 'paddle-psp')
                         + f', peak RSS paddle-psp {ours["peak_rss_gib"]:.2f} GiB, PaddleSeg '
                         f'{theirs["peak_rss_gib"]:.2f} GiB default, {tuned["peak_rss_gib"]:.2f} GiB tuned')
        if len(train_rows) == 5:
            tuned, ours = train_rows[3:]
            lines.append(f'- {MODELS[name]} train step, both tuned rows with malloc reuse: '
                         + three_ratios(train_rows[0], tuned, ours, 'paddle-psp')
                         + f', peak RSS paddle-psp {ours["peak_rss_gib"]:.2f} GiB, PaddleSeg tuned '
                         f'{tuned["peak_rss_gib"]:.2f} GiB')
    return '\n'.join(lines)


def three_ratios(default, tuned, ours, ours_name):
    """``default`` / ``tuned`` (the tuning alone), ``tuned`` / ``ours`` (the code on top) and ``default`` /
    ``ours`` (what a PaddleSeg user gains), from the rows' median times, as text."""
    def ratio(slow, fast):
        return f'{slow["median_s"] / fast["median_s"]:.1f}x'
    return (f'tuning alone (PaddleSeg default / PaddleSeg tuned) {ratio(default, tuned)}, code on top '
            f'(PaddleSeg tuned / {ours_name}) {ratio(tuned, ours)}, in all (PaddleSeg default / '
            f'{ours_name}) {ratio(default, ours)}')


# ------------------------------------------------------------------------------------------------ command
def parse_size(text):
    """``HEIGHTxWIDTH`` -> [height, width] (each at least 64)."""
    try:
        height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r}: expected HEIGHTxWIDTH, e.g. 512x1024') from None
    if height < 64 or width < 64:
        raise argparse.ArgumentTypeError(f'{text!r}: expected sides of at least 64 pixels')
    return [height, width]


def parse_weights(items):
    """``MODEL=FILE`` items -> {model: file}."""
    weights = {}
    for item in items:
        name, _, path = item.partition('=')
        if name not in MODELS or not os.path.isfile(path):
            raise SystemExit(f'--weights {item}: expected MODEL=FILE with MODEL in {", ".join(MODELS)} and '
                             'an existing .pdparams file')
        weights[name] = path
    return weights


def build_parser():
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=parse_size, default=[512, 512], help='HEIGHTxWIDTH (default 512x512)')
    parser.add_argument('--models', nargs='+', choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument('--repeat', type=int, default=3, help='timed eval runs after one warm-up (default 3)')
    parser.add_argument('--train_repeat', type=int, default=3, help='timed training steps after one warm-up')
    parser.add_argument('--no_train', dest='train', action='store_false', help='skip the training step')
    parser.add_argument('--no_reuse', dest='reuse', action='store_false',
                        help='skip the training rows with PADDLE_PSP_TRAIN_MALLOC=reuse')
    parser.add_argument('--weights', nargs='+', default=[], metavar='MODEL=FILE',
                        help='checkpoints to use instead of random weights, e.g. pspnet=model.pdparams')
    return parser


def main(argv=None):
    """Measure every path of the chosen models and print the header, the tables and the ratios."""
    args = build_parser().parse_args(argv)
    if args.repeat < 3 or args.train_repeat < 1:
        raise SystemExit('--repeat: expected at least 3 (median of 3 or more); --train_repeat at least 1')
    args.weights = parse_weights(args.weights)
    runtime.apply_cpu_tuning()  # for this process' MAC counting only; every timing runs in a child
    threads = runtime.physical_cores()
    envs = {'default': default_env(), 'tuned': tuned_env(), 'tuned train': tuned_env(training=True)}
    if args.train and args.reuse:
        envs['tuned train reuse'] = tuned_env(training=True, malloc='reuse')
    print(header_line(envs))
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
    print(f'Machine: {machine_line(gemm["rates_gflops"], threads)}. Load average at the end: '
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
    print(ratio_lines(results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
