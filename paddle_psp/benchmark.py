"""``paddleseg benchmark``: fill the mIoU / mIoU (flip) / mIoU (ms+flip) table for zoo entries or a checkpoint.

One pass per image: the forward passes of the ms+flip set (scales 0.75 1.0 1.25 and a horizontal flip by
default) also give the single-scale column (scale 1.0, no flip) and the flip column (scale 1.0, with and
without the flip), so the three columns cost 6 forward passes per image instead of 9 in three separate
``paddleseg val`` runs, with the very same numbers. With ``--legacy_tta`` (PaddleSeg's TTA before PR #2933,
which produced the published ms+flip column) the scales chain, so scale 1.0 of the ms+flip set is not the
plain image; the scale-1.0 pair then runs on its own: 8 forward passes per image by default.

Outputs in ``--save_dir`` (default ``./output/benchmark``):

* ``benchmark.json``: per entry and column mIoU, Acc, Kappa, Dice, per-class IoU and the confusion
  matrix; timings (images/s, seconds per forward pass), peak memory, versions and device.
* ``benchmark.md``: the table in the layout of PaddleSeg's model-zoo READMEs, each number followed by
  its difference to the published one (zoo entries only).
* ``progress/<entry>.jsonl``: one line per scored image (its confusion-matrix increments), appended and
  fsynced, so a killed run continues with ``--resume`` where it stopped, each image counted once.

Examples::

    paddleseg benchmark --zoo all --dataset cityscapes --data_root data/cityscapes
    paddleseg benchmark --zoo pspnet_resnet50_os8_cityscapes_1024x512_80k --limit 50
    paddleseg benchmark --config my.yml --model_path output/iter_1000/model.pdparams --resume
"""
import argparse
import collections
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import re
import time

import numpy as np
import paddle

import paddle_psp
from paddle_psp.core import atomic
from paddle_psp.weights import hub, zoo
from paddle_psp.engine import metrics
from paddle_psp.inference import tta as infer
from paddle_psp.config import build_val_dataset, load_config
from paddle_psp.inference.predictor import fast_forward
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.core.util import (LockBusy, Progress, cpu_name, file_lock, has_gpu, peak_rss_bytes, reset_peak_rss,
                                  sha256_file, usable_cpus)
from paddle_psp.data.datasets import IGNORE_INDEX, class_names, dataset_kind
from paddle_psp.weights.state_dict import load_for_eval

COLUMNS = ('miou', 'miou_flip', 'miou_ms_flip')
COLUMN_TITLES = {'miou': 'mIoU', 'miou_flip': 'mIoU (flip)', 'miou_ms_flip': 'mIoU (ms+flip)'}
DEFAULT_SCALES = (0.75, 1.0, 1.25)
DEFAULT_SAVE_DIR = os.path.join('.', 'output', 'benchmark')
RESULTS_JSON = 'benchmark.json'
RESULTS_MARKDOWN = 'benchmark.md'
PROGRESS_DIR = 'progress'
FORMAT_VERSION = 1
SINGLE = infer.Augmentation(1.0, False, False)


# ----------------------------------------------------------------------------------------------- what to run
@dataclasses.dataclass(frozen=True)
class Target:
    """One model to benchmark.

    Attributes:
        name (str): The zoo name, or a label for a checkpoint (names the progress file).
        config (str): YAML config whose ``val_dataset`` and ``model`` are used.
        checkpoint (str): A path, URL or zoo name for :func:`paddle_psp.weights.hub.resolve`.
        entry (dict|None): The zoo manifest entry (published numbers, links); None for other checkpoints.
    """
    name: str
    config: str
    checkpoint: str
    entry: dict = None


def zoo_targets(name=None, model=None, dataset=None, backbone=None):
    """The zoo entries to benchmark: ``name`` (or 'all' / None for every entry) narrowed by the filters.

    Raises:
        UserError: An unknown name or filter value (listing the valid ones), or nothing left to run.
    """
    if name in (None, 'all'):
        selected = zoo.entries(model=model, dataset=dataset, backbone=backbone)
    else:
        selected = [zoo.get(name)]
        wanted = {'model': model, 'dataset': dataset, 'backbone': backbone}
        for field, value in wanted.items():
            if value is not None and selected[0][field].lower() != value.lower():
                raise UserError(f'--{field} {value}: zoo entry {name} has {field} {selected[0][field]}; '
                                'expected a filter it matches, or --zoo all')
    if not selected:
        raise UserError(f'--zoo {name or "all"}: no entry has model={model}, dataset={dataset}, '
                        f'backbone={backbone}; expected filters that some entry matches (see python -m '
                        'paddle_psp.weights.zoo)')
    return [Target(e['name'], zoo.config_path(e['name']), e['name'], e) for e in selected]


def checkpoint_target(config, checkpoint, name=None):
    """A :class:`Target` for any config and checkpoint; ``name`` defaults to the config's file stem."""
    label = name or os.path.splitext(os.path.basename(config))[0]
    if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9._-]*', label):
        raise UserError(f'--name {label!r}: expected letters, digits, ".", "_" or "-" (it names a file)')
    return Target(label, os.path.abspath(config), checkpoint, None)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How every target is benchmarked.

    Attributes:
        scales (tuple[float]): Scales of the ms+flip column.
        legacy (bool): PaddleSeg's pre-PR-#2933 TTA for the flip and ms+flip columns.
        is_slide (bool|None): Sliding-window inference (None: the config's ``test_config`` decides).
        crop_size (tuple|None): Window (w, h) (None: from ``test_config``).
        stride (tuple|None): Window stride (w, h) (None: from ``test_config``).
        limit (int|None): Score only the first ``limit`` val images.
        data_root (str|None): Replaces ``val_dataset.dataset_root`` of every config.
        opts (tuple[str]): ``key=value`` config overrides.
        dygraph (bool): Run the dygraph model instead of the fast CPU path.
        log_every (int): Without a terminal: one progress line every this many images.
    """
    scales: tuple = DEFAULT_SCALES
    legacy: bool = False
    is_slide: bool = None
    crop_size: tuple = None
    stride: tuple = None
    limit: int = None
    data_root: str = None
    opts: tuple = ()
    dygraph: bool = False
    log_every: int = 10

    def __post_init__(self):
        object.__setattr__(self, 'scales', infer.check_scales(self.scales, '--scales'))
        if len(set(self.scales)) != len(self.scales):
            raise UserError(f'--scales {" ".join(f"{s:g}" for s in self.scales)}: a scale is repeated; '
                            'expected each scale once')
        if self.limit is not None and self.limit < 1:
            raise UserError(f'--limit {self.limit}: expected a positive number of images')
        if self.log_every < 1:
            raise UserError(f'--log_every {self.log_every}: expected a positive number of images')
        if self.data_root is not None and not os.path.isdir(self.data_root):
            raise UserError(f'--data_root {self.data_root}: no such directory; expected a prepared dataset')

    def plan(self, test_config):
        """The :class:`ColumnPlan` for a config: window settings from the flags, else its ``test_config``."""
        window = {key: getattr(self, key) if getattr(self, key) is not None else test_config.get(key)
                  for key in ('is_slide', 'crop_size', 'stride')}
        crop_size, stride = (infer.check_window(window['crop_size'], window['stride']) if window['is_slide']
                             else (None, None))
        return ColumnPlan(self.scales, self.legacy, crop_size, stride)


@dataclasses.dataclass(frozen=True)
class ColumnPlan:
    """The augmentations of the three columns and how one image's forward passes are shared among them.

    Attributes:
        scales (tuple[float]): Scales of the ms+flip column.
        legacy (bool): Pre-PR-#2933 TTA (chained rescaling, averaged softmax) for flip and ms+flip.
        crop_size (tuple|None): Sliding window (w, h); None for whole-image inference.
        stride (tuple|None): Sliding-window stride (w, h).
    """
    scales: tuple = DEFAULT_SCALES
    legacy: bool = False
    crop_size: tuple = None
    stride: tuple = None

    def column_augmentations(self):
        """Column -> the augmentations a separate ``paddleseg val`` run of that column averages."""
        return {'miou': [SINGLE], 'miou_flip': infer.augmentations((1.0,), True),
                'miou_ms_flip': infer.augmentations(self.scales, True)}

    def forwards_per_image(self):
        """Forward passes (images through the network) this plan runs per image."""
        columns = self.column_augmentations()
        if self.legacy:
            return len(columns['miou_flip']) + len(columns['miou_ms_flip'])
        return len({aug for augs in columns.values() for aug in augs})

    def separate_forwards_per_image(self):
        """Forward passes per image of three separate runs, one per column."""
        return sum(len(augs) for augs in self.column_augmentations().values())

    def logits(self, forward, image):
        """Column -> averaged logits (legacy flip / ms+flip: probabilities), float32 (C, H, W).

        Each column equals what ``paddleseg val`` with that column's flags computes for the image.
        """
        columns = self.column_augmentations()
        if not self.legacy:
            # ms+flip first, so the union keeps its order and its sum adds up as a separate run does
            ordered = {name: columns[name] for name in ('miou_ms_flip', 'miou', 'miou_flip')}
            return infer.subset_logits(forward, image, ordered, None, self.crop_size, self.stride)
        plain = dict(infer.iter_augmented_logits(forward, image, columns['miou_flip'], None, self.crop_size,
                                                 self.stride))
        chained = infer.subset_logits(forward, image, {'ms': columns['miou_ms_flip']}, None, self.crop_size,
                                      self.stride, legacy=True)['ms']
        probabilities = [infer.softmax(plain[aug][np.newaxis])[0] for aug in columns['miou_flip']]
        return {'miou': plain[SINGLE], 'miou_flip': sum(probabilities) / len(probabilities),
                'miou_ms_flip': chained}

    def describe(self):
        """The plan as JSON-friendly dict (also part of the progress fingerprint)."""
        return {'scales': list(self.scales), 'flips': ['none', 'horizontal'], 'legacy_tta': self.legacy,
                'sliding_window': None if self.crop_size is None else
                {'crop_size': list(self.crop_size), 'stride': list(self.stride)},
                'columns': {name: [list(aug) for aug in augs]
                            for name, augs in self.column_augmentations().items()},
                'forwards_per_image': self.forwards_per_image(),
                'forwards_per_image_separate_runs': self.separate_forwards_per_image()}


def image_confusions(plan, forward, sample, num_classes, ignore_index):
    """Column -> (C, C) int64 confusion matrix of one val sample (rows labels, columns predictions)."""
    label = np.asarray(sample['label'])
    confusions = {}
    for column, logits in plan.logits(forward, sample['img']).items():
        pred = logits.argmax(axis=0).astype(np.int32)
        if pred.size != label.size:
            raise UserError(f'val_dataset: prediction {list(pred.shape)} and label {list(label.shape)} differ '
                            'in size; expected val transforms that record every resize / padding')
        confusions[column] = metrics.confusion_matrix(pred, label, num_classes, ignore_index)
    return confusions


# ------------------------------------------------------------------------------------------------ forward
def build_forward(model, dygraph):
    """The forward callable the benchmark times: the fast CPU path unless ``dygraph`` (the one switch)."""
    return fast_forward(model, fast=not dygraph)


class TimedForward:
    """Wraps a forward callable, adding up its calls, the images through it and the seconds spent."""

    def __init__(self, forward):
        self.forward = forward
        self.calls = 0
        self.images = 0
        self.seconds = 0.0

    def __call__(self, batch):
        start = time.perf_counter()
        logits = infer.logits_array(self.forward(batch))  # to host memory: the work is done
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.images += int(batch.shape[0])
        return logits

    def snapshot(self):
        """(calls, images, seconds) so far."""
        return self.calls, self.images, self.seconds


# ------------------------------------------------------------------------------------------ progress file
class ProgressLog:
    """The per-image records of one target: a JSON-lines file, header first, one line per scored image.

    A line counts only once it is complete (newline-terminated); each is written with one ``write`` and
    fsynced before the next image starts. A torn last line (a kill mid-write) is cut off on reopening.
    An exclusive lock keeps two processes from writing the same file.

    Args:
        path (str): The ``.jsonl`` file.
        fingerprint (dict): What the records depend on; reopening with another fingerprint is refused.
    """

    def __init__(self, path, fingerprint):
        self.path = path
        self.fingerprint = fingerprint
        self._file = None

    def open(self):
        """Lock the file, recover it, and return the records already in it (index -> record).

        Raises:
            UserError: Another process holds the file, it was made with other settings, or it is corrupt.
        """
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        created = not os.path.exists(self.path)
        self._file = open(self.path, 'a+b')
        try:
            self._lock()
            if created:
                atomic.fsync_path(os.path.dirname(self.path))
            lines = self._complete_lines()
            if not lines:
                self._append({'fingerprint': self.fingerprint, 'format': FORMAT_VERSION})
                return {}
            self._check_header(lines[0])
            return self._records(lines[1:])
        except BaseException:
            self.close()
            raise

    def _lock(self):
        self._held = contextlib.ExitStack()
        try:
            self._held.enter_context(file_lock(self.path + '.lock', wait=False))
        except LockBusy:
            raise UserError(f'{self.path}: another benchmark process is writing it; expected one process per '
                            'output directory') from None

    def _complete_lines(self):
        """The newline-terminated lines; a torn tail is truncated away (and fsynced)."""
        self._file.seek(0)
        data = self._file.read()
        complete = data[:data.rfind(b'\n') + 1]
        if len(complete) != len(data):
            self._file.truncate(len(complete))
            os.fsync(self._file.fileno())
        return complete.splitlines()

    def _check_header(self, line):
        header = self._parse(line, 1)
        recorded = header.get('fingerprint') if isinstance(header, dict) else None
        if recorded != json.loads(json.dumps(self.fingerprint)):
            differing = sorted(k for k in set(recorded or {}) | set(self.fingerprint)
                               if (recorded or {}).get(k) != json.loads(json.dumps(self.fingerprint.get(k))))
            raise UserError(f'{self.path}: was recorded with other settings ({", ".join(differing)} differ); '
                            'expected the same config, checkpoint and options to --resume, or --overwrite')

    def _records(self, lines):
        records = {}
        for number, line in enumerate(lines, 2):
            record = self._parse(line, number)
            records.setdefault(int(record['index']), record)
        return records

    def _parse(self, line, number):
        try:
            return json.loads(line)
        except ValueError:
            raise UserError(f'{self.path}:{number}: not a JSON record (the file was edited or damaged); '
                            'expected --overwrite to start this entry again') from None

    def append(self, record):
        """Write one record durably."""
        self._append(record)

    def _append(self, record):
        self._file.write((json.dumps(record, separators=(',', ':')) + '\n').encode())
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self):
        """Release the lock and close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self._held.close()


def encode_confusion(matrix):
    """A (C, C) count matrix as ``[[flat indices of non-zero cells], [their counts]]``."""
    flat = np.asarray(matrix).reshape(-1)
    nonzero = np.flatnonzero(flat)
    return [nonzero.tolist(), flat[nonzero].tolist()]


def decode_confusion(encoded, num_classes):
    """Inverse of :func:`encode_confusion`."""
    flat = np.zeros(num_classes * num_classes, np.int64)
    flat[np.asarray(encoded[0], np.int64)] = np.asarray(encoded[1], np.int64)
    return flat.reshape(num_classes, num_classes)


# ------------------------------------------------------------------------------------------ progress bar
def ProgressBar(label, total, done, every, stream=None):
    """Progress with ETA: a bar on stderr when it is a terminal, else a log line every ``every`` images."""
    return Progress(label, total, done, every, unit='image', log_prefix='[BENCHMARK] ', stream=stream)


# ------------------------------------------------------------------------------------------ peak memory
def reset_peak_memory():
    """Start measuring peak memory afresh; returns the scope of the numbers :func:`peak_memory` gives."""
    if has_gpu():
        with contextlib.suppress(Exception):
            paddle.device.cuda.reset_max_memory_allocated()
    return reset_peak_rss()


def peak_memory(scope):
    """Peak resident memory (and GPU memory when on a GPU) in bytes."""
    result = {'rss_bytes': peak_rss_bytes(), 'rss_scope': scope}
    if has_gpu():
        result['gpu_allocated_bytes'] = int(paddle.device.cuda.max_memory_allocated())
    return result


# ------------------------------------------------------------------------------------------- environment
def environment(dygraph):
    """Versions, device and threading settings of this process."""
    import cv2
    import paddleseg
    gpu = has_gpu()
    return {
        'versions': {'python': platform.python_version(), 'paddle': paddle.__version__,
                     'paddle_commit': paddle.version.commit, 'paddleseg': paddleseg.__version__,
                     'paddle_psp': paddle_psp.__version__, 'numpy': np.__version__, 'opencv': cv2.__version__},
        'device': {'paddle': paddle.device.get_device(), 'cpu': cpu_name(), 'logical_cpus': os.cpu_count(),
                   'usable_cpus': usable_cpus(),
                   'gpu': paddle.device.cuda.get_device_name() if gpu else None},
        'platform': platform.platform(),
        'environment': {key: os.environ.get(key) for key in
                        ('OMP_NUM_THREADS', 'MKL_DEBUG_CPU_TYPE', 'CUDA_VISIBLE_DEVICES')},
        'forward': 'dygraph' if dygraph else 'fast_forward',
    }


# ------------------------------------------------------------------------------------------------ running
def run(targets, settings, save_dir=DEFAULT_SAVE_DIR, resume=False, overwrite=False):
    """Benchmark ``targets``; write ``benchmark.json`` and ``benchmark.md`` to ``save_dir``.

    Args:
        targets (list[Target]): What to benchmark (see :func:`zoo_targets`, :func:`checkpoint_target`).
        settings (Settings): How.
        save_dir (str, optional): Output directory. Default: ``./output/benchmark``.
        resume (bool, optional): Continue from the progress files of an earlier run. Default: False.
        overwrite (bool, optional): Replace earlier results and progress. Default: False.

    Returns:
        dict: The results as written to ``benchmark.json``, plus ``markdown`` (the table).

    Raises:
        UserError: Bad input (one line), before anything is overwritten.
    """
    prepare_output(save_dir, targets, resume, overwrite)
    results = {'format': FORMAT_VERSION, 'created': _now(), 'settings': _describe_settings(settings),
               'environment': environment(settings.dygraph), 'entries': []}
    for target in targets:
        results['entries'].append(benchmark_target(target, settings, save_dir))
        write_results(save_dir, results)
    results['markdown'] = markdown(results)
    return results


def prepare_output(save_dir, targets, resume, overwrite):
    """Check ``save_dir`` is writable and holds no earlier results unless resuming or overwriting.

    With ``overwrite`` the targets' progress files are removed (results are replaced when rewritten).
    """
    if resume and overwrite:
        raise UserError('--resume and --overwrite: expected at most one of them')
    ensure_writable_dir(save_dir)
    earlier = [path for path in [os.path.join(save_dir, RESULTS_JSON), os.path.join(save_dir, RESULTS_MARKDOWN)]
               + [progress_path(save_dir, t) for t in targets] if os.path.exists(path)]
    if earlier and not (resume or overwrite):
        raise UserError(f'{earlier[0]}: exists (an earlier benchmark); expected --resume to continue it, '
                        '--overwrite to replace it, or another --save_dir')
    if overwrite:
        for target in targets:
            with contextlib.suppress(FileNotFoundError):
                os.remove(progress_path(save_dir, target))


def ensure_writable_dir(path, flag='--save_dir'):
    """Create directory ``path`` if needed and check a file can be written in it.

    Raises:
        UserError: It cannot be created or written to (naming ``flag``).
    """
    probe = os.path.join(path, f'.write-test-{os.getpid()}')
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, 'w'):
            pass
        os.remove(probe)
    except OSError as err:
        raise UserError(f'{flag} {path}: cannot write there ({err.strerror}); expected a writable '
                        'directory') from None


def progress_path(save_dir, target):
    """The progress file of ``target`` in ``save_dir``."""
    return os.path.join(save_dir, PROGRESS_DIR, target.name + '.jsonl')


def benchmark_target(target, settings, save_dir):
    """Score one target (continuing its progress file) and return its results entry."""
    memory_scope = reset_peak_memory()
    cfg = load_config(target.config, opts=list(settings.opts))
    _drop_pretrained(cfg)
    dataset = build_val_dataset(cfg, settings.data_root)
    plan = settings.plan(cfg.test_config)
    indices = list(range(len(dataset) if settings.limit is None else min(settings.limit, len(dataset))))
    checkpoint = hub.resolve(target.checkpoint)
    num_classes, ignore_index = dataset.num_classes, getattr(dataset, 'ignore_index', IGNORE_INDEX)
    fingerprint = {'target': target.name, 'config': os.path.abspath(target.config),
                   'config_sha256': _sha256_text(json.dumps(cfg.dic, sort_keys=True, default=str)),
                   'checkpoint_sha256': sha256_file(checkpoint),
                   'data_root': os.path.abspath(dataset.dataset_root), 'num_classes': num_classes,
                   'ignore_index': ignore_index, 'plan': plan.describe(),
                   'forward': 'dygraph' if settings.dygraph else 'fast_forward'}
    log = ProgressLog(progress_path(save_dir, target), fingerprint)
    records = log.open()
    try:
        _check_records(records, indices, dataset, log.path)
        session = _score_missing(target, cfg, checkpoint, settings, plan, dataset, indices, records, log)
    finally:
        log.close()
    entry = summarize(target, cfg, dataset, plan, indices, records, num_classes)
    entry.update(checkpoint={'spec': target.checkpoint, 'path': checkpoint,
                             'sha256': fingerprint['checkpoint_sha256']},
                 config=os.path.abspath(target.config), data_root=fingerprint['data_root'])
    entry['timings'].update(session)
    entry['peak_memory'] = peak_memory(memory_scope)
    _log_entry(entry)
    return entry


def _drop_pretrained(cfg):
    """Evaluation loads a checkpoint: skip the config's ImageNet / pretrained downloads."""
    model_cfg = cfg.dic['model']
    for section in (model_cfg, model_cfg.get('backbone')):
        if isinstance(section, dict) and section.get('pretrained'):
            section['pretrained'] = None


def _check_records(records, indices, dataset, path):
    """Each recorded image must still be the image at its index (same dataset, same order)."""
    root = dataset.dataset_root
    for index in indices:
        if index in records and records[index]['image'] != _image_key(dataset, index, root):
            raise UserError(f'{path}: image {index} was {records[index]["image"]}, now '
                            f'{_image_key(dataset, index, root)}; expected the same val set to --resume, or '
                            '--overwrite')


def _image_key(dataset, index, root):
    return os.path.relpath(dataset.file_list[index][0], root)


def _score_missing(target, cfg, checkpoint, settings, plan, dataset, indices, records, log):
    """Score the images of ``indices`` without a record, appending a record for each; session timings."""
    missing = [i for i in indices if i not in records]
    done = len(indices) - len(missing)
    if done:
        logger.info(f'[BENCHMARK] {target.name}: resuming, {done} of {len(indices)} images already scored')
    session = {'session_images': len(missing), 'model_load_seconds': 0.0}
    if not missing:
        return session
    start = time.perf_counter()
    model = load_for_eval(cfg.model, checkpoint)
    forward = TimedForward(build_forward(model, settings.dygraph))
    session['model_load_seconds'] = time.perf_counter() - start
    logger.info(f'[BENCHMARK] {target.name}: {len(missing)} images, {plan.forwards_per_image()} forward '
                f'passes each ({plan.separate_forwards_per_image()} in separate runs)')
    bar = ProgressBar(target.name, len(indices), done, settings.log_every)
    num_classes, ignore_index = dataset.num_classes, getattr(dataset, 'ignore_index', IGNORE_INDEX)
    for index in missing:
        image_start, before = time.perf_counter(), forward.snapshot()
        confusions = image_confusions(plan, forward, dataset[index], num_classes, ignore_index)
        after = forward.snapshot()
        record = {'index': index, 'image': _image_key(dataset, index, dataset.dataset_root),
                  'seconds': time.perf_counter() - image_start, 'forward_seconds': after[2] - before[2],
                  'forwards': after[1] - before[1], 'forward_calls': after[0] - before[0],
                  'confusion': {column: encode_confusion(m) for column, m in confusions.items()}}
        log.append(record)
        records[index] = record
        done += 1
        bar.update(done)
    bar.close()
    return session


def summarize(target, cfg, dataset, plan, indices, records, num_classes):
    """The results entry of a target from its records: scores per column, published deltas, timings."""
    names = class_names(dataset, num_classes)
    chosen = [records[i] for i in indices]
    entry = dict(_describe_target(target, cfg, dataset), num_images=len(indices),
                 num_images_available=len(dataset), plan=plan.describe(), columns={})
    for column in COLUMNS:
        matrix = sum((decode_confusion(r['confusion'][column], num_classes) for r in chosen),
                     np.zeros((num_classes, num_classes), np.int64))
        entry['columns'][column] = _column_result(column, matrix, names, target, plan)
    entry['timings'] = _timings(chosen)
    return entry


def _column_result(column, matrix, names, target, plan):
    scores = metrics.scores_from_confusion(matrix)
    result = {'title': COLUMN_TITLES[column], 'mIoU': scores['mIoU'], 'Acc': scores['Acc'],
              'Kappa': scores['Kappa'], 'Dice': scores['Dice'],
              'class_IoU': {name: _finite(v) for name, v in zip(names, scores['class_IoU'])},
              'confusion': matrix.tolist()}
    published = published_score(target.entry, column, plan.legacy)
    if published is not None:
        result['published'] = published
        result['delta'] = round(round(scores['mIoU'] * 100, 2) - published, 2)
    return result


def published_score(entry, column, legacy):
    """The published mIoU (%) a column is compared with, or None for a non-zoo checkpoint.

    ms+flip: the seed table's number (pre-PR-#2933 TTA) with ``legacy``, else the number PaddleSeg
    re-measured after the fix, which uses the same semantics as this benchmark's default.
    """
    if entry is None:
        return None
    if column == 'miou_ms_flip' and not legacy:
        return entry['miou_ms_flip_remeasured']
    return entry[column]


def _finite(value):
    return None if np.isnan(value) else float(value)


def _timings(records):
    seconds = sum(r['seconds'] for r in records)
    forward_seconds = sum(r['forward_seconds'] for r in records)
    forwards = sum(r['forwards'] for r in records)
    return {'images': len(records), 'seconds': seconds,
            'images_per_second': len(records) / seconds if seconds else None,
            'forward_seconds': forward_seconds, 'forwards': forwards,
            'forward_calls': sum(r['forward_calls'] for r in records),
            'seconds_per_forward': forward_seconds / forwards if forwards else None}


def _describe_target(target, cfg, dataset):
    """Model, backbone, dataset title, resolution and training iterations of a target (for the table)."""
    if target.entry is not None:
        entry = target.entry
        return {'name': target.name, 'zoo': True, 'model': entry['model'], 'backbone': entry['backbone'],
                'dataset': zoo.dataset_info(entry['dataset'])['title'], 'resolution': entry['resolution'],
                'training_iters': entry['iters']}
    model_cfg = cfg.dic['model']
    backbone = model_cfg.get('backbone') or {}
    backbone_name = re.sub(r'^Zoo|_vd$', '', str(backbone.get('type', '-')))
    if 'output_stride' in backbone:
        backbone_name += f'_OS{backbone["output_stride"]}'
    return {'name': target.name, 'zoo': False, 'model': re.sub(r'^Zoo', '', str(model_cfg.get('type'))),
            'backbone': backbone_name, 'dataset': dataset_kind(dataset),
            'resolution': _train_crop(cfg), 'training_iters': cfg.dic.get('iters')}


def _train_crop(cfg):
    """``WxH`` of the training crop (RandomPaddingCrop), or '-'."""
    for transform in (cfg.dic.get('train_dataset') or {}).get('transforms') or []:
        if isinstance(transform, dict) and 'crop_size' in transform:
            crop = transform['crop_size']
            return f'{crop[0]}x{crop[1]}' if isinstance(crop, (list, tuple)) else f'{crop}x{crop}'
    return '-'


def _log_entry(entry):
    cells = ', '.join(f'{entry["columns"][c]["title"]} {entry["columns"][c]["mIoU"] * 100:.2f}%'
                      for c in COLUMNS)
    timing = entry['timings']
    speed = (f', {timing["images_per_second"]:.3f} images/s, {timing["seconds_per_forward"]:.3f} s/forward'
             if timing['images_per_second'] else '')
    logger.info(f'[BENCHMARK] {entry["name"]}: {cells} on {entry["num_images"]} images{speed}')


def _describe_settings(settings):
    described = dataclasses.asdict(settings)
    described['scales'] = list(settings.scales)
    described['opts'] = list(settings.opts)
    return described


def _sha256_text(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


# ------------------------------------------------------------------------------------------------- output
def write_results(save_dir, results):
    """Atomically (re)write ``benchmark.json`` and ``benchmark.md``."""
    body = {key: value for key, value in results.items() if key != 'markdown'}
    atomic.write_text(os.path.join(save_dir, RESULTS_JSON), json.dumps(body, indent=1) + '\n')
    atomic.write_text(os.path.join(save_dir, RESULTS_MARKDOWN), markdown(results) + '\n')


def markdown(results):
    """The results as markdown: one table per dataset in the model-zoo README layout, then notes.

    Each cell is our mIoU; for zoo entries it is followed by the difference to the published number,
    e.g. ``78.91% (+0.08)``.
    """
    by_dataset = collections.OrderedDict()
    for entry in results['entries']:
        by_dataset.setdefault(entry['dataset'], []).append(entry)
    blocks = []
    for title, entries in by_dataset.items():
        rows = [_markdown_row(entry) for entry in entries]
        blocks.append('\n'.join([f'### {title}', '', zoo.TABLE_HEADER, zoo.TABLE_ALIGN] + rows))
    return '\n\n'.join(blocks + [_markdown_notes(results)])


def _markdown_row(entry):
    cells = [entry['model'], entry['backbone'], entry['resolution'], str(entry['training_iters'] or '-')]
    for column in COLUMNS:
        result = entry['columns'][column]
        cell = f'{result["mIoU"] * 100:.2f}%'
        if 'delta' in result:
            cell += f' ({result["delta"]:+.2f})'
        cells.append(cell)
    cells.append(_links(entry))
    return '|' + '|'.join(cells) + '|'


def _links(entry):
    if entry['zoo']:
        zoo_entry = zoo.get(entry['name'])
        return (f'[model]({zoo_entry["checkpoint_url"]}) \\| [log]({zoo_entry["log_url"]}) '
                f'\\| [vdl]({zoo_entry["vdl_url"]})')
    return f'[model]({entry["checkpoint"]["path"]})'


def _markdown_notes(results):
    settings = results['settings']
    scales = ' '.join(f'{s:g}' for s in settings['scales'])
    lines = [f'ms+flip: scales {scales} with horizontal flip, '
             + ('legacy TTA (PaddleSeg before PR #2933: chained rescaling, averaged probabilities).'
                if settings['legacy'] else 'current PaddleSeg TTA (averaged logits).')]
    zoo_entries = [e for e in results['entries'] if e['zoo']]
    if zoo_entries:
        reference = ('the published table' if settings['legacy']
                     else 'the numbers PaddleSeg re-measured after PR #2933')
        lines.append('In brackets: our mIoU minus the published one (mIoU and flip from the published table, '
                     f'ms+flip from {reference}).')
        lines += [f'- {e["model"]} {e["backbone"]} ({e["dataset"]}) published: '
                  + ' / '.join(f'{e["columns"][c]["published"]:.2f}%' for c in COLUMNS) for e in zoo_entries]
    partial = [e for e in results['entries'] if e['num_images'] < e['num_images_available']]
    lines += [f'- {e["name"]}: {e["num_images"]} of {e["num_images_available"]} val images (--limit); '
              'not comparable with scores on the whole val set' for e in partial]
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------- command
def build_parser():
    """The ``paddleseg benchmark`` argument parser."""
    parser = argparse.ArgumentParser(
        prog='paddleseg benchmark', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Fill the mIoU / mIoU (flip) / mIoU (ms+flip) table for zoo entries or a checkpoint, with '
                    'one set of forward passes per image.',
        epilog='examples:\n  paddleseg benchmark --zoo all --dataset cityscapes --data_root data/cityscapes\n'
               '  paddleseg benchmark --config my.yml --model_path output/iter_1000/model.pdparams --limit 20')
    what = parser.add_argument_group('what to benchmark (zoo entries, or a config and a checkpoint)')
    what.add_argument('--zoo', metavar='NAME|all', help='a zoo entry name, or all (narrowed by the filters)')
    what.add_argument('--model', help='zoo filter: PSPNet or DeepLabV3')
    what.add_argument('--dataset', help='zoo filter: cityscapes or voc12aug')
    what.add_argument('--backbone', help='zoo filter: ResNet50_OS8 or ResNet101_OS8')
    what.add_argument('--config', help='YAML config (its val_dataset and model)')
    what.add_argument('--model_path',
                      help='checkpoint: a .pdparams file, a folder holding one, a URL or a zoo name')
    what.add_argument('--name', help='label of a --config run (default: the config file name)')
    data = parser.add_argument_group('data and output')
    data.add_argument('--data_root', help='replaces val_dataset.dataset_root of the config(s)')
    data.add_argument('--limit', type=int, help='score only the first N val images')
    data.add_argument('--opts', nargs='+', default=[], metavar='KEY=VALUE', help='config overrides')
    data.add_argument('--save_dir', default=DEFAULT_SAVE_DIR, help=f'output directory ({DEFAULT_SAVE_DIR})')
    data.add_argument('--resume', action='store_true', help='continue an interrupted run in --save_dir')
    data.add_argument('--overwrite', action='store_true', help='replace earlier results in --save_dir')
    data.add_argument('--log_every', type=int, default=10,
                      help='without a terminal: a progress line every N images (10)')
    tta = parser.add_argument_group('inference')
    tta.add_argument('--scales', nargs='+', type=float, default=list(DEFAULT_SCALES), metavar='S',
                     help='scales of the ms+flip column (0.75 1.0 1.25)')
    tta.add_argument('--legacy_tta', action='store_true',
                     help='pre-2023 PaddleSeg TTA (produced the published ms+flip column)')
    tta.add_argument('--is_slide', action='store_true', default=None, help='sliding-window inference')
    tta.add_argument('--crop_size', nargs=2, type=int, metavar=('W', 'H'), help='sliding-window size')
    tta.add_argument('--stride', nargs=2, type=int, metavar=('W', 'H'), help='sliding-window stride')
    tta.add_argument('--dygraph', action='store_true',
                     help='run the dygraph model, as paddleseg val does, instead of the fast CPU path')
    return parser


def targets_from_args(args):
    """The targets the flags select."""
    filters = {'model': args.model, 'dataset': args.dataset, 'backbone': args.backbone}
    if args.config or args.model_path:
        if not (args.config and args.model_path):
            raise UserError('--config and --model_path: expected both (or --zoo NAME|all instead)')
        used = [f'--{k}' for k, v in filters.items() if v] + (['--zoo'] if args.zoo else [])
        if used:
            raise UserError(f'{used[0]}: selects zoo entries; expected either --zoo and its filters, or '
                            '--config and --model_path')
        return [checkpoint_target(args.config, args.model_path, args.name)]
    if args.name:
        raise UserError('--name: labels a --config run; zoo entries keep their names')
    if not args.zoo and not any(filters.values()):
        raise UserError('nothing to benchmark; expected --zoo NAME|all (optionally with --model, --dataset, '
                        '--backbone) or --config with --model_path')
    targets = zoo_targets(args.zoo, **filters)
    datasets = sorted({t.entry['dataset'] for t in targets})
    if args.data_root and len(datasets) > 1:
        raise UserError(f'--data_root: the selected entries use {len(datasets)} datasets '
                        f'({", ".join(datasets)}); expected --dataset to pick one')
    return targets


def main(argv=None):
    """``paddleseg benchmark``: prints the table; returns 0."""
    args = build_parser().parse_args(argv)
    targets = targets_from_args(args)
    settings = Settings(scales=tuple(args.scales), legacy=args.legacy_tta, is_slide=args.is_slide,
                        crop_size=args.crop_size, stride=args.stride, limit=args.limit,
                        data_root=args.data_root, opts=tuple(args.opts), dygraph=args.dygraph,
                        log_every=args.log_every)
    results = run(targets, settings, args.save_dir, resume=args.resume, overwrite=args.overwrite)
    print(results['markdown'])
    written = [os.path.join(args.save_dir, name) for name in (RESULTS_JSON, RESULTS_MARKDOWN)]
    print(f'\nwrote {written[0]} and {written[1]}')
    return 0
