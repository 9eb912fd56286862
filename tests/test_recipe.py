"""The recipe shortcut: a warm start finds its cached export from the config and weights file, without building
the model; any change to what the export is made of leads to the full start, with correct output."""
import dataclasses
import json
import os
import shutil

import numpy as np
import paddle
import pytest
from PIL import Image

from conftest import write_checkpoints, write_config
from paddle_psp.config import load_config
from paddle_psp.config.build import SegConfig
from paddle_psp.inference import cache, cache_key, export, predict, quantize, runner
from paddle_psp.inference.forward import ForwardOptions, make_forward
from test_cache import KIB, fake_build
from tolerances import assert_classes_differ_only_at_ties

HEX_KEY = 'ab' * 16


# ----------------------------------------------------------------------------------------------- index
def use(root, key=HEX_KEY, name='r1', record=None):
    """Use entry ``key`` through :func:`cache.cached_entry`, mapping recipe ``name`` to it."""
    with cache.cached_entry(key, fake_build(KIB), str(root), 10 * KIB, recipe=(name, record or {})) as folder:
        return folder


def look_up(root, name='r1', check=None, limit=10 * KIB):
    with cache.recipe_entry(name, check, str(root), limit) as folder:
        return folder


def test_a_recipe_finds_its_entry_once_mapped(tmp_path):
    assert look_up(tmp_path) is None  # no index yet
    folder = use(tmp_path, record={'note': 1})
    assert look_up(tmp_path) == folder and cache.read_index(str(tmp_path))['r1'] == {'note': 1, 'key': HEX_KEY}
    assert look_up(tmp_path, name='r2') is None
    assert look_up(tmp_path, check=lambda record: record['note'] == 2) is None


@pytest.mark.parametrize('damage', [shutil.rmtree, lambda folder: os.remove(os.path.join(folder, 'model.pdiparams'))],
                         ids=['entry deleted', 'entry damaged'])
def test_a_mapping_to_a_missing_or_invalid_entry_is_a_miss(tmp_path, damage):
    folder = use(tmp_path)
    damage(folder)
    assert look_up(tmp_path) is None and not os.path.exists(folder)  # an invalid entry is deleted
    use(tmp_path, key='cd' * 16, name='r2')  # the next write drops the mapping to the entry that is gone
    assert list(cache.read_index(str(tmp_path))) == ['r2']


def test_a_mapping_to_an_evicted_entry_is_a_miss(tmp_path):
    use(tmp_path, key='aa', name='old')
    use(tmp_path, key='bb', name='new')
    with cache.cached_entry('cc', fake_build(8 * KIB), str(tmp_path), 8 * KIB):  # evicts both
        pass
    assert not os.path.exists(tmp_path / 'aa') and look_up(tmp_path, name='old') is None


@pytest.mark.parametrize('text', ['{"r1": ', '[]', json.dumps({'r1': {'key': '../elsewhere'}})],
                         ids=['truncated', 'not a dict', 'a path'])
def test_an_unreadable_index_or_mapping_is_a_miss(tmp_path, text):
    use(tmp_path)
    (tmp_path / cache.INDEX).write_text(text)
    assert look_up(tmp_path) is None
    use(tmp_path)
    assert list(cache.read_index(str(tmp_path))) == ['r1']


def test_the_index_keeps_the_newest_mappings(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, 'MAX_RECIPES', 3)
    for number in range(5):
        use(tmp_path, name=f'r{number}')
    assert list(cache.read_index(str(tmp_path))) == ['r2', 'r3', 'r4']


def test_sources_unchanged_sees_an_edit(tmp_path):
    (tmp_path / 'layer.py').write_text('A = 1\n')
    record = {'sources': [str(tmp_path)], 'source_digest': cache_key.folders_digest([str(tmp_path)])}
    assert cache_key.sources_unchanged(record)
    (tmp_path / 'layer.py').write_text('A = 2\n')
    assert not cache_key.sources_unchanged(record)
    assert not cache_key.sources_unchanged({'sources': [str(tmp_path / 'gone')], 'source_digest': ''})


def test_the_recipe_key_sees_each_part_of_the_recipe(synthetic_root, tmp_path, monkeypatch):
    paths = write_checkpoints(tmp_path, synthetic_root, seed=5)
    (tmp_path / 'package').mkdir()
    (tmp_path / 'package' / 'module.py').write_text('A = 1\n')
    monkeypatch.setattr(cache_key, 'PACKAGE', str(tmp_path / 'package'))
    cfg = load_config(paths['config'])
    keys = {cache_key.recipe_key(cfg, paths['checkpoint'])}
    assert cache_key.recipe_key(cfg, paths['checkpoint']) in keys and None not in keys  # the same recipe
    assert cache_key.recipe_key(cfg, str(tmp_path)) is None  # a folder without model.pdparams: the full start says so
    stamp = os.path.getmtime(paths['checkpoint']) + 10
    os.utime(paths['checkpoint'], (stamp, stamp))
    keys.add(cache_key.recipe_key(cfg, paths['checkpoint']))
    keys.add(cache_key.recipe_key(load_config(paths['config'], opts=['model.align_corners=True']),
                               paths['checkpoint']))
    (tmp_path / 'package' / 'module.py').write_text('A = 2\n')  # an edited source of the running package
    keys.add(cache_key.recipe_key(cfg, paths['checkpoint']))
    monkeypatch.setattr(cache_key.paddle, '__version__', '9.9.9')
    keys.add(cache_key.recipe_key(cfg, paths['checkpoint']))
    assert len(keys) == 5


def test_the_sources_an_entry_depends_on_exist():
    assert all(os.path.isfile(path) for path in cache_key.ENTRY_SOURCES)


def test_make_forward_keeps_entries_in_its_cache_dir_and_runs_dygraph_off_cpu(synthetic_root, tmp_path,
                                                                             monkeypatch):
    paths = write_checkpoints(tmp_path, synthetic_root, seed=5)
    cfg = load_config(paths['config'])
    builds, build = [], SegConfig.build_model

    def counted_build(*args, **kwargs):
        builds.append(1)
        return build(*args, **kwargs)
    monkeypatch.setattr(SegConfig, 'build_model', counted_build)
    options = ForwardOptions(cache_dir=str(tmp_path / 'entries'))
    built = make_forward(cfg, paths['checkpoint'], options)
    found = make_forward(cfg, paths['checkpoint'], options)  # by the recipe: no model built
    assert (built.kind, found.kind, len(builds)) == ('paddle-inference', 'paddle-inference', 1)
    assert list(cache.read_index(options.cache_dir)) == [cache_key.recipe_key(cfg, paths['checkpoint'])]
    batch = np.random.default_rng(0).uniform(-1, 1, (1, 3, 64, 128)).astype('float32')
    np.testing.assert_array_equal(found(batch), built(batch))
    assert make_forward(cfg, paths['checkpoint'], dataclasses.replace(options, device='gpu:0')).kind == 'dygraph'
    assert len(builds) == 2


# ----------------------------------------------------------------------------------------------- predict
@pytest.fixture(scope='module')
def warm(synthetic_root, tmp_path_factory):
    """A tiny PSPNet config and checkpoint, one image, and an export cache warmed by one predict."""
    return warmed(synthetic_root, tmp_path_factory.mktemp('recipe'))


def warmed(data_root, folder, *extra):
    """:func:`warm` in ``folder``, the predict run with flags ``extra``."""
    paths = write_checkpoints(folder, data_root, seed=5)
    image = sorted(os.path.join(r, f) for r, _, fs in os.walk(os.path.join(data_root, 'leftImg8bit', 'val'))
                   for f in fs)[0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(cache.CACHE_VAR, str(folder / 'cache'))
        labels = run_predict(paths, image, str(folder / 'cold'), *extra)
    return dict(paths, image=image, cache=str(folder / 'cache'), labels=labels, data=data_root)


def run_predict(paths, image, save_dir, *extra):
    assert predict.main(['--config', paths['config'], '--model_path', paths['checkpoint'], '--image_path', image,
                         '--save_dir', save_dir, *extra]) == 0
    return np.array(Image.open(os.path.join(save_dir, 'pseudo_color_prediction', os.path.basename(image))))


@pytest.fixture
def counted(warm, tmp_path, monkeypatch):
    """A copy of the warm cache and of the checkpoint in ``tmp_path``, the copy's recipe mapped by one predict
    (the entry is the same: no export); then ``calls`` counts model builds and exports."""
    return counting(warm, tmp_path, monkeypatch)


def counting(warm, tmp_path, monkeypatch, config=None, extra=()):
    """:func:`counted` for ``warm``, with ``config`` (default: warm's) and predict flags ``extra``; ``calls``
    also counts calibrations (images through the transforms) and the ``int8`` flag of each predictor made."""
    shutil.copytree(warm['cache'], tmp_path / 'cache')
    checkpoint = str(tmp_path / 'model.pdparams')
    shutil.copy2(warm['checkpoint'], checkpoint)
    monkeypatch.setenv(cache.CACHE_VAR, str(tmp_path / 'cache'))
    setup = dict(warm, checkpoint=checkpoint, config=config or warm['config'], tmp=tmp_path)
    np.testing.assert_array_equal(run_predict(setup, warm['image'], str(tmp_path / 'first'), *extra), warm['labels'])
    calls = {'build': 0, 'export': 0, 'calibrate': 0, 'int8': []}

    def counted_call(name, function):
        def wrapped(*args, **kwargs):
            if name == 'int8':
                calls[name].append(kwargs.get('int8', False))
            else:
                calls[name] += 1
            return function(*args, **kwargs)
        return wrapped
    monkeypatch.setattr(SegConfig, 'build_model', counted_call('build', SegConfig.build_model))
    monkeypatch.setattr(export, 'save_static_model', counted_call('export', export.save_static_model))
    monkeypatch.setattr(quantize, 'calibration_batches', counted_call('calibrate', quantize.calibration_batches))
    monkeypatch.setattr(runner, 'inference_forward', counted_call('int8', runner.inference_forward))
    return dict(setup, calls=calls)


def entry_folder(setup):
    folders = [name for name in os.listdir(setup['tmp'] / 'cache') if not name.startswith('.')]
    assert len(folders) == 1
    return setup['tmp'] / 'cache' / folders[0]


def assert_matches_dygraph(setup, labels, opts=()):
    """``labels`` (the fast path's class map of the test image) are the dygraph model's, except at near ties
    (tests/tolerances.py)."""
    cfg = load_config(setup['config'], opts=list(opts))
    model = cfg.build_model(pretrained=False)
    model.set_state_dict(paddle.load(setup['checkpoint']))
    model.eval()
    rgb = np.asarray(Image.open(setup['image']).convert('RGB'), np.float32)
    with paddle.no_grad():
        logits = model(paddle.to_tensor(((rgb / 255 - 0.5) / 0.5).transpose(2, 0, 1)[np.newaxis]))[0].numpy()
    assert_classes_differ_only_at_ties(np.asarray(labels), logits[0], axis=0)


def test_a_warm_start_builds_no_model_and_predicts_the_same(counted):
    labels = run_predict(counted, counted['image'], str(counted['tmp'] / 'out'))
    assert counted['calls'] == {'build': 0, 'export': 0, 'calibrate': 0, 'int8': [False]}
    np.testing.assert_array_equal(labels, counted['labels'])


def touch(setup):
    stamp = os.path.getmtime(setup['checkpoint']) + 10
    os.utime(setup['checkpoint'], (stamp, stamp))


def rewrite(setup):
    state = paddle.load(setup['checkpoint'])
    paddle.save({key: value * 2 if key.endswith('_variance') else value for key, value in state.items()},
                setup['checkpoint'])


def damage_entry(setup):
    with open(entry_folder(setup) / runner.OPTIMIZED_FILES[1], 'r+b') as handle:
        handle.seek(100)
        flipped = bytes(255 - byte for byte in handle.read(16))
        handle.seek(100)
        handle.write(flipped)


def delete_entry(setup):
    shutil.rmtree(entry_folder(setup))


@pytest.mark.parametrize('change, opts, exports', [
    (touch, (), 0), (rewrite, (), 1), (None, ('model.align_corners=True',), 1), (damage_entry, (), 1),
    (delete_entry, (), 1)], ids=['checkpoint touched', 'checkpoint rewritten', 'opts', 'entry damaged',
                                 'entry deleted'])
def test_any_change_takes_the_full_start_and_predicts_right(counted, change, opts, exports):
    if change:
        change(counted)
    extra = ('--opts',) + opts if opts else ()
    labels = run_predict(counted, counted['image'], str(counted['tmp'] / 'out'), *extra)
    assert (counted['calls']['build'], counted['calls']['export']) == (1, exports)
    again = run_predict(counted, counted['image'], str(counted['tmp'] / 'again'), *extra)
    assert (counted['calls']['build'], counted['calls']['export']) == (1, exports)  # the recipe is mapped
    np.testing.assert_array_equal(again, labels)
    if change in (touch, damage_entry, delete_entry):
        np.testing.assert_array_equal(labels, counted['labels'])  # the same model (its entry rebuilt)
    else:
        assert_matches_dygraph(counted, labels, opts)


# ------------------------------------------------------------------------------------------------ int8
INT8 = ('--quantize', 'int8', '--calib_images', '2')


@pytest.fixture(scope='module')
def warm_int8(synthetic_root, tmp_path_factory):
    """The tiny PSPNet's int8 export calibrated on 2 train images, cached by one predict."""
    return warmed(synthetic_root, tmp_path_factory.mktemp('recipe_int8'), *INT8)


@pytest.fixture
def counted_int8(warm_int8, tmp_path, monkeypatch):
    """:func:`counted` for int8, on a copy of the data (its calibration images are this test's to touch): the
    first predict maps the copy's recipe to the same entry (the same weights and calibration images)."""
    data = shutil.copytree(warm_int8['data'], tmp_path / 'data')
    config = write_config(tmp_path, name='ZooPSPNet.yml', data_root=str(data))
    return dict(counting(warm_int8, tmp_path, monkeypatch, config, INT8), data=str(data))


def test_a_warm_int8_start_builds_no_model_and_predicts_the_same(counted_int8):
    assert counted_int8['calls']['export'] == 0  # (the fixture's predict: another recipe, the same entry)
    labels = run_predict(counted_int8, counted_int8['image'], str(counted_int8['tmp'] / 'out'), *INT8)
    assert counted_int8['calls'] == {'build': 0, 'export': 0, 'calibrate': 0, 'int8': [True]}
    np.testing.assert_array_equal(labels, counted_int8['labels'])


def touch_calibration_image(setup):
    first = sorted(os.path.join(r, f) for r, _, fs in os.walk(os.path.join(setup['data'], 'leftImg8bit', 'train'))
                   for f in fs)[0]
    stamp = os.path.getmtime(first) + 10
    os.utime(first, (stamp, stamp))


@pytest.mark.parametrize('change, flags, exports', [
    (touch_calibration_image, INT8, 0), (None, ('--quantize', 'int8', '--calib_images', '3'), 1),
    (rewrite, INT8, 1), (touch, INT8, 0), (None, (), 1)],
    ids=['calibration image touched', 'calib_images', 'checkpoint rewritten', 'checkpoint touched', 'fp32'])
def test_any_int8_change_takes_the_full_start_and_predicts_right(counted_int8, change, flags, exports, tmp_path,
                                                                 monkeypatch):
    if change:
        change(counted_int8)
    calls = counted_int8['calls']
    labels = run_predict(counted_int8, counted_int8['image'], str(tmp_path / 'out'), *flags)
    assert (calls['build'], calls['export'], calls['int8']) == (1, exports, [flags != ()])
    assert calls['calibrate'] == (flags != ())  # the images through the transforms, on the full start only
    again = run_predict(counted_int8, counted_int8['image'], str(tmp_path / 'again'), *flags)
    assert (calls['build'], calls['export'], calls['calibrate']) == (1, exports, flags != ())  # mapped: no build
    np.testing.assert_array_equal(again, labels)
    if exports == 0:
        np.testing.assert_array_equal(labels, counted_int8['labels'])  # the same entry
    monkeypatch.setenv(cache.CACHE_VAR, str(tmp_path / 'empty'))  # what a cold start of these settings writes
    np.testing.assert_array_equal(run_predict(counted_int8, counted_int8['image'], str(tmp_path / 'cold'), *flags),
                                  labels)
