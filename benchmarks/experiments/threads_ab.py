"""Interleaved A/B of Paddle's math threads (paddle-psp's CPU tuning sets them to the physical cores): one
thread, Paddle's default, against N, for the training step and the dygraph evaluation forward.

Usage (from the repository root; only an otherwise idle machine gives times, a busy one ratios at best, so
the load average is printed, and the CPU time beside the wall time)::

    python benchmarks/experiments/threads_ab.py                              # both models, train 512x512 batch 2, eval 512x512
    python benchmarks/experiments/threads_ab.py --train 256x256 --size 256x256 --rounds 3    # shorter

Each measurement is one :mod:`speed_paths` subprocess (one warm-up run, then ``--repeat`` timed runs), in
the environment ``paddleseg`` gives the task (``tuning_env``: the training tuning for the step), with
``FLAGS_paddle_num_threads`` 1 or N (``--threads``, default the physical cores), which the child applies
in-process and reports (a child on another count stops the run). The variants alternate, 1 N 1 N ..., so that a change of load hits both alike; each row is the
median over ``--rounds`` children. With N threads the CPU time stays about the same or rises (the threads
also wait on each other) while the wall time falls: the wall ratio is the speed-up, meaningful idle only.
"""
import argparse
import os
import sys
import tempfile

import numpy as np

from paddle_psp.core import machine, runtime

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/: speed.py, speed_paths.py
from speed import MODELS, parse_size, tuned_env  # noqa: E402 (after the path)
from speed_paths import make_weights  # noqa: E402
from tuning_ab import OURS, header, interleaved, table  # noqa: E402


def envs(threads):
    """{'eval 1', 'eval N', 'train 1', 'train N'}: paddleseg's tuning of an evaluating / training process,
    with 1 or ``threads`` math threads."""
    environments = {}
    for task, training in (('eval', False), ('train', True)):
        for count in (1, threads):
            environments[f'{task} {count}'] = dict(tuned_env(training=training),
                                                   **{runtime.THREADS_VAR: str(count)})
    return environments


def checked(results, counts):
    """``results`` ({label: [child results]}) after checking that each child computed on the thread count
    ``counts`` gives for its label (it reports the count it applied)."""
    for label, rows in results.items():
        wrong = [row['math_threads'] for row in rows if row['math_threads'] != counts[label]]
        if wrong:
            raise SystemExit(f'{label}: a child ran on {wrong[0]} math threads, expected {counts[label]}')
    return results


def build_parser():
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='*', choices=sorted(MODELS), default=['pspnet', 'deeplabv3'])
    parser.add_argument('--size', type=parse_size, default=[512, 512],
                        help='evaluation forward HEIGHTxWIDTH, batch 1 (default 512x512)')
    parser.add_argument('--train', type=parse_size, default=[512, 512], metavar='SIZE',
                        help='training step HEIGHTxWIDTH, batch 2 (default 512x512)')
    parser.add_argument('--no_eval', action='store_true', help='skip the evaluation forward')
    parser.add_argument('--no_train', action='store_true', help='skip the training step')
    parser.add_argument('--threads', type=int, default=runtime.physical_cores(),
                        help='N, the thread count compared with 1 (default: the physical cores)')
    parser.add_argument('--rounds', type=int, default=3, help='children per variant, alternating (default 3)')
    parser.add_argument('--repeat', type=int, default=1, help='timed runs per child after a warm-up (default 1)')
    return parser


def main(argv=None):
    """Run the interleaved A/B; print the header, one table per model and task, and the load at the end."""
    args = build_parser().parse_args(argv)
    if args.rounds < 3 or args.repeat < 1 or args.threads < 2:
        raise SystemExit('--rounds: expected at least 3 (median of 3 or more); --repeat at least 1; '
                         '--threads at least 2')
    environments = envs(args.threads)
    print(header(environments, script='threads_ab.py'), flush=True)
    one, many = '1 thread', f'{args.threads} threads'
    counts = {one: 1, many: args.threads}
    tables = []
    with tempfile.TemporaryDirectory(prefix='psp_threads_ab_') as work:
        batch = os.path.join(work, 'input.npy')
        np.save(batch, np.random.default_rng(1).uniform(-1, 1, (1, 3, *args.size)).astype('float32'))
        for name in args.models:
            weights = os.path.join(work, f'{name}.pdparams')
            make_weights(name, weights)
            if not args.no_train:
                spec = {'task': 'train', 'model': name, 'weights': weights, 'size': args.train,
                        'repeat': args.repeat}
                variants = [(one, OURS, 'train 1'), (many, OURS, f'train {args.threads}')]
                results = checked(interleaved(variants, args.rounds, spec, environments), counts)
                tables.append(table(f'{MODELS[name]}, training step, batch 2, {args.train[0]}x{args.train[1]}',
                                    results, one))
            if not args.no_eval:
                spec = {'task': 'eval', 'model': name, 'weights': weights, 'input': batch, 'fast': False,
                        'repeat': args.repeat, 'output': os.path.join(work, 'out.npy'), 'cache_dir': work}
                variants = [(one, OURS, 'eval 1'), (many, OURS, f'eval {args.threads}')]
                results = checked(interleaved(variants, args.rounds, spec, environments), counts)
                tables.append(table(f'{MODELS[name]}, dygraph evaluation forward, batch 1, '
                                    f'{args.size[0]}x{args.size[1]}', results, one))
    print()
    print('\n\n'.join(tables))
    print(f'\nload average at the end: {machine.load_average_text()} '
          f'({runtime.physical_cores()} cores: ~{args.threads} is the measured child with {args.threads} threads)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
