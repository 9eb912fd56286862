"""The fast path's export cache: size limit, least-recently-used eviction, corrupt entries, help text."""
import os
import threading

import pytest

from paddle_psp.core.errors import UserError
from paddle_psp.inference import cache
from paddle_psp.evaluation.flags import val_parser
from paddle_psp.inference.flags import CACHE_HELP

KIB = 1024


def fake_build(size, calls=None):
    """A ``build(folder)`` writing two files of ``size`` bytes in all, counting its calls in ``calls``."""
    def build(folder):
        if calls is not None:
            calls.append(folder)
        with open(os.path.join(folder, 'model.pdmodel'), 'wb') as handle:
            handle.write(b'm' * (size // 4))
        with open(os.path.join(folder, 'model.pdiparams'), 'wb') as handle:
            handle.write(b'p' * (size - size // 4))
    return build


def add(root, key, size=KIB, limit=10 * KIB, age=None, calls=None):
    """Use (build if needed) entry ``key``; ``age`` seconds ago when given (its marker's time)."""
    with cache.cached_entry(key, fake_build(size, calls), str(root), limit) as folder:
        assert cache.is_valid(folder)
    if age is not None:
        stamp = os.path.getmtime(os.path.join(folder, cache.MARKER)) - age
        os.utime(os.path.join(folder, cache.MARKER), (stamp, stamp))
    return folder


def entries(root):
    return sorted(name for name in os.listdir(root) if not name.startswith('.'))


@pytest.mark.parametrize('text, size', [('4G', 4 * 2 ** 30), ('500m', 500 * 2 ** 20), ('1.5GiB', 3 * 2 ** 29),
                                        ('2 KB', 2048), ('1000', 1000), ('0', 0), (' 3T ', 3 * 2 ** 40)])
def test_parse_size(text, size):
    assert cache.parse_size(text) == size


@pytest.mark.parametrize('text', ['', 'lots', '-1G', '4X', '4 G B', '1e9', 'G'])
def test_bad_size_is_a_user_error_naming_the_variable(text, monkeypatch):
    monkeypatch.setenv(cache.SIZE_VAR, text or ' ')
    with pytest.raises(UserError, match=rf'^{cache.SIZE_VAR}=.* is not a size; expected .* e\.g\. 4G$'):
        cache.size_limit()


def test_default_limit_and_help_text(monkeypatch, capsys):
    monkeypatch.delenv(cache.SIZE_VAR, raising=False)
    monkeypatch.delenv(cache.CACHE_VAR, raising=False)
    assert cache.size_limit() == 4 * 2 ** 30 == cache.parse_size(cache.DEFAULT_SIZE)
    default_dir = cache.cache_dir().replace(os.path.expanduser('~'), '~')
    for fact in (cache.CACHE_VAR, cache.SIZE_VAR, f'default {cache.DEFAULT_SIZE};', f'(default {default_dir})'):
        assert fact in CACHE_HELP
    with pytest.raises(SystemExit):
        val_parser().parse_args(['--help'])
    assert ' '.join(capsys.readouterr().out.split()).count(' '.join(CACHE_HELP.split())) == 1


def test_least_recently_used_entries_are_evicted_first(tmp_path):
    for key, age in [('a', 40), ('b', 30), ('c', 20), ('d', 10)]:
        add(tmp_path, key, age=age)
    assert entries(tmp_path) == ['a', 'b', 'c', 'd']
    folder = add(tmp_path, 'a', age=0)  # using a touches it: b is now the oldest
    add(tmp_path, 'e', limit=3 * cache.folder_bytes(folder))  # room for three equal entries
    assert entries(tmp_path) == ['a', 'd', 'e']  # b, then c went


def test_the_entry_in_use_is_kept_even_alone_over_the_limit(tmp_path):
    add(tmp_path, 'old', age=10)
    folder = add(tmp_path, 'big', size=8 * KIB, limit=KIB)
    assert entries(tmp_path) == ['big'] and cache.is_valid(folder)
    add(tmp_path, 'old', limit=0)  # rebuilt; the other entry goes, not this one
    assert entries(tmp_path) == ['old']


def test_a_valid_entry_is_not_built_again(tmp_path):
    calls = []
    first = add(tmp_path, 'k', calls=calls)
    assert add(tmp_path, 'k', calls=calls) == first and len(calls) == 1
    assert [name for name in os.listdir(tmp_path) if name.startswith(cache.WORK_PREFIX)] == []


def truncate(folder):
    with open(os.path.join(folder, 'model.pdiparams'), 'r+b') as handle:
        handle.truncate(10)


def same_size_other_bytes(folder):
    path = os.path.join(folder, 'model.pdiparams')
    size = os.path.getsize(path)
    with open(path, 'wb') as handle:
        handle.write(b'x' * size)


def extra_file(folder):
    with open(os.path.join(folder, 'stray.bin'), 'wb') as handle:
        handle.write(b'?')


def bad_marker(folder):
    with open(os.path.join(folder, cache.MARKER), 'w') as handle:
        handle.write('{"files": ')


@pytest.mark.parametrize('damage', [
    lambda folder: os.remove(os.path.join(folder, cache.MARKER)),
    lambda folder: os.remove(os.path.join(folder, 'model.pdmodel')),
    truncate, same_size_other_bytes, extra_file, bad_marker],
    ids=['no marker', 'missing file', 'truncated', 'other bytes', 'extra file', 'bad marker'])
def test_a_damaged_entry_is_built_again(tmp_path, damage):
    calls = []
    folder = add(tmp_path, 'k', calls=calls)
    damage(folder)
    assert not cache.is_valid(folder)
    assert add(tmp_path, 'k', calls=calls) == folder
    assert len(calls) == 2 and cache.is_valid(folder)
    assert sorted(os.listdir(folder)) == [cache.MARKER, 'model.pdiparams', 'model.pdmodel']


def test_stale_temporary_exports_are_removed(tmp_path):
    stale, fresh = tmp_path / (cache.WORK_PREFIX + 'dead'), tmp_path / (cache.WORK_PREFIX + 'live')
    for folder in (stale, fresh):
        folder.mkdir()
    old = os.path.getmtime(stale) - cache.STALE_WORK_SECONDS - 60
    os.utime(stale, (old, old))
    add(tmp_path, 'k')
    assert not stale.exists() and fresh.exists()


def test_concurrent_users_build_once_and_agree(tmp_path):
    """Threads stand in for processes: the lock is a file lock, taken per call."""
    calls, folders, errors = [], [], []

    def use():
        try:
            folders.append(add(tmp_path, 'k', calls=calls))
        except Exception as err:  # reported below
            errors.append(err)
    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(set(folders)) == 1 and cache.is_valid(folders[0])
    assert 1 <= len(calls) <= 4 and entries(tmp_path) == ['k']
