"""Verbs whose stdout is their result keep it clean: ``$(paddleseg download X)`` is exactly the path.

Run as real commands (a subprocess each), since what a shell captures is the point.
"""
import os
import re
import subprocess
import sys

from test_hub import DYGRAPH, cached, checkpoint, seg_home, send, server  # noqa: F401
from test_prepare import make_cityscapes

def paddleseg(*argv, **env):
    run = subprocess.run([sys.executable, '-m', 'paddle_psp_cli', *argv], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **env))
    assert run.returncode == 0, run.stderr
    return run


def test_download_prints_only_the_path(server, seg_home, checkpoint):
    path = f'{DYGRAPH}/clean/model.pdparams'
    server.routes[path] = lambda h, n: send(h, checkpoint)
    run = paddleseg('download', server.url(path), SEG_HOME=str(seg_home))
    assert 'downloading' in run.stderr
    assert run.stdout == str(cached(seg_home, 'clean', 'model.pdparams')) + '\n'


def test_prepare_prints_only_its_results(tmp_path):
    make_cityscapes(str(tmp_path))
    run = paddleseg('prepare', 'cityscapes', '--root', str(tmp_path), '--workers', '1')
    lines = run.stdout.splitlines()
    assert lines[0] == 'cityscapes: converted 5 label images (0 already up to date)'
    assert all(line.startswith('cityscapes: ') for line in lines), lines


def test_val_shows_no_third_party_noise(tmp_path, synthetic_root):
    """A normal ``paddleseg val`` (cold fast-path cache: export, then Paddle Inference) prints our log lines
    on stderr and nothing of Paddle's: no Python warnings, no C++ (glog) lines."""
    from conftest import write_checkpoints
    setup = write_checkpoints(tmp_path, synthetic_root, seed=0)
    run = paddleseg('val', '--config', setup['config'], '--model_path', setup['checkpoint'], '--device', 'cpu',
                    PADDLE_PSP_CACHE=str(tmp_path / 'cache'))
    assert 'mIoU' in run.stdout + run.stderr
    assert 'exporting an inference model' in run.stderr  # the cold-cache path ran
    noise = [line for line in run.stderr.splitlines()
             if 'Warning' in line or 'warnings.warn' in line or re.match(r'^[IWEF]\d{4} ', line)]
    assert not noise, noise
