"""Interleaved A/B of glibc's ``MALLOC_MMAP_THRESHOLD_`` (paddle-psp's CPU tuning for training processes) and,
for the training step, of ``PADDLE_PSP_TRAIN_MALLOC=reuse`` (``MALLOC_MMAP_MAX_=0``, no trimming).

Usage (from the repository root; timings mean something only on an otherwise idle machine, so the load
average is printed, and CPU time, which load inflates far less, beside the wall time)::

    python benchmarks/experiments/tuning_ab.py                    # eval forward, both models, 512x512: ~6 min idle, 2 cores
    python benchmarks/experiments/tuning_ab.py --models --train 256x256 --train_models deeplabv3 pspnet   # training step
    python benchmarks/experiments/tuning_ab.py --models --train 512x512 --train_reference   # peak RSS as speed.py's (long)
    python benchmarks/experiments/tuning_ab.py --models --train 512x512 --train_models pspnet deeplabv3 --repeat 3  # reuse: steady from step 3
    python benchmarks/experiments/tuning_ab.py --models --train 512x512 --train_models pspnet deeplabv3 --repeat 3 --train_gradients

Each measurement is one :mod:`speed_paths` subprocess (as in ``speed.py``: one warm-up run, then
``--repeat`` timed runs; peak RSS of that child alone). The variants alternate, ABCD ABCD ..., so that a
change of load hits all of them alike; each table row gives the median over ``--rounds`` children.
Evaluation forward: paddle-psp's and PaddleSeg's own model, each without ("off") and with ("on") the
variable, every other variable as ``speed.py``'s tuned paths, so that the two models meet in the same
environment. Training step (batch 2, ``--train SIZE``): paddle-psp's model off, on and with the malloc
reuse variables instead ("reuse"; ``--train_reference``:
also PaddleSeg's in its default environment, as ``speed.py`` runs it). ``--train_gradients`` times paddle-psp's
step instead with its gradients freed after each step, as ``paddleseg train`` does, and zeroed and kept, as
PaddleSeg's loop does (:mod:`paddle_psp.engine.gradients`), under "on" and "reuse".
"""
import argparse
import os
import statistics
import sys
import tempfile

import numpy as np

from paddle_psp.core import machine, runtime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/: speed.py, speed_paths.py
from speed import MODELS, default_env, parse_size, run_child, tuning_text, where_and_when  # noqa: E402 (after the path)
from speed_paths import make_weights  # noqa: E402

VAR = runtime.MMAP_THRESHOLD_VAR


def envs():
    """{'off': speed.py's environment plus the MKL tuning without the variable, 'on': with it, 'reuse': with
    ``PADDLE_PSP_TRAIN_MALLOC=reuse``'s variables instead, 'default': speed.py's default environment (no tuning
    at all)}."""
    base = default_env()
    base.pop(runtime.NO_TUNING_VAR)
    base.update(runtime.tuning_env(base))  # with FLAGS_paddle_num_threads: the math threads paddleseg uses
    base.pop(VAR, None)
    base[runtime.NO_TUNING_VAR] = '1'  # children import paddle-psp; nothing may add the variable behind us
    return {'off': base, 'on': dict(base, **{VAR: str(runtime.MMAP_THRESHOLD)}),
            'reuse': dict(base, **runtime.REUSE_MALLOC), 'default': default_env()}


def interleaved(variants, rounds, spec, environments):
    """Run ``spec`` for each (label, spec changes, environment name) variant ``rounds`` times, alternating;
    {label: [result of each child]}."""
    results = {label: [] for label, _, _ in variants}
    for round_index in range(rounds):
        for label, changes, env in variants:
            results[label].append(run_child(dict(spec, **changes), environments[env],
                                            f'round {round_index + 1}: {label}'))
    return results


def table(title, results, baseline):
    """Markdown rows per variant: medians over its children of the wall time, the CPU time (user + system)
    and the system time, the ratios to ``baseline``'s medians, the highest peak RSS and the load range."""
    def median(label, key):
        return statistics.median(row[key] for row in results[label])
    lines = [title, '', '| path | wall (s) | each child (s) | wall / base | CPU (s) | CPU / base | system (s) '
             '| peak RSS (GiB, max) | load avg |', '|---|---|---|---|---|---|---|---|---|']
    for label, rows in results.items():
        times = ' '.join(f'{row["median_s"]:.2f}' for row in rows)
        wall, cpu = median(label, 'median_s'), median(label, 'cpu_s')
        load = f'{min(row["load_before"] for row in rows):.1f}-{max(row["load_after"] for row in rows):.1f}'
        lines.append(f'| {label} | {wall:.2f} | {times} | {wall / median(baseline, "median_s"):.3f} | {cpu:.2f} '
                     f'| {cpu / median(baseline, "cpu_s"):.3f} | {median(label, "system_s"):.2f} | '
                     f'{max(row["peak_rss_gib"] for row in rows):.2f} | {load} |')
    return '\n'.join(lines)


def build_parser():
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='*', choices=sorted(MODELS), default=['pspnet', 'deeplabv3'],
                        help='models whose evaluation forward is measured (none: skip it)')
    parser.add_argument('--size', type=parse_size, default=[512, 512], help='eval HEIGHTxWIDTH (default 512x512)')
    parser.add_argument('--rounds', type=int, default=3, help='children per variant, alternating (default 3)')
    parser.add_argument('--repeat', type=int, default=1, help='timed runs per child after a warm-up (default 1)')
    parser.add_argument('--train', type=parse_size, default=None, metavar='SIZE',
                        help='also measure a training step (batch 2) at HEIGHTxWIDTH, e.g. 384x384')
    parser.add_argument('--train_models', nargs='+', choices=sorted(MODELS), default=['deeplabv3'])
    parser.add_argument('--train_reference', action='store_true',
                        help="also PaddleSeg's training step in its default environment (peak RSS reference)")
    parser.add_argument('--train_gradients', action='store_true',
                        help="training variants: paddle-psp's step with its gradients freed (as paddleseg train) "
                             "and zeroed (as PaddleSeg's loop), under 'on' and 'reuse'")
    return parser


def header(environments, script='tuning_ab.py'):
    """When and where: the date, the CPU, the tuning variables of each environment and the load average."""
    cpuinfo = machine.read_cpuinfo()
    tuning = '; '.join(f'"{name}": {tuning_text(env)}' for name, env in environments.items())
    return (f'{where_and_when(script, cpuinfo)}, {machine.usable_cpus()} usable CPUs, '
            f'{runtime.physical_cores(cpuinfo)} physical cores; {tuning}; '
            f'load average at start: {machine.load_average_text()}')


# (label, changes to the child's spec, environment): paddle-psp's model or PaddleSeg's
OURS, PADDLESEG = {'paddleseg': False}, {'paddleseg': True}
EVAL_VARIANTS = [('paddle-psp, off', OURS, 'off'), ('paddle-psp, on', OURS, 'on'),
                 ('PaddleSeg, off', PADDLESEG, 'off'), ('PaddleSeg, on', PADDLESEG, 'on')]
TRAIN_VARIANTS = [('paddle-psp, off', OURS, 'off'), ('paddle-psp, on', OURS, 'on'),
                  ('paddle-psp, reuse', OURS, 'reuse')]
TRAIN_REFERENCE = ('PaddleSeg, default env', PADDLESEG, 'default')
# --train_gradients: paddle-psp's step ending as `paddleseg train` does (gradients freed) or as PaddleSeg's loop
ZEROED = dict(OURS, zero_gradients=True)
GRADIENT_VARIANTS = [('paddle-psp, on', OURS, 'on'), ('paddle-psp, on, gradients zeroed', ZEROED, 'on'),
                     ('paddle-psp, reuse', OURS, 'reuse'), ('paddle-psp, reuse, gradients zeroed', ZEROED, 'reuse')]


def main(argv=None):
    """Run the interleaved A/B and print the header and one table per model and task."""
    args = build_parser().parse_args(argv)
    if args.rounds < 3 or args.repeat < 1:
        raise SystemExit('--rounds: expected at least 3 (median of 3 or more); --repeat at least 1')
    environments = envs()
    print(header(environments), flush=True)
    train_models = args.train_models if args.train else []
    tables = []
    with tempfile.TemporaryDirectory(prefix='psp_tuning_ab_') as work:
        batch = os.path.join(work, 'input.npy')
        np.save(batch, np.random.default_rng(1).uniform(-1, 1, (1, 3, *args.size)).astype('float32'))
        weights = {name: os.path.join(work, f'{name}.pdparams') for name in set(args.models) | set(train_models)}
        for name, path in weights.items():
            make_weights(name, path)
        for name in args.models:
            spec = {'task': 'eval', 'model': name, 'weights': weights[name], 'input': batch, 'fast': False,
                    'repeat': args.repeat, 'output': os.path.join(work, 'out.npy'), 'cache_dir': work}
            results = interleaved(EVAL_VARIANTS, args.rounds, spec, environments)
            tables.append(table(f'{MODELS[name]}, evaluation forward, batch 1, {args.size[0]}x{args.size[1]}',
                                results, 'paddle-psp, off'))
        for name in train_models:
            spec = {'task': 'train', 'model': name, 'weights': weights[name], 'size': args.train,
                    'repeat': args.repeat}
            variants = GRADIENT_VARIANTS if args.train_gradients else TRAIN_VARIANTS
            variants = variants + ([TRAIN_REFERENCE] if args.train_reference else [])
            results = interleaved(variants, args.rounds, spec, environments)
            tables.append(table(f'{MODELS[name]}, training step, batch 2, {args.train[0]}x{args.train[1]}',
                                results, variants[0][0]))
    print()
    print('\n\n'.join(tables))
    print(f'\nload average at the end: {machine.load_average_text()} (2 cores: ~1 is the measured child)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
