"""Every output location is checked before work starts: one table, one row per bad location.

Each row runs ``paddleseg ARGV`` in this process and expects exit status 2 within seconds, a last stderr
line ``paddleseg VERB: error: ...`` holding the expected text, and nothing written (the folder tree is
the same before and after). A row is ``(argv, blockers, expected)``:

* ``argv``: leading ``NAME=VALUE`` items set environment variables, as in a shell;
* ``blockers``: path -> what is put in the way there: ``'file'``, ``'dir'`` or ``'readonly'`` (a folder
  mode 0o500; where that does not stop this user, i.e. root, writes into it fail by injection instead);
* ``expected``: text of the error line.

Placeholders: ``{tmp}`` the test's folder, ``{city}`` a Cityscapes tree, ``{voc}`` / ``{sbd}`` VOC 2012 and
SBD trees (built only for rows that name them), ``{url}`` a download URL whose cache entry is ``entry``.
"""
import errno
import os
import time
from pathlib import Path

import pytest

import paddle_psp_cli as cli
from paddle_psp.core import outputs
from paddle_psp.weights import fetch, hub
from test_prepare import make_cityscapes, make_voc_sbd

URL = 'http://127.0.0.1:9/paddleseg/dygraph/entry/model.pdparams'
CACHE = '{tmp}/home/pretrained_model'
VOC = ['prepare', 'voc12aug', '--voc', '{voc}', '--sbd', '{sbd}']
CITY = ['prepare', 'cityscapes', '--root', '{city}']
LABEL = '{city}/gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png'

ROWS = [
    (['SEG_HOME=', 'download', URL], {}, 'SEG_HOME: empty path'),
    (['SEG_HOME={tmp}/file', 'download', URL], {'{tmp}/file': 'file'}, 'SEG_HOME: {tmp}/file is a file'),
    (['SEG_HOME={tmp}/file/home', 'download', URL], {'{tmp}/file': 'file'},
     'cannot be created: {tmp}/file is a file'),
    (['SEG_HOME={tmp}/home', 'download', URL], {CACHE: 'file'}, 'cannot be created: ' + CACHE + ' is a file'),
    (['SEG_HOME={tmp}/home', 'download', URL], {CACHE + '/entry': 'file'}, CACHE + '/entry: is a file'),
    (['SEG_HOME={tmp}/home', 'download', URL], {CACHE + '/entry/model.pdparams.part': 'dir'},
     CACHE + '/entry/model.pdparams.part: is a directory'),
    (['SEG_HOME={tmp}/home', 'download', URL], {CACHE + '/entry.lock': 'dir'}, CACHE + '/entry.lock: is a directory'),
    (['SEG_HOME={tmp}/ro', 'download', URL], {'{tmp}/ro': 'readonly'},
     '{tmp}/ro/pretrained_model/entry: not writable ({tmp}/ro: '),
    (['prepare', 'cityscapes', '--root', ''], {}, '--root: empty path'),
    (['prepare', 'cityscapes', '--root', '{tmp}/file'], {'{tmp}/file': 'file'}, '{tmp}/file: not a directory'),
    (CITY, {'{city}/train.txt': 'dir'}, '{city}/train.txt: is a directory'),
    (CITY, {LABEL: 'dir'}, LABEL + ': is a directory'),
    (CITY, {'{city}/gtFine/val/lindau': 'readonly'}, '{city}/gtFine/val/lindau: not writable'),
    (CITY, {'{city}': 'readonly'}, '{city}: not writable'),
    (['prepare', 'voc12aug', '--voc', '', '--sbd', '{sbd}'], {}, '--voc: empty path'),
    (['prepare', 'voc12aug', '--voc', '{voc}', '--sbd', ''], {}, '--sbd: empty path'),
    (VOC, {'{voc}/VOC2012/SegmentationClassAug': 'file'}, '{voc}/VOC2012/SegmentationClassAug: is a file'),
    (VOC, {'{voc}/VOC2012/ImageSets/Segmentation/aug.txt': 'dir'}, 'aug.txt: is a directory'),
    (VOC, {'{voc}/VOC2012': 'readonly'}, '{voc}/VOC2012/SegmentationClassAug: not writable ({voc}/VOC2012: '),
]


def tree(root):
    """Every path under ``root`` with its kind, size and mode."""
    return {str(p): (p.is_dir(), p.is_file() and p.stat().st_size, p.stat().st_mode)
            for p in sorted(Path(root).rglob('*'))}


def make_read_only(folder, monkeypatch):
    """Mode 0o500; where this user can still write there (root), make writes into it fail instead."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o500)
    try:
        outputs.probe_write(str(folder))
    except PermissionError:
        return
    probe = outputs.probe_write

    def refuse_in_folder(path):
        if Path(path).resolve() == folder.resolve():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        probe(path)

    monkeypatch.setattr(outputs, 'probe_write', refuse_in_folder)


@pytest.fixture
def place(tmp_path, monkeypatch):
    """``place(argv, blockers)``: build the trees ``argv`` names, put the blockers in, return argv filled in."""
    folders = []

    def build(argv, blockers):
        names = {'tmp': str(tmp_path)}
        text = ' '.join(argv) + ' '.join(blockers)
        if '{city}' in text:
            names['city'] = str(tmp_path / 'city')
            make_cityscapes(names['city'])
        if '{voc}' in text or '{sbd}' in text:
            voc, sbd, _, _ = make_voc_sbd(tmp_path / 'vocsbd')
            names.update(voc=str(voc), sbd=str(sbd))
        for where, what in blockers.items():
            path = Path(where.format(**names))
            if what == 'readonly':
                make_read_only(path, monkeypatch)
                folders.append(path)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir() if what == 'dir' else path.write_text('in the way')
        return [item.format(**names) for item in argv], names

    yield build
    for folder in folders:
        folder.chmod(0o700)


@pytest.mark.parametrize('argv, blockers, expected', ROWS)
def test_bad_output_location_stops_at_once_writing_nothing(argv, blockers, expected, place, tmp_path,
                                                           monkeypatch, capsys):
    monkeypatch.setattr(hub, 'DEFAULT_RETRY', fetch.RetryPolicy(attempts=1, timeout=1, deadline=1))
    monkeypatch.delenv('SEG_HOME', raising=False)
    argv, names = place(argv, blockers)
    while '=' in argv[0]:
        name, value = argv.pop(0).split('=', 1)
        monkeypatch.setenv(name, value)
    before = tree(tmp_path)
    capsys.readouterr()
    start = time.monotonic()
    assert cli.main(argv) == 2
    assert time.monotonic() - start < 10
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f'paddleseg {argv[0]}: error: ')
    assert expected.format(**names) in line
    assert tree(tmp_path) == before
