"""Verbs whose stdout is their result keep it clean: ``$(paddleseg download X)`` is exactly the path.

Run as real commands (a subprocess each), since what a shell captures is the point.
"""
import os
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
