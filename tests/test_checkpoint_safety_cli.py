"""Malicious checkpoints through every verb that reads one: each stops with one line naming the file and the
forbidden global, exit status 2, and the payload (which would create a marker file) never runs; a poisoned
download never enters the cache.
"""
import os
import pickle

import pytest

import paddle_psp_cli as cli
from paddle_psp.engine import checkpoint as ckpt
from paddle_psp.inference import cache
from paddle_psp.weights import fetch, hub
from tests.test_checkpoint_safety import Call, marker  # noqa: F401 (marker: a fixture)
from tests.test_hub import file_member, send, server, tar_bytes  # noqa: F401 (server: a fixture)

FORBIDDEN = f'{os.system.__module__}.system'  # how a pickle names os.system: posix.system on Linux and macOS


@pytest.fixture(autouse=True)
def homes(tmp_path, monkeypatch):
    monkeypatch.setenv('SEG_HOME', str(tmp_path / 'seg_home'))
    monkeypatch.setenv(cache.CACHE_VAR, str(tmp_path / 'export_cache'))
    monkeypatch.delenv(hub.MIRROR_ENV, raising=False)
    monkeypatch.setattr(hub, 'DEFAULT_RETRY', fetch.RetryPolicy(attempts=1, base_delay=0.01, timeout=10))
    return tmp_path


def evil_bytes(marker, key='backbone.conv1._conv.weight'):
    return pickle.dumps({key: Call(os.system, f'touch {marker}')}, protocol=4)


def evil_file(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(evil_bytes(marker))
    return str(path)


def assert_refused_line(argv, path, capsys):
    """``paddleseg ARGV`` exits 2 with one line naming ``path`` and the forbidden global."""
    capsys.readouterr()
    assert cli.main(argv) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f'paddleseg {argv[0]}: error: ') and str(path) in line, line
    assert f'names the global {FORBIDDEN}' in line and 'refused to load' in line, line


@pytest.mark.parametrize('verb', ['val', 'val --dygraph', 'predict', 'export', 'benchmark'])
def test_model_path_verbs_refuse_a_malicious_checkpoint(verb, tmp_path, marker, make_config, synthetic_root,
                                                        capsys):
    config = make_config(tmp_path)
    evil = evil_file(tmp_path / 'evil.pdparams', marker)
    verb, *flags = verb.split()
    argv = [verb, '--config', config, '--model_path', evil, *flags]
    if verb == 'predict':
        image = next(os.path.join(d, f) for d, _, files in os.walk(os.path.join(synthetic_root, 'leftImg8bit', 'val'))
                     for f in files)
        argv += ['--image_path', image, '--save_dir', str(tmp_path / 'pred')]
    if verb == 'export':
        argv += ['--save_dir', str(tmp_path / 'export')]
    if verb == 'benchmark':
        argv += ['--save_dir', str(tmp_path / 'bench'), '--limit', '1']
    assert_refused_line(argv, evil, capsys)


@pytest.mark.parametrize('poisoned', [ckpt.MODEL_FILE, ckpt.OPTIMIZER_FILE, ckpt.EMA_FILE])
@pytest.mark.parametrize('layout', ['ours', 'paddleseg'])
def test_resume_refuses_a_malicious_file_in_the_checkpoint(poisoned, layout, tmp_path, marker, make_config,
                                                           capsys):
    config = make_config(tmp_path, iters=4)
    save_dir = tmp_path / 'out'
    assert cli.main(['train', '--config', config, '--save_dir', str(save_dir), '--iters', '2',
                     '--save_interval', '2']) == 0
    folder = save_dir / 'iter_2'
    if layout == 'paddleseg':
        (folder / ckpt.INFO_FILE).unlink()
    if poisoned == ckpt.EMA_FILE:  # a file resuming reads when it is there
        (folder / ckpt.EMA_FILE).write_bytes((folder / ckpt.MODEL_FILE).read_bytes())
    evil_file(folder / poisoned, marker)
    argv = ['train', '--config', config, '--save_dir', str(save_dir), '--resume_model', str(folder)]
    assert_refused_line(argv, folder / poisoned, capsys)


@pytest.mark.parametrize('archive', [False, True], ids=['pdparams', 'tar.gz'])
def test_a_poisoned_download_never_enters_the_cache(archive, server, homes, marker, capsys):
    body = evil_bytes(marker)
    path = '/paddleseg/dygraph/evil/model.pdparams'
    if archive:
        path, body = '/paddleseg/dygraph/evil.tar.gz', tar_bytes([file_member('evil/model.pdparams', body)])
    server.routes[path] = lambda handler, calls: send(handler, body)
    url = server.url(path)
    capsys.readouterr()
    assert cli.main(['download', url]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f'paddleseg download: error: {url}: refused to load') and FORBIDDEN in line, line
    left = [os.path.relpath(os.path.join(d, f), homes) for d, _, files in os.walk(homes / 'seg_home') for f in files]
    assert [name for name in left if not name.endswith('.lock')] == []
    assert hub.cached_path(url) is None
