"""The ``paddleseg`` console command: one verb per module, imported only when the verb runs.

Up front only the standard library and the package's light modules are imported: ``import paddle_psp``
(light: it registers the models when PaddleSeg is imported) and each verb's parser, in the ``flags`` module of
the layer that owns the verb (:data:`PARSERS`). ``paddleseg --version``, ``paddleseg VERB --help`` and a
mistyped flag therefore answer without Paddle; tests/test_architecture.py keeps this set light.
"""
import argparse
import atexit
import importlib
import os
import platform
import sys
import threading

from paddle_psp import __version__
from paddle_psp.benchmark.flags import benchmark_parser, env_parser
from paddle_psp.core import log
from paddle_psp.core.errors import UserError
from paddle_psp.data.flags import prepare_parser
from paddle_psp.engine.flags import train_parser
from paddle_psp.evaluation.flags import val_parser
from paddle_psp.inference.flags import export_parser, predict_parser
from paddle_psp.quickstart_flags import quickstart_parser
from paddle_psp.weights.flags import download_parser, models_parser
from paddle_psp_cli import quiet

# verb -> (module with a ``main(argv)``, one-line help)
VERBS = {
    'train': ('paddle_psp.engine.train', 'train a model from a YAML config'),
    'val': ('paddle_psp.evaluation.evaluate', 'evaluate a checkpoint (mIoU, Acc, Kappa, Dice), with TTA / sliding window'),
    'predict': ('paddle_psp.inference.predict', 'write colour predictions for images'),
    'export': ('paddle_psp.inference.export', 'export a Paddle Inference model and deploy.yaml'),
    'benchmark': ('paddle_psp.benchmark.cli', 'fill the mIoU / flip / ms+flip table for zoo entries or a checkpoint'),
    'download': ('paddle_psp.weights.hub', 'download and cache a zoo checkpoint or a URL'),
    'prepare': ('paddle_psp.data.prepare', 'convert Cityscapes / VOC+SBD from their official formats'),
    'quickstart': ('paddle_psp.quickstart', 'the built-in demo: small synthetic dataset, train, benchmark'),
    'models': ('paddle_psp.models.summary', 'list the model zoo and its config names (--check: run the models)'),
    'env': ('paddle_psp.benchmark.environment', 'print versions, device, CPU and tuning (for a bug report)'),
}
ALIASES = {'evaluate': 'val'}
# verb -> its parser (the command checks the flags with it before importing the verb's module)
PARSERS = {'train': train_parser, 'val': val_parser, 'predict': predict_parser, 'export': export_parser,
           'benchmark': benchmark_parser, 'download': download_parser, 'prepare': prepare_parser,
           'quickstart': quickstart_parser, 'models': models_parser, 'env': env_parser}
# Verbs that train in their own process: they get the training part of the CPU tuning (core/runtime.py).
TRAINING_VERBS = ('train', 'quickstart')


def version_text():
    """``paddleseg --version``: paddle-psp's version and the installed Paddle's and PaddleSeg's, read from their
    package metadata (no import)."""
    from importlib import metadata

    def installed(*names):
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                pass
        return 'not installed'

    return (f'paddle-psp {__version__} (Paddle {installed("paddlepaddle", "paddlepaddle-gpu")}, PaddleSeg '
            f'{installed("paddleseg")}, Python {platform.python_version()}; paddleseg env says more)')


class _Version(argparse.Action):
    """``--version``: prints :func:`version_text` and exits."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def _top_parser():
    parser = argparse.ArgumentParser(
        prog='paddleseg',
        description='PSPNet and DeepLabV3 (dilated ResNet, OS8) for PaddleSeg on Paddle 3.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='verbs:\n' + '\n'.join(f'  {v:<11} {h}' for v, (_, h) in VERBS.items())
        + '\n\nRun "paddleseg VERB --help" for the options of a verb.')
    parser.add_argument('--version', action=_Version, help="show paddle-psp's, Paddle's and PaddleSeg's versions")
    parser.add_argument('verb', choices=sorted(VERBS) + sorted(ALIASES), metavar='VERB')
    return parser


def main(argv=None):
    """Run ``paddleseg VERB FLAGS...``; returns the exit status (2 for a one-line user error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _top_parser()
    if not argv or argv[0] in ('-h', '--help', '--version'):
        parser.parse_args(argv or ['--help'])
    verb = ALIASES.get(argv[0], argv[0])
    if verb not in VERBS:
        parser.error(f'unknown verb {argv[0]!r}; choose from {", ".join(sorted(VERBS))}')
    args = PARSERS[verb]().parse_args(argv[1:])  # --help and bad flags answered before Paddle loads
    try:
        log.check_level_setting()
    except UserError as err:
        return _refused(verb, err)
    if verb == 'models' and not args.check:  # the zoo listing reads the manifest only
        from paddle_psp.weights import zoo_listing
        return zoo_listing.main(args)
    quiet.silence_known_warnings()
    # Paddle and PaddleSeg first, as before any verb (PaddleSeg's import registers the package's models), then
    # the CPU tuning, which finds Paddle imported.
    importlib.import_module('paddleseg')
    from paddle_psp.core import runtime
    try:
        # Before any tensor op: MKL reads its code path at the first one.
        runtime.apply_cpu_tuning(training=verb in TRAINING_VERBS,
                                 malloc_default=runtime.TRAIN_MALLOC_DEFAULTS.get(verb, 'release'))
        module = importlib.import_module(VERBS[verb][0])
        status = module.main(argv[1:])
        return status if isinstance(status, int) else 0  # some verbs return their results
    except UserError as err:
        return _refused(verb, err)
    except KeyboardInterrupt:
        print(f'paddleseg {verb}: interrupted', file=sys.stderr)
        return 130


def _refused(verb, err):
    """Print ``paddleseg VERB: error: ...`` (one line) for a :class:`UserError`; returns the exit status, 2."""
    print(f'paddleseg {verb}: error: {err}', file=sys.stderr)
    return 2


def console_main():
    """The console script (``paddleseg``, ``python -m paddle_psp_cli``): :func:`main`, then a quick exit.

    Tearing Paddle down at interpreter exit (its C++ singletons, then every module's objects) takes about
    half a second after work that is already complete. A verb that does not train therefore leaves
    through :func:`exit_now`: Python's own exit steps that matter (other threads, atexit handlers, the
    buffered streams) run, then the process ends without the teardown. Training verbs exit normally
    (data-parallel and VisualDL shutdown stay Paddle's). :func:`main` itself never exits, so it can be
    called in-process.
    """
    argv = sys.argv[1:]
    status = main(argv)
    verb = ALIASES.get(argv[0], argv[0]) if argv else ''
    if verb in TRAINING_VERBS:
        sys.exit(status)
    exit_now(status)


def exit_now(status):
    """End the process with ``status`` after the exit steps Python would take, minus its teardown.

    Waits for non-daemon threads (as the interpreter does), runs the atexit handlers (logging's
    shutdown, multiprocessing's worker clean-up, temporary folders), flushes stdout and stderr, then
    calls ``os._exit``.
    """
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be written to it
            pass
    os._exit(status if isinstance(status, int) else 1)
