"""Start-up of the ``paddleseg`` command, end to end, each run a fresh process.

Times ``paddleseg --version``, ``paddleseg val --help``, and ``paddleseg predict --profile`` over 1 and 10
images with a cold and a warm export cache, on a small PSPNet (ResNet50-vd OS8, 32-channel pyramid) with
random weights and 256x128 synthetic images, and prints each run's wall time with the ``--profile``
breakdown (imports, config, model build, checkpoint, predictor, first forward). The machine's load
average is printed with it: absolute times on a shared machine are noisy.

    python benchmarks/startup.py [--work DIR] [--repeats N]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

MODEL = {'type': 'ZooPSPNet', 'backbone': {'type': 'ZooResNet50_vd', 'output_stride': 8}, 'align_corners': False,
         'pretrained': None, 'pp_out_channels': 32, 'bin_sizes': [1, 2], 'enable_auxiliary_loss': False}


def prepare(work):
    """A dataset, a config and random weights under ``work``; returns (config, weights, image folder)."""
    from paddle_psp.config import load_config  # lazy: only the preparation imports Paddle in this process
    from paddle_psp.data.synthetic import make_cityscapes_like
    from paddle_psp.weights.state_dict import randomize
    import paddle

    root = make_cityscapes_like(os.path.join(work, 'data'), num_train=1, num_val=10, size=(256, 128), seed=0)
    config = os.path.join(work, 'startup.yml')
    with open(config, 'w', encoding='utf-8') as handle:
        yaml.safe_dump({'batch_size': 1, 'iters': 1, 'model': MODEL,
                        'val_dataset': {'type': 'Cityscapes', 'dataset_root': root, 'mode': 'val',
                                        'transforms': [{'type': 'Normalize'}]}}, handle)
    model = load_config(config).model
    randomize(model, seed=0)
    weights = os.path.join(work, 'model.pdparams')
    paddle.save(model.state_dict(), weights)
    images = sorted(os.path.join(folder, name) for folder, _, names in
                    os.walk(os.path.join(root, 'leftImg8bit', 'val')) for name in names)
    return config, weights, images


def paddleseg(argv, env):
    """(wall seconds, the --profile breakdown or '') of one ``paddleseg`` process."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, '-m', 'paddle_psp_cli', *argv], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if run.returncode:
        raise RuntimeError(f'paddleseg {" ".join(argv)} failed:\n{run.stderr[-2000:]}')
    found = re.search(r'start-up: (.*)', run.stderr)
    return seconds, found.group(1) if found else ''


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work', help='working folder (default: a temporary one)')
    parser.add_argument('--repeats', type=int, default=2, help='runs of each warm measurement (2)')
    args = parser.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix='paddle-psp-startup-')
    config, weights, images = prepare(work)
    lists = {}
    for count in (1, 10):
        lists[count] = os.path.join(work, f'images{count}.txt')
        with open(lists[count], 'w', encoding='utf-8') as handle:
            handle.write(''.join(os.path.relpath(p, work) + '\n' for p in images[:count]))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PADDLE_PSP_CACHE=os.path.join(work, 'cache'))
    print(f'load average before: {" ".join(f"{v:.2f}" for v in os.getloadavg())}, {os.cpu_count()} CPUs')
    print(f'{"command":<38} {"wall":>7}  breakdown (--profile)')
    rows = [('paddleseg --version', ['--version'], None), ('paddleseg val --help', ['val', '--help'], None)]
    for count in (1, 10):
        predict = ['predict', '--config', config, '--model_path', weights, '--image_path', lists[count],
                   '--save_dir', os.path.join(work, 'out'), '--profile']
        rows += [(f'predict {count} image(s), cold cache', predict, 'cold'),
                 (f'predict {count} image(s), warm cache', predict, 'warm')]
    for label, command, cache in rows:
        for _ in range(1 if cache == 'cold' else args.repeats):
            if cache == 'cold':
                subprocess.run(['rm', '-rf', env['PADDLE_PSP_CACHE']], check=True)
            seconds, breakdown = paddleseg(command, env)
            print(f'{label:<38} {seconds:>6.2f}s  {breakdown}', flush=True)
    print(f'load average after: {" ".join(f"{v:.2f}" for v in os.getloadavg())}')


if __name__ == '__main__':
    main()
