"""Does a training step run as a static program on Paddle's old IR, with and without oneDNN kernels?

Usage (from the repository root; a minute or two on 2 cores)::

    python benchmarks/experiments/train_old_ir.py                  # old IR, then old IR + oneDNN, 128x128
    python benchmarks/experiments/train_old_ir.py --size 256x256

``train_profile.py``'s ``to_static+onednn`` lever fails on the PIR program Paddle 3 builds by default.
Paddle reads ``FLAGS_enable_pir_api`` (the IR ``paddle.jit.to_static`` builds) and
``FLAGS_enable_pir_in_executor`` (whether the executor translates a program to PIR) when it starts, so each
variant runs in a child process started with both set to 0: ``speed.py``'s training step
(:func:`speed_paths.make_train_step`) of PSPNet-R50 OS8 with its forward as a ``to_static`` program on one
math thread, first plain, then with ``FLAGS_use_mkldnn`` set. Each child prints its step times and losses
against the dygraph step's, or the one line of Paddle's error it stopped on.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/: speed.py, train_profile.py
from speed import parse_size  # noqa: E402 (after the path)
from train_profile import error_summary  # noqa: E402

OLD_IR = {'FLAGS_enable_pir_api': '0', 'FLAGS_enable_pir_in_executor': '0'}
VARIANTS = ('dygraph', 'old IR program', 'old IR program + oneDNN')


def child(variant, size, steps):
    """Run ``steps`` training steps of ``variant`` in this process; print ``RESULT <json>``."""
    import paddle  # lazy: the parent imports nothing of Paddle's
    from paddle_psp.core import runtime
    from speed_paths import build_model, make_train_step
    runtime.set_math_threads(1)
    paddle.seed(0)
    model = build_model('pspnet', paddleseg=False)
    forward = paddle.jit.to_static(model, full_graph=True) if variant != 'dygraph' else None
    step = make_train_step(model, size, forward=forward)
    if variant.endswith('oneDNN'):
        paddle.set_flags({'FLAGS_use_mkldnn': True})
    paddle.seed(1)
    result = {'losses': [], 'times_s': []}
    try:
        for _ in range(steps):
            start = time.perf_counter()
            loss, _ = step()
            result['losses'].append(float(loss))
            result['times_s'].append(time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 (a variant that does not run is the finding)
        result['error'] = error_summary(error)
    print('RESULT ' + json.dumps(result), flush=True)


def run_variant(variant, size, steps):
    """The child's result for ``variant`` (old-IR flags in its environment unless it is the dygraph step)."""
    env = dict(os.environ, **(OLD_IR if variant != 'dygraph' else {}))
    spec = json.dumps({'variant': variant, 'size': size, 'steps': steps})
    process = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', spec], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith('RESULT ')]
    if not lines:
        return {'error': f'child exited {process.returncode}: ' + ' '.join(process.stderr.split()[-40:])}
    return json.loads(lines[-1][len('RESULT '):])


def main(argv=None):
    """Run every variant and print one line each, with the load average."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=parse_size, default=[128, 128], help='HEIGHTxWIDTH (default 128x128)')
    parser.add_argument('--steps', type=int, default=3, help='training steps per variant (default 3)')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        return child(spec['variant'], spec['size'], spec['steps'])
    print(f'train_old_ir.py: PSPNet-R50 OS8 training step, batch 2, {args.size[0]}x{args.size[1]}, one math '
          f'thread; load average {os.getloadavg()[0]:.2f}')
    for variant in VARIANTS:
        result = run_variant(variant, args.size, args.steps)
        if 'error' in result and not result.get('losses'):
            print(f'- {variant}: fails: {result["error"]}')
            continue
        times = ', '.join(f'{value:.2f}' for value in result['times_s'])
        losses = ', '.join(f'{value:.6f}' for value in result['losses'])
        print(f'- {variant}: steps {times} s; losses {losses}' + (f'; then fails: {result["error"]}'
                                                               if 'error' in result else ''))
    print(f'load average at the end: {os.getloadavg()[0]:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
