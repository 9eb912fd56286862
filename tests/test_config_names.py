"""--config by name, the zoo listing (``paddleseg models``), ``paddleseg env`` and the [prepare] extra's error."""
import importlib.util
import os
import subprocess
import sys

import paddle
import pytest

import paddle_psp_cli
from paddle_psp.benchmark import environment
from paddle_psp.core.errors import UserError
from paddle_psp.data import prepare
from paddle_psp.weights import hub, zoo
from paddle_psp.engine.flags import train_parser
from paddle_psp.weights import shipped_configs, zoo_listing
from paddle_psp.weights.flags import models_parser

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO_ROOT, 'configs', 'quickstart', 'pspnet_resnet50_os8_synthcity_quickstart.yml')


@pytest.mark.parametrize('name', zoo.names())
def test_every_zoo_name_resolves_to_its_config(name):
    assert shipped_configs.resolve(name) == os.path.join(REPO_ROOT, zoo.get(name)['config']) == zoo.config_path(name)


def test_quickstart_alias_and_file_stems():
    shipped = shipped_configs.shipped_configs()
    assert shipped['quickstart'] == shipped['pspnet_resnet50_os8_synthcity_quickstart'] == QUICKSTART
    assert set(zoo.names()) < set(shipped) and not any(name.startswith(('_base_', 'cityscapes')) for name in shipped)
    assert len(shipped) == 10


def test_paths_pass_through_and_docs_paths_work_from_any_folder(tmp_path, monkeypatch):
    own = tmp_path / 'quickstart'  # a file with a config's name wins over the name
    own.write_text('iters: 1\n')
    monkeypatch.chdir(tmp_path)
    assert shipped_configs.resolve('quickstart') == 'quickstart'
    assert shipped_configs.resolve('missing/my.yml') == 'missing/my.yml'  # the config reader reports it
    assert shipped_configs.resolve('configs/quickstart/pspnet_resnet50_os8_synthcity_quickstart.yml') == QUICKSTART


@pytest.mark.parametrize('verb, extra', [('train', []), ('val', ['--model_path', 'x']),
                                         ('predict', ['--model_path', 'x', '--image_path', 'x']),
                                         ('export', ['--model_path', 'x']), ('benchmark', ['--model_path', 'x'])])
def test_unknown_name_is_one_line_with_close_names(verb, extra, capsys):
    with pytest.raises(SystemExit) as exit_info:
        paddle_psp_cli.PARSERS[verb]().parse_args(['--config', 'deeplabv3_resnet50_cityscapes', *extra])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count('\n') == 1
    assert err.startswith(f'paddleseg {verb}: error: argument --config: ')
    assert 'did you mean deeplabv3_resnet50_os8_cityscapes_1024x512_80k' in err


def test_name_resolves_in_the_parser():
    args = train_parser().parse_args(['--config', 'pspnet_resnet101_os8_voc12aug_512x512_40k'])
    assert args.config == zoo.config_path('pspnet_resnet101_os8_voc12aug_512x512_40k')


def test_models_lists_the_zoo_without_importing_paddle(tmp_path):
    code = ('import sys; from paddle_psp_cli import main; status = main(["models"]); '
            'assert "paddle" not in sys.modules and "paddleseg" not in sys.modules, "imported"; sys.exit(status)')
    env = {**os.environ, 'SEG_HOME': str(tmp_path)}
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for entry in zoo.entries():
        row = next(line.split() for line in lines if line.startswith(entry['name'] + ' '))
        assert row[1:] == [entry['model'], entry['backbone'], entry['dataset'], entry['resolution'],
                           str(entry['iters']), f'{entry["miou"]:.2f}', f'{entry["miou_flip"]:.2f}',
                           f'{entry["miou_ms_flip"]:.2f}', 'download']
    assert 'quickstart' in result.stdout


def test_listing_sees_the_cache_where_the_hub_puts_it(tmp_path, monkeypatch):
    monkeypatch.setenv('SEG_HOME', str(tmp_path))
    name = zoo.names()[2]
    assert hub.cached_path(name) is None and zoo_listing.cached_weights_file(zoo.get(name)['checkpoint_url']) is None
    url = zoo.get(name)['checkpoint_url']
    where = hub._entry_for(url).path
    os.makedirs(os.path.dirname(where))
    with open(where, 'wb') as f:
        f.write(b'stand-in')
    assert zoo_listing.cached_weights_file(url) == where == hub.cached_path(name)
    assert [row[-1] for row in zoo_listing.rows()].count('cached') == 1


def test_models_check_flag_is_the_forward_pass_check():
    args = models_parser().parse_args(['--check', '--input_size', '64', '32'])
    assert args.check and args.input_size == [64, 32]
    assert paddle_psp_cli.VERBS['models'][0] == 'paddle_psp.models.summary'


def test_env_reports_versions_cpu_and_tuning(capsys):
    assert environment.main([]) == 0
    out = capsys.readouterr().out
    assert f'Paddle: {paddle.__version__} ' in out and f'paddle-psp: {paddle_psp_cli.__version__}\n' in out
    keys = [line.split(':')[0] for line in out.splitlines()]
    for key in ('Python', 'PaddleSeg', 'CUDA', 'cuDNN', 'GPU', 'CPU', 'ISA', 'tuning (every verb)'):
        assert key in keys, key


def test_prepare_cityscapes_names_the_extra_when_cityscapesscripts_is_absent(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'cityscapesscripts' else real(name, *a))
    with pytest.raises(UserError, match=r'pip install "paddle-psp\[prepare\]"'):
        prepare.main(['cityscapes', '--root', str(tmp_path)])


def test_version_names_paddle_and_paddleseg_without_importing_them():
    code = ('import sys; from paddle_psp_cli import version_text; print(version_text()); '
            'print(sorted(set(sys.modules) & {"paddle", "paddleseg", "numpy"}))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    first, imported = result.stdout.splitlines()
    import paddleseg
    assert first.startswith(f'paddle-psp {paddle_psp_cli.__version__} (Paddle {paddle.__version__}, ')
    assert f'PaddleSeg {paddleseg.__version__}' in first and imported == '[]'
