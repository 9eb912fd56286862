"""The results of a benchmark: per-target entries from the progress records, ``benchmark.json`` and
``benchmark.md`` (the model-zoo table, each zoo number followed by its difference to the published one).
"""
import collections
import json
import os
import re

import numpy as np

from paddle_psp.benchmark.plan import COLUMN_TITLES, COLUMNS
from paddle_psp.benchmark.progress import decode_confusion
from paddle_psp.core import atomic
from paddle_psp.core.log import logger
from paddle_psp.data.datasets import class_names, dataset_kind
from paddle_psp.evaluation import metrics
from paddle_psp.weights import zoo

RESULTS_JSON = 'benchmark.json'
RESULTS_MARKDOWN = 'benchmark.md'


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
    """The published mIoU (%) a column is compared with, or None for a weights file not in the zoo.

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


def log_entry(entry):
    """Log the scores and speed of one results entry."""
    cells = ', '.join(f'{entry["columns"][c]["title"]} {entry["columns"][c]["mIoU"] * 100:.2f}%'
                      for c in COLUMNS)
    timing = entry['timings']
    speed = (f', {timing["images_per_second"]:.3f} images/s, {timing["seconds_per_forward"]:.3f} s/forward'
             if timing['images_per_second'] else '')
    int8 = ' (int8)' if entry.get('quantize') else ''
    logger.info(f'[BENCHMARK] {entry["name"]}{int8}: {cells} on {entry["num_images"]} images{speed}')


def write_results(save_dir, results):
    """Atomically (re)write ``benchmark.json`` and ``benchmark.md``."""
    body = {key: value for key, value in results.items() if key != 'markdown'}
    atomic.write_text(os.path.join(save_dir, RESULTS_JSON), json.dumps(body, indent=1) + '\n')
    atomic.write_text(os.path.join(save_dir, RESULTS_MARKDOWN), markdown(results) + '\n')


def markdown(results):
    """The results as markdown: one table per dataset in the model-zoo README layout, then notes.

    Each cell is our mIoU; for zoo entries it is followed by the difference to the published number,
    e.g. ``78.91% (+0.08)``. The titles of an int8 run (``--quantize int8``) say so, and a note says how it
    was calibrated.
    """
    by_dataset = collections.OrderedDict()
    for entry in results['entries']:
        by_dataset.setdefault(entry['dataset'], []).append(entry)
    blocks = []
    int8 = ' (INT8, post-training quantized)' if _int8(results) else ''
    for title, entries in by_dataset.items():
        rows = [_markdown_row(entry) for entry in entries]
        blocks.append('\n'.join([f'### {title}{int8}', '', zoo.TABLE_HEADER, zoo.TABLE_ALIGN] + rows))
    return '\n\n'.join(blocks + [_markdown_notes(results)])


def _int8(results):
    return results['settings'].get('quantize') == 'int8'


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
    if _int8(results):
        lines.append(f'INT8: every number is from the int8 model (--quantize int8: Paddle\'s post-training '
                     f'quantization, calibrated on the first {settings["calib_images"]} train_dataset images, run on '
                     'oneDNN int8 kernels), not from the fp32 model.')
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
