"""The package's layers: every module imports only from its own layer or the layers below it, without cycles.

The layers, lowest first, are those of docs/architecture.md; the document names only modules that exist.
"""
import ast
import os
import re

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO_ROOT, 'paddle_psp')
ARCHITECTURE_MD = os.path.join(REPO_ROOT, 'docs', 'architecture.md')
# Lowest first. A module belongs to the first layer whose prefix its dotted name starts with.
LAYERS = [
    ('infrastructure', ['paddle_psp.core']),
    ('weights', ['paddle_psp.weights']),
    ('models', ['paddle_psp.models']),
    ('data', ['paddle_psp.data']),
    ('config', ['paddle_psp.config']),
    ('inference', ['paddle_psp.inference']),
    ('engine', ['paddle_psp.engine']),
    ('applications', ['paddle_psp.benchmark', 'paddle_psp.quickstart', 'paddle_psp.api']),
]
# `import paddle_psp` registers the models: the package itself sits just above them.
PACKAGE_INIT_LAYER = 'models'


def module_files():
    """{dotted module name: path} of every module in the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, REPO_ROOT)[:-3].split(os.sep)
                if parts[-1] == '__init__':
                    parts = parts[:-1]
                found['.'.join(parts)] = path
    return found


def layer_of(module):
    """Index into LAYERS of a dotted module name."""
    if module == 'paddle_psp':
        return [name for name, _ in LAYERS].index(PACKAGE_INIT_LAYER)
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + '.') for p in prefixes):
            return index
    raise AssertionError(f'{module}: in no layer; add it to LAYERS and docs/architecture.md')


def imported_modules(path, known):
    """The package's modules that a file imports, anywhere in it (function-level imports included)."""
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f'{node.module}.{alias.name}' for alias in node.names]
        else:
            continue
        targets.update(name for name in names if name in known)
    return targets


@pytest.fixture(scope='module')
def graph():
    known = module_files()
    return {module: imported_modules(path, known) - {module} for module, path in known.items()}


def test_every_module_imports_only_from_its_layer_or_below(graph):
    upward = [f'{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})'
              for module, targets in graph.items() for target in sorted(targets)
              if layer_of(target) > layer_of(module) and not target.startswith(module + '.')]
    assert not upward, '\n'.join(upward)


def test_no_import_cycles(graph):
    """No module reaches itself through imports (a package importing its own submodules is not a cycle)."""
    def reaches(start):
        seen, pending = set(), [start]
        while pending:
            for target in graph[pending.pop()]:
                if target not in seen and not start.startswith(target + '.') and not target.startswith(start + '.'):
                    seen.add(target)
                    pending.append(target)
        return seen
    cycles = [module for module in graph if module in reaches(module)]
    assert not cycles, cycles


def test_layer_check_catches_an_upward_import():
    assert layer_of('paddle_psp.core.util') < layer_of('paddle_psp.engine.train')
    assert layer_of('paddle_psp.models.pspnet') > layer_of('paddle_psp.weights.hub')
    with pytest.raises(AssertionError, match='in no layer'):
        layer_of('paddle_psp.somewhere_new')


def test_architecture_document_names_only_existing_paths():
    with open(ARCHITECTURE_MD, encoding='utf-8') as f:
        text = f.read()
    paths = set(re.findall(r'`((?:paddle_psp|examples|configs|benchmarks|tests|docs)/[\w./-]*)`', text))
    assert len(paths) >= 20, 'the document should name where each concept lives'
    missing = sorted(p for p in paths if not os.path.exists(os.path.join(REPO_ROOT, p.rstrip('/'))))
    assert not missing, missing
    for name, _ in LAYERS:
        assert name in text.lower(), f'layer {name} not described'
