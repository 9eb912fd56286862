"""The shape of the code in paddle_psp and paddle_psp_cli: small modules and functions, no dated measurements
in it (docs/performance.md keeps them, with the CPU and script of each), and a benchmarks/README.md that lists
every benchmark."""
import ast
import os
import re

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('paddle_psp', 'paddle_psp_cli')
DATE = re.compile(r'\b20\d\d-[01]\d-[0-3]\d\b')
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 50
# Modules still over MAX_MODULE_LINES, each with the change that brings it under (issue 21). The list may only
# shrink: a module that gets under the limit must leave it.
KNOWN_LONG_MODULES = {}


def package_files():
    """Paths of every Python module of the packages."""
    return sorted(os.path.join(folder, name) for package in PACKAGES
                  for folder, _, names in os.walk(os.path.join(REPO_ROOT, package))
                  for name in names if name.endswith('.py'))


def dated_lines(text):
    """The lines of ``text`` that hold a calendar date (a dated measurement, in code)."""
    return [line.strip() for line in text.splitlines() if DATE.search(line)]


def test_the_date_check_can_fail():
    assert dated_lines('x = 1\n"""Measured on 2026-11-29: 0.5 s."""\n') == ['"""Measured on 2026-11-29: 0.5 s."""']
    assert not dated_lines('"""Measured: see docs/performance.md."""\n')


@pytest.mark.parametrize('path', package_files(), ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_no_dated_measurements_in_code(path):
    with open(path, encoding='utf-8') as f:
        found = dated_lines(f.read())
    assert not found, f'{path}: move dated figures to docs/performance.md: {found}'


def test_benchmarks_readme_lists_every_script():
    folder = os.path.join(REPO_ROOT, 'benchmarks')
    with open(os.path.join(folder, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    scripts = [os.path.relpath(os.path.join(path, name), folder).replace(os.sep, '/')
               for path, _, names in os.walk(folder) for name in names
               if name.endswith('.py') and '__pycache__' not in path]
    assert len(scripts) >= 10
    missing = sorted(script for script in scripts if f'`{script}`' not in text)
    assert not missing, f'benchmarks/README.md does not list {missing}'


def long_functions(text, limit=MAX_FUNCTION_LINES):
    """``name (N lines)`` of every function or method of ``text`` longer than ``limit`` lines."""
    return [f'{node.name} ({node.end_lineno - node.lineno + 1} lines)' for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


def test_the_function_length_check_can_fail():
    body = ''.join(f'    x{i} = {i}\n' for i in range(MAX_FUNCTION_LINES))
    assert long_functions('def long():\n' + body) == [f'long ({MAX_FUNCTION_LINES + 1} lines)']
    assert not long_functions('def short():\n' + body[:-len(body.splitlines()[-1]) - 1])


@pytest.mark.parametrize('path', package_files(), ids=lambda p: os.path.relpath(p, REPO_ROOT))
def test_small_modules_and_functions(path):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    assert not long_functions(text), f'{path}: functions over {MAX_FUNCTION_LINES} lines: {long_functions(text)}'
    relative = os.path.relpath(path, REPO_ROOT).replace(os.sep, '/')
    lines = text.count('\n')
    if relative in KNOWN_LONG_MODULES:
        assert lines > MAX_MODULE_LINES, f'{relative}: now {lines} lines; remove it from KNOWN_LONG_MODULES'
    else:
        assert lines <= MAX_MODULE_LINES, f'{relative}: {lines} lines; split it (at most {MAX_MODULE_LINES})'
