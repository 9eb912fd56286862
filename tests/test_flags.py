"""PaddleSeg 2.8's tools/*.py flags: each is accepted by the matching verb with PaddleSeg's default and
meaning, or refused by the parser in one line naming what to use instead; and the light command line.

The table lists every flag of tools/train.py, val.py, predict.py and export.py (docs/flags.md is the
same table in prose).
"""
import contextlib
import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from paddle_psp.evaluation.auc_roc import AucRoc
from paddle_psp.evaluation.evaluate import metrics_json
from paddle_psp.inference.predict import custom_palette
from paddle_psp.core.errors import UserError
import paddle_psp_cli
from paddle_psp.engine.flags import train_parser
from paddle_psp.evaluation.flags import val_parser
from paddle_psp.inference.flags import export_parser, predict_parser

REQUIRED = {'train': ['--config', 'c.yml'], 'val': ['--config', 'c.yml', '--model_path', 'm'],
            'predict': ['--config', 'c.yml', '--model_path', 'm', '--image_path', 'i'],
            'export': ['--config', 'c.yml', '--model_path', 'm']}
PARSERS = {'train': train_parser, 'val': val_parser, 'predict': predict_parser, 'export': export_parser}
DEVICE_REFUSALS = [('--device', ['xpu']), ('--device', ['npu']), ('--device', ['mlu'])]

# (verb, flag, values given, attribute, our default (PaddleSeg's, or the value meaning the same), parsed value)
ACCEPTED = [
    ('train', '--device', ['cpu'], 'device', None, 'cpu'),  # None: gpu when Paddle has CUDA, else cpu
    ('train', '--save_dir', ['out'], 'save_dir', './output', 'out'),
    ('train', '--num_workers', ['2'], 'num_workers', 0, 2),
    ('train', '--do_eval', [], 'do_eval', False, True),
    ('train', '--use_vdl', [], 'use_vdl', False, True),
    pytest.param('train', '--use_ema', [], 'use_ema', False, True),
    ('train', '--resume_model', ['out/iter_10'], 'resume_model', None, 'out/iter_10'),
    ('train', '--iters', ['10'], 'iters', None, 10),
    ('train', '--batch_size', ['2'], 'batch_size', None, 2),
    ('train', '--learning_rate', ['0.1'], 'learning_rate', None, 0.1),
    ('train', '--save_interval', ['5'], 'save_interval', 1000, 5),
    ('train', '--log_iters', ['5'], 'log_iters', 10, 5),
    ('train', '--keep_checkpoint_max', ['2'], 'keep_checkpoint_max', 5, 2),
    ('train', '--seed', ['3'], 'seed', None, 3),
    ('train', '--precision', ['fp16'], 'precision', 'fp32', 'fp16'),
    ('train', '--amp_level', ['O2'], 'amp_level', 'O1', 'O2'),
    pytest.param('train', '--profiler_options', ['batch_range=[1,2]'], 'profiler_options', None,
                 'batch_range=[1,2]'),
    pytest.param('train', '--data_format', ['NCHW'], 'data_format', 'NCHW', 'NCHW'),
    pytest.param('train', '--repeats', ['2'], 'repeats', 1, 2),
    ('train', '--opts', ['a=1', 'b=2'], 'opts', [], ['a=1', 'b=2']),
    ('val', '--model_path', ['x.pdparams'], 'model_path', 'm', 'x.pdparams'),
    ('val', '--num_workers', ['2'], 'num_workers', 0, 2),
    ('val', '--device', ['cpu'], 'device', None, 'cpu'),
    ('val', '--device', ['gpu'], 'device', None, 'gpu'),
    ('val', '--aug_eval', [], 'aug', None, True),  # None: the config's test_config, else off
    ('val', '--scales', ['0.75', '1.0'], 'scales', None, [0.75, 1.0]),  # None: test_config, else 1.0
    ('val', '--flip_horizontal', [], 'flip_horizontal', None, True),
    ('val', '--flip_vertical', [], 'flip_vertical', None, True),
    ('val', '--is_slide', [], 'is_slide', None, True),
    ('val', '--crop_size', ['64', '32'], 'crop_size', None, [64, 32]),
    ('val', '--stride', ['32', '16'], 'stride', None, [32, 16]),
    ('val', '--data_format', ['NCHW'], 'data_format', 'NCHW', 'NCHW'),
    ('val', '--auc_roc', ['True'], 'auc_roc', False, True),
    ('val', '--auc_roc', ['False'], 'auc_roc', False, False),
    ('val', '--opts', ['a=1'], 'opts', [], ['a=1']),
    ('predict', '--image_path', ['x.png'], 'image_path', 'i', 'x.png'),
    ('predict', '--save_dir', ['out'], 'save_dir', './output/result', 'out'),
    ('predict', '--device', ['cpu'], 'device', None, 'cpu'),
    ('predict', '--aug_pred', [], 'aug', None, True),
    ('predict', '--scales', ['1.25'], 'scales', None, [1.25]),
    ('predict', '--flip_horizontal', [], 'flip_horizontal', None, True),
    ('predict', '--flip_vertical', [], 'flip_vertical', None, True),
    ('predict', '--is_slide', [], 'is_slide', None, True),
    ('predict', '--crop_size', ['64', '32'], 'crop_size', None, [64, 32]),
    ('predict', '--stride', ['32', '16'], 'stride', None, [32, 16]),
    ('predict', '--custom_color', ['255', '0', '0'], 'custom_color', None, [255, 0, 0]),
    ('export', '--save_dir', ['out'], 'save_dir', './output/inference_model', 'out'),
    ('export', '--input_shape', ['1', '3', '64', '128'], 'input_shape', None, [1, 3, 64, 128]),
    ('export', '--output_op', ['softmax'], 'output_op', 'argmax', 'softmax'),
    ('export', '--output_op', ['none'], 'output_op', 'argmax', 'none'),
    ('export', '--device', ['cpu'], 'device', None, 'cpu'),
]
# (verb, flag, values, words the one error line must hold)
REFUSED = [(verb, flag, values, 'this build supports cpu, gpu; expected --device cpu')
           for verb in ('train', 'val', 'predict', 'export') for flag, values in DEVICE_REFUSALS] + [
    ('val', '--data_format', ['NHWC'], 'the models here compute in NCHW'),
]


def parse(verb, argv):
    """(namespace or None, the error line) of ``paddleseg VERB argv``'s parser."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            return PARSERS[verb]().parse_args(REQUIRED[verb] + argv), ''
        except SystemExit:
            return None, stderr.getvalue().strip().splitlines()[-1]


@pytest.mark.parametrize('verb, flag, values, attribute, default, parsed', ACCEPTED)
def test_paddleseg_flag_is_accepted_with_its_default(verb, flag, values, attribute, default, parsed):
    args, error = parse(verb, [flag] + values)
    assert args is not None, error
    assert getattr(args, attribute) == parsed
    assert getattr(parse(verb, [])[0], attribute) == default


@pytest.mark.parametrize('verb, flag, values, words', REFUSED)
def test_unsupported_paddleseg_value_is_refused_in_one_line(verb, flag, values, words):
    args, error = parse(verb, [flag] + values)
    assert args is None
    assert error.startswith(f'paddleseg {verb}: error: {flag} {values[0]}: ') and words in error, error


def test_paddleseg_type_bool_flag_reads_false_as_false():
    assert parse('val', ['--auc_roc'])[0].auc_roc is True
    assert parse('val', ['--auc_roc', 'no'])[0].auc_roc is False
    assert 'expected True or False' in parse('val', ['--auc_roc', 'maybe'])[1]


def test_custom_color_replaces_the_first_colours():
    palette = np.zeros((256, 3), np.uint8)
    got = custom_palette(palette, [255, 0, 0, 0, 128, 255])
    assert got[:3].tolist() == [[255, 0, 0], [0, 128, 255], [0, 0, 0]]
    for bad in ([1, 2], [0, 0, 256], [-1, 0, 0]):
        with pytest.raises(UserError, match='--custom_color .*expected R G B triplets'):
            custom_palette(palette, bad)


def test_auc_roc_matches_scikit_learn_and_leaves_out_ignored_pixels():
    from sklearn.metrics import roc_auc_score
    rng = np.random.RandomState(0)
    logits, label = rng.randn(3, 8, 8).astype(np.float32), rng.randint(0, 3, (8, 8))
    label[0, :3] = 255
    auc = AucRoc(3, 255)
    auc.update(logits, label)
    keep = label.reshape(-1) != 255
    probabilities = np.exp(logits) / np.exp(logits).sum(0)
    expected = roc_auc_score(label.reshape(-1)[keep], probabilities.reshape(3, -1)[:, keep].T, multi_class='ovr')
    assert auc.value() == pytest.approx(expected, abs=1e-6)


def test_metrics_json_is_plain_json():
    scores = {'mIoU': 0.5, 'Acc': 0.75, 'Kappa': 0.4, 'Dice': 0.6, 'num_images': 2, 'class_names': ['a', 'b'],
              'class_IoU': np.array([0.5, np.nan]), 'class_precision': np.array([1.0, np.nan]),
              'class_recall': np.array([0.5, np.nan]), 'class_Dice': np.array([0.6, np.nan]),
              'confusion': np.array([[1, 1], [0, 0]])}
    out = json.loads(json.dumps(metrics_json(scores)))
    assert out['class_IoU'] == [0.5, None] and out['confusion'] == [[1, 1], [0, 0]] and out['mIoU'] == 0.5


def command(*argv):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    start = time.perf_counter()
    run = subprocess.run([sys.executable, '-m', 'paddle_psp_cli', *argv], capture_output=True, text=True,
                         env=env, timeout=120)
    return run, time.perf_counter() - start


def run_light(argv):
    """Run ``paddleseg ARGV`` in a subprocess; returns it and the heavy packages imported by the time it exited."""
    code = ('import sys, runpy; sys.argv = ["paddleseg"] + sys.argv[1:]\n'
            'try:\n    runpy.run_module("paddle_psp_cli", run_name="__main__")\n'
            'finally:\n    print("IMPORTED", sorted(m for m in ("paddle", "paddleseg", "numpy") if m in sys.modules))')
    return subprocess.run([sys.executable, '-c', code, *argv], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))


@pytest.mark.parametrize('argv', [['--version'], ['val', '--config', 'c.yml', '--model_path', 'm', '--device', 'npu'],
                                  ['download'], ['prepare', 'cityscapes', '--root', 'r', '--workers', '0'],
                                  ['benchmark', '--limit', 'x'], ['models', '--num_classes']])
def test_version_and_bad_flags_answer_without_paddle(argv):
    run = run_light(argv)
    assert 'IMPORTED []' in run.stdout, run.stdout + run.stderr
    if argv != ['--version']:
        assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, run.stderr


@pytest.mark.parametrize('verb', sorted(paddle_psp_cli.VERBS) + sorted(paddle_psp_cli.ALIASES))
def test_every_verb_answers_help_without_paddle(verb):
    run = run_light([verb, '--help'])
    name = paddle_psp_cli.ALIASES.get(verb, verb)
    assert run.returncode == 0 and f'usage: paddleseg {name}' in run.stdout, run.stdout + run.stderr
    assert 'IMPORTED []' in run.stdout, run.stdout + run.stderr


def test_every_verb_has_a_light_parser():
    assert set(paddle_psp_cli.PARSERS) == set(paddle_psp_cli.VERBS)


def test_version_answers_in_under_a_second():
    run, seconds = command('--version')
    assert run.returncode == 0 and run.stdout.startswith('paddle-psp ')
    assert seconds < 1.0 or os.getloadavg()[0] > 2 * os.cpu_count(), seconds  # not judged on a swamped machine


def test_the_parsers_import_no_third_party_module():
    """The command imports every verb's parser; the light modules it does not import are checked on their own."""
    for module in ('paddle_psp_cli', 'paddle_psp', 'paddle_psp.core.stages', 'paddle_psp.core.lazy',
                   'paddle_psp.weights.zoo_listing'):
        code = f'import sys, {module}; print(sorted(set(sys.modules) & {{"paddle", "paddleseg", "numpy", "yaml"}}))'
        run = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        assert run.stdout.strip() == '[]', (module, run.stdout, run.stderr)
