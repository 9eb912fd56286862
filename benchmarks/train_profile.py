"""Where the time of one PSPNet-R50 OS8 training step goes on this CPU, and what Paddle's levers change.

Usage (from the repository root; the default should take about 5 minutes on the idle 2-core Xeon, judged
from ``speed.py``'s step times there)::

    python benchmarks/train_profile.py                       # profile at 512x512, levers at 256x256
    python benchmarks/train_profile.py --size 256x256 --lever_size 128x128 --repeat 2   # a quick look
    python benchmarks/train_profile.py --no_levers            # the profile only

The step is ``speed.py``'s (:func:`speed_paths.make_train_step`: batch 2, main + 0.4 x auxiliary
cross-entropy, backward, Momentum SGD), run in this process with paddle-psp's CPU tuning applied, as
``paddleseg train`` runs it, except its math threads: the step runs on Paddle's default single thread, so
that the parts' GFLOP/s compare with the single-thread GEMM and the ``threads`` lever with the tuning's
count (``benchmarks/experiments/threads_ab.py`` compares the two in separate processes). It prints, with the CPU and load average (:func:`speed.header_line`):

1. One step under ``paddle.profiler`` (after a warm-up step): forward / backward / optimizer time and the
   operators by total time (outermost operator events; a backward node is named by its kernel).
2. The step by part of the model (stem, the four ResNet stages, pyramid pooling, classifier, auxiliary
   head): each part's forward and backward run on its own, on the inputs the full forward gives it, with
   its convolution MACs (:func:`speed_macs.conv_macs_by_layer`) and the GFLOP/s of its forward and
   backward (convolution FLOPs over the part's whole time, batch norms and ReLUs included; backward =
   2 x the forward MACs: input and weight gradients) beside the fp32 GEMM rate of ``paddle.matmul``
   measured here on the same threads.
3. The levers, each against the plain dygraph step, interleaved (plain, lever, plain, lever, ...) after
   one first step each: ``to_static`` (``paddle.jit.to_static`` of the model's forward, PIR program,
   backward through the program), ``onednn`` (``FLAGS_use_mkldnn`` set around a dygraph step),
   ``to_static+onednn`` (both), ``fused_bn_relu`` (each conv-BN-ReLU's batch norm and ReLU as Paddle's
   ``fused_batch_norm_act`` op) and ``threads`` (Paddle's CPU kernels on every physical core instead of
   the one thread Paddle starts with; the CPU s / wall s column shows whether they ran in parallel) and
   ``to_static+threads`` (both: how ``paddleseg train`` runs with ``to_static_training: true``).
   Exactness: every variant starts from the same weights and seed; after its first step the loss and
   every updated weight and batch-norm statistic are compared with the plain step's (max abs
   difference, and that difference over the largest change a value made in the plain step). A lever
   whose first step raises is listed with its error.
"""
import argparse
import os
import re
import resource
import statistics
import sys
import time

import numpy as np

from paddle_psp.core import runtime

runtime.apply_cpu_tuning(training=True)  # before the first paddle computation, as ``paddleseg train`` does
runtime.set_math_threads(1)  # the plain step on Paddle's default thread (see the module docstring)

import paddle  # noqa: E402 (after the tuning)
import paddle.profiler as profiler  # noqa: E402

from paddle_psp.models.layers import ConvBN  # noqa: E402
from speed import default_env, header_line, parse_size, tuned_env  # noqa: E402
from speed_macs import conv_macs_by_layer  # noqa: E402
from speed_paths import build_model, make_train_step, matmul_rate  # noqa: E402

SEED = 0
# Operator groups summed under the operator table (kernel names, forward and backward).
GROUPS = {
    'convolutions': {'conv2d', 'conv2d_grad'},
    'memory-bound (batch norm, ReLU, add, pool, dropout, resize; with gradients)': {
        'batch_norm', 'batch_norm_grad', 'relu', 'relu_grad', 'add', 'add_grad', 'pool2d', 'pool2d_grad',
        'dropout', 'dropout_grad', 'bilinear_interp', 'bilinear_interp_grad'},
    'factored PSP fusion: interpolation products (matmul, matmul_grad)': {'matmul', 'matmul_grad'},
    'factored PSP fusion: weight split, concats (the weight gradient, the products)': {'split', 'concat'},
    'reshape and transpose copies (with gradients)': {'reshape', 'reshape_grad', 'transpose', 'transpose_grad'},
    'optimizer (momentum_)': {'momentum_'},
}
LEVERS = ('to_static', 'onednn', 'to_static+onednn', 'fused_bn_relu', 'threads', 'to_static+threads')


# ----------------------------------------------------------------------------------------------- the step
def new_model(state=None):
    """paddle-psp's PSPNet-R50 OS8 (19 classes, seeded init), with ``state`` loaded when given."""
    paddle.seed(SEED)
    model = build_model('pspnet', paddleseg=False)
    if state is not None:
        model.set_state_dict(state)
    return model


def onednn_flag(enabled):
    """Set ``FLAGS_use_mkldnn`` (``FLAGS_use_onednn`` is its alias) for what follows."""
    paddle.set_flags({'FLAGS_use_mkldnn': enabled})


def set_threads(count):
    """Set the OpenMP / MKL threads of Paddle's CPU kernels (as ``FLAGS_paddle_num_threads`` does at start)."""
    paddle.base.core.set_num_threads(count)


def fuse_bn_relu(model):
    """Make every conv-BN-ReLU of ``model`` compute its batch norm and ReLU as one ``fused_batch_norm_act``
    op (Paddle's fused kernel, training mode), in place."""
    for layer in model.sublayers():
        if isinstance(layer, ConvBN) and layer.relu is not None:
            norm = layer._batch_norm
            layer.normalize = lambda y, bn=norm: paddle._C_ops.fused_batch_norm_act(
                y, bn.weight, bn.bias, bn._mean, bn._variance, bn._momentum, bn._epsilon, 'relu')[0]


def with_setting(step, apply, undo):
    """``step`` with ``apply()`` called before it and ``undo()`` after it."""
    def run():
        apply()
        try:
            return step()
        finally:
            undo()
    return run


def lever_step(lever, size, state):
    """A training step (see :func:`speed_paths.make_train_step`) of a fresh model holding ``state``, with
    ``lever`` applied ('plain' for none); returns (model, step)."""
    model = new_model(state)
    if lever == 'fused_bn_relu':
        fuse_bn_relu(model)
    static = 'to_static' in lever
    forward = paddle.jit.to_static(model, full_graph=True, backend=None) if static else None
    step = make_train_step(model, size, forward=forward)
    if 'onednn' in lever:
        step = with_setting(step, lambda: onednn_flag(True), lambda: onednn_flag(False))
    if 'threads' in lever:
        threads = paddle.get_flags('FLAGS_paddle_num_threads')['FLAGS_paddle_num_threads']
        step = with_setting(step, lambda: set_threads(runtime.physical_cores()), lambda: set_threads(threads))
    return model, step


def timed_once(function, cpu_times=None):
    """Seconds one call of ``function`` takes, and its result; appends the process' CPU seconds of the call
    to the list ``cpu_times`` when given."""
    start, cpu = time.perf_counter(), time.process_time()
    result = function()
    if cpu_times is not None:
        cpu_times.append(time.process_time() - cpu)
    return time.perf_counter() - start, result


# -------------------------------------------------------------------------------------------- 1. profile
def profile(step):
    """:func:`operator_times` of one call of ``step`` under the CPU profiler (no trace file written)."""
    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda _: None)
    prof.start()
    step()
    prof.stop()
    return operator_times(prof.profiler_result.get_data())  # while ``prof`` lives: it owns the trees


def operator_times(trees):
    """{phase: {operator: [calls, ms]}} of the outermost operator events, phase being the type of the
    top-level event they run under (Forward, Backward, Optimization) or 'Other'."""
    table = {}

    def walk(node, phase, depth):
        kind = node.type.name
        if depth == 2:  # ProfileStep's children: model/loss forwards, backward, optimizer step, ...
            phase = kind if kind in ('Forward', 'Backward', 'Optimization') else 'Other'
        if kind == 'Operator':
            entry = table.setdefault(phase, {}).setdefault(operator_name(node), [0, 0.0])
            entry[0] += 1
            entry[1] += (node.end_ns - node.start_ns) / 1e6
            return
        for child in node.children_node:
            walk(child, phase, depth + 1)
    for root in trees.values():
        walk(root, 'Other', 0)
    return table


def operator_name(node):
    """'conv2d' for 'conv2d dygraph'; a backward node by its first kernel ('conv2d_grad'), with the node's
    name when that kernel is no '_grad' one ('concat (Global_SplitGradNode)'), else the node's name."""
    if node.name.endswith(' dygraph'):
        return node.name[:-len(' dygraph')]
    pending = list(node.children_node)
    while pending:
        child = pending.pop(0)
        if child.name.endswith(' kernel launch'):
            kernel = child.name[:-len(' kernel launch')]
            return kernel if kernel.endswith('_grad') else f'{kernel} ({node.name})'
        pending.extend(child.children_node)
    return node.name


def print_profile(step_s, table, top):
    """The phase totals and the top operators of one profiled step."""
    phases = {phase: sum(ms for _, ms in ops.values()) for phase, ops in table.items()}
    print(f'Profiled step: {step_s:.2f} s wall (profiler on); operator time by phase: ' + ', '.join(
        f'{phase} {ms / 1e3:.2f} s ({100 * ms / 1e3 / step_s:.0f} %)' for phase, ms in sorted(
            phases.items(), key=lambda item: -item[1])))
    merged = {}
    for ops in table.values():
        for name, (calls, ms) in ops.items():
            entry = merged.setdefault(name, [0, 0.0])
            entry[0] += calls
            entry[1] += ms
    print()
    print('| operator | calls | total (s) | share of step |')
    print('|---|---|---|---|')
    ranked = sorted(merged.items(), key=lambda item: -item[1][1])
    for name, (calls, ms) in ranked[:top]:
        print(f'| {name} | {calls} | {ms / 1e3:.2f} | {100 * ms / 1e3 / step_s:.1f} % |')
    rest = sum(ms for _, (_, ms) in ranked[top:])
    print(f'| (the other {max(0, len(ranked) - top)}) | | {rest / 1e3:.2f} | {100 * rest / 1e3 / step_s:.1f} % |')
    print()
    for label, names in GROUPS.items():
        seconds = sum(ms for name, (_, ms) in merged.items() if name.split(' ')[0] in names) / 1e3
        print(f'- {label}: {seconds:.2f} s ({100 * seconds / step_s:.1f} %)')


# ----------------------------------------------------------------------------------------------- 2. parts
def model_parts(model):
    """[(name, sub-layer name prefixes, function)]: the model's parts in forward order. Each function
    maps the part's input (captured by :func:`part_inputs`) to its output."""
    backbone, head = model.backbone, model.head
    stem = [backbone.conv1_1, backbone.conv1_2, backbone.conv1_3, backbone.pool2d_max]
    parts = [('stem (3 convs + max pool)', ['backbone.conv1_'], sequence(stem))]
    for index, blocks in enumerate(backbone.stages):
        parts.append((f'stage {index + 1} ({len(blocks)} blocks)', [f'backbone.bb_{index}_'], sequence(blocks)))
    parts += [('pyramid pooling (factored fusion)', ['head.psp_module'], head.psp_module),
              ('classifier (dropout + 1x1)', ['head.conv'], head.classify),
              ('auxiliary head', ['head.auxlayer'], head.auxlayer)]
    return parts


def sequence(layers):
    """A function applying ``layers`` in order."""
    def run(x):
        for layer in layers:
            x = layer(x)
        return x
    return run


def part_inputs(model, images):
    """The input of each of :func:`model_parts` in one forward of ``images`` (train mode, no gradients)."""
    backbone, head = model.backbone, model.head
    with paddle.no_grad():
        features = backbone(images)
        pyramid = head.psp_module(features[3])
    inputs = [images]
    previous = sequence([backbone.conv1_1, backbone.conv1_2, backbone.conv1_3, backbone.pool2d_max])
    with paddle.no_grad():
        inputs.append(previous(images))
    inputs += features[:3]
    return inputs + [features[3], pyramid, features[2]]


def time_parts(model, images, repeat):
    """[(name, prefixes, forward s, backward s)]: median of ``repeat`` forward + backward runs of each part
    (the stem without an input gradient, as in the step: the images need none)."""
    model.train()
    rows = []
    for (name, prefixes, function), value in zip(model_parts(model), part_inputs(model, images)):
        forwards, backwards = [], []
        for _ in range(repeat):
            x = value.detach()
            x.stop_gradient = value is images
            forward_s, y = timed_once(lambda: function(x))
            grad = paddle.ones_like(y)
            backward_s, _ = timed_once(lambda: paddle.autograd.backward([y], [grad]))
            model.clear_gradients()
            forwards.append(forward_s)
            backwards.append(backward_s)
        rows.append((name, prefixes, statistics.median(forwards), statistics.median(backwards)))
    return rows


def print_parts(rows, macs, step_s, gemm):
    """The per-part table: time, share of the plain step, GMAC and GFLOP/s against the GEMM rate."""
    print('| part | forward (s) | backward (s) | share of step | conv GMAC (fwd) | fwd GFLOP/s | bwd GFLOP/s '
          f'| bwd % of GEMM ({gemm:.0f}) |')
    print('|---|---|---|---|---|---|---|---|')
    for name, prefixes, forward_s, backward_s in rows:
        gmac = sum(count for layer, count in macs.items() if any(layer.startswith(p) for p in prefixes)) / 1e9
        backward_rate = 2 * 2 * gmac / backward_s
        print(f'| {name} | {forward_s:.2f} | {backward_s:.2f} | {100 * (forward_s + backward_s) / step_s:.0f} % '
              f'| {gmac:.1f} | {2 * gmac / forward_s:.0f} | {backward_rate:.0f} | {100 * backward_rate / gemm:.0f} % |')
    total = sum(forward_s + backward_s for _, _, forward_s, backward_s in rows)
    print(f'| all parts | | | {100 * total / step_s:.0f} % | {sum(macs.values()) / 1e9:.1f} | | | |')


# ----------------------------------------------------------------------------------------------- 3. levers
def compare_levers(levers, size, repeat):
    """{lever: (median step s, plain median s, median of the rounds' time / plain, CPU s per wall s, loss
    diff, max weight diff, that diff over the largest update)} from interleaved runs, or
    {lever: error text} for a lever whose first step raises."""
    state = {name: value.clone() for name, value in new_model().state_dict().items()}
    initial = {name: value.numpy() for name, value in state.items()}
    variants = {lever: lever_step(lever, size, state) for lever in ('plain',) + tuple(levers)}
    first, failed = {}, {}
    for lever, (model, step) in list(variants.items()):
        paddle.seed(SEED + 1)  # the same dropout masks
        try:
            seconds, (loss, _) = timed_once(step)
        except Exception as error:  # noqa: BLE001 (a lever that does not run is a finding, not a crash)
            if lever == 'plain':
                raise
            failed[lever] = error_summary(error)
            print(f'  first step {lever}: fails ({failed[lever]})', flush=True)
            del variants[lever]
            continue
        weights = {name: value.numpy() for name, value in model.state_dict().items()}
        first[lever] = (float(loss), weights, seconds)
        print(f'  first step {lever}: {seconds:.2f} s (load {os.getloadavg()[0]:.2f})', flush=True)
    times = {lever: [] for lever in variants}
    cpu_times = {lever: [] for lever in variants}
    for index in range(repeat):
        for lever, (_, step) in variants.items():
            times[lever].append(timed_once(step, cpu_times[lever])[0])
        print(f'  round {index + 1}: ' + ', '.join(f'{lever} {values[-1]:.2f} s' for lever, values in times.items())
              + f' (load {os.getloadavg()[0]:.2f})', flush=True)
    plain_loss, plain_weights, _ = first['plain']
    results = {}
    for lever in levers:
        if lever in failed:
            results[lever] = failed[lever]
            continue
        loss, weights, _ = first[lever]
        ratio = statistics.median(ours / plain for ours, plain in zip(times[lever], times['plain']))
        results[lever] = (statistics.median(times[lever]), statistics.median(times['plain']), ratio,
                          sum(cpu_times[lever]) / sum(times[lever]), abs(loss - plain_loss),
                          *weight_difference(weights, plain_weights, initial))
    return results


def weight_difference(weights, reference, initial):
    """(max abs difference between ``weights`` and ``reference`` over the tensors, that difference over
    the largest change any value made in the reference step)."""
    difference = max(float(np.abs(weights[name] - value).max()) for name, value in reference.items())
    update = max(float(np.abs(value - initial[name]).max()) for name, value in reference.items())
    return difference, difference / update if update else 0.0


def error_summary(error):
    """One short line for a lever's exception: its type and Paddle's error clause (e.g. '(Unimplemented) ...')."""
    text = ' '.join(str(error).split())
    clause = re.search(r'\((Unimplemented|InvalidArgument|PreconditionNotMet|NotFound|Unavailable|Fatal)\).*', text)
    return f'{type(error).__name__}: ' + (clause.group(0) if clause else text)[:200]


def print_levers(results, size, repeat):
    """The lever table: step time, ratio to plain, exactness."""
    print(f'Levers, training step batch 2, {size[0]}x{size[1]}, median of {repeat} interleaved with the plain '
          'dygraph step:')
    print()
    print('| lever | step (s) | plain (s) | time / plain (median of the rounds) | CPU s / wall s | loss diff '
          '| max weight diff (over the largest update) |')
    print('|---|---|---|---|---|---|---|')
    for lever, result in results.items():
        if isinstance(result, str):
            print(f'| {lever} | fails: {result} | | | | | |')
            continue
        seconds, plain, ratio, cpu_share, loss_diff, weight_diff, relative = result
        print(f'| {lever} | {seconds:.2f} | {plain:.2f} | {ratio:.2f} | {cpu_share:.2f} | {loss_diff:.1e} | '
              f'{weight_diff:.1e} ({relative:.1e}) |')


# ------------------------------------------------------------------------------------------------ command
def build_parser():
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=parse_size, default=[512, 512], help='profiled step (default 512x512)')
    parser.add_argument('--lever_size', type=parse_size, default=[256, 256],
                        help='the levers\' steps (default 256x256)')
    parser.add_argument('--repeat', type=int, default=3, help='interleaved lever rounds (default 3)')
    parser.add_argument('--part_repeat', type=int, default=1, help='runs of each model part (default 1)')
    parser.add_argument('--top', type=int, default=15, help='operators listed (default 15)')
    parser.add_argument('--levers', nargs='*', choices=LEVERS, default=list(LEVERS))
    parser.add_argument('--no_levers', dest='levers', action='store_const', const=[])
    parser.add_argument('--no_profile', dest='profile', action='store_false', help='only the levers')
    return parser


def main(argv=None):
    """Profile the step, time its parts, compare the levers; print everything with the load average."""
    args = build_parser().parse_args(argv)
    print(header_line({'default': default_env(), 'tuned': tuned_env(training=True)}, 'train_profile.py'))
    print(f'load average at start: {os.getloadavg()[0]:.2f} (timings are noisy above ~1.5 on 2 cores); '
          f'Paddle {paddle.__version__}, FLAGS_paddle_num_threads='
          f'{paddle.get_flags("FLAGS_paddle_num_threads")["FLAGS_paddle_num_threads"]}, '
          f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS")}')
    rng = np.random.default_rng(0)
    gemm = matmul_rate(*(rng.standard_normal((4096, 4096), dtype=np.float32) for _ in range(2)))
    print(f'fp32 GEMM 4096^3, paddle.matmul on the threads of this process: {gemm:.0f} GFLOP/s')
    if args.profile:
        profile_step(args, rng, gemm)
    if args.levers:
        print()
        results = compare_levers(args.levers, args.lever_size, args.repeat)
        print()
        print_levers(results, args.lever_size, args.repeat)
    print()
    print(f'load average at the end: {os.getloadavg()[0]:.2f}')
    return 0


def profile_step(args, rng, gemm):
    """Parts 1 and 2 of the module docstring, printed."""
    model = new_model()
    step = make_train_step(model, args.size)
    warm_s, _ = timed_once(step)
    plain_s, _ = timed_once(step)
    print(f'PSPNet-R50 OS8 training step, batch 2, {args.size[0]}x{args.size[1]}: first {warm_s:.2f} s, '
          f'second {plain_s:.2f} s (load {os.getloadavg()[0]:.2f})', flush=True)
    start, faults = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    table = profile(step)
    step_s = time.perf_counter() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print_profile(step_s, table, args.top)
    print(f'- minor page faults in the profiled step: {faults} ({faults * resource.getpagesize() / 2 ** 30:.1f} GiB '
          'of fresh pages the kernel zeroed: freed blocks above glibc\'s mmap threshold go back to the system)')
    images = paddle.to_tensor(rng.uniform(-1, 1, (2, 3, *args.size)).astype('float32'))
    model.train()
    macs = conv_macs_by_layer(model, [2, 3, *args.size])
    print()
    print(f'By part (each part\'s forward and backward run alone; share of the second step\'s {plain_s:.2f} s; '
          f'load {os.getloadavg()[0]:.2f}):')
    print()
    print_parts(time_parts(model, images, args.part_repeat), macs, plain_s, gemm)


if __name__ == '__main__':
    sys.exit(main())
