"""`paddleseg train` flags of PaddleSeg 2.8's tools/train.py: defaults, refusals, --use_ema, --data_format,
--repeats, --profiler_options, and the drawn --seed."""
import json
import multiprocessing
import os

import numpy as np
import paddle
import pytest
import yaml

from paddle_psp.config import load_config
from paddle_psp.core import device
from paddle_psp.core.errors import UserError
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.engine import train
from paddle_psp.evaluation.evaluate import evaluate
from paddle_psp.engine.ema import EMA_BEST_DIR, EMAHook, ModelEMA, ema_decay
from paddle_psp.engine.hooks import Hook
from paddle_psp.engine.profiler import parse_profiler_options
from paddle_psp.models.layers import NCHWAdapter
from paddle_psp.engine.flags import train_parser
from paddle_psp.inference import tta
from tolerances import RESNET50_FORWARD_RTOL, assert_same_forward, near_tie_pixels

# PaddleSeg 2.8 tools/train.py: flag -> default (None: no default; False: store_true).
PADDLESEG_TRAIN_DEFAULTS = {
    'config': None, 'save_dir': './output', 'num_workers': 0, 'do_eval': False, 'use_vdl': False,
    'use_ema': False, 'resume_model': None, 'iters': None, 'batch_size': None, 'learning_rate': None,
    'save_interval': 1000, 'log_iters': 10, 'keep_checkpoint_max': 5, 'seed': None, 'precision': 'fp32',
    'amp_level': 'O1', 'profiler_options': None, 'data_format': 'NCHW', 'repeats': 1, 'opts': [],
}


def test_every_paddleseg_train_flag_has_its_default():
    args = train_parser().parse_args(['--config', 'x.yml'])
    for flag, default in PADDLESEG_TRAIN_DEFAULTS.items():
        expected = 'x.yml' if flag == 'config' else default
        assert getattr(args, flag) == expected, flag
    # --device: PaddleSeg's default 'gpu' falls back to cpu without a GPU; ours picks the same way
    assert args.device is None
    for device in ('cpu', 'gpu'):
        assert train_parser().parse_args(['--config', 'x.yml', '--device', device]).device == device
    # xpu, npu, mlu: refused by the parser in one line (tests/test_flags.py)


@pytest.mark.parametrize('flags, message', [
    (['--profiler_options', 'batch_range=[5,2]'], 'batch_range=[5,2]: expected [start, stop]'),
    (['--profiler_options', 'colour=red'], "'colour=red': expected key=value"),
])
def test_refused_values_are_one_line(flags, message):
    args = train_parser().parse_args(['--config', 'x.yml', *flags])
    with pytest.raises(UserError) as err:
        train.check_flags(args)
    assert message in str(err.value) and '\n' not in str(err.value)


def test_repeats_below_one_is_refused_with_the_config_overrides():
    args = train_parser().parse_args(['--config', 'x.yml', '--repeats', '0'])
    train.check_flags(args)  # a config rewrite (config/overrides.py), checked where the config is read
    with pytest.raises(UserError) as err:
        train.Trainer(args)
    assert str(err.value) == '--repeats: expected a positive integer, got 0'


def test_device_gpu_without_cuda_falls_back_to_cpu_as_the_other_verbs(monkeypatch, capsys):
    monkeypatch.setattr(device, 'has_gpu', lambda: False)
    train.check_flags(train_parser().parse_args(['--config', 'x.yml', '--device', 'gpu']))  # no error
    assert device.use_device('gpu') == 'cpu' and paddle.get_device() == 'cpu'
    assert capsys.readouterr().err.count('running on the CPU') == 1
    fp16 = train_parser().parse_args(['--config', 'x.yml', '--device', 'gpu', '--precision', 'fp16'])
    with pytest.raises(UserError, match='GPU only'):
        train.check_flags(fp16)


def test_profiler_options_parse_as_paddleseg():
    assert parse_profiler_options('') == {'batch_range': [10, 20], 'state': 'All', 'sorted_key': 'total',
                                          'tracer_option': 'Default', 'profile_path': '/tmp/profile',
                                          'exit_on_finished': True}
    options = parse_profiler_options('batch_range=[50, 60]; state=CPU; profile_path=a.prof; exit_on_finished=0')
    assert options['batch_range'] == [50, 60] and options['state'] == 'CPU'
    assert options['profile_path'] == 'a.prof' and options['exit_on_finished'] is False


def test_ema_is_paddleseg_average_of_parameters_and_batchnorm_statistics():
    """ModelEMA after N SGD steps == numpy recomputation with PaddleSeg's decay from the per-step states."""
    paddle.seed(3)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4), paddle.nn.Conv2D(4, 2, 1))
    optimizer = paddle.optimizer.SGD(0.1, parameters=model.parameters())
    ema = ModelEMA(model)
    ema.reset(model)
    states = [{k: v.numpy().copy() for k, v in model.state_dict().items()}]
    for iteration in range(1, 6):
        model(paddle.randn([2, 3, 8, 8])).square().mean().backward()
        optimizer.step()
        optimizer.clear_grad()
        ema.update(model, iteration)
        states.append({k: v.numpy().copy() for k, v in model.state_dict().items()})
    assert [round(ema_decay(i), 6) for i in (1, 2, 9, 999, 5000)] == [0.5, 0.666667, 0.9, 0.999, 0.999]
    expected = dict(states[0])
    for iteration in range(1, 6):
        decay = min(1 - 1 / (iteration + 1), 0.999)
        expected = {k: decay * expected[k] + (1 - decay) * states[iteration][k] for k in expected}
    got = ema.state_dict()
    assert any('_mean' in k for k in got) and set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key].numpy(), value, rtol=1e-5, atol=1e-6, err_msg=key)
    assert not ema.model.training and all(p.stop_gradient for p in ema.model.parameters())


class RecordStates(Hook):
    """Keeps numpy copies of the model's state before training and the model's and EMA's after each step."""

    def __init__(self):
        self.initial, self.model, self.ema = None, {}, {}

    def before_train(self, trainer):
        self.initial = {k: v.numpy().copy() for k, v in trainer.core_model.state_dict().items()}

    def after_step(self, trainer, step):
        self.model[step.iteration] = {k: v.numpy().copy() for k, v in trainer.core_model.state_dict().items()}
        ema = next(hook.ema for hook in trainer.hooks if isinstance(hook, EMAHook))  # the EMA lives in its hook
        self.ema[step.iteration] = {k: v.numpy().copy() for k, v in ema.state_dict().items()}


def _load_numpy(path):
    return {k: np.asarray(v) for k, v in paddle.load(path).items()}


def test_use_ema_trains_evaluates_keeps_best_and_resumes_exactly(tmp_path, make_config, capsys):
    """--use_ema --do_eval, no --seed: the drawn seed is logged and saved; the EMA follows PaddleSeg's
    recurrence over the trained weights; best_model keeps the model, ema_best_model the EMA (as
    PaddleSeg); resuming from iter_2 gives the same iter_4 model and EMA."""
    config = make_config(tmp_path, iters=4)
    common = ['--config', config, '--save_interval', '2', '--log_iters', '1', '--use_ema', '--do_eval']
    record = RecordStates()
    straight = str(tmp_path / 'straight')
    assert train.main(common + ['--save_dir', straight], extra_hooks=[record]) == 0
    logged = capsys.readouterr().err
    seed = ckpt.read_info(os.path.join(straight, 'iter_2'))['seed']
    assert f'seed: {seed} (drawn; --seed {seed} repeats this run)' in logged
    assert '[EVAL] EMA iter 2: mIoU' in logged

    expected = record.initial
    for iteration in range(1, 5):
        decay = ema_decay(iteration)
        expected = {k: decay * expected[k] + (1 - decay) * record.model[iteration][k] for k in expected}
        for key in expected:
            np.testing.assert_allclose(record.ema[iteration][key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for iteration in (2, 4):
        saved = _load_numpy(os.path.join(straight, f'iter_{iteration}', 'ema_model.pdparams'))
        assert all(np.array_equal(saved[k], record.ema[iteration][k]) for k in saved)

    metrics = {i: ckpt.read_info(os.path.join(straight, f'iter_{i}'))['metrics'] for i in (2, 4)}
    assert all({'mIoU', 'Acc', 'ema_mIoU', 'ema_Acc'} <= set(m) for m in metrics.values())
    best = max((2, 4), key=lambda i: metrics[i]['mIoU'])  # first of equals, as PaddleSeg's strict '>'
    best_ema = max((2, 4), key=lambda i: metrics[i]['ema_mIoU'])
    best_model = _load_numpy(os.path.join(straight, 'best_model', 'model.pdparams'))
    assert all(np.array_equal(best_model[k], record.model[best][k]) for k in best_model)
    assert sorted(os.listdir(os.path.join(straight, EMA_BEST_DIR))) == ['checkpoint.json', 'ema_model.pdparams']
    ema_best = _load_numpy(os.path.join(straight, EMA_BEST_DIR, 'ema_model.pdparams'))
    assert all(np.array_equal(ema_best[k], record.ema[best_ema][k]) for k in ema_best)
    assert ckpt.read_best(straight, name=EMA_BEST_DIR)['mIoU'] == metrics[best_ema]['ema_mIoU']

    resumed = str(tmp_path / 'resumed')
    os.makedirs(resumed)
    os.rename(os.path.join(straight, 'iter_2'), os.path.join(resumed, 'iter_2'))
    assert train.main(common + ['--save_dir', resumed, '--resume_model', os.path.join(resumed, 'iter_2')]) == 0
    assert 'EMA restored from' in capsys.readouterr().err
    assert ckpt.read_info(os.path.join(resumed, 'iter_4'))['seed'] == seed
    for name in ('model.pdparams', 'ema_model.pdparams'):
        a, b = (_load_numpy(os.path.join(d, 'iter_4', name)) for d in (straight, resumed))
        for key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=f'{name} {key}')


def _losses(save_dir, iteration):
    return ckpt.read_info(os.path.join(save_dir, f'iter_{iteration}'))['losses']


class RecordFirstStep(Hook):
    """Keeps numpy copies of the model's state before training and after the first step, and the names of
    the keys the first step computes from the forward pass alone (tolerances.py): the batch-norm running
    statistics and the classifiers' weights (one reduction over the pixels behind the loss)."""

    def __init__(self):
        self.initial = self.after_first = None
        self.forward_keys = []

    def before_train(self, trainer):
        model = trainer.core_model
        self.initial = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        classes = model.num_classes   # a classifier's weight and bias are the head's tensors with one row per class
        self.forward_keys = [k for k, v in self.initial.items() if k.endswith(('._mean', '._variance'))
                             or (k.startswith('head.') and v.shape[0] == classes)]

    def after_step(self, trainer, step):
        if step.iteration == 1:
            self.after_first = {k: v.numpy().copy() for k, v in trainer.core_model.state_dict().items()}


@pytest.mark.parametrize('model', ['ZooPSPNet', 'ZooDeepLabV3'])
def test_nhwc_trains_as_nchw(tmp_path, make_config, model):
    """Same seed: the same initial weights (bit for bit), and the first step agrees in everything the forward
    pass determines, to the float32 bound of tests/tolerances.py: the first loss, every batch-norm running
    statistic, and the classifiers' updated weights.

    Not compared: later losses and the backbone's updated weights. On this tiny random-initialised model a
    pooled branch normalises two values per channel, whose input gradient is analytically zero, so the
    gradient that reaches the backbone is rounding noise and differs by several percent between any two
    summation orders (NCHW against NHWC, or one CPU's kernels against another's).
    """
    config = make_config(tmp_path, iters=2, model=model)
    runs = {}
    for data_format in ('NCHW', 'NHWC'):
        save_dir, record = str(tmp_path / data_format), RecordFirstStep()
        assert train.main(['--config', config, '--save_dir', save_dir, '--save_interval', '2', '--seed', '5',
                           '--do_eval', '--data_format', data_format], extra_hooks=[record]) == 0
        runs[data_format] = record, ckpt.read_info(os.path.join(save_dir, 'iter_2'))
    (nchw, nchw_info), (nhwc, nhwc_info) = runs['NCHW'], runs['NHWC']
    assert set(nchw.initial) == set(nhwc.initial)
    assert all(np.array_equal(nchw.initial[k], nhwc.initial[k]) for k in nchw.initial)
    rtol = RESNET50_FORWARD_RTOL
    np.testing.assert_allclose(nhwc_info['losses']['1'], nchw_info['losses']['1'], rtol=rtol)
    assert len(nchw.forward_keys) > 50 and nchw.forward_keys == nhwc.forward_keys
    for key in nchw.forward_keys:
        expected, got = nchw.after_first[key], nhwc.after_first[key]
        assert not np.array_equal(expected, nchw.initial[key]), key    # the step changed it
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max(), err_msg=key)
    assert 0 <= nhwc_info['metrics']['mIoU'] <= 1
    a, b = (_load_numpy(str(tmp_path / f / 'iter_2' / 'model.pdparams')) for f in ('NCHW', 'NHWC'))
    assert set(a) == set(b) and all(a[k].shape == b[k].shape for k in a)  # the same checkpoint layout


@pytest.mark.parametrize('model', ['ZooPSPNet', 'ZooDeepLabV3'])
def test_nhwc_evaluates_as_nchw(tmp_path, make_config, model):
    """The same weights in both layouts: the same confusion matrix (NHWC behind NCHWAdapter, as training's
    --do_eval runs it): every image's logits agree to the derived float32 bound, and the confusion matrices
    differ only by pixels at near ties of the NCHW logits (tolerances.near_tie_pixels: another layout sums in
    another order), each of which moves one count from one cell to another."""
    config = make_config(tmp_path, model=model)
    models = {}
    for data_format in ('NCHW', 'NHWC'):
        cfg = load_config(config)
        if data_format == 'NHWC':
            cfg.dic['model']['data_format'] = cfg.dic['model']['backbone']['data_format'] = 'NHWC'
        models[data_format] = cfg.model
    models['NHWC'].set_state_dict(models['NCHW'].state_dict())
    dataset = load_config(config).val_dataset
    nchw = evaluate(models['NCHW'], dataset, print_detail=False)
    nhwc = evaluate(NCHWAdapter(models['NHWC']), dataset, print_detail=False)
    forwards = [tta.layer_forward(model) for model in (models['NCHW'], NCHWAdapter(models['NHWC']))]
    ties = 0
    for index in range(len(dataset)):
        expected, got = (tta.infer_logits(forward, dataset[index]['img']) for forward in forwards)
        assert_same_forward(got, expected, axis=0)
        ties += near_tie_pixels(expected, axis=0)
    moved_counts = int(np.abs(nchw['confusion'] - nhwc['confusion']).sum())
    assert moved_counts <= 2 * ties, (moved_counts, ties, nchw['confusion'], nhwc['confusion'])


def test_nhwc_refused_for_a_model_without_data_format(tmp_path, make_config):
    """PaddleSeg's UNet takes no data_format (its tools/train.py allows NHWC for DeepLabV3P only)."""
    config = make_config(tmp_path)
    with open(config) as file:
        dic = yaml.safe_load(file)
    dic['model'] = {'type': 'UNet', 'num_classes': 19}
    with open(config, 'w') as file:
        yaml.safe_dump(dic, file)
    args = train_parser().parse_args(['--config', config, '--data_format', 'NHWC'])
    with pytest.raises(UserError) as err:
        train.Trainer(args)
    assert str(err.value) == '--data_format NHWC: model: UNet takes no data_format; expected --data_format NCHW'


def test_repeats_lengthens_the_epoch_as_paddleseg(tmp_path, make_config, synthetic_root):
    config = make_config(tmp_path, iters=1)
    args = train_parser().parse_args(['--config', config, '--repeats', '3', '--seed', '1'])
    trainer = train.Trainer(args)
    files = trainer.train_dataset.file_list
    assert len(files) == 3 * 8 and files[:8] * 3 == files


def test_loader_workers_stop_when_the_loop_ends(tmp_path, make_config):
    """The training loader's reading processes are gone before the end-of-training hooks run, and after a
    run that failed in the middle of the loop."""
    alive = []

    class Count(Hook):
        def after_step(self, trainer, step):
            if step.iteration == 2:
                raise RuntimeError('stop here')

        def after_train(self, trainer):
            alive.append(len(multiprocessing.active_children()))
    common = ['--config', make_config(tmp_path, iters=1), '--seed', '0', '--num_workers', '1']
    assert not multiprocessing.active_children()
    assert train.main([*common, '--save_dir', str(tmp_path / 'out')], extra_hooks=[Count()]) in (0, None)
    assert alive == [0]
    with pytest.raises(RuntimeError, match='stop here'):
        train.main([*common, '--save_dir', str(tmp_path / 'failed'), '--iters', '3'], extra_hooks=[Count()])
    assert not multiprocessing.active_children()


def test_profiler_options_profile_then_exit(tmp_path, make_config):
    profile = str(tmp_path / 'trace')
    argv = ['--config', make_config(tmp_path, iters=4), '--save_dir', str(tmp_path / 'out'), '--seed', '0',
            '--profiler_options', f'batch_range=[1, 2]; state=CPU; profile_path={profile}']
    with pytest.raises(SystemExit) as stop:
        train.main(argv)
    assert stop.value.code == 0
    assert os.path.isfile(profile) and json.load(open(profile))['traceEvents']
    assert not os.path.exists(str(tmp_path / 'out' / 'iter_4'))  # PaddleSeg's exit_on_finished


@pytest.mark.parametrize('model', ['ZooPSPNet', 'ZooDeepLabV3'])
def test_to_static_training_is_bit_identical_to_dygraph(tmp_path, make_config, model, capsys):
    """PaddleSeg's config key ``to_static_training: true``: the training forward as a static program gives
    the same losses and the same checkpoint, bit for bit, and evaluation during training is unchanged."""
    runs = {}
    for static in (False, True):
        config = make_config(tmp_path, name=f'tiny-{static}.yml', iters=2, model=model, to_static_training=static)
        save_dir = str(tmp_path / f'out-{static}')
        assert train.main(['--config', config, '--save_dir', save_dir, '--save_interval', '2', '--seed', '5',
                           '--do_eval']) == 0
        assert ('training forward runs as a static program' in capsys.readouterr().err) == static
        runs[static] = (ckpt.read_info(os.path.join(save_dir, 'iter_2')),
                        _load_numpy(os.path.join(save_dir, 'iter_2', 'model.pdparams')))
    (dygraph, weights), (static, static_weights) = runs[False], runs[True]
    assert static['losses'] == dygraph['losses']
    assert static['metrics'] == dygraph['metrics']
    assert set(static_weights) == set(weights)
    for key in weights:
        np.testing.assert_array_equal(static_weights[key], weights[key], err_msg=key)
