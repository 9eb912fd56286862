"""docs/python_api.md: every ``python`` block runs, in order as in a notebook, on a tiny generated model and
dataset (the zoo name and the example paths are replaced by those; each replacement must find its text)."""
import os
import re
import shutil

import pytest

from conftest import write_checkpoints

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs', 'python_api.md')
ZOO_NAME = '"pspnet_resnet50_os8_cityscapes_1024x512_80k"'
ZOO_CONFIG = '"configs/cityscapes/pspnet_resnet50_os8_cityscapes_1024x512_80k.yml"'


def python_blocks(text):
    """The code of the ```python blocks of a Markdown text."""
    return re.findall(r'^```python\n(.*?)^```$', text, flags=re.S | re.M)


@pytest.fixture
def places(synthetic_root, tmp_path, monkeypatch):
    """{text in the document: what replaces it}: a tiny checkpoint and config, images, a test split."""
    (tmp_path / 'model').mkdir()
    paths = write_checkpoints(tmp_path / 'model', synthetic_root, seed=2)
    val = os.path.join(synthetic_root, 'leftImg8bit', 'val')
    test = tmp_path / 'test_split'
    shutil.copytree(val, test / 'berlin')
    for name in os.listdir(test / 'berlin'):
        os.rename(test / 'berlin' / name, test / 'berlin' / name.replace('synthcity', 'berlin'))
    image = sorted(os.path.join(r, f) for r, _, fs in os.walk(val) for f in fs)[0]
    monkeypatch.setenv('PADDLE_PSP_CACHE', str(tmp_path / 'cache'))
    monkeypatch.chdir(tmp_path)
    model = f'{paths["checkpoint"]!r}, config={paths["config"]!r}, cpu_tuning=False'
    return {ZOO_CONFIG: repr(paths['config']), ZOO_NAME: model,
            '"output/psp_r50/best_model"': repr(paths['checkpoint']), '"street.png"': repr(image),
            '"frames/"': repr(val), '"data/cityscapes/leftImg8bit/test"': repr(str(test)),
            '"data/cityscapes"': repr(synthetic_root)}


def test_every_snippet_runs(places, tmp_path):
    with open(DOC, encoding='utf-8') as file:
        blocks = python_blocks(file.read())
    assert len(blocks) >= 8
    code = '\n'.join(blocks)
    for text, replacement in places.items():
        assert text in code, f'{text} is no longer in docs/python_api.md: update this test'
        code = code.replace(text, replacement)
    namespace = {}
    exec(compile(code, DOC, 'exec'), namespace)  # noqa: S102 (the project's own documentation)
    assert namespace['archive'] == os.path.join('output', 'submission', 'cityscapes_submission.zip')
    assert os.path.isfile(tmp_path / 'street_labels.png') and os.path.isfile(tmp_path / 'street_overlay.jpg')
    assert namespace['metrics']['num_images'] == 4 and len(namespace['predictions']) == 4
    assert sorted(namespace['columns']) == ['miou', 'miou_flip', 'miou_ms_flip']
