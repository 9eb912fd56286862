"""The zoo manifest agrees with the published tables and the configs; the README table tooling works."""
import json
import os
import re
import subprocess
import sys

import pytest
from paddleseg.cvlibs.config import parse_from_yaml
from paddleseg.datasets import Cityscapes, PascalVOC

from paddle_psp.weights import zoo
from paddle_psp.core.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, 'scripts'))
import zoo_readme  # noqa: E402  (the README table generator: a script in scripts/)
# The published model-zoo tables and the re-measured ms+flip column; its 'source' key says where they come from.
PUBLISHED_TABLES = os.path.join(REPO_ROOT, 'tests', 'data', 'published_tables.json')
CHECKPOINT_URL = re.compile(
    r'^https://bj\.bcebos\.com/paddleseg/dygraph/(cityscapes|pascal_voc12)/(\w+)/model\.pdparams$')
CHECKPOINT_DIR = {'cityscapes': 'cityscapes', 'voc12aug': 'pascal_voc12'}
DATASET_CLASS = {'cityscapes': Cityscapes, 'voc12aug': PascalVOC}
UPSTREAM_TYPE = {'ZooPSPNet': 'PSPNet', 'ZooDeepLabV3': 'DeepLabV3',
                 'ZooResNet50_vd': 'ResNet50', 'ZooResNet101_vd': 'ResNet101'}


def split_cells(row):
    """Cells of a markdown table row; `\\|` inside a cell is not a separator."""
    return [cell.strip() for cell in re.split(r'(?<!\\)\|', row.strip().strip('|'))]


def published():
    """The published tables as stored in tests/data (header, alignment, rows by section title, re-measured)."""
    with open(PUBLISHED_TABLES, encoding='utf-8') as f:
        return json.load(f)


def seed_rows_by_dataset():
    """Published data rows grouped by section title, PSPNet rows first."""
    return published()['sections']


def parse_row(row):
    """A seed row as a dict with the manifest's keys (numbers as floats, links by label)."""
    model, backbone, resolution, iters, miou, flip, ms_flip, links = split_cells(row)
    urls = dict(re.findall(r'\[(\w+)\]\(([^)\s]+)\)', links))
    return {'name': CHECKPOINT_URL.match(urls['model']).group(2), 'model': model, 'backbone': backbone,
            'resolution': resolution, 'iters': int(iters), 'miou': float(miou.rstrip('%')),
            'miou_flip': float(flip.rstrip('%')), 'miou_ms_flip': float(ms_flip.rstrip('%')),
            'checkpoint_url': urls['model'], 'log_url': urls['log'], 'vdl_url': urls['vdl']}


def remeasured_from_reference():
    """{(model, backbone, dataset): ms+flip} re-measured after PaddleSeg's TTA fix."""
    return {(row['model'], row['backbone'], row['dataset']): row['miou_ms_flip']
            for row in published()['remeasured_ms_flip']}


@pytest.fixture(scope='module')
def seeds():
    """Seed table rows grouped by dataset title."""
    return seed_rows_by_dataset()


def test_manifest_matches_published_tables(seeds):
    titles = {zoo.dataset_info(key)['title']: key for key in ('cityscapes', 'voc12aug')}
    assert set(seeds) == set(titles)
    expected = {}
    for title, rows in seeds.items():
        for row in rows:
            entry = parse_row(row)
            entry['dataset'] = titles[title]
            expected[entry['name']] = entry
    assert sorted(zoo.names()) == sorted(expected)
    for name, row in expected.items():
        entry = zoo.get(name)
        wrong = {key: (entry.get(key), value) for key, value in row.items() if entry.get(key) != value}
        assert not wrong, f'{name}: manifest != seed table (ours, seed): {wrong}'


def test_remeasured_ms_flip_matches_reference():
    remeasured = remeasured_from_reference()
    assert remeasured[('PSPNet', 'ResNet50_OS8', 'cityscapes')] == 79.66  # PaddleSeg's current PSPNet README
    for entry in zoo.entries():
        key = (entry['model'], entry['backbone'], entry['dataset'])
        assert entry['miou_ms_flip_remeasured'] == remeasured[key], entry['name']


def test_manifest_fixed_fields():
    for entry in zoo.entries():
        name = entry['name']
        assert entry['checkpoint_url'] == (f'https://bj.bcebos.com/paddleseg/dygraph/'
                                           f'{CHECKPOINT_DIR[entry["dataset"]]}/{name}/model.pdparams')
        assert entry['config'] == f'configs/{entry["dataset"]}/{name}.yml'
        assert entry['devices'] == 4
        assert entry['total_batch_size'] == {'cityscapes': 8, 'voc12aug': 16}[entry['dataset']]
        assert 'sha256' in entry and entry['sha256'] is None
        dataset_class = DATASET_CLASS[entry['dataset']]
        assert zoo.dataset_info(entry['dataset'])['num_classes'] == dataset_class.NUM_CLASSES


@pytest.mark.parametrize('name', zoo.names())
def test_manifest_agrees_with_config(name):
    entry = zoo.get(name)
    path = zoo.config_path(name)
    assert path == os.path.join(REPO_ROOT, entry['config'])
    config = parse_from_yaml(path)
    assert config['iters'] == entry['iters']
    assert config['batch_size'] * entry['devices'] == entry['total_batch_size']
    transforms = config['train_dataset']['transforms']
    crops = [t['crop_size'] for t in transforms if t['type'] == 'RandomPaddingCrop']
    assert crops == [[int(side) for side in entry['resolution'].split('x')]]
    assert UPSTREAM_TYPE[config['model']['type']] == entry['model']
    assert UPSTREAM_TYPE[config['model']['backbone']['type']] + '_OS8' == entry['backbone']
    assert config['model']['backbone']['output_stride'] == 8
    assert config['train_dataset']['type'] == DATASET_CLASS[entry['dataset']].__name__


def test_markdown_table_reproduces_seed_tables(seeds):
    """Per dataset: heading, header, alignment, then the PSPNet seed rows and DeepLabV3 seed rows verbatim."""
    table = zoo_readme.markdown_table()
    for title, rows in seeds.items():
        block = '\n'.join([f'### {title}', '', zoo.TABLE_HEADER, zoo.TABLE_ALIGN] + rows)
        assert block + '\n\n' in table, f'{title}: generated table differs from the seed rows'
    assert (zoo.TABLE_HEADER, zoo.TABLE_ALIGN) == (published()['header'], published()['align'])
    assert table.index('### Cityscapes') < table.index('### Pascal VOC 2012 + Aug')


def test_markdown_table_notes_remeasured_numbers():
    table = zoo_readme.markdown_table()
    note = table[table.index('Re-measured'):]
    for entry in zoo.entries():
        assert f'{entry["model"]} {entry["backbone"]} {entry["miou_ms_flip_remeasured"]:.2f}%' in note


def test_get_unknown_name_lists_valid_names():
    with pytest.raises(UserError) as error:
        zoo.get('pspnet_resnet18')
    message = str(error.value)
    assert 'pspnet_resnet18' in message and '\n' not in message
    assert all(name in message for name in zoo.names())


def test_get_returns_a_copy():
    name = zoo.names()[0]
    zoo.get(name)['iters'] = 1
    zoo.entries()[0]['iters'] = 1
    assert zoo.get(name)['iters'] == 80000


def test_entries_filters():
    assert len(zoo.entries()) == 8
    assert [e['name'] for e in zoo.entries(model='pspnet', dataset='voc12aug')] == [
        'pspnet_resnet50_os8_voc12aug_512x512_40k', 'pspnet_resnet101_os8_voc12aug_512x512_40k']
    assert [e['name'] for e in zoo.entries(backbone='ResNet101_OS8', model='DeepLabV3')] == [
        'deeplabv3_resnet101_os8_cityscapes_1024x512_80k', 'deeplabv3_resnet101_os8_voc12aug_512x512_40k']
    assert {e['dataset'] for e in zoo.entries(dataset='Cityscapes')} == {'cityscapes'}
    with pytest.raises(UserError, match=r"dataset 'ade20k': .*cityscapes, voc12aug"):
        zoo.entries(dataset='ade20k')


def test_config_path_outside_a_checkout(tmp_path):
    with pytest.raises(UserError, match='configs/cityscapes/pspnet_resnet50_os8_cityscapes_1024x512_80k.yml'):
        zoo.config_path('pspnet_resnet50_os8_cityscapes_1024x512_80k', root=str(tmp_path))


README_TEMPLATE = ('# paddle-psp\n\nIntro text.\n\n## Model zoo\n\n{start}\n{body}\n{end}\n\n'
                   '## License\n\nApache-2.0\n')


def write_readme(tmp_path, body='stale table', start=zoo_readme.README_START, end=zoo_readme.README_END):
    """A temp README around a zoo block holding `body`, with the given marker lines."""
    path = tmp_path / 'README.md'
    path.write_text(README_TEMPLATE.format(start=start, body=body, end=end), encoding='utf-8')
    return path


def test_write_readme_replaces_only_the_block(tmp_path):
    path = write_readme(tmp_path)
    assert zoo_readme.check_readme(str(path)) is False
    assert zoo_readme.write_readme(str(path)) is True
    text = path.read_text(encoding='utf-8')
    expected = README_TEMPLATE.format(start=zoo_readme.README_START, body=zoo_readme.markdown_table(), end=zoo_readme.README_END)
    assert text == expected
    assert zoo_readme.check_readme(str(path)) is True
    assert zoo_readme.write_readme(str(path)) is False
    assert [p.name for p in tmp_path.iterdir()] == ['README.md']


def test_main_check_and_write(tmp_path, capsys):
    path = write_readme(tmp_path)
    assert zoo_readme.main(['--check-readme', str(path)]) == 1
    assert 'out of date' in capsys.readouterr().err
    assert zoo_readme.main(['--write-readme', str(path)]) == 0
    assert zoo_readme.main(['--check-readme', str(path)]) == 0
    edited = path.read_text(encoding='utf-8').replace('78.83%', '78.84%')
    path.write_text(edited, encoding='utf-8')
    assert zoo_readme.main(['--check-readme', str(path)]) == 1


@pytest.mark.parametrize('start,end', [
    ('', zoo_readme.README_END),
    (zoo_readme.README_START, ''),
    (zoo_readme.README_END, zoo_readme.README_START),
    (zoo_readme.README_START + '\n' + zoo_readme.README_START, zoo_readme.README_END),
])
def test_bad_markers_are_user_errors(tmp_path, capsys, start, end):
    path = write_readme(tmp_path, start=start, end=end)
    before = path.read_bytes()
    assert zoo_readme.main(['--write-readme', str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and err.count('\n') == 1
    assert path.read_bytes() == before
    with pytest.raises(UserError):
        zoo_readme.check_readme(str(path))


def test_missing_readme(tmp_path, capsys):
    assert zoo_readme.main(['--check-readme', str(tmp_path / 'README.md')]) == 2
    assert 'no such file' in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    path = write_readme(tmp_path, body=zoo_readme.markdown_table())
    result = subprocess.run([sys.executable, '-m', 'paddle_psp.weights.zoo', '--check-readme', str(path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_repository_readme_table_is_generated_from_the_manifest():
    assert zoo_readme.check_readme(os.path.join(REPO_ROOT, 'README.md'))
