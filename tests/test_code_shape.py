"""The shape of the code in paddle_psp and paddle_psp_cli: no dated measurements in it (docs/performance.md
keeps them, with the CPU and script of each)."""
import os
import re

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('paddle_psp', 'paddle_psp_cli')
DATE = re.compile(r'\b20\d\d-[01]\d-[0-3]\d\b')


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
