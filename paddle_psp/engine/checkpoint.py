"""Training checkpoints that are complete or absent: ``save_dir/iter_N/{model.pdparams, model.pdopt,
checkpoint.json}``.

A checkpoint is written into a hidden temporary directory beside it, ``checkpoint.json`` last, every file
flushed to disk, then renamed to ``iter_N`` in one step. A kill at any moment leaves either no ``iter_N``
or a complete one (plus a ``.tmp_*`` directory that the next run removes). Pruning
moves a checkpoint into a ``.tmp_*`` directory before deleting it, so no half-deleted ``iter_N`` remains.

PaddleSeg's tools/train.py writes ``iter_N/{model.pdparams, model.pdopt}`` without ``checkpoint.json``; since
ours never shows an ``iter_N`` without it, such a folder is PaddleSeg's: its iteration is the N of the folder
name (as PaddleSeg's resume reads it), its optimizer state keys are the saving process' internal parameter
names, which its ``model.pdparams`` records (``paddle.save`` keeps each tensor's name).

A full disk stops a save with a one-line UserError and leaves the earlier checkpoints as they were.

Every run has an id (``run_id`` in ``checkpoint.json``), kept by a resumed run: pruning and ``best_model``
concern only the checkpoints of the run that writes them.
"""
import dataclasses
import json
import os
import re
import shutil
import tempfile
import uuid

import paddle

from paddle_psp.core.atomic import fsync_path, replace_dir, umask
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.core.outputs import writing
from paddle_psp.weights.pdparams import load_file

MODEL_FILE = 'model.pdparams'
OPTIMIZER_FILE = 'model.pdopt'
EMA_FILE = 'ema_model.pdparams'  # --use_ema, as PaddleSeg names it
INFO_FILE = 'checkpoint.json'
BEST_DIR = 'best_model'
TEMP_PREFIX = '.tmp_'
ITER_DIR = re.compile(r'^iter_(\d+)$')


def save_checkpoint(save_dir, name, model_state, optimizer_state, info, extra_states=None):
    """Atomically write checkpoint ``save_dir/name``, replacing an older one of that name.

    Args:
        save_dir (str): Output directory (created if needed).
        name (str): ``iter_N`` or ``best_model``.
        model_state (dict or None): The model's state dict; None for none.
        optimizer_state (dict or None): Optimizer (and LR scheduler, loss scaler) state; None for none.
        info (dict): JSON-serialisable facts (``iter``, ``metrics``, ...) written to ``checkpoint.json``.
        extra_states (dict, optional): ``{file name: state dict}`` saved beside them (e.g. the EMA's
            ``ema_model.pdparams``). Default: None.

    Returns:
        str: The checkpoint directory.

    Raises:
        UserError: The disk is full or not writable (the temporary directory is removed, older checkpoints
            stay as they were).
    """
    final = os.path.join(save_dir, name)
    with writing(final):
        os.makedirs(save_dir, exist_ok=True)
        _write_atomically(save_dir, name, final, model_state, optimizer_state, info, extra_states)
    return final


def _write_atomically(save_dir, name, final, model_state, optimizer_state, info, extra_states=None):
    temp = tempfile.mkdtemp(prefix=f'{TEMP_PREFIX}{name}_', dir=save_dir)
    try:
        os.chmod(temp, 0o777 & ~umask())  # mkdtemp makes it private; a checkpoint is an ordinary folder
        states = {MODEL_FILE: model_state, OPTIMIZER_FILE: optimizer_state, **(extra_states or {})}
        for file_name, state in states.items():
            if state is not None:
                write_state(state, os.path.join(temp, file_name))
        for entry in os.listdir(temp):
            fsync_path(os.path.join(temp, entry))
        with open(os.path.join(temp, INFO_FILE + '.part'), 'w') as file:
            json.dump(info, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(os.path.join(temp, INFO_FILE + '.part'), os.path.join(temp, INFO_FILE))
        fsync_path(temp)
        replace_dir(temp, final, trash_prefix=f'{TEMP_PREFIX}old_')
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_path(save_dir)


def write_state(state, path):
    """``paddle.save`` one state dict (a seam where tests inject a full disk or a kill)."""
    paddle.save(state, path)


def load_checkpoint(path, need_optimizer=True):
    """Read a checkpoint directory written by :func:`save_checkpoint`.

    Args:
        path (str): ``save_dir/iter_N`` (or ``best_model``).
        need_optimizer (bool, optional): Require ``model.pdopt`` (resuming). Default: True.

    Returns:
        tuple: (model state dict, optimizer state dict or None, info dict).

    Raises:
        UserError: The directory is missing, incomplete or inconsistent with its name.
    """
    info = read_info(path)
    if need_optimizer:
        return _load_files(path, (MODEL_FILE, OPTIMIZER_FILE)) + (info,)
    return _load_files(path, (MODEL_FILE,)) + (None, info)


def _load_files(path, file_names):
    """What ``paddle.load`` returns for each of ``file_names`` in checkpoint directory ``path``, read by the
    safe reader (:func:`paddle_psp.weights.pdparams.load_file`); UserError if one is absent, damaged or
    refused."""
    for file_name in file_names:
        if not os.path.isfile(os.path.join(path, file_name)):
            raise UserError(f'{path}: incomplete checkpoint (no {file_name}); expected a directory written by '
                            'paddleseg train')
    return tuple(load_file(os.path.join(path, file_name)) for file_name in file_names)


@dataclasses.dataclass
class ResumeState:
    """What ``--resume_model save_dir/iter_N`` continues from.

    Every random stream of training derives from ``seed`` and the iteration (see
    :mod:`paddle_psp.engine.loader`), so these fields are all a run needs to go on exactly.

    Attributes:
        path (str): The checkpoint directory.
        iteration (int): Iterations done.
        seed (int): The run's seed.
        batch_size (int or None): Images per rank of the run (None: not recorded).
        nranks (int or None): Data-parallel ranks of the run (None: not recorded).
        param_names (dict or None): :func:`parameter_names` of the saving process (None: not recorded).
        model_state (dict): The weights.
        optimizer_state (dict): Optimizer, LR scheduler and (fp16) GradScaler state.
        run_id (str or None): The run the checkpoint belongs to (None: not recorded).
        info (dict): The whole ``checkpoint.json`` (``best``, ``vdl_file``, ...).
        states (dict): ``{file name: state dict}`` of the hooks' files (every ``.pdparams`` file beside
            ``model.pdparams``, e.g. the ``--use_ema`` average); a hook reads its own with :meth:`state_file`.
    """

    path: str
    iteration: int
    seed: int
    batch_size: int
    nranks: int
    param_names: dict
    model_state: dict
    optimizer_state: dict
    run_id: str = None
    info: dict = dataclasses.field(default_factory=dict)
    states: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path):
        """Read checkpoint directory ``path`` (see :func:`load_checkpoint`), ours or PaddleSeg's ``iter_N``;
        UserError if it is unusable."""
        if is_paddleseg_checkpoint(path):
            return cls.load_paddleseg(path)
        model_state, optimizer_state, info = load_checkpoint(path)
        return cls(path=path, iteration=info['iter'], seed=info.get('seed', 0), batch_size=info.get('batch_size'),
                   nranks=info.get('nranks'), param_names=info.get('param_names'), model_state=model_state,
                   optimizer_state=optimizer_state, run_id=info.get('run_id'), info=info, states=_load_hook_states(path))

    @classmethod
    def load_paddleseg(cls, path):
        """Read an ``iter_N`` folder written by PaddleSeg's tools/train.py (no ``checkpoint.json``): the
        iteration from its name; batch size and ranks unknown; seed 0 (its data order cannot be repeated)."""
        model_state, optimizer_state = _load_files(path, (MODEL_FILE, OPTIMIZER_FILE))
        iteration = int(ITER_DIR.match(os.path.basename(os.path.normpath(path))).group(1))
        names = {key: tensor.name for key, tensor in model_state.items() if getattr(tensor, 'name', None)}
        logger.info(f'{path}: a PaddleSeg tools/train.py checkpoint (no {INFO_FILE}): iter {iteration} from '
                    'its name')
        return cls(path=path, iteration=iteration, seed=0, batch_size=None, nranks=None,
                   param_names=names if len(names) == len(model_state) else None, model_state=model_state,
                   optimizer_state=optimizer_state, states=_load_hook_states(path))


    def state_file(self, file_name):
        """The state a hook saved as ``file_name`` in this checkpoint, or None when it holds no such file."""
        return self.states.get(file_name)


def _load_hook_states(path):
    """``{file name: state dict}`` of the hooks' files in checkpoint directory ``path`` (ours or PaddleSeg's):
    every ``.pdparams`` file but the model's."""
    names = sorted(name for name in os.listdir(path) if name.endswith('.pdparams') and name != MODEL_FILE)
    return dict(zip(names, _load_files(path, names)))


def is_paddleseg_checkpoint(path):
    """Whether ``path`` is an ``iter_N`` folder as PaddleSeg's tools/train.py writes it: model.pdparams and
    model.pdopt, no checkpoint.json."""
    files = set(os.listdir(path)) if os.path.isdir(path) else set()
    return bool(ITER_DIR.match(os.path.basename(os.path.normpath(path)))) and INFO_FILE not in files and \
        {MODEL_FILE, OPTIMIZER_FILE} <= files


def read_info(path):
    """The ``checkpoint.json`` of checkpoint directory ``path``; UserError if absent, unreadable or wrong."""
    if not os.path.isdir(path):
        raise UserError(f'{path}: no such checkpoint directory; expected save_dir/iter_N')
    info_path = os.path.join(path, INFO_FILE)
    if not os.path.isfile(info_path):
        raise UserError(f'{path}: incomplete checkpoint (no {INFO_FILE}: its save was interrupted or it was '
                        'not written by paddleseg train); expected a complete save_dir/iter_N (or PaddleSeg\'s '
                        f'iter_N with {MODEL_FILE} and {OPTIMIZER_FILE})')
    try:
        with open(info_path) as file:
            info = json.load(file)
        iteration = int(info['iter'])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f'{info_path}: unreadable checkpoint info: {err}') from None
    match = ITER_DIR.match(os.path.basename(os.path.normpath(path)))
    if match and int(match.group(1)) != iteration:
        raise UserError(f'{info_path}: says iter {iteration} but the directory is {os.path.basename(path)}')
    return info


def read_best(save_dir, run_id=None, name=BEST_DIR):
    """The ``checkpoint.json`` of ``save_dir/best_model`` (or ``save_dir/name``: ``iter``, ``mIoU``,
    ``Acc``), or {} when there is none (or, given ``run_id``, when it belongs to another run)."""
    best_dir = os.path.join(save_dir, name)
    if not os.path.isfile(os.path.join(best_dir, INFO_FILE)):
        return {}
    info = read_info(best_dir)
    return info if run_id is None or info.get('run_id') == run_id else {}


def new_run_id():
    """A fresh run's id (recorded in its checkpoints, kept when it is resumed)."""
    return uuid.uuid4().hex[:12]


def list_checkpoints(save_dir, run_id=None):
    """``[(iter, path)]`` of the complete ``iter_N`` checkpoints in ``save_dir``, oldest first (given
    ``run_id``: only that run's)."""
    if not os.path.isdir(save_dir):
        return []
    found = []
    for entry in os.listdir(save_dir):
        match = ITER_DIR.match(entry)
        path = os.path.join(save_dir, entry)
        if match and os.path.isfile(os.path.join(path, INFO_FILE)):
            if run_id is None or run_of(path) == run_id:
                found.append((int(match.group(1)), path))
    return sorted(found)


def run_of(path):
    """The ``run_id`` a checkpoint directory records, or None (unreadable or not recorded)."""
    try:
        return read_info(path).get('run_id')
    except UserError:
        return None


def other_runs(save_dir, run_id=None):
    """Names of the checkpoint directories in ``save_dir`` (``iter_N`` complete or not, ``best_model``)
    that do not belong to run ``run_id`` (None: a fresh run, to whom none belongs), by iteration."""
    if not os.path.isdir(save_dir):
        return []
    iters = sorted((int(m.group(1)), m.group(0)) for m in map(ITER_DIR.match, os.listdir(save_dir)) if m)
    names = [name for _, name in iters] + ([BEST_DIR] if os.path.isdir(os.path.join(save_dir, BEST_DIR)) else [])
    return [name for name in names if run_id is None or run_of(os.path.join(save_dir, name)) != run_id]


def latest_checkpoint(save_dir):
    """The newest complete ``iter_N`` in ``save_dir`` (``--resume_model auto``), or None when there is none."""
    found = list_checkpoints(save_dir)
    return found[-1][1] if found else None


def prune_checkpoints(save_dir, keep, run_id=None):
    """Delete run ``run_id``'s oldest complete ``iter_N`` checkpoints beyond its newest ``keep`` (keep <= 0:
    keep all); other runs' checkpoints are never touched."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(save_dir, run_id)[:-keep]:
        doomed = tempfile.mkdtemp(prefix=f'{TEMP_PREFIX}pruned_', dir=save_dir)
        os.rename(path, os.path.join(doomed, os.path.basename(path)))  # gone from view in one step
        shutil.rmtree(doomed)


def remove_temporaries(save_dir):
    """Delete what interrupted saves left behind (hidden ``.tmp_*`` directories)."""
    if not os.path.isdir(save_dir):
        return
    for entry in os.listdir(save_dir):
        if entry.startswith(TEMP_PREFIX):
            shutil.rmtree(os.path.join(save_dir, entry), ignore_errors=True)


def parameter_names(layer):
    """``{structured name: internal name}`` of ``layer``'s parameters; optimizer state is keyed by the
    internal names (``conv2d_3.w_0``), which depend on how many layers the process created before."""
    return {name: param.name for name, param in layer.named_parameters()}


def remap_optimizer_state(state, saved_names, current_names):
    """Rename the accumulators in optimizer ``state`` from the saving process' internal parameter names to
    this process' ones (matched through the structured names). Returns a new dict.

    Args:
        state (dict): Optimizer state dict, e.g. ``{'conv2d_0.w_0_velocity_0': tensor, 'LR_Scheduler': {...}}``.
        saved_names (dict): :func:`parameter_names` when the state was saved.
        current_names (dict): :func:`parameter_names` now.
    """
    renames = {old: current_names[key] for key, old in saved_names.items() if key in current_names}
    if all(old == new for old, new in renames.items()):
        return dict(state)

    def rename(key):
        for cut in [i for i, char in enumerate(key) if char == '_'][::-1]:
            if key[:cut] in renames:
                return renames[key[:cut]] + key[cut:]
        return renames.get(key, key)

    return {rename(k): ({rename(n): t for n, t in v.items()} if k == 'master_weights' else v)
            for k, v in state.items()}
