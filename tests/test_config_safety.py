"""Untrusted configs stay data: YAML never constructs Python objects, ``type:`` names only registry entries,
``--opts`` values are only literals. Each attack would create a marker file if it ran.
"""
import pytest

from paddle_psp.config import load_config
from paddle_psp.config.overrides import parse_value
from paddle_psp.core.errors import UserError


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / 'pwned'
    yield path
    assert not path.exists(), 'the payload ran'


@pytest.fixture
def base(tmp_path, make_config):
    return make_config(tmp_path)


@pytest.mark.parametrize('tag', ['python/object/apply:os.system', 'python/object/new:subprocess.Popen',
                                 'python/name:os.system', 'python/module:os'])
@pytest.mark.parametrize('where', ['top', 'nested'])
def test_python_tags_are_refused_in_one_line(tmp_path, base, marker, tag, where):
    value = f'!!{tag} [["touch", "{marker}"]]' if 'Popen' in tag else f'!!{tag} ["touch {marker}"]'
    if tag.startswith(('python/name', 'python/module')):
        value = f'!!{tag} ""'
    text = (f'evil: {value}\n' if where == 'top' else
            f'_base_: {base}\nmodel:\n  backbone:\n    pretrained: {value}\n')
    path = tmp_path / 'evil.yml'
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_config(str(path))
    message = str(err.value)
    assert '\n' not in message and message.startswith(f'{path}:{text.count(chr(10))}: YAML tag ') and tag in message
    assert 'refused' in message


@pytest.mark.parametrize('section, name', [('model', 'os.system'), ('model', 'subprocess.Popen'),
                                           ('model.backbone', 'builtins.eval'), ('loss.types.0', 'posix.system'),
                                           ('optimizer', '__import__'), ('lr_scheduler', 'os.system')])
def test_type_names_only_registry_entries(tmp_path, base, section, name):
    with pytest.raises(UserError) as err:
        load_config(base, opts=[f'{section}.type={name}'])
    message = str(err.value)
    assert '\n' not in message and 'unknown type' in message and repr(name) in message, message


@pytest.mark.parametrize('text', ['!!python/object/apply:os.system ["touch {marker}"]',
                                  "__import__('os').system('touch {marker}')",
                                  "exec('open(\"{marker}\", \"w\")')",
                                  '[1, !!python/name:os.system ""]'])
def test_opts_values_are_only_literals(tmp_path, base, marker, text):
    text = text.format(marker=marker)
    assert parse_value(text) == text  # not a literal, not plain YAML: kept as the text it is
    cfg = load_config(base, opts=[f'model.backbone.pretrained={text}'])
    assert cfg.dic['model']['backbone']['pretrained'] == text


def test_opts_literals_still_parse():
    assert [parse_value(v) for v in ('1', '0.5', '[64, 64]', 'None', "'x'", 'true', 'null', 'word')] == \
        [1, 0.5, [64, 64], None, 'x', True, None, 'word']


def test_pretrained_weights_of_paddleseg_classes_are_read_safely(tmp_path, base, marker):
    """PaddleSeg's own loaders (``utils.load_entire_model``) use ``paddle.load``: a PaddleSeg model's
    ``pretrained`` is loaded by ours instead, with the same result for real weights."""
    import os
    import pickle

    import numpy as np
    import paddle
    from paddleseg.cvlibs import manager

    def config(weights):
        path = tmp_path / f'{weights.stem}.yml'
        path.write_text(f'_base_: {base}\nmodel:\n  _inherited_: False\n  type: BiSeNetV2\n  num_classes: 19\n'
                        f'  pretrained: {weights}\n')
        return str(path)

    evil = tmp_path / 'evil.pdparams'
    evil.write_bytes(pickle.dumps({'x': Call(os.system, f'touch {marker}')}))
    with pytest.raises(UserError) as err:
        load_config(config(evil)).build_model()
    assert str(err.value).startswith(f'{evil}: refused to load') and 'system' in str(err.value)
    paddle.seed(1)
    good = tmp_path / 'good.pdparams'
    paddle.save(manager.MODELS['BiSeNetV2'](19).state_dict(), str(good))
    paddle.seed(2)
    model = load_config(config(good)).build_model()
    saved = paddle.load(str(good))
    assert all(np.array_equal(value.numpy(), saved[key].numpy()) for key, value in model.state_dict().items())

class Call:
    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args
