"""A checkpoint is data, never code: every checkpoint file is read by ``paddle_psp.weights.pdparams.load_file``,
which returns what ``paddle.load`` returns for what ``paddle.save`` writes, and refuses in one line, before any
of it runs, a file whose pickle names a callable (the attacks below are real: each would create a marker file
if it ran) or holds anything but data.
"""
import io
import os
import pickle
import shutil
import subprocess
import tarfile
import zipfile

import numpy as np
import paddle
import pytest

from paddle_psp.core.errors import UserError
from paddle_psp.weights import safe_pickle
from paddle_psp.weights.pdparams import load_file, read_state_dict


# ----------------------------------------------------------------------------- what paddle.save writes

def small_model():
    paddle.seed(0)
    return paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4), paddle.nn.Conv2D(4, 2, 1))


def trained_optimizer(model, kind):
    """``kind`` optimizer (with an LR schedule) after two steps on ``model``."""
    scheduler = paddle.optimizer.lr.PolynomialDecay(0.01, decay_steps=10, end_lr=0, power=0.9)
    extra = {'momentum': 0.9, 'weight_decay': 4e-5} if kind == 'Momentum' else {}
    optimizer = getattr(paddle.optimizer, kind)(learning_rate=scheduler, parameters=model.parameters(), **extra)
    for _ in range(2):
        model(paddle.rand([2, 3, 8, 8])).mean().backward()
        optimizer.step()
        optimizer.clear_grad()
        scheduler.step()
    return optimizer


def assert_same(ours, theirs):
    """``ours`` is ``theirs`` bit for bit: same structure, types, tensor names, dtypes and bytes."""
    assert type(ours) is type(theirs)
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs)
        for key in theirs:
            assert_same(ours[key], theirs[key])
    elif isinstance(theirs, (list, tuple)):
        assert len(ours) == len(theirs)
        for mine, other in zip(ours, theirs):
            assert_same(mine, other)
    elif isinstance(theirs, paddle.Tensor):
        generated = 'generated_tensor'  # a name Paddle counts up for each unnamed tensor it makes
        assert ours.name == theirs.name or (ours.name.startswith(generated) and theirs.name.startswith(generated))
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape)
        assert ours.numpy().tobytes() == theirs.numpy().tobytes()
    elif isinstance(theirs, np.ndarray):
        assert (ours.dtype, ours.shape, ours.tobytes()) == (theirs.dtype, theirs.shape, theirs.tobytes())
    else:
        assert ours == theirs


@pytest.mark.parametrize('protocol', [2, 3, 4])
@pytest.mark.parametrize('return_numpy', [False, True])
def test_model_state_loads_as_paddle_load_returns_it(tmp_path, protocol, return_numpy):
    path = str(tmp_path / 'model.pdparams')
    paddle.save(small_model().state_dict(), path, protocol=protocol)
    assert_same(load_file(path, return_numpy=return_numpy), paddle.load(path, return_numpy=return_numpy))


@pytest.mark.parametrize('kind', ['Momentum', 'SGD', 'Adam', 'AdamW'])
def test_optimizer_state_loads_as_paddle_load_returns_it(tmp_path, kind):
    path = str(tmp_path / 'model.pdopt')
    state = trained_optimizer(small_model(), kind).state_dict()
    paddle.save(state, path)
    ours = load_file(path)
    assert_same(ours, paddle.load(path))
    assert ours['LR_Scheduler'] == state['LR_Scheduler'] and ours['LR_Scheduler']['last_epoch'] == 2


def test_other_data_paddle_save_writes(tmp_path):
    """Scalars of numpy and Python, nested lists and tuples, a bare tensor, a Paddle 2.0 name table."""
    path = str(tmp_path / 'misc.pdparams')
    data = {'epoch': 3, 'lr': np.float32(0.5), 'steps': np.int64(7), 'tag': 'psp',
            'nested': {'pairs': [(1, 2.5), ('a', None)], 'flags': (True, False)}, 'ids': np.arange(5)}
    paddle.save(data, path)
    assert_same(load_file(path), paddle.load(path))
    paddle.save(paddle.arange(6, dtype='float32'), path)
    assert_same(load_file(path), paddle.load(path))
    table = {'w': np.ones((2, 2), 'float32'), 'StructuredToParameterName@@': {'w': 'linear_0.w_0'}}
    with open(path, 'wb') as file:
        pickle.dump(table, file, protocol=2)
    assert_same(load_file(path), paddle.load(path))
    assert load_file(path)['w'].name == 'linear_0.w_0'


# ----------------------------------------------------------------------------- attacks

class Call:
    """Pickles as a call of ``function(*args)``: what a malicious checkpoint does."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.fixture
def marker(tmp_path):
    """A file each attack would create; the test asserts it never appears."""
    path = tmp_path / 'pwned'
    yield path
    assert not path.exists(), 'the payload ran'


def payloads(marker):
    """{name: (malicious object, forbidden global named in the refusal)}."""
    touch = f'touch {marker}'
    return {
        'os.system': (Call(os.system, touch), f'{os.system.__module__}.system'),
        'builtins.exec': (Call(exec, f'open({str(marker)!r}, "w").close()'), 'builtins.exec'),
        'builtins.eval': (Call(eval, f'open({str(marker)!r}, "w")'), 'builtins.eval'),
        'subprocess.Popen': (Call(subprocess.Popen, ['touch', str(marker)]), 'subprocess.Popen'),
    }


def write(path, obj, protocol=4):
    with open(path, 'wb') as file:
        pickle.dump(obj, file, protocol=protocol)
    return str(path)


def assert_refused(path, *names):
    with pytest.raises(UserError) as err:
        load_file(path)
    message = str(err.value)
    assert '\n' not in message and message.startswith(f'{path}: refused to load'), message
    for name in names:
        assert name in message, (name, message)


@pytest.mark.parametrize('protocol', [0, 2, 4, 5])
@pytest.mark.parametrize('attack', ['os.system', 'builtins.exec', 'builtins.eval', 'subprocess.Popen'])
def test_a_callable_is_refused_before_it_runs(tmp_path, marker, attack, protocol):
    payload, forbidden = payloads(marker)[attack]
    assert_refused(write(tmp_path / 'evil.pdparams', {'conv.weight': payload}, protocol), forbidden)


def test_getattr_chain_to_posix_system(tmp_path, marker):
    """``getattr(__import__('posix'), 'system')('touch ...')`` written by hand, as an attacker would."""
    body = (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vposix\ntRVsystem\ntR(V" + f'touch {marker}'.encode()
            + b"\ntR.")
    path = tmp_path / 'chain.pdparams'
    path.write_bytes(body)
    assert_refused(str(path), 'builtins.getattr')
    path.write_bytes(body.replace(b'cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vposix\ntRVsystem\ntR',
                                  b'cposix\nsystem\n'))
    assert_refused(str(path), 'posix.system')


@pytest.mark.parametrize('where', ['deep in a list', 'optimizer state', 'legitimate key', 'object array'])
def test_hidden_payloads_are_refused(tmp_path, marker, where):
    payload = Call(os.system, f'touch {marker}')
    state = {key: value.numpy() for key, value in small_model().state_dict().items()}
    if where == 'deep in a list':
        nested = [payload]
        for _ in range(40):
            nested = [1, nested]
        state['meta'] = nested
    elif where == 'optimizer state':
        state = trained_optimizer(small_model(), 'Momentum').state_dict()
        state['LR_Scheduler']['last_lr'] = payload
    elif where == 'legitimate key':
        state['0.weight'] = payload
    else:
        state['0.weight'] = np.array([payload, 1.0], dtype=object)
    path = str(tmp_path / 'model.pdparams')
    if where == 'optimizer state':
        paddle.save(state, path)  # paddle.save pickles it as it is: the real file layout around the payload
    else:
        write(path, state)
    assert_refused(path)


def test_object_arrays_are_refused_even_when_harmless(tmp_path):
    assert_refused(write(tmp_path / 'o.pdparams', {'w': np.array(['a', 1], dtype=object)}), 'object dtype')


@pytest.mark.parametrize('payload, named', [
    (Call(safe_pickle._latin1_encode, 'x', 'zlib_codec'), "'zlib_codec'"),
    (Call(np.dtype, 'O'), 'object dtype'),
    (Call(shutil.rmtree, '/nonexistent-dir'), 'shutil.rmtree'),
    (Call(pickle.loads, b'x'), 'pickle.loads'),
], ids=['codec', 'object dtype', 'rmtree', 'nested pickle'])
def test_allowed_names_with_hostile_arguments_and_other_globals(tmp_path, payload, named):
    body = pickle.dumps({'w': payload}, protocol=2)
    body = body.replace(b'paddle_psp.weights.safe_pickle\n_latin1_encode', b'_codecs\nencode')
    path = tmp_path / 'h.pdparams'
    path.write_bytes(body)
    assert_refused(str(path), named)


def test_depth_bomb_is_refused_not_a_crash(tmp_path):
    body = b'\x80\x04' + b']' * 100_000 + b'a' * 99_999 + b'.'  # lists nested 100000 deep, no global at all
    path = tmp_path / 'deep.pdparams'
    path.write_bytes(body)
    assert_refused(str(path), 'deeper than')


def test_persistent_ids_are_refused(tmp_path):
    path = tmp_path / 'pid.pdparams'
    path.write_bytes(b'\x80\x04\x8c\x04evil\x94Q.')  # BINPERSID: an object from outside the file
    assert_refused(str(path), 'persistent id')


def good_bytes(tmp_path):
    path = tmp_path / 'good.pdparams'
    paddle.save(small_model().state_dict(), str(path))
    return path.read_bytes()


@pytest.mark.parametrize('kind', ['truncated', 'zip', 'tar', 'empty', 'text'])
def test_files_that_are_not_checkpoints(tmp_path, kind):
    good = good_bytes(tmp_path)
    buffer = io.BytesIO()
    if kind == 'zip':
        with zipfile.ZipFile(buffer, 'w') as archive:
            archive.writestr('model.pdparams', good)
    elif kind == 'tar':
        with tarfile.open(fileobj=buffer, mode='w') as archive:
            info = tarfile.TarInfo('model.pdparams')
            info.size = len(good)
            archive.addfile(info, io.BytesIO(good))
    body = {'truncated': good[:len(good) // 2], 'empty': b'', 'text': b'weights: 1\n'}.get(kind, buffer.getvalue())
    path = tmp_path / 'model.pdparams'
    path.write_bytes(body)
    with pytest.raises(UserError) as err:
        read_state_dict(str(path))
    assert '\n' not in str(err.value) and str(err.value).startswith(f'{path}: not a Paddle checkpoint')



def test_numpy_functions_found_whichever_numpy_modules_are_imported(tmp_path, monkeypatch):
    """NumPy 1.26 has a ``numpy._core`` stub without ``multiarray``: once something imports it, the
    reader must still find NumPy's functions (they are looked up afresh here)."""
    import importlib
    importlib.import_module('numpy._core')
    monkeypatch.setattr(safe_pickle._Unpickler, 'allowed', None)
    path = str(tmp_path / 'model.pdparams')
    paddle.save(small_model().state_dict(), path)
    assert_same(load_file(path), paddle.load(path))
