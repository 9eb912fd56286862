"""The layers of paddle_psp and paddle_psp_cli: every module imports only from its own layer or below, without cycles.

Imports are found in every form: absolute, relative, inside functions and through ``importlib.import_module``.

The layers, lowest first, are those of docs/architecture.md; the document names only modules that exist.
Two more rules: what the command imports before it dispatches (the light set) imports only the standard
library and itself, so that ``paddleseg VERB --help`` needs no Paddle; and no module of core/ or weights/
imports PaddleSeg when it is imported (``paddle_psp.models``, which registers when PaddleSeg is imported,
depends on them: it must never meet one of them half-initialised).
"""
import ast
import os
import re
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('paddle_psp', 'paddle_psp_cli')
ARCHITECTURE_MD = os.path.join(REPO_ROOT, 'docs', 'architecture.md')
# Lowest first. A module belongs to the first layer whose prefix its dotted name starts with.
LAYERS = [
    ('infrastructure', ['paddle_psp.core']),
    ('weights', ['paddle_psp.weights']),
    ('models', ['paddle_psp.models']),
    ('data', ['paddle_psp.data']),
    ('config', ['paddle_psp.config']),
    ('inference', ['paddle_psp.inference']),
    ('evaluation', ['paddle_psp.evaluation']),
    ('engine', ['paddle_psp.engine']),
    ('applications', ['paddle_psp.benchmark', 'paddle_psp.quickstart', 'paddle_psp.quickstart_flags',
                      'paddle_psp.api']),
    ('command', ['paddle_psp_cli']),
]
# `import paddle_psp` registers the models: the package itself sits just above them.
PACKAGE_INIT_LAYER = 'models'
# The only imports allowed to point upwards, each with its reason: none.
ALLOWED_UPWARD = {}
IMPORT_FUNCTIONS = ('import_module', '__import__')
COMMAND = 'paddle_psp_cli'
# Layers whose modules must not import PaddleSeg when they are imported (see the module doc).
NO_PADDLESEG_AT_IMPORT = ('paddle_psp.core', 'paddle_psp.weights')


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


def import_time_nodes(tree):
    """The AST nodes that run when a module is imported: everything outside function bodies."""
    pending = list(ast.iter_child_nodes(tree))
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending.extend(node.decorator_list if not isinstance(node, ast.Lambda) else [])
            continue
        yield node
        pending.extend(ast.iter_child_nodes(node))


def import_time_imports(path, module):
    """Every dotted name (ours or not) that a file imports when it is imported."""
    tree = ast.parse(open(path, encoding='utf-8').read(), path)
    return {name for node in import_time_nodes(tree) for name in named_modules(node, module, path)}


def light_set(known, start=COMMAND):
    """The modules importing ``start`` runs: its import-time imports of our modules, theirs, and their packages."""
    seen, pending = set(), [start]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        pending += [module.rsplit('.', depth)[0] for depth in range(1, module.count('.') + 1)]
        pending += [name for name in import_time_imports(known[module], module) if name in known]
    return seen


def heavy_imports_of_light_set(known):
    """One line per import-time import, in the light set, of anything but the standard library and our modules."""
    ours = {module.partition('.')[0] for module in known}
    return sorted(f'{module} imports {name}' for module in light_set(known)
                  for name in import_time_imports(known[module], module)
                  if name.partition('.')[0] not in ours and name.partition('.')[0] not in sys.stdlib_module_names)


def paddleseg_at_import(known):
    """One line per module of NO_PADDLESEG_AT_IMPORT that imports PaddleSeg when it is imported."""
    return sorted(f'{module} imports {name}' for module, path in known.items()
                  if module.startswith(tuple(prefix + '.' for prefix in NO_PADDLESEG_AT_IMPORT))
                  for name in import_time_imports(path, module) if name.partition('.')[0] == 'paddleseg')


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
    assert 'paddle_psp.engine.train' in graph and 'paddle_psp_cli.quiet' in graph
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
    assert layer_of('paddle_psp.core.flags') < layer_of('paddle_psp.engine.flags') < layer_of('paddle_psp_cli')
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


def test_the_command_imports_only_the_standard_library_before_it_dispatches():
    known = module_files()
    light = light_set(known)
    assert {'paddle_psp', 'paddle_psp.core.flags', 'paddle_psp.engine.flags', 'paddle_psp_cli.quiet'} <= light
    assert 'paddle_psp.engine.train' not in light and 'paddle_psp.models' not in light
    heavy = heavy_imports_of_light_set(known)
    assert not heavy, '\n'.join(heavy)


SYNTHETIC_HEAVY = {
    'third-party': ('import argparse\nimport numpy\n', 'paddle_psp.core.flags imports numpy'),
    'through our module': ('from paddle_psp.weights import pdparams\n', 'paddle_psp.weights.pdparams imports paddle'),
}


@pytest.mark.parametrize('form', sorted(SYNTHETIC_HEAVY))
def test_a_heavy_import_in_the_light_set_fails_the_check(tmp_path, form):
    """core/flags.py replaced by a synthetic module that imports something heavy: the check must name it."""
    text, expected = SYNTHETIC_HEAVY[form]
    known = module_files()
    synthetic = tmp_path / 'flags.py'
    synthetic.write_text(text, encoding='utf-8')
    known['paddle_psp.core.flags'] = str(synthetic)
    assert expected in heavy_imports_of_light_set(known)


def test_core_and_weights_never_import_paddleseg_when_imported():
    found = paddleseg_at_import(module_files())
    assert not found, '\n'.join(found)


@pytest.mark.parametrize('text, caught', [('from paddleseg.cvlibs import manager\n', True),
                                          ('import paddleseg.utils\n', True),
                                          ('def later():\n    import paddleseg\n', False)])
def test_paddleseg_at_import_in_core_fails_the_check(tmp_path, text, caught):
    known = module_files()
    synthetic = tmp_path / 'synthetic.py'
    synthetic.write_text(text, encoding='utf-8')
    known['paddle_psp.core.synthetic'] = str(synthetic)
    found = [line for line in paddleseg_at_import(known) if line.startswith('paddle_psp.core.synthetic imports ')]
    assert bool(found) == caught, found


def test_architecture_document_names_only_existing_paths():
    with open(ARCHITECTURE_MD, encoding='utf-8') as f:
        text = f.read()
    paths = set(re.findall(r'`((?:paddle_psp|examples|configs|benchmarks|tests|docs)/[\w./-]*)`', text))
    assert len(paths) >= 20, 'the document should name where each concept lives'
    missing = sorted(p for p in paths if not os.path.exists(os.path.join(REPO_ROOT, p.rstrip('/'))))
    assert not missing, missing
    for name, _ in LAYERS:
        assert name in text.lower(), f'layer {name} not described'
