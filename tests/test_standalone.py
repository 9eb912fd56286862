"""The repository stands alone: its tests pass in a copy with nothing beside it, and nothing names the outside.

The copy holds exactly the files a clone would get (git's tracked files plus the untracked ones it does
not ignore, as they are in the working tree), in an empty temporary folder. The config and zoo tests run
there in a child pytest with an audit hook that records every file opened or listed beside the copy or
beside this checkout (where a developer's reading material lives); any such read fails the test.
"""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS_THAT_READ_REFERENCE_DATA = ['tests/test_configs.py', 'tests/test_zoo.py']

# Installed into the child pytest with -p: records reads under FORBIDDEN that are not under ALLOWED.
GUARD_PLUGIN = textwrap.dedent('''
    import os
    import sys

    def _roots(name):
        return [os.path.realpath(p) for p in os.environ[name].split(os.pathsep) if p]

    FORBIDDEN = _roots('READ_GUARD_FORBIDDEN')
    ALLOWED = _roots('READ_GUARD_ALLOWED')
    EVENTS = {'open', 'os.listdir', 'os.scandir'}
    seen = set()

    def _under(path, roots):
        return any(path == root or path.startswith(root + os.sep) for root in roots)

    def _hook(event, args):
        if event not in EVENTS or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        path = os.path.realpath(os.fsdecode(args[0]))
        if _under(path, FORBIDDEN) and not _under(path, ALLOWED):
            seen.add(path)

    sys.addaudithook(_hook)

    def pytest_sessionfinish(session, exitstatus):
        if seen:
            print('\\nREAD OUTSIDE THE CLONE: ' + ', '.join(sorted(seen)))
            session.exitstatus = 3
''')


def repository_files():
    """Paths (relative) that a clone of this working tree would hold."""
    listed = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                            cwd=REPO_ROOT, capture_output=True, check=True).stdout
    return [path for path in listed.decode().split('\0') if path and os.path.isfile(os.path.join(REPO_ROOT, path))]


@pytest.fixture(scope='module')
def lone_copy(tmp_path_factory):
    """A copy of the repository in an empty folder: <tmp>/empty/<repo name>, nothing beside it."""
    if shutil.which('git') is None or not os.path.exists(os.path.join(REPO_ROOT, '.git')):
        pytest.fail('this test needs git and a git checkout of the repository')
    copy = tmp_path_factory.mktemp('empty') / os.path.basename(REPO_ROOT)
    for path in repository_files():
        target = copy / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(REPO_ROOT, path), target)
    return copy


def run_guarded(copy, tmp_path, test_files):
    """Run pytest on test_files inside copy with the read guard; returns the CompletedProcess."""
    guard_dir = tmp_path / 'guard'
    guard_dir.mkdir()
    (guard_dir / 'read_guard.py').write_text(GUARD_PLUGIN)
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(copy), str(guard_dir)])
    env['READ_GUARD_FORBIDDEN'] = os.pathsep.join([os.path.dirname(REPO_ROOT), str(copy.parent)])
    env['READ_GUARD_ALLOWED'] = os.pathsep.join([str(copy), sys.prefix])
    return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'read_guard', '-p', 'no:cacheprovider',
                           *test_files], cwd=copy, env=env, capture_output=True, text=True, timeout=600)


def test_reference_data_tests_pass_in_a_lone_copy(lone_copy, tmp_path):
    result = run_guarded(lone_copy, tmp_path, TESTS_THAT_READ_REFERENCE_DATA)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert 'READ OUTSIDE THE CLONE' not in output
    assert ' passed' in output and 'failed' not in output


def test_guard_catches_a_read_beside_the_checkout(lone_copy, tmp_path):
    """The guard is not blind: a test that reads a file beside this checkout makes the child run fail."""
    beside = os.path.join(os.path.dirname(REPO_ROOT), os.path.basename(REPO_ROOT) + '.example-beside')
    probe = lone_copy / 'tests' / 'test_probe_reads_beside.py'
    probe.write_text(f'import os\n\ndef test_reads():\n    os.path.exists({beside!r}) and open({beside!r}).read()\n'
                     f'    os.listdir({os.path.dirname(REPO_ROOT)!r})\n')
    try:
        result = run_guarded(lone_copy, tmp_path, ['tests/test_probe_reads_beside.py'])
    finally:
        probe.unlink()
    output = result.stdout + result.stderr
    assert result.returncode == 3, output[-4000:]
    assert 'READ OUTSIDE THE CLONE: ' + os.path.realpath(os.path.dirname(REPO_ROOT)) in output


def test_no_file_names_the_reading_material():
    """No repository file names the developers' reading material beside the checkout."""
    needles = ['..' + '/shared', 'REFERENCE' + '.md', "'shared" + "')", '"shared' + '")']
    offenders = []
    for path in repository_files():
        try:
            with open(os.path.join(REPO_ROOT, path), encoding='utf-8') as f:
                text = f.read()
        except UnicodeDecodeError:
            continue
        offenders += [f'{path}: {needle}' for needle in needles if needle in text]
    assert not offenders, offenders
