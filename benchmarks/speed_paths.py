"""The measured paths of ``benchmarks/speed.py``, each run in a subprocess of its own.

``python benchmarks/speed_paths.py '<json spec>'`` runs one task (an evaluation forward, a training step,
the fast path's export, or the GEMM peak) and prints ``RESULT <json>``. ``speed.py`` starts it with the
environment of the path being measured (the default one, or paddle-psp's CPU tuning), so variables such as
``MKL_DEBUG_CPU_TYPE`` and ``MALLOC_MMAP_THRESHOLD_`` apply from the process start and peak RSS is the
child's alone. ``FLAGS_paddle_num_threads`` in that environment is applied in-process, as ``paddleseg`` does
(Paddle itself does not apply it to dygraph); without it the child runs Paddle's default (one thread).

Paddle, PaddleSeg and paddle-psp are imported inside functions on purpose: ``speed.py`` imports this module
for its helpers, and each child imports only what the path it measures uses. (Every child imports
paddle-psp for :func:`paddle_psp.core.machine.peak_rss_bytes`, which registers its model classes; PaddleSeg's
path builds and runs none of them.)
"""
import json
import os
import statistics
import sys
import time

import numpy as np

NUM_CLASSES = 19
AUX_COEF = 0.4
GIB = 2 ** 30


# ----------------------------------------------------------------------------------------------- models
def build_model(name, paddleseg):
    """PaddleSeg's or paddle-psp's model with the reference configs' arguments (19 classes)."""
    if paddleseg:
        from paddleseg.models import DeepLabV3, PSPNet  # lazy: see the module docstring
        from paddleseg.models.backbones import ResNet50_vd
        if name == 'pspnet':
            return PSPNet(NUM_CLASSES, ResNet50_vd(output_stride=8))
        return DeepLabV3(NUM_CLASSES, ResNet50_vd(output_stride=8, multi_grid=(1, 2, 4)),
                         aspp_ratios=(1, 12, 24, 36))
    from paddle_psp.models import ZooDeepLabV3, ZooPSPNet, ZooResNet50_vd  # lazy: see the module docstring
    if name == 'pspnet':
        return ZooPSPNet(NUM_CLASSES, ZooResNet50_vd(output_stride=8))
    return ZooDeepLabV3(NUM_CLASSES, ZooResNet50_vd(output_stride=8, multi_grid=(1, 2, 4)),
                        aspp_ratios=(1, 12, 24, 36))


def loaded_model(name, paddleseg, weights):
    """:func:`build_model` with the state dict of file ``weights`` (its keys must match exactly)."""
    from paddle_psp.weights.pdparams import load_file  # lazy: see the module docstring
    model = build_model(name, paddleseg)
    state = load_file(weights)
    missing = set(model.state_dict()) ^ set(state)
    if missing:
        raise SystemExit(f'{weights}: keys differ from the model\'s: {sorted(missing)[:3]}')
    model.set_state_dict(state)
    return model


def make_weights(name, path, seed=0):
    """Seeded random weights with random conv biases and BN statistics calibrated on a random image."""
    import paddle  # lazy: see the module docstring
    from paddle_psp.weights.state_dict import randomize
    paddle.seed(seed)
    model = randomize(build_model(name, paddleseg=False), seed, size=128)
    paddle.save(model.state_dict(), path)


# ----------------------------------------------------------------------------------------------- tasks
def eval_task(spec):
    """Median time of the evaluation forward of one batch; saves the logits to ``spec['output']``."""
    import paddle  # lazy: see the module docstring
    model = loaded_model(spec['model'], spec['paddleseg'], spec['weights'])
    model.eval()
    batch = np.load(spec['input'])
    setup = 0.0
    if spec['fast']:
        from paddle_psp.inference.forward import model_forward
        start = time.perf_counter()
        forward = model_forward(model, cache_dir=spec['cache_dir'])
        setup = time.perf_counter() - start
    else:
        def forward(array):
            with paddle.no_grad():
                return model(paddle.to_tensor(array))[0].numpy()
    logits = [None]

    def run():
        logits[0] = forward(batch)
    cpu = {}
    median, times = timed(run, spec['repeat'], cpu)
    np.save(spec['output'], logits[0])
    return dict(cpu, median_s=median, times_s=times, setup_s=setup)


def train_task(spec):
    """Median time of a training step (batch 2, Momentum SGD, main + auxiliary cross-entropy)."""
    import paddle  # lazy: see the module docstring
    paddle.seed(0)
    model = loaded_model(spec['model'], spec['paddleseg'], spec['weights'])
    losses, outputs = [], []
    # each project's loop: PaddleSeg's zeroes the gradients, paddleseg train frees them (unless the spec says)
    train_step = make_train_step(model, spec['size'], zero_gradients=spec.get('zero_gradients', spec['paddleseg']))

    def step():
        loss, logits = train_step()
        losses.append(float(loss))
        outputs.append(len(logits))
    cpu = {}
    median, times = timed(step, spec['repeat'], cpu)
    return dict(cpu, median_s=median, times_s=times, losses=losses, outputs=outputs[-1])


def make_train_step(model, size, batch=2, forward=None, zero_gradients=False):
    """The benchmarked training step of ``model`` (put in train mode): a function that runs forward, the
    loss (cross-entropy on the main logits + AUX_COEF x on the auxiliary ones, ignore index 255 on the top
    eighth of the rows), backward and a Momentum SGD step (weight decay 4e-5) on a fixed random batch of
    ``batch`` images of ``size`` [height, width], and returns (loss tensor, logits).

    Args:
        forward (callable, optional): Called instead of ``model`` for the forward (e.g. a
            ``paddle.jit.to_static`` copy of it). Default: None, ``model`` itself.
        zero_gradients (bool, optional): End the step as PaddleSeg's loop does, gradients kept and zeroed;
            False: as ``paddleseg train`` does, gradients freed (:mod:`paddle_psp.engine.gradients`: the
            same updates). Default: False.
    """
    import paddle  # lazy: see the module docstring
    from paddle_psp.data.datasets import IGNORE_INDEX
    from paddle_psp.engine.gradients import GradientRelease, GradientZeroing
    from paddle_psp.models.losses import ZooCrossEntropyLoss
    model.train()
    forward = forward or model
    loss_layer = ZooCrossEntropyLoss(ignore_index=IGNORE_INDEX)
    optimizer = paddle.optimizer.Momentum(0.01, momentum=0.9, parameters=model.parameters(),
                                          weight_decay=4e-5)
    rng = np.random.default_rng(0)
    height, width = size
    images = paddle.to_tensor(rng.uniform(-1, 1, (batch, 3, height, width)).astype('float32'))
    labels = rng.integers(0, NUM_CLASSES, (batch, height, width))
    labels[:, :height // 8] = IGNORE_INDEX
    labels = paddle.to_tensor(labels.astype('int64'))
    coefs = [1.0, AUX_COEF]
    gradients = GradientZeroing() if zero_gradients else GradientRelease(model.parameters())

    def step():
        logits = forward(images)
        loss = paddle.add_n([coef * loss_layer(logit, labels) for coef, logit in zip(coefs, logits)])
        loss.backward()
        gradients.before_update()
        optimizer.step()
        gradients.after_update(optimizer)
        return loss, logits
    return step


def export_task(spec):
    """Fill the fast path's export cache (as the first ``model_forward`` call of a model does)."""
    from paddle_psp.inference.entry import exported_model_dir  # lazy: see the module docstring
    model = loaded_model(spec['model'], False, spec['weights'])
    model.eval()
    start = time.perf_counter()
    exported_model_dir(model, cache_dir=spec['cache_dir'])
    return {'export_s': time.perf_counter() - start}


def gemm_task(spec):
    """Best fp32 GEMM rate (M = N = K = 4096) of numpy (OpenBLAS), paddle.matmul (MKL) and oneDNN (a 1x1
    convolution, 4096 -> 4096 channels on 64x64 pixels, through the fast path's Paddle Inference), GFLOP/s."""
    from paddle_psp.inference.entry import exported_model_dir
    from paddle_psp.inference.runner import inference_forward
    size = 4096
    flops = 2 * size ** 3
    rng = np.random.default_rng(0)
    left, right = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    rates = {'numpy': flops / min(timed(lambda: left @ right, 3)[1]) / 1e9}
    rates['paddle.matmul'] = matmul_rate(left, right)
    gemm = one_by_one_conv(size)
    model_dir = exported_model_dir(gemm, cache_dir=spec['cache_dir'])
    forward = inference_forward(model_dir, cpu_threads=spec['threads'])
    pixels = left.reshape(1, size, 64, 64)
    rates['oneDNN'] = flops / min(timed(lambda: forward(pixels), 3)[1]) / 1e9
    return {'rates_gflops': rates}


def matmul_rate(left, right, repeat=3):
    """Best GFLOP/s of ``paddle.matmul`` on two square float32 arrays (after one warm-up call), on the
    threads of this process."""
    import paddle  # lazy: see the module docstring
    a, b = paddle.to_tensor(left), paddle.to_tensor(right)
    return 2 * left.shape[0] ** 3 / min(timed(lambda: paddle.matmul(a, b).numpy(), repeat)[1]) / 1e9


def one_by_one_conv(channels):
    """A 1x1 convolution without bias, returning ``[output]`` like a segmentation model: a GEMM."""
    import paddle  # lazy: see the module docstring

    class Gemm(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(channels, channels, 1, bias_attr=False)

        def forward(self, x):
            return [self.conv(x)]
    return Gemm()


TASKS = {'eval': eval_task, 'export': export_task, 'train': train_task, 'gemm': gemm_task}


# ----------------------------------------------------------------------------------------------- helpers
def timed(function, repeat, cpu=None):
    """Median seconds of ``repeat`` calls after one warm-up call, and all the times.

    ``cpu``, a dict, receives the median CPU seconds of this process over the same calls (``cpu_s``: user +
    system, all threads; ``system_s``: system alone, e.g. page faults), which a busy machine inflates far
    less than the wall time.
    """
    function()
    times, cpu_times, system_times = [], [], []
    for _ in range(repeat):
        before, start = os.times(), time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
        after = os.times()
        cpu_times.append(after.user + after.system - before.user - before.system)
        system_times.append(after.system - before.system)
    if cpu is not None:
        cpu.update(cpu_s=statistics.median(cpu_times), system_s=statistics.median(system_times))
    return statistics.median(times), times


def main(spec):
    """Run the task ``spec`` describes and print ``RESULT <json>`` (with peak RSS and the load average)."""
    from paddle_psp.core import runtime  # lazy: see the module docstring
    from paddle_psp.core.machine import peak_rss_bytes
    threads = runtime.positive_int(os.environ.get(runtime.THREADS_VAR))
    if threads:
        runtime.set_math_threads(threads)
    started = os.getloadavg()[0]
    result = TASKS[spec['task']](spec)
    result.update(peak_rss_gib=peak_rss_bytes() / GIB, load_before=started, load_after=os.getloadavg()[0],
                  math_threads=runtime.math_threads())
    print('RESULT ' + json.dumps(result), flush=True)


if __name__ == '__main__':
    main(json.loads(sys.argv[1]))
