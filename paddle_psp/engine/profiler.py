"""``--profiler_options``: PaddleSeg's operator-level training profiler, on ``paddle.profiler``.

PaddleSeg 2.8 (``paddleseg/utils/train_profiler.py``) parses ``"key1=value1; key2=value2"`` with the keys
below, counts one profiler step per training iteration (from 0, after the optimizer step), starts the
profiler at step ``batch_range[0]``, stops it at ``batch_range[1]``, prints the op summary sorted by
``sorted_key``, writes the trace to ``profile_path`` and, with ``exit_on_finished``, ends the process with
status 0. It calls ``paddle.utils.profiler``, which Paddle 3 no longer has; this is the same on
``paddle.profiler`` (the trace is Chrome-tracing JSON).

Keys (defaults): ``batch_range`` ([10, 20]), ``state`` (All: CPU, GPU or All), ``sorted_key`` (total:
calls, total, max, min or ave), ``tracer_option`` (Default; accepted, Paddle 3 has no equivalent),
``profile_path`` (/tmp/profile), ``exit_on_finished`` (true).
"""
import os
import sys

from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.engine.hooks import Hook

DEFAULTS = {'batch_range': [10, 20], 'state': 'All', 'sorted_key': 'total', 'tracer_option': 'Default',
            'profile_path': '/tmp/profile', 'exit_on_finished': True}
CHOICES = {'state': ('CPU', 'GPU', 'All'), 'sorted_key': ('calls', 'total', 'max', 'min', 'ave'),
           'tracer_option': ('Default', 'OpDetail', 'AllOpDetail')}


def parse_profiler_options(text):
    """PaddleSeg's option string as a dict (DEFAULTS filled in); UserError naming a bad key or value.

    Unlike PaddleSeg, which ignores an unusable ``batch_range`` and crashes on an entry without ``=``,
    every bad entry is refused.
    """
    options = dict(DEFAULTS)
    for entry in filter(None, text.replace(' ', '').split(';')):
        key, sep, value = entry.partition('=')
        if not sep or key not in DEFAULTS:
            raise UserError(f'--profiler_options: {entry!r}: expected key=value with a key of {sorted(DEFAULTS)}')
        if key == 'batch_range':
            try:
                start, stop = (int(v) for v in value.strip('[]').split(','))
            except ValueError:
                start = stop = -1
            if not 0 <= start < stop:
                raise UserError(f'--profiler_options: batch_range={value}: expected [start, stop] with '
                                '0 <= start < stop')
            options[key] = [start, stop]
        elif key == 'exit_on_finished':
            options[key] = value.lower() in ('yes', 'true', 't', '1')
        else:
            if key in CHOICES and value not in CHOICES[key]:
                raise UserError(f'--profiler_options: {key}={value}: expected one of {list(CHOICES[key])}')
            options[key] = value
    return options


class ProfilerHook(Hook):
    """Profiles the iterations in ``batch_range`` of this process (see the module docstring).

    Args:
        options (dict): :func:`parse_profiler_options`'s result.
    """

    def __init__(self, options):
        self.options = options
        self.step_id = 0
        self.profiler = None

    def after_step(self, trainer, step):
        import paddle.profiler as profiler  # lazy: only profiled runs need it
        start, stop = self.options['batch_range']
        if self.step_id == start:
            targets = {'CPU': [profiler.ProfilerTarget.CPU], 'GPU': [profiler.ProfilerTarget.GPU]}.get(
                self.options['state'])  # All: every target this build has
            self.profiler = profiler.Profiler(targets=targets)
            self.profiler.start()
        elif self.step_id == stop and self.profiler is not None:
            self.profiler.stop()
            path = self.options['profile_path']
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.profiler.export(path, 'json')
            sorted_by = {'calls': 'CPUTotal', 'total': 'CPUTotal', 'max': 'CPUMax', 'min': 'CPUMin',
                         'ave': 'CPUAvg'}[self.options['sorted_key']]
            self.profiler.summary(sorted_by=getattr(profiler.SortedKeys, sorted_by), op_detail=True)
            logger.info(f'profile of iterations {start + 2}-{stop + 1} written to {path}')
            self.profiler = None
            if self.options['exit_on_finished']:
                sys.exit(0)
        elif self.profiler is not None:
            self.profiler.step()
        self.step_id += 1
