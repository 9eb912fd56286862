"""A built wheel is a working package: installed into a fresh environment without the source tree, it carries
the configs, resolves every zoo config by name, lists the zoo and trains the quickstart, from an empty folder.

The wheel is built from a copy of the repository's files (what a clone holds), without build isolation (no
network). The fresh environment has no pip and sees the dependencies of this one through a ``.pth`` line; the
wheel's own files come first on its path.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import venv

import pytest

from test_standalone import REPO_ROOT, repository_files

ZOO_CHECK = '''
import json, os, sys
import paddle_psp_cli
from paddle_psp.weights import shipped_configs
from paddle_psp.config.read import read_yaml_tree
from paddle_psp.weights import zoo
site = sys.argv[1]
assert paddle_psp_cli.__file__.startswith(site), paddle_psp_cli.__file__
assert shipped_configs.configs_root() == os.path.join(site, 'paddle_psp', 'configs'), shipped_configs.configs_root()
for name in zoo.names():
    path = shipped_configs.resolve(name)
    assert path.startswith(site) and path == zoo.config_path(name), (name, path)
    assert read_yaml_tree(path)['iters'] == zoo.get(name)['iters'], name
print(json.dumps(sorted(shipped_configs.shipped_configs())))
'''


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """The wheel built from a copy of the repository files."""
    if importlib.util.find_spec('wheel') is None:
        pytest.fail('building a wheel without build isolation needs the wheel package: '
                    'pip install -r requirements-dev.txt')
    source = tmp_path_factory.mktemp('source')
    for path in repository_files():
        target = source / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(REPO_ROOT, path), target)
    out = tmp_path_factory.mktemp('wheelhouse')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '--no-index', '-q',
                    '-w', str(out), str(source)], check=True, capture_output=True, timeout=300)
    wheels = list(out.glob('paddle_psp-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope='module')
def installed(wheel, tmp_path_factory):
    """(python, paddleseg script, site-packages) of a fresh environment holding the wheel."""
    env_dir = tmp_path_factory.mktemp('env')
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / 'bin' / 'python'
    site = subprocess.run([str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(site, 'dependencies.pth'), 'w') as f:
        f.write(sysconfig.get_paths()['purelib'] + '\n')
    subprocess.run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '--no-deps', '--no-index', '-q',
                    str(wheel)], check=True, capture_output=True, timeout=300)
    return python, env_dir / 'bin' / 'paddleseg', site


def run_in_empty_folder(tmp_path, *command, timeout=300):
    empty = tmp_path / 'empty'
    empty.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
    return subprocess.run([str(part) for part in command], cwd=empty, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_wheel_carries_the_configs(wheel):
    import zipfile
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if n.startswith('paddle_psp/configs/'))
    expected = sorted('paddle_psp/' + os.path.relpath(os.path.join(folder, file), REPO_ROOT).replace(os.sep, '/')
                      for folder, _, files in os.walk(os.path.join(REPO_ROOT, 'configs')) for file in files
                      if file.endswith('.yml'))
    assert shipped == expected and len(shipped) == 14


def test_installed_wheel_resolves_every_zoo_config_by_name(installed, tmp_path):
    python, _, site = installed
    result = run_in_empty_folder(tmp_path, python, '-c', ZOO_CHECK, site)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'quickstart' in result.stdout and 'pspnet_resnet50_os8_cityscapes_1024x512_80k' in result.stdout


def test_installed_wheel_lists_the_zoo_and_refuses_an_unknown_name(installed, tmp_path):
    _, paddleseg, _ = installed
    listing = run_in_empty_folder(tmp_path, paddleseg, 'models')
    assert listing.returncode == 0, listing.stderr
    assert len([line for line in listing.stdout.splitlines() if '_os8_' in line and 'download' in line]) == 8
    wrong = run_in_empty_folder(tmp_path, paddleseg, 'train', '--config', 'pspnet_resnet50_cityscapes')
    assert wrong.returncode == 2 and wrong.stdout == ''
    assert wrong.stderr.count('\n') == 1 and 'did you mean pspnet_resnet50_os8_cityscapes_1024x512_80k' in wrong.stderr


def test_installed_wheel_runs_the_quickstart_from_an_empty_folder(installed, tmp_path):
    _, paddleseg, _ = installed
    result = run_in_empty_folder(tmp_path, paddleseg, 'quickstart', '--iters', '2', '--dygraph', '--save_dir', 'qs')
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.isfile(tmp_path / 'empty' / 'qs' / 'train' / 'iter_2' / 'model.pdparams')
    assert 'trained 2 iterations' in result.stdout
