"""Downloads stop by themselves: silent and stalling servers within the time bounds, a full disk at once.

Servers on 127.0.0.1 that accept and never answer, or send headers (and part of the body) then stall;
short policies keep each test to seconds, and one test checks the default policy's worst case.
"""
import errno
import os
import socket
import threading
import time
from pathlib import Path

import pytest

import paddle_psp_cli as cli
from paddle_psp.core.errors import UserError
from paddle_psp.weights import fetch, hub
from test_hub import (DYGRAPH, assert_nothing_acceptable, assert_one_line, cached, checkpoint, file_member,  # noqa: F401
                      seg_home, send, server, tar_bytes)

FAST = fetch.RetryPolicy(attempts=10, base_delay=0.05, max_delay=0.1, timeout=0.4, deadline=1.5)
SLACK = 2.0  # seconds for thread start-up and a loaded machine


@pytest.fixture
def silent_url():
    """A URL on a socket that completes the TCP handshake (the kernel accepts) and never answers."""
    with socket.socket() as listener:
        listener.bind(('127.0.0.1', 0))
        listener.listen(16)
        yield f'http://127.0.0.1:{listener.getsockname()[1]}{DYGRAPH}/silent/model.pdparams'


@pytest.fixture
def stall():
    """An event the stalling handlers wait on; set at teardown so that no handler outlives its test."""
    event = threading.Event()
    yield event
    event.set()


def stalling(data, stall, body_bytes):
    """A route that sends headers and the first ``body_bytes`` of the (remaining) body, then goes silent."""
    def route(handler, calls):
        send(handler, data, cut=body_bytes, pause=0)
        handler.wfile.flush()
        stall.wait(30)
    return route


def timed(function, *args):
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        function(*args)
    return err, time.monotonic() - start


def test_default_policy_gives_up_within_60_seconds():
    policy = fetch.DEFAULT_RETRY
    waits = sum(policy.delay(failures) for failures in range(1, policy.attempts))
    assert policy.attempts * policy.timeout + waits <= 60
    assert policy.deadline + policy.timeout <= 60
    assert policy.worst_case() <= 60
    assert policy.attempts > 1  # transient failures are still retried


def test_silent_server_fails_by_the_deadline_with_one_line(silent_url, seg_home, monkeypatch, capsys):
    monkeypatch.setattr(hub, 'DEFAULT_RETRY', FAST)
    start = time.monotonic()
    assert cli.main(['download', silent_url]) == 2
    wall = time.monotonic() - start
    assert wall < min(60, FAST.deadline + FAST.timeout + SLACK)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f'paddleseg download: error: {silent_url}: cannot download (timed out) after ')
    attempts = int(lines[-1].split(' after ')[1].split()[0])
    assert 1 < attempts < FAST.attempts  # retried, then cut by the deadline
    assert_nothing_acceptable(seg_home)


def test_headers_then_silence_fails_by_the_deadline(server, seg_home, stall, checkpoint, monkeypatch):
    monkeypatch.setattr(hub, 'DEFAULT_RETRY', FAST)
    path = f'{DYGRAPH}/mute/model.pdparams'
    server.routes[path] = stalling(checkpoint, stall, body_bytes=0)
    err, wall = timed(hub.resolve, server.url(path))
    assert wall < FAST.deadline + FAST.timeout + SLACK
    assert 1 < len(server.hits(path)) < FAST.attempts
    assert_one_line(err, server.url(path), 'timed out')
    assert_nothing_acceptable(seg_home)


def test_stall_mid_body_is_retried_then_fails_in_bounded_time(server, seg_home, stall, checkpoint, monkeypatch):
    policy = fetch.RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.1, timeout=0.5, deadline=5)
    monkeypatch.setattr(hub, 'DEFAULT_RETRY', policy)
    path = f'{DYGRAPH}/stalls/model.pdparams'
    server.routes[path] = stalling(checkpoint, stall, body_bytes=1000)
    err, wall = timed(hub.resolve, server.url(path))
    assert wall < policy.worst_case() + SLACK
    assert_one_line(err, server.url(path), 'timed out', 'after 3 attempts')
    hits = server.hits(path)
    assert len(hits) == 3 and [h.get('Range') for h in hits] == [None, 'bytes=1000-', 'bytes=2000-']
    final = cached(seg_home, 'stalls', 'model.pdparams')
    assert Path(f'{final}.part').stat().st_size == 3000  # kept for the next run to resume
    assert_nothing_acceptable(seg_home)


# ----------------------------------------------------------------------------- a full disk

class FullDisk:
    """``open`` for the fetch module whose files take ``room`` bytes, then fail with ENOSPC."""

    def __init__(self, room):
        self.room = room

    def __call__(self, path, mode='r', *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        room = self

        class Writer:
            def __getattr__(self, name):
                return getattr(handle, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def write(self, data):
                taken = handle.write(data[:room.room])
                room.room -= taken
                if taken < len(data):
                    handle.flush()
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return taken

        return Writer()


def test_disk_full_stops_at_once_and_leaves_no_partial_file(server, seg_home, checkpoint, monkeypatch, capsys):
    path = f'{DYGRAPH}/full/model.pdparams'
    server.routes[path] = lambda h, n: send(h, checkpoint)
    monkeypatch.setattr(fetch, 'open', FullDisk(room=len(checkpoint) // 2), raising=False)
    assert cli.main(['download', server.url(path)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    final = cached(seg_home, 'full', 'model.pdparams')
    assert line == (f'paddleseg download: error: {final}.part: cannot write (No space left on device); '
                    'expected free space on its disk (free some, or write to another disk)')
    assert len(server.hits(path)) == 1  # not retried
    assert sorted(p.name for p in cached(seg_home).rglob('*') if p.is_file()) == ['full.lock']


def test_disk_full_while_unpacking_leaves_no_folder(server, seg_home, checkpoint, monkeypatch):
    path = f'{DYGRAPH}/resnet_full.tar.gz'
    server.routes[path] = lambda h, n: send(h, tar_bytes([file_member('resnet_full/model.pdparams', checkpoint)]))

    def unpack_onto_a_full_disk(archive, dest, url, holds):
        Path(dest, 'half.pdparams').write_bytes(b'x')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(hub, 'unpack', unpack_onto_a_full_disk)
    with pytest.raises(UserError) as err:
        hub.resolve(server.url(path))
    assert_one_line(err, cached(seg_home, 'resnet_full'), 'No space left on device')
    assert [p.name for p in cached(seg_home).iterdir()] == ['resnet_full.lock']
