"""Running a benchmark: each target's missing images are scored, recorded and summarized.

For every target the config and val set are built, the progress file is reopened (so an interrupted run
continues), the images without a record are scored with one set of timed forward passes each, and the
results entry is written with the others to ``benchmark.json`` and ``benchmark.md``.
"""
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import time

from paddle_psp.benchmark.environment import environment, peak_memory, reset_peak_memory
from paddle_psp.benchmark.plan import image_confusions
from paddle_psp.benchmark.progress import FORMAT_VERSION, ProgressLog, encode_confusion, progress_path
from paddle_psp.benchmark.report import (RESULTS_JSON, RESULTS_MARKDOWN, log_entry, markdown, summarize,
                                         write_results)
from paddle_psp.core.errors import UserError
from paddle_psp.core.log import logger
from paddle_psp.core.console import Progress
from paddle_psp.core.files import sha256_file
from paddle_psp.data.datasets import IGNORE_INDEX, label_problem
from paddle_psp.config import build_val_dataset, load_config
from paddle_psp.inference import tta
from paddle_psp.inference.forward import ForwardOptions, make_forward
from paddle_psp.inference.quantize import CALIBRATION_ALGO, FP32_MAX_STRIDE, calibration_section
from paddle_psp.weights import hub
from paddle_psp.benchmark.flags import BENCHMARK_SAVE_DIR as DEFAULT_SAVE_DIR
from paddle_psp.core.stages import Stages


def run(targets, settings, save_dir=DEFAULT_SAVE_DIR, resume=False, overwrite=False, stages=None):
    """Benchmark ``targets``; write ``benchmark.json`` and ``benchmark.md`` to ``save_dir``.

    Args:
        targets (list[Target]): What to benchmark (see :mod:`paddle_psp.benchmark.plan`).
        settings (Settings): How.
        save_dir (str, optional): Output directory. Default: ``./output/benchmark``.
        resume (bool, optional): Continue from the progress files of an earlier run. Default: False.
        overwrite (bool, optional): Replace earlier results and progress. Default: False.
        stages (paddle_psp.core.stages.Stages, optional): The start-up breakdown (``--profile``): the first
            target's stages up to its first forward, logged after that target. Default: None (not kept).

    Returns:
        dict: The results as written to ``benchmark.json``, plus ``markdown`` (the table).

    Raises:
        UserError: Bad input (one line), before anything is overwritten.
    """
    prepare_output(save_dir, targets, resume, overwrite)
    results = {'format': FORMAT_VERSION, 'created': _now(), 'settings': _describe_settings(settings),
               'environment': environment(settings.forward_kind()), 'entries': []}
    stages = stages or Stages(enabled=False)
    for target in targets:
        results['entries'].append(benchmark_target(target, settings, save_dir, stages))
        write_results(save_dir, results)
        if stages.enabled:
            logger.info(f'[BENCHMARK] start-up: {stages.summary()}')
            stages = Stages(enabled=False)
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
               + [progress_path(save_dir, t.name) for t in targets] if os.path.exists(path)]
    if earlier and not (resume or overwrite):
        raise UserError(f'{earlier[0]}: exists (an earlier benchmark); expected --resume to continue it, '
                        '--overwrite to replace it, or another --save_dir')
    if overwrite:
        for target in targets:
            with contextlib.suppress(FileNotFoundError):
                os.remove(progress_path(save_dir, target.name))


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


def benchmark_target(target, settings, save_dir, stages):
    """Score one target (continuing its progress file) and return its results entry; marks ``stages``."""
    memory_scope = reset_peak_memory()
    cfg = load_config(target.config, opts=list(settings.opts))
    drop_pretrained(cfg)
    dataset = build_val_dataset(cfg, settings.data_root)
    plan = settings.plan(cfg.test_config)
    stages.mark('config and dataset')
    indices = list(range(len(dataset) if settings.limit is None else min(settings.limit, len(dataset))))
    weights_file = hub.resolve(target.weights)
    num_classes, ignore_index = dataset.num_classes, getattr(dataset, 'ignore_index', IGNORE_INDEX)
    fingerprint = {'target': target.name, 'config': os.path.abspath(target.config),
                   'config_sha256': _sha256_text(json.dumps(cfg.dic, sort_keys=True, default=str)),
                   'checkpoint_sha256': sha256_file(weights_file),
                   'data_root': os.path.abspath(dataset.dataset_root), 'num_classes': num_classes,
                   'ignore_index': ignore_index, 'plan': plan.describe(),
                   'forward': settings.forward_kind()}
    if settings.int8:  # only then: fp32 progress files of earlier versions still resume
        calibration_section(cfg)  # a config without train_dataset fails here, before the progress file
        fingerprint['quantize'] = {'mode': settings.quantize, 'calib_images': settings.calib_images,
                                   'algo': CALIBRATION_ALGO, 'fp32_max_stride': FP32_MAX_STRIDE}
    log = ProgressLog(progress_path(save_dir, target.name), fingerprint)
    records = log.open()
    try:
        _check_records(records, indices, dataset, log.path)
        session = _score_missing(target, cfg, weights_file, settings, plan, dataset, indices, records, log, stages)
    finally:
        log.close()
    entry = summarize(target, cfg, dataset, plan, indices, records, num_classes)
    entry.update(checkpoint={'spec': target.weights, 'path': weights_file,
                             'sha256': fingerprint['checkpoint_sha256']},
                 config=os.path.abspath(target.config), data_root=fingerprint['data_root'])
    entry['timings'].update(session)
    entry['peak_memory'] = peak_memory(memory_scope)
    entry['quantize'] = fingerprint.get('quantize')
    log_entry(entry)
    return entry


def drop_pretrained(cfg):
    """Evaluation loads a weights file: skip the config's ImageNet / pretrained downloads."""
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


def _score_missing(target, cfg, weights_file, settings, plan, dataset, indices, records, log, stages):
    """Score the images of ``indices`` without a record, appending a record for each; session timings."""
    missing = [i for i in indices if i not in records]
    done = len(indices) - len(missing)
    if done:
        logger.info(f'[BENCHMARK] {target.name}: resuming, {done} of {len(indices)} images already scored')
    session = {'session_images': len(missing), 'model_load_seconds': 0.0}
    if not missing:
        return session
    start = time.perf_counter()
    # the fast CPU path unless --dygraph; one input shape per scale, plus one
    options = ForwardOptions(fast=not settings.dygraph, quantize=settings.quantize, calib_images=settings.calib_images,
                             shapes=len(set(settings.scales)) + 1)
    forward = TimedForward(make_forward(cfg, weights_file, options, stages))
    session['model_load_seconds'] = time.perf_counter() - start
    logger.info(f'[BENCHMARK] {target.name}: {len(missing)} images, {plan.forwards_per_image()} forward '
                f'passes each ({plan.separate_forwards_per_image()} in separate runs)')
    bar = ProgressBar(target.name, len(indices), done, settings.log_every)
    num_classes, ignore_index = dataset.num_classes, getattr(dataset, 'ignore_index', IGNORE_INDEX)
    for index in missing:
        image_start, before = time.perf_counter(), forward.snapshot()
        sample = dataset[index]
        problem = label_problem(sample['label'], num_classes, ignore_index, dataset.file_list[index][1])
        if problem:
            raise UserError(problem)  # scoring would drop those pixels silently
        confusions = image_confusions(plan, forward, sample, num_classes, ignore_index)
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


def ProgressBar(label, total, done, every, stream=None):
    """Progress with ETA: a bar on stderr when it is a terminal, else a log line every ``every`` images."""
    return Progress(label, total, done, every, unit='image', log_prefix='[BENCHMARK] ', stream=stream)


# ------------------------------------------------------------------------------------------------ forward
class TimedForward:
    """Wraps a forward callable, adding up its calls, the images through it and the seconds spent."""

    def __init__(self, forward):
        self.forward = forward
        self.calls = 0
        self.images = 0
        self.seconds = 0.0

    def __call__(self, batch):
        start = time.perf_counter()
        logits = tta.logits_array(self.forward(batch))  # to host memory: the work is done
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.images += int(batch.shape[0])
        return logits

    def snapshot(self):
        """(calls, images, seconds) so far."""
        return self.calls, self.images, self.seconds


# ---------------------------------------------------------------------------------------------- helpers
def _describe_settings(settings):
    described = dataclasses.asdict(settings)
    described['scales'] = list(settings.scales)
    described['opts'] = list(settings.opts)
    return described


def _sha256_text(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
