"""The layers of paddle_psp and paddle_psp_cli: every module imports only from its own layer or below, without cycles.

Imports are found in every form: absolute, relative, inside functions and through ``importlib.import_module``.

The layers, lowest first, are those of docs/architecture.md; the document names only modules that exist.
"""
import ast
import os
import re

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('paddle_psp', 'paddle_psp_cli')
ARCHITECTURE_MD = os.path.join(REPO_ROOT, 'docs', 'architecture.md')
# The command's modules that import only the standard library, so that `paddleseg --help` needs no Paddle:
# the package's verbs read their flags from them.
CLI_FOUNDATION = ['paddle_psp_cli.parsers', 'paddle_psp_cli.configs', 'paddle_psp_cli.stages',
                  'paddle_psp_cli.zoo_listing', 'paddle_psp_cli.lazy', 'paddle_psp_cli.quiet']
# Lowest first. A module belongs to the first layer whose prefix its dotted name starts with.
LAYERS = [
    ('command-line foundation', CLI_FOUNDATION),
    ('infrastructure', ['paddle_psp.core']),
    ('weights', ['paddle_psp.weights']),
    ('models', ['paddle_psp.models']),
    ('data', ['paddle_psp.data']),
    ('config', ['paddle_psp.config']),
    ('inference', ['paddle_psp.inference']),
    ('evaluation', ['paddle_psp.evaluation']),
    ('engine', ['paddle_psp.engine']),
    ('applications', ['paddle_psp.benchmark', 'paddle_psp.quickstart', 'paddle_psp.api']),
    ('command', ['paddle_psp_cli']),
]
# `import paddle_psp` registers the models: the package itself sits just above them.
PACKAGE_INIT_LAYER = 'models'
# The only imports allowed to point upwards, each with its reason.
ALLOWED_UPWARD = {
    ('paddle_psp', 'paddle_psp_cli'): 'the one version string, which `paddleseg --version` reads without Paddle',
}
IMPORT_FUNCTIONS = ('import_module', '__import__')


def module_files(root=REPO_ROOT, packages=PACKAGES):
    """{dotted module name: path} of every module in the packages below ``root``."""
    found = {}
    for package in packages:
        for folder, _, files in os.walk(os.path.join(root, package)):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(folder, name)
                    parts = os.path.relpath(path, root)[:-3].split(os.sep)
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


def absolute_base(module, path, node):
    """The dotted module an ``ImportFrom`` node names, relative imports resolved against ``module``."""
    if not node.level:
        return node.module
    package = module if os.path.basename(path) == '__init__.py' else module.rpartition('.')[0]
    parts = package.split('.')
    base = '.'.join(parts[:len(parts) - node.level + 1])
    return f'{base}.{node.module}' if node.module else base


def named_modules(node, module, path):
    """The dotted names one AST node imports: import statements, relative ones and importlib calls."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = absolute_base(module, path, node)
        return [base] + [f'{base}.{alias.name}' for alias in node.names]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, 'id', '')
        if function in IMPORT_FUNCTIONS and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def imported_modules(path, known, module):
    """The packages' modules that a file imports, anywhere in it (function-level imports included).

    ``from package import submodule`` counts as importing the submodule only, not the package.
    """
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    targets = set()
    for node in ast.walk(tree):
        names = [name for name in named_modules(node, module, path) if name in known]
        targets.update(name for name in names if not any(other.startswith(name + '.') for other in names))
    return targets


def import_graph(known):
    """{module: the packages' modules it imports}."""
    return {module: imported_modules(path, known, module) - {module} for module, path in known.items()}


def upward_imports(graph):
    """One line per import of a higher layer that ALLOWED_UPWARD does not name."""
    return [f'{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})'
            for module, targets in graph.items() for target in sorted(targets)
            if layer_of(target) > layer_of(module) and not target.startswith(module + '.')
            and (module, target) not in ALLOWED_UPWARD]


@pytest.fixture(scope='module')
def graph():
    return import_graph(module_files())


def test_every_module_imports_only_from_its_layer_or_below(graph):
    upward = upward_imports(graph)
    assert not upward, '\n'.join(upward)


def test_both_packages_are_checked(graph):
    assert 'paddle_psp.engine.train' in graph and 'paddle_psp_cli.parsers' in graph
    assert 'paddle_psp.core.runtime' in graph['paddle_psp_cli'], 'a function-level import of the command'


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
    assert layer_of('paddle_psp.core.machine') < layer_of('paddle_psp.engine.train')
    assert layer_of('paddle_psp.models.pspnet') > layer_of('paddle_psp.weights.hub')
    assert layer_of('paddle_psp_cli.parsers') < layer_of('paddle_psp.core.errors') < layer_of('paddle_psp_cli')
    with pytest.raises(AssertionError, match='in no layer'):
        layer_of('paddle_psp.somewhere_new')


SYNTHETIC_UPWARD = {
    'absolute': 'import paddle_psp.engine.train\n',
    'from': 'from paddle_psp.engine import hooks\n',
    'relative': 'from ..engine import hooks\n',
    'relative module': 'from ..engine.hooks import LogHook\n',
    'function-level': 'def later():\n    from paddle_psp.evaluation import metrics\n',
    'importlib': 'import importlib\nMODULE = importlib.import_module("paddle_psp.engine.train")\n',
    'command': 'from paddle_psp_cli import main\n',
}


@pytest.mark.parametrize('form', sorted(SYNTHETIC_UPWARD))
def test_an_upward_import_of_every_form_fails_the_check(tmp_path, form):
    """A copy of both packages with one synthetic core module importing upwards: the check must name it."""
    known = module_files()
    synthetic = tmp_path / 'synthetic.py'
    synthetic.write_text(SYNTHETIC_UPWARD[form], encoding='utf-8')
    known['paddle_psp.core.synthetic'] = str(synthetic)
    graph = import_graph(known)
    assert graph['paddle_psp.core.synthetic'], f'{form}: the import was not seen'
    upward = upward_imports(graph)
    assert len(upward) == 1 and upward[0].startswith('paddle_psp.core.synthetic (infrastructure) imports ')


def test_architecture_document_names_only_existing_paths():
    with open(ARCHITECTURE_MD, encoding='utf-8') as f:
        text = f.read()
    paths = set(re.findall(r'`((?:paddle_psp|examples|configs|benchmarks|tests|docs)/[\w./-]*)`', text))
    assert len(paths) >= 20, 'the document should name where each concept lives'
    missing = sorted(p for p in paths if not os.path.exists(os.path.join(REPO_ROOT, p.rstrip('/'))))
    assert not missing, missing
    for name, _ in LAYERS:
        assert name in text.lower(), f'layer {name} not described'
