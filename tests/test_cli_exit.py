"""The console script's quick exit: what Python's exit would do still happens, only the teardown is skipped."""
import subprocess
import sys

CHILD = r'''
import atexit, sys, threading, time
from paddle_psp_cli import exit_now

def late_writer():
    time.sleep(0.3)
    sys.stdout.write('thread done\n')

threading.Thread(target=late_writer).start()
atexit.register(lambda: sys.stdout.write('atexit ran\n'))
sys.stdout.write('x' * 200000 + '\n')  # more than a pipe's buffer, still in Python's buffer
sys.stderr.write('to stderr\n')
exit_now(int(sys.argv[1]))
'''


def run_child(status):
    return subprocess.run([sys.executable, '-c', CHILD, str(status)], capture_output=True, text=True, timeout=60)


def test_exit_now_keeps_output_threads_atexit_and_status():
    done = run_child(3)
    assert done.returncode == 3
    lines = done.stdout.splitlines()
    # the thread is waited for before the atexit handlers run, as the interpreter does
    assert lines == ['x' * 200000, 'thread done', 'atexit ran']
    assert done.stderr == 'to stderr\n'
    assert run_child(0).returncode == 0


def test_console_script_exits_with_the_verbs_status(tmp_path):
    """A one-line user error leaves with status 2 through the quick exit, the line intact on stderr."""
    missing = tmp_path / 'missing.yml'
    done = subprocess.run([sys.executable, '-m', 'paddle_psp_cli', 'val', '--config', str(missing),
                           '--model_path', str(tmp_path / 'none.pdparams')],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith('paddleseg val: error: ')]
    assert len(errors) == 1 and 'missing.yml' in errors[0]
