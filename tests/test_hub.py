"""paddle_psp.weights.hub against a local HTTP server on 127.0.0.1 serving real checkpoints and faults."""
import hashlib
import http.server
import io
import multiprocessing
import pickle
import re
import socket
import sys
import tarfile
import threading
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import paddle
import pytest

import paddle_psp_cli as cli
from paddle_psp.weights import fetch, hub
from paddle_psp.core.errors import UserError

DYGRAPH = '/paddleseg/dygraph'


# ----------------------------------------------------------------------------- fixtures: files

@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """The bytes of a real tiny .pdparams (a dict of tensors written by paddle.save)."""
    path = tmp_path_factory.mktemp('ckpt') / 'model.pdparams'
    paddle.seed(0)
    paddle.save({'conv.weight': paddle.rand([64, 32]), 'conv.bias': paddle.arange(64, dtype='float32')},
                str(path))
    return path.read_bytes()


def tar_bytes(members, mode='w:gz'):
    """A tar archive of ``members``: (TarInfo, bytes or None) pairs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def file_member(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def zip_bytes(name, data):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, 'w') as zf:
        zf.writestr(name, data)
    return buffer.getvalue()


# ----------------------------------------------------------------------------- fixtures: server

class Server(http.server.ThreadingHTTPServer):
    """Routes GET paths to handlers and records every request (path and headers)."""
    daemon_threads = True

    def __init__(self):
        super().__init__(('127.0.0.1', 0), _Handler)
        self.routes, self.requests = {}, []

    def url(self, path):
        return f'http://127.0.0.1:{self.server_address[1]}{path}'

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up early is fine
            super().handle_error(request, client_address)

    def hits(self, path):
        return [headers for got, headers in self.requests if got == path]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.requests.append((self.path, dict(self.headers)))
        calls = len(self.server.hits(self.path))
        self.server.routes.get(self.path, lambda h, n: h.send_error(404))(self, calls)

    def log_message(self, *args):
        pass


def send(handler, data, content_type='application/octet-stream', honour_range=True, cut=None, pause=0):
    """Answer ``data`` (206 for a Range request unless ``honour_range`` is False), pausing halfway.

    With ``cut``, send only ``body[:cut]`` though Content-Length announces the whole body, then close.
    """
    start = 0
    asked = re.match(r'bytes=(\d+)-', handler.headers.get('Range', ''))
    if asked and honour_range:
        start = int(asked.group(1))
        handler.send_response(206)
        handler.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
    else:
        handler.send_response(200)
    body = data[start:]
    handler.send_header('Content-Type', content_type)
    handler.send_header('Content-Length', str(len(body)))
    handler.end_headers()
    sent = body[:cut]
    handler.wfile.write(sent[:len(sent) // 2])
    time.sleep(pause)
    handler.wfile.write(sent[len(sent) // 2:])


@pytest.fixture
def server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def seg_home(tmp_path, monkeypatch):
    home = tmp_path / 'seg_home'
    monkeypatch.setenv('SEG_HOME', str(home))
    monkeypatch.delenv(hub.MIRROR_ENV, raising=False)
    monkeypatch.setattr(hub, 'DEFAULT_RETRY', fetch.RetryPolicy(attempts=3, base_delay=0.01, timeout=10))
    return home


def cached(home, *parts):
    return home / 'pretrained_model' / Path(*parts)


def assert_nothing_acceptable(home):
    """No file in the cache has a name a later resolve or PaddleSeg would load."""
    assert sorted(p for p in Path(home).rglob('*') if p.name.endswith('.pdparams')) == []


def assert_one_line(err, *names):
    message = str(err.value)
    assert '\n' not in message
    for name in names:
        assert str(name) in message, (name, message)


def assert_state_dict(path):
    state = paddle.load(str(path))
    assert sorted(state) == ['conv.bias', 'conv.weight']
    np.testing.assert_array_equal(state['conv.bias'].numpy(), np.arange(64, dtype='float32'))


# ----------------------------------------------------------------------------- happy paths

def test_pdparams_url_is_cached_in_paddleseg_layout(server, seg_home, checkpoint):
    path = f'{DYGRAPH}/cityscapes/pspnet_tiny_cityscapes/model.pdparams'
    server.routes[path] = lambda h, n: send(h, checkpoint)
    first = hub.resolve(server.url(path))
    assert first == str(cached(seg_home, 'pspnet_tiny_cityscapes', 'model.pdparams'))
    assert Path(first).read_bytes() == checkpoint
    assert hub.resolve(server.url(path)) == first
    assert len(server.hits(path)) == 1
    assert not Path(first + '.part').exists()


@pytest.mark.parametrize('suffix, top', [('tar.gz', 'resnet_tiny_v2/'), ('tgz', ''), ('tar', 'any_name/'),
                                         ('zip', 'resnet_tiny_v2/')])
def test_archive_is_unpacked_like_paddleseg(server, seg_home, checkpoint, suffix, top):
    path = f'{DYGRAPH}/resnet_tiny_v2.{suffix}'
    name = top + 'model.pdparams'
    body = (zip_bytes(name, checkpoint) if suffix == 'zip'
            else tar_bytes([file_member(name, checkpoint)], 'w' if suffix == 'tar' else 'w:gz'))
    server.routes[path] = lambda h, n: send(h, body)
    result = hub.resolve(server.url(path))
    assert result == str(cached(seg_home, 'resnet_tiny_v2', 'model.pdparams'))
    assert_state_dict(result)
    leftovers = [p.name for p in cached(seg_home).iterdir() if p.name != 'resnet_tiny_v2.lock']
    assert leftovers == ['resnet_tiny_v2']


def test_force_downloads_again(server, seg_home, checkpoint):
    path = f'{DYGRAPH}/resnet_tiny.tar.gz'
    body = tar_bytes([file_member('resnet_tiny/model.pdparams', checkpoint)])
    server.routes[path] = lambda h, n: send(h, body)
    first = hub.resolve(server.url(path))
    assert hub.resolve(server.url(path), force=True) == first
    assert len(server.hits(path)) == 2
    assert_state_dict(first)


def test_retry_after_500_succeeds(server, seg_home, checkpoint):
    path = f'{DYGRAPH}/flaky/model.pdparams'
    server.routes[path] = lambda h, n: h.send_error(500) if n == 1 else send(h, checkpoint)
    assert Path(hub.resolve(server.url(path))).read_bytes() == checkpoint
    assert len(server.hits(path)) == 2


def test_dropped_connection_is_resumed_with_range(server, seg_home, checkpoint):
    path = f'{DYGRAPH}/dropped/model.pdparams'
    cut = len(checkpoint) // 2 + 100
    server.routes[path] = lambda h, n: send(h, checkpoint, cut=cut if n == 1 else None)
    result = hub.resolve(server.url(path))
    assert Path(result).read_bytes() == checkpoint
    first, second = server.hits(path)
    assert 'Range' not in first
    assert second['Range'] == f'bytes={cut}-'


def test_server_ignoring_range_restarts_the_file(server, seg_home, checkpoint):
    path = f'{DYGRAPH}/norange/model.pdparams'
    server.routes[path] = lambda h, n: send(h, checkpoint, honour_range=False, cut=1000 if n == 1 else None)
    result = hub.resolve(server.url(path))
    assert server.hits(path)[1]['Range'] == 'bytes=1000-'
    assert Path(result).read_bytes() == checkpoint


def test_sha256_pin_accepted(server, checkpoint):
    path = f'{DYGRAPH}/pinned/model.pdparams'
    server.routes[path] = lambda h, n: send(h, checkpoint)
    digest = hashlib.sha256(checkpoint).hexdigest()
    assert Path(hub.resolve(server.url(path), sha256=digest.upper())).read_bytes() == checkpoint


def test_mirror_env_replaces_the_default_host(server, seg_home, checkpoint, monkeypatch):
    server.routes[f'/mirror{DYGRAPH}/voc/deeplab_tiny/model.pdparams'] = lambda h, n: send(h, checkpoint)
    monkeypatch.setenv(hub.MIRROR_ENV, server.url('/mirror/'))
    result = hub.resolve(f'https://bj.bcebos.com{DYGRAPH}/voc/deeplab_tiny/model.pdparams')
    assert result == str(cached(seg_home, 'deeplab_tiny', 'model.pdparams'))
    assert [p for p, _ in server.requests] == [f'/mirror{DYGRAPH}/voc/deeplab_tiny/model.pdparams']


def test_mirror_may_be_a_local_copy_of_the_bucket(tmp_path, seg_home, checkpoint, monkeypatch):
    copy = tmp_path / 'bucket' / 'paddleseg' / 'dygraph' / 'resnet_copy.tar.gz'
    copy.parent.mkdir(parents=True)
    copy.write_bytes(tar_bytes([file_member('resnet_copy/model.pdparams', checkpoint)]))
    monkeypatch.setenv(hub.MIRROR_ENV, (tmp_path / 'bucket').as_uri())
    result = hub.resolve(f'https://bj.bcebos.com{DYGRAPH}/resnet_copy.tar.gz')
    assert result == str(cached(seg_home, 'resnet_copy', 'model.pdparams'))
    assert_state_dict(result)


def test_local_paths_and_file_urls(tmp_path, checkpoint):
    folder = tmp_path / 'run' / 'best_model'
    folder.mkdir(parents=True)
    (folder / 'model.pdparams').write_bytes(checkpoint)
    expected = str(folder / 'model.pdparams')
    assert hub.resolve(folder) == expected
    assert hub.resolve(expected) == expected
    assert hub.resolve(folder.as_uri()) == expected
    assert hub.resolve((folder / 'model.pdparams').as_uri()) == expected
    with pytest.raises(UserError) as err:
        hub.resolve(tmp_path / 'run')
    assert_one_line(err, tmp_path / 'run' / 'model.pdparams')
    with pytest.raises(UserError) as err:
        hub.resolve((tmp_path / 'missing.pdparams').as_uri())
    assert_one_line(err, tmp_path / 'missing.pdparams', 'no such file')
    with pytest.raises(UserError) as err:
        hub.resolve(expected, sha256='0' * 64)
    assert_one_line(err, expected, 'SHA-256')


def test_zoo_name_uses_manifest_url_and_sha256(server, seg_home, checkpoint, monkeypatch):
    path = f'{DYGRAPH}/cityscapes/pspnet_fake/model.pdparams'
    server.routes[path] = lambda h, n: send(h, checkpoint)
    entries = {'pspnet_fake': {'checkpoint_url': server.url(path), 'sha256': '1' * 64}}
    fake_zoo = types.SimpleNamespace(names=lambda: sorted(entries), get=lambda name: entries[name])
    monkeypatch.setattr(hub, 'zoo', fake_zoo)
    with pytest.raises(UserError) as err:
        hub.resolve('pspnet_fake')
    assert_one_line(err, server.url(path), '1' * 64)
    assert_nothing_acceptable(seg_home)
    entries['pspnet_fake']['sha256'] = hashlib.sha256(checkpoint).hexdigest()
    assert hub.resolve('pspnet_fake') == str(cached(seg_home, 'pspnet_fake', 'model.pdparams'))
    with pytest.raises(UserError) as err:
        hub.resolve('pspnet_typo')
    assert_one_line(err, 'pspnet_typo', 'pspnet_fake')


# ----------------------------------------------------------------------------- faults

def test_404_fails_at_once(server, seg_home):
    url = server.url(f'{DYGRAPH}/missing/model.pdparams')
    with pytest.raises(UserError) as err:
        hub.resolve(url)
    assert_one_line(err, url, 'HTTP 404')
    assert len(server.requests) == 1
    assert_nothing_acceptable(seg_home)


def test_truncated_body_fails_after_retries_and_keeps_only_the_part(server, seg_home, checkpoint):
    path = f'{DYGRAPH}/short/model.pdparams'
    server.routes[path] = lambda h, n: send(h, checkpoint, cut=-50)
    url = server.url(path)
    with pytest.raises(UserError) as err:
        hub.resolve(url)
    final = cached(seg_home, 'short', 'model.pdparams')
    assert_one_line(err, url, 'body ended', str(final))
    assert len(server.hits(path)) == 3
    assert all('Range' in headers for headers in server.hits(path)[1:])
    assert_nothing_acceptable(seg_home)
    assert Path(str(final) + '.part').exists()


@pytest.mark.parametrize('content_type, body', [
    ('text/html; charset=utf-8', b'<html><body>Please log in</body></html>'),
    ('application/octet-stream', b'\n  <!DOCTYPE html>\n<html><head></head></html>'),
])
def test_html_answer_is_refused(server, seg_home, content_type, body):
    path = f'{DYGRAPH}/portal/model.pdparams'
    server.routes[path] = lambda h, n: send(h, body, content_type=content_type)
    url = server.url(path)
    with pytest.raises(UserError) as err:
        hub.resolve(url)
    assert_one_line(err, url, 'URL answered HTML instead of a checkpoint')
    assert_nothing_acceptable(seg_home)
    assert not list(cached(seg_home).rglob('*.part'))


@pytest.mark.parametrize('body', [b'\x80\x04garbage' * 50, pickle.dumps({'epoch': 3}), b''],
                         ids=['garbage', 'dict-of-ints', 'empty'])
def test_body_that_is_not_a_checkpoint_is_refused(server, seg_home, body):
    path = f'{DYGRAPH}/junk/model.pdparams'
    server.routes[path] = lambda h, n: send(h, body)
    url = server.url(path)
    with pytest.raises(UserError) as err:
        hub.resolve(url)
    assert_one_line(err, url, 'checkpoint')
    assert_nothing_acceptable(seg_home)


def test_wrong_sha256_is_refused(server, seg_home, checkpoint):
    path = f'{DYGRAPH}/pinned/model.pdparams'
    server.routes[path] = lambda h, n: send(h, checkpoint)
    url = server.url(path)
    with pytest.raises(UserError) as err:
        hub.resolve(url, sha256='ab' * 32)
    assert_one_line(err, url, 'ab' * 32, hashlib.sha256(checkpoint).hexdigest())
    assert_nothing_acceptable(seg_home)


def test_cached_file_is_checked_against_a_pin(server, seg_home, checkpoint):
    path = f'{DYGRAPH}/pinned/model.pdparams'
    server.routes[path] = lambda h, n: send(h, checkpoint)
    result = hub.resolve(server.url(path))
    with pytest.raises(UserError) as err:
        hub.resolve(server.url(path), sha256='cd' * 32)
    assert_one_line(err, result, '--force')
    assert len(server.hits(path)) == 1


def test_corrupt_tarball_is_refused(server, seg_home, checkpoint):
    path = f'{DYGRAPH}/resnet_broken.tar.gz'
    good = tar_bytes([file_member('resnet_broken/model.pdparams', checkpoint)])
    server.routes[path] = lambda h, n: send(h, good[:40] + bytes(reversed(good[40:])))
    url = server.url(path)
    with pytest.raises(UserError) as err:
        hub.resolve(url)
    assert_one_line(err, url, 'archive')
    assert_nothing_acceptable(seg_home)
    assert [p.name for p in cached(seg_home).iterdir()] == ['resnet_broken.lock']


def test_tarball_without_checkpoint_is_refused(server, seg_home):
    path = f'{DYGRAPH}/resnet_empty.tar.gz'
    server.routes[path] = lambda h, n: send(h, tar_bytes([file_member('resnet_empty/README', b'hi')]))
    with pytest.raises(UserError) as err:
        hub.resolve(server.url(path))
    assert_one_line(err, server.url(path), 'no model.pdparams')
    assert_nothing_acceptable(seg_home)


@pytest.mark.parametrize('member', ['dotdot', 'absolute', 'symlink', 'hardlink'])
def test_path_escaping_tarball_is_refused(server, seg_home, tmp_path, checkpoint, member):
    escapes = {
        'dotdot': file_member('../../escaped.pdparams', checkpoint),
        'absolute': file_member(str(tmp_path / 'escaped.pdparams'), checkpoint),
        'symlink': link_member('evil/model.pdparams', '../../../escaped.pdparams'),
        'hardlink': link_member('evil/model.pdparams', '../../escaped.pdparams', tarfile.LNKTYPE),
    }
    path = f'{DYGRAPH}/evil.tar.gz'
    body = tar_bytes([file_member('evil/README', b'x'), escapes[member]])
    server.routes[path] = lambda h, n: send(h, body)
    with pytest.raises(UserError) as err:
        hub.resolve(server.url(path))
    assert_one_line(err, server.url(path), 'outside the archive')
    assert_nothing_acceptable(tmp_path)


def test_offline_names_url_and_cache_path_then_accepts_a_file_put_there(seg_home, checkpoint):
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    url = f'http://127.0.0.1:{port}{DYGRAPH}/resnet_offline.tar.gz'
    with pytest.raises(UserError) as err:
        hub.resolve(url)
    final = cached(seg_home, 'resnet_offline', 'model.pdparams')
    assert_one_line(err, url, f'model.pdparams is at {final}', 'after 3 attempts')
    assert_nothing_acceptable(seg_home)
    final.parent.mkdir(parents=True)
    final.write_bytes(checkpoint)
    assert hub.resolve(url) == str(final)


def _resolve_in_child(url, barrier, results):
    barrier.wait()
    try:
        results.put(hub.resolve(url))
    except Exception as err:  # reported to the parent, which fails the test
        results.put(repr(err))


def test_two_processes_download_once(server, seg_home, checkpoint):
    path = f'{DYGRAPH}/shared/model.pdparams'
    server.routes[path] = lambda h, n: send(h, checkpoint, pause=0.5)
    context = multiprocessing.get_context('fork')
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_resolve_in_child, args=(server.url(path), barrier, results))
               for _ in range(2)]
    for worker in workers:
        worker.start()
    answers = [results.get(timeout=30) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    expected = str(cached(seg_home, 'shared', 'model.pdparams'))
    assert answers == [expected, expected]
    assert len(server.hits(path)) == 1
    assert Path(expected).read_bytes() == checkpoint


# ----------------------------------------------------------------------------- progress and CLI

def test_progress_bar_only_on_a_terminal(server, checkpoint, monkeypatch, capsys):
    path = f'{DYGRAPH}/progress/model.pdparams'
    server.routes[path] = lambda h, n: send(h, checkpoint)
    hub.resolve(server.url(path))
    assert '\r' not in capsys.readouterr().err

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, 'stderr', Terminal())
    hub.resolve(server.url(path), force=True)
    assert re.search(r'\rmodel\.pdparams \[#{24}\] ([\d.]+)/\1 ', sys.stderr.getvalue())  # the full bar


def test_cli_download_prints_the_cached_path(server, seg_home, checkpoint, capsys):
    path = f'{DYGRAPH}/resnet_cli.tgz'
    body = tar_bytes([file_member('resnet_cli/model.pdparams', checkpoint)])
    server.routes[path] = lambda h, n: send(h, body)
    digest = hashlib.sha256(body).hexdigest()
    assert hub.main([server.url(path), '--sha256', digest]) == 0
    expected = str(cached(seg_home, 'resnet_cli', 'model.pdparams'))
    assert capsys.readouterr().out == expected + '\n'
    assert hub.main([server.url(path), '--force']) == 0
    assert capsys.readouterr().out == expected + '\n'
    assert len(server.hits(path)) == 2


def test_cli_errors_are_one_line_with_exit_code_2(server, seg_home, capsys):
    url = server.url(f'{DYGRAPH}/missing/model.pdparams')
    assert cli.main(['download', url]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith('paddleseg download: error: ' + url) and 'HTTP 404' in err
    with pytest.raises(UserError) as bad_pin:
        hub.main([url, '--sha256', 'xyz'])
    assert_one_line(bad_pin, '--sha256', '64 hex digits')
