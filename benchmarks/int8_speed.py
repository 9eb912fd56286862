"""INT8 inference through Paddle's own post-training quantization, against the fp32 fast path.

Usage (from the repository root; timings mean something only on an otherwise idle machine, so the load
average is printed beside them)::

    python benchmarks/int8_speed.py                          # random PSPNet and DeepLabV3 R50 OS8, 512x512
    python benchmarks/int8_speed.py --quickstart quickstart_output   # + the trained quickstart model's mIoU
    python benchmarks/int8_speed.py --models pspnet --repeat 3 --calib 2

For each model it

1. exports the fp32 fast path's model (:func:`paddle_psp.inference.entry.inference_copy` through
   :func:`paddle_psp.inference.export.save_static_model`: old-format ``model.pdmodel``), run as
   ``paddleseg val/predict/benchmark`` run it (:func:`~paddle_psp.inference.runner.inference_forward`:
   Paddle Inference, oneDNN fp32, one thread per physical core);
2. quantizes it as ``--quantize int8`` does (:mod:`paddle_psp.inference.quantize`: Paddle's
   ``PostTrainingQuantization``, ``--calib`` calibration images, activation ranges by ``--algo``);
3. runs the quantized model with Paddle Inference, oneDNN and ``Config.enable_onednn_int8()`` (the
   quant2 passes turn the fake quant ops into oneDNN int8 kernels; pool2d stays on Paddle's kernel as on
   the fp32 path, whose oneDNN op list it shares: with every op on oneDNN the int8 pool2d has no kernel);
4. times the two forwards interleaved (fp32, int8, fp32, int8, ...: the ratio holds under load; each is
   the median of ``--repeat`` runs after one warm-up) and compares their outputs: argmax agreement,
   largest logit difference. With ``--quickstart DIR`` (a ``paddleseg quickstart`` output), the trained
   quickstart model is also scored on its val split (mIoU fp32 and int8), calibrated on its train images.

Random models (seeded weights, batch norms calibrated on a random image, see ``speed_paths.make_weights``)
give speed only: such a network is chaotic (1e-3 input noise already changes a few % of its argmax), so
its int8 agreement says nothing of a trained model's accuracy; the quickstart model's mIoU does.
Calibration images for random models are synthetic street scenes (:func:`paddle_psp.data.synthetic.draw_scene`).
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import paddle

from paddle_psp.core import machine
from paddle_psp.data.synthetic import draw_scene
from paddle_psp.inference import export, quantize as quantization
from paddle_psp.inference.entry import inference_copy
from paddle_psp.inference.runner import inference_forward
from paddle_psp.core.runtime import physical_cores
from speed import where_and_when
from speed_paths import build_model

MODELS = {'pspnet': 'PSPNet ResNet50 OS8', 'deeplabv3': 'DeepLabV3 ResNet50 OS8'}
QUICKSTART_CONFIG = os.path.join('configs', 'quickstart', 'pspnet_resnet50_os8_synthcity_quickstart.yml')


def build_pair(model, folder, calibration, algo, threads):
    """Export ``model``, quantize it; returns (fp32 forward, int8 forward, quantization seconds)."""
    fp32_dir, int8_dir = os.path.join(folder, 'fp32'), os.path.join(folder, 'int8')
    export.save_static_model(inference_copy(model), fp32_dir, [None, 3, None, None], 'none')
    os.makedirs(int8_dir)
    start = time.perf_counter()
    quantization.quantize_model(fp32_dir, int8_dir, export.MODEL_FILES, calibration, algo)
    seconds = time.perf_counter() - start
    return (inference_forward(fp32_dir, cpu_threads=threads),
            inference_forward(int8_dir, cpu_threads=threads, int8=True), seconds)


def interleaved(forwards, batch, repeat):
    """Median seconds of each forward, timed in turn (ABAB...) after one warm-up call each."""
    outputs = [forward(batch) for forward in forwards]
    times = [[] for _ in forwards]
    for _ in range(repeat):
        for forward, series in zip(forwards, times):
            start = time.perf_counter()
            forward(batch)
            series.append(time.perf_counter() - start)
    return [statistics.median(series) for series in times], outputs


def compare(name, forwards, batch, repeat, extra=''):
    """Time and compare the fp32 and int8 forwards on ``batch``; print one line."""
    load = os.getloadavg()[0]
    (fp32_s, int8_s), (fp32, int8) = interleaved(forwards, batch, repeat)
    agree = float((fp32.argmax(1) == int8.argmax(1)).mean())
    error = float(np.abs(fp32 - int8).max())
    print(f'{name:<28} {"x".join(map(str, batch.shape[2:])):>9}  fp32 {fp32_s:7.3f} s  int8 {int8_s:7.3f} s  '
          f'speed-up {fp32_s / int8_s:5.2f}x  argmax agreement {100 * agree:6.2f} %  max |dlogit| {error:8.3f} '
          f'(of {float(np.abs(fp32).max()):.1f})  {extra}load {load:.2f} -> {os.getloadavg()[0]:.2f}', flush=True)


def scene_batches(count, size, seed=0):
    """``count`` synthetic street scenes, each a 1x3xHxW batch normalized as the configs' Normalize."""
    rng = np.random.RandomState(seed)
    return [((draw_scene(rng, (size, size))[0].astype('float32') / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None]
            for _ in range(count)]


def random_models(args, threads, folder):
    """Speed (and, for what it is worth, agreement) on random full-size models."""
    paddle.seed(0)
    from paddle_psp.weights.state_dict import randomize
    batch = scene_batches(1, args.size, seed=1)[0]
    for name in args.models:
        model = randomize(build_model(name, paddleseg=False), 0, size=128)
        calibration = scene_batches(args.calib, args.calib_size)
        fp32, int8, seconds = build_pair(model, os.path.join(folder, name), calibration, args.algo, threads)
        compare(MODELS[name] + ' (random)', (fp32, int8), batch, args.repeat, f'quantize {seconds:5.1f} s  ')


def quickstart(args, threads, folder):
    """The trained quickstart model: mIoU on its val split, fp32 and int8, and speed on one val image."""
    from paddle_psp.config import load_config
    from paddle_psp.evaluation.evaluate import evaluate
    from paddle_psp.weights.state_dict import load_for_eval
    root = os.path.join(args.quickstart, 'data')
    cfg = load_config(QUICKSTART_CONFIG, opts=[f'train_dataset.dataset_root={root}',
                                               f'val_dataset.dataset_root={root}'])
    checkpoint = os.path.join(args.quickstart, 'train', f'iter_{cfg.iters}', 'model.pdparams')
    model = load_for_eval(cfg.build_model(pretrained=False), checkpoint)
    calibration = quantization.config_calibration(cfg, 'int8', args.calib)
    fp32, int8, seconds = build_pair(model, os.path.join(folder, 'quickstart'), calibration, args.algo, threads)
    scores = [100 * evaluate(forward, cfg.val_dataset, print_detail=False)['mIoU'] for forward in (fp32, int8)]
    batch = cfg.val_dataset[0]['img'][None]
    compare('quickstart PSPNet (trained)', (fp32, int8), batch, args.repeat,
            f'quantize {seconds:5.1f} s  ')
    print(f'quickstart val mIoU ({len(cfg.val_dataset)} images): fp32 {scores[0]:.2f}  int8 {scores[1]:.2f}  '
          f'drop {scores[0] - scores[1]:.2f} points', flush=True)


def main(argv=None):
    """Print the environment, then one line per model."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='*', default=list(MODELS), choices=list(MODELS))
    parser.add_argument('--size', type=int, default=512, help='timed input: size x size (random models)')
    parser.add_argument('--repeat', type=int, default=5, help='timed runs of each path')
    parser.add_argument('--calib', type=int, default=quantization.DEFAULT_CALIB_IMAGES, help='calibration images')
    parser.add_argument('--calib_size', type=int, default=256, help='calibration image size (random models)')
    parser.add_argument('--algo', default=quantization.CALIBRATION_ALGO,
                        help='PostTrainingQuantization algo (abs_max, hist, avg, mse, KL...)')
    parser.add_argument('--quickstart', help='a paddleseg quickstart output folder: also score its model')
    args = parser.parse_args(argv)
    threads = physical_cores()
    print(f'{where_and_when("int8_speed.py")}; {threads} threads, Paddle {paddle.__version__}, algo {args.algo}, '
          f'{args.calib} calibration images, load {machine.load_average_text()}', flush=True)
    with tempfile.TemporaryDirectory(prefix='int8_speed.') as folder:
        if args.quickstart:
            quickstart(args, threads, folder)
        random_models(args, threads, folder)


if __name__ == '__main__':
    main()
