"""The package imports and its verbs start where ``fcntl`` and ``os.sched_getaffinity`` do not exist (Windows;
``sched_getaffinity`` also lacks on macOS), simulated in a child process that hides both."""
import os
import subprocess
import sys
import textwrap

# Run first in the child: no os.sched_getaffinity, and `import fcntl` fails as it does on Windows.
HIDE = textwrap.dedent('''
    import importlib.abc, os, sys
    if hasattr(os, 'sched_getaffinity'):
        del os.sched_getaffinity

    class NoFcntl(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == 'fcntl':
                raise ImportError('No module named fcntl (hidden by the test)')
            return None

    sys.modules.pop('fcntl', None)
    sys.meta_path.insert(0, NoFcntl())
''')

CHECKS = textwrap.dedent('''
    import contextlib, importlib, io, os, tempfile
    import paddle_psp
    import paddle_psp_cli as cli
    from paddle_psp.core import files, machine, runtime
    from paddle_psp.weights import hub
    for module, _ in cli.VERBS.values():
        importlib.import_module(module)
    assert 'fcntl' not in sys.modules
    assert machine.usable_cpus() >= 1 and runtime.physical_cores() >= 1
    runtime.apply_cpu_tuning()
    with tempfile.TemporaryDirectory() as folder:
        with files.file_lock(os.path.join(folder, 'x.lock')):
            pass
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            status = cli.main(['download', os.path.join(folder, 'missing.pdparams')])
        assert status == 2 and 'no such file' in err.getvalue(), (status, err.getvalue())
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            cli.main(['download', '--help'])
        except SystemExit as exit:
            assert exit.code == 0
    assert 'NAME|URL' in out.getvalue()
    print('PORTABLE')
''')


def test_imports_and_verbs_work_without_fcntl_and_sched_getaffinity(tmp_path):
    env = dict(os.environ, SEG_HOME=str(tmp_path / 'seg_home'))
    result = subprocess.run([sys.executable, '-c', HIDE + CHECKS], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'PORTABLE' in result.stdout
