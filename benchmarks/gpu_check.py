"""GPU check: AMP training, GPU against CPU results, and speed against PaddleSeg, printed as one table.

Usage (from the repository root, on a machine with a CUDA build of Paddle and a GPU; elsewhere it prints
``skipped: no GPU`` and exits 0)::

    python benchmarks/gpu_check.py                   # work files in a temporary folder
    python benchmarks/gpu_check.py --work_dir gpu_check_out --repeat 10

Checks, each a row of the table (exit status 1 when one fails):

- ``train``: 20 iterations of ``paddleseg train --precision fp16 --amp_level O1`` (the quickstart config,
  a small generated dataset from :mod:`paddle_psp.data.synthetic`): finite losses and weights. With two
  or more GPUs it runs on two ranks through ``paddle.distributed.launch``, where the engine converts the
  model to SyncBatchNorm; on one GPU the engine keeps plain BatchNorm.
- ``syncbn``: on one GPU, the trained model converted with ``paddle.nn.SyncBatchNorm.convert_sync_batchnorm``
  takes 20 AMP O1 steps with a GradScaler (losses finite) and then predicts what it predicted before
  conversion in eval mode (argmax agreement).
- ``val``: ``paddleseg val`` of the trained checkpoint on GPU and on CPU (``CUDA_VISIBLE_DEVICES=`` hides
  the GPU): the pixel accuracies may differ by at most 1 - AGREEMENT.
- ``predict``: ``paddleseg predict`` on GPU and on CPU: argmax agreement of the label PNGs.
- ``export``: ``paddleseg export`` on GPU, run by Paddle Inference on the GPU, against CPU ``predict``.
- speed: PaddleSeg 2.8's own PSPNet / DeepLabV3 ResNet50 OS8 against ours, the same seeded random
  weights, eval-mode forward of one 512x512 image on the GPU, median of ``--repeat`` after a warm-up.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import paddle
from paddle import inference
from paddleseg.transforms import Compose, Normalize
from PIL import Image

from paddle_psp.core.machine import has_gpu
from paddle_psp.data.synthetic import make_cityscapes_like
from paddle_psp.config import load_config
from paddle_psp.engine.train import AMP_BLACK_LIST
from paddle_psp.inference.export import MODEL_FILES
from paddle_psp.inference.predict import list_images, output_name, read_image
from paddle_psp.weights.pdparams import load_file
from paddle_psp.weights.state_dict import load_for_eval
from speed import MODELS
from speed_paths import loaded_model, make_weights

SKIP_LINE = 'skipped: no GPU'
AGREEMENT = 0.999
ITERS = 20
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO_ROOT, 'configs', 'quickstart', 'pspnet_resnet50_os8_synthcity_quickstart.yml')
PADDLESEG = shutil.which('paddleseg', path=os.path.dirname(sys.executable)) or 'paddleseg'
TIMEOUT = 900  # seconds for one paddleseg command
ACC_LINE = re.compile(r'mIoU: ([\d.]+) Acc: ([\d.]+)')


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work_dir', help='dataset, checkpoints and outputs (default: a temporary folder)')
    parser.add_argument('--repeat', type=int, default=5, help='timed forwards per model (5)')
    parser.add_argument('--size', type=int, default=512, help='square input of the speed rows (512)')
    return parser.parse_args(argv)


def main(argv=None):
    """Run the checks and print the table; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not has_gpu():
        print(f'{SKIP_LINE} (this Paddle build has no CUDA or no GPU is visible)')
        return 0
    gpus = paddle.device.cuda.device_count()
    work = args.work_dir or tempfile.mkdtemp(prefix='gpu_check.')
    rows = run_checks(work, gpus)
    rows += speed_rows(work, args.size, args.repeat)
    print_table(rows)
    return 0 if all(ok for _, ok, _ in rows) else 1


# --------------------------------------------------------------------------------------------- checks
def paddleseg(verb, args, cpu=False, launcher=()):
    """Run ``paddleseg VERB ARGS`` (on the CPU only with ``cpu``); returns its output, raises on failure."""
    env = dict(os.environ, **({'CUDA_VISIBLE_DEVICES': ''} if cpu else {}))
    done = subprocess.run([*launcher, PADDLESEG, verb, *args], env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f'paddleseg {verb} exited {done.returncode}: {(done.stdout + done.stderr)[-800:]}')
    return done.stdout + done.stderr


def run_checks(work, gpus):
    """The train / syncbn / val / predict / export rows: ``[(name, ok, detail)]``."""
    data = make_cityscapes_like(os.path.join(work, 'data'), num_train=16, num_val=8)
    roots = dataset_options(data)
    checkpoint = os.path.join(work, 'train', f'iter_{ITERS}', 'model.pdparams')
    model_args = ['--config', CONFIG, '--model_path', checkpoint] + roots
    images = os.path.join(data, 'leftImg8bit', 'val')
    steps = [('train', lambda: check_train(work, roots, gpus)),
             ('syncbn', lambda: check_sync_batch_norm(CONFIG, checkpoint, data)),
             ('val', lambda: check_val(model_args)),
             ('predict', lambda: check_predict(work, model_args, images)),
             ('export', lambda: check_export(work, model_args, images))]
    rows = []
    for name, step in steps:
        try:
            ok, detail = step()
        except Exception as error:  # a failed check is a row of the table, not the end of the run
            ok, detail = False, f'{type(error).__name__}: {error}'.replace('\n', ' ')[:300]
        rows.append((name, ok, detail))
    return rows


def dataset_options(data):
    """``--opts`` pointing the quickstart config's datasets at ``data``."""
    return ['--opts', f'train_dataset.dataset_root={data}', f'val_dataset.dataset_root={data}']


def check_train(work, roots, gpus):
    save_dir = os.path.join(work, 'train')
    ranks = min(gpus, 2)
    launcher = (sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', str(ranks),
                '--log_dir', os.path.join(work, 'launch_log')) if ranks > 1 else ()
    paddleseg('train', ['--config', CONFIG, '--save_dir', save_dir, '--iters', str(ITERS), '--batch_size', '4',
                        '--save_interval', str(ITERS), '--log_iters', '5', '--device', 'gpu', '--precision',
                        'fp16', '--amp_level', 'O1', *roots], launcher=launcher)
    with open(os.path.join(save_dir, f'iter_{ITERS}', 'checkpoint.json')) as file:
        losses = [values[0] for values in json.load(file)['losses'].values()]
    state = load_file(os.path.join(save_dir, f'iter_{ITERS}', 'model.pdparams'))
    finite = all(np.isfinite(np.asarray(v)).all() for v in state.values())
    norm = 'SyncBatchNorm' if ranks > 1 else 'plain BatchNorm'
    ok = finite and len(losses) == ITERS and np.isfinite(losses).all()
    return ok, f'AMP O1, {ranks} GPU(s), {norm}: loss {losses[0]:.3f} -> {losses[-1]:.3f}, weights finite: {finite}'


def check_sync_batch_norm(config, checkpoint, data):
    paddle.set_device('gpu')
    cfg = load_config(config, opts=dataset_options(data)[1:])
    model = load_for_eval(cfg.build_model(pretrained=False), checkpoint)
    sample = paddle.to_tensor(np.asarray(cfg.val_dataset[0]['img'])[None])
    with paddle.no_grad():
        before = model(sample)[0].argmax(axis=1).numpy()
    model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    synced = sum(isinstance(layer, paddle.nn.SyncBatchNorm) for layer in model.sublayers())
    with paddle.no_grad():
        model.eval()
        converted = model(sample)[0].argmax(axis=1).numpy()
    model.train()
    loss_layers, coefs = cfg.loss['types'], cfg.loss['coef']
    optimizer = paddle.optimizer.Momentum(1e-4, momentum=0.9, parameters=model.parameters())
    scaler = paddle.amp.GradScaler(init_loss_scaling=1024)
    dataset, rng, losses = cfg.train_dataset, np.random.default_rng(0), []
    for _ in range(ITERS):
        samples = [dataset[int(i)] for i in rng.choice(len(dataset), 4, replace=False)]
        images = paddle.to_tensor(np.stack([s['img'] for s in samples]).astype('float32'))
        labels = paddle.to_tensor(np.stack([s['label'] for s in samples]).astype('int64'))
        with paddle.amp.auto_cast(level='O1', custom_black_list=AMP_BLACK_LIST):
            logits = model(images)
        loss = paddle.add_n([c * layer(logit.astype('float32'), labels)
                             for c, layer, logit in zip(coefs, loss_layers, logits)])
        scaled = scaler.scale(loss)
        scaled.backward()
        scaler.minimize(optimizer, scaled)
        optimizer.clear_grad()
        losses.append(float(loss))
    agreement = float((before == converted).mean())
    ok = synced > 0 and np.isfinite(losses).all() and agreement >= AGREEMENT
    return ok, (f'{synced} SyncBatchNorm layers, {ITERS} AMP O1 steps: loss {losses[0]:.3f} -> {losses[-1]:.3f}; '
                f'eval argmax same as BatchNorm: {agreement:.2%}')


def check_val(model_args):
    scores = [ACC_LINE.findall(paddleseg('val', model_args, cpu=cpu))[-1] for cpu in (False, True)]
    (gpu_miou, gpu_acc), (cpu_miou, cpu_acc) = [(float(m), float(a)) for m, a in scores]
    ok = abs(gpu_acc - cpu_acc) <= 1 - AGREEMENT
    return ok, f'GPU mIoU {gpu_miou:.4f} Acc {gpu_acc:.4f}, CPU mIoU {cpu_miou:.4f} Acc {cpu_acc:.4f}'


def read_labels(folder):
    """{relative path: class ids} of the palette PNGs under ``folder``."""
    paths = sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files)
    return {path: np.asarray(Image.open(os.path.join(folder, path))) for path in paths}


def agreement(a, b):
    """Fraction of pixels with the same class in two {name: labels} maps of the same names."""
    assert sorted(a) == sorted(b) and a, (sorted(a)[:3], sorted(b)[:3])
    same = sum(int((a[k] == b[k]).sum()) for k in a)
    return same / sum(a[k].size for k in a)


def cpu_predictions(work, model_args, images):
    """CPU ``paddleseg predict`` labels (computed once)."""
    out = os.path.join(work, 'predict_cpu')
    if not os.path.isdir(out):
        paddleseg('predict', model_args + ['--image_path', images, '--save_dir', out], cpu=True)
    return read_labels(os.path.join(out, 'pseudo_color_prediction'))


def check_predict(work, model_args, images):
    out = os.path.join(work, 'predict_gpu')
    paddleseg('predict', model_args + ['--image_path', images, '--save_dir', out])
    share = agreement(read_labels(os.path.join(out, 'pseudo_color_prediction')),
                      cpu_predictions(work, model_args, images))
    return share >= AGREEMENT, f'argmax agreement with CPU {share:.4%}'


def check_export(work, model_args, images):
    out = os.path.join(work, 'export')
    paddleseg('export', model_args + ['--save_dir', out, '--output_op', 'argmax'])
    config = inference.Config(*(os.path.join(out, name) for name in MODEL_FILES))
    config.enable_use_gpu(256, 0)
    config.disable_glog_info()
    predictor = inference.create_predictor(config)
    source = predictor.get_input_handle(predictor.get_input_names()[0])
    target = predictor.get_output_handle(predictor.get_output_names()[0])
    compose = Compose([Normalize()])  # the quickstart config's val transforms
    paths, base = list_images(images)
    exported = {}
    for path in paths:
        batch = compose({'img': read_image(path).astype(np.float32), 'trans_info': []})['img'][None]
        source.reshape(batch.shape)
        source.copy_from_cpu(np.ascontiguousarray(batch, np.float32))
        predictor.run()
        exported[os.path.splitext(output_name(path, base))[0] + '.png'] = target.copy_to_cpu()[0]
    share = agreement(exported, cpu_predictions(work, model_args, images))
    return share >= AGREEMENT, f'Paddle Inference on GPU, argmax agreement with CPU predict {share:.4%}'


# ---------------------------------------------------------------------------------------------- speed
def speed_rows(work, size, repeat):
    """One row per model: PaddleSeg's and our eval forward on the GPU, same weights, and their agreement."""
    paddle.set_device('gpu')
    rng = np.random.default_rng(0)
    image = paddle.to_tensor(rng.uniform(-1, 1, (1, 3, size, size)).astype('float32'))
    rows = []
    for name, title in MODELS.items():
        weights = os.path.join(work, f'{name}.pdparams')
        make_weights(name, weights)
        times, labels = {}, {}
        for paddleseg_model in (True, False):
            model = loaded_model(name, paddleseg_model, weights)
            model.eval()
            times[paddleseg_model], labels[paddleseg_model] = gpu_forward_time(model, image, repeat)
            del model
        share = float((labels[True] == labels[False]).mean())
        detail = (f'{size}x{size} forward: PaddleSeg {times[True] * 1e3:.1f} ms, paddle-psp '
                  f'{times[False] * 1e3:.1f} ms ({times[True] / times[False]:.2f}x), argmax agreement {share:.4%}')
        rows.append((title, share >= AGREEMENT, detail))
    return rows


def gpu_forward_time(model, image, repeat):
    """(median seconds of ``repeat`` synchronized forwards after a warm-up, argmax labels)."""
    times = []
    with paddle.no_grad():
        for index in range(repeat + 1):
            paddle.device.synchronize()
            start = time.perf_counter()
            logits = model(image)[0]
            paddle.device.synchronize()
            if index:
                times.append(time.perf_counter() - start)
        labels = logits.argmax(axis=1).numpy()
    return statistics.median(times), labels


def print_table(rows):
    width = max(len(name) for name, _, _ in rows)
    print(f'{"check".ljust(width)}  result  detail')
    for name, ok, detail in rows:
        print(f'{name.ljust(width)}  {"ok" if ok else "FAIL":6}  {detail}')


if __name__ == '__main__':
    sys.exit(main())
