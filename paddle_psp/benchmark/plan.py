"""What a benchmark runs: the targets (zoo entries or a weights file), the settings, and the column plan.

The three columns are mIoU (scale 1.0, no flip), mIoU (flip) and mIoU (ms+flip). :class:`ColumnPlan`
knows the augmentations each column averages and runs the union of them once per image, handing each
column exactly what a separate ``paddleseg val`` run of that column computes.
"""
import dataclasses
import os
import re

import numpy as np

from paddle_psp.core.errors import UserError
from paddle_psp.evaluation import metrics
from paddle_psp.inference import quantize as quantization, tta
from paddle_psp.weights import zoo
from paddle_psp.inference.flags import DEFAULT_SCALES

COLUMNS = ('miou', 'miou_flip', 'miou_ms_flip')
COLUMN_TITLES = {'miou': 'mIoU', 'miou_flip': 'mIoU (flip)', 'miou_ms_flip': 'mIoU (ms+flip)'}
SINGLE = tta.Augmentation(1.0, False, False)


@dataclasses.dataclass(frozen=True)
class Target:
    """One model to benchmark.

    Attributes:
        name (str): The zoo name, or a label for another weights file (names the progress file).
        config (str): YAML config whose ``val_dataset`` and ``model`` are used.
        weights (str): The weights file: a path, URL or zoo name for :func:`paddle_psp.weights.hub.resolve`.
        entry (dict|None): The zoo manifest entry (published numbers, links); None for other weights files.
    """
    name: str
    config: str
    weights: str
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


def weights_target(config, weights, name=None):
    """A :class:`Target` for any config and weights file; ``name`` defaults to the config's file stem."""
    label = name or os.path.splitext(os.path.basename(config))[0]
    if not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9._-]*', label):
        raise UserError(f'--name {label!r}: expected letters, digits, ".", "_" or "-" (it names a file)')
    return Target(label, os.path.abspath(config), weights, None)


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
        quantize (str): 'int8': the fast path's post-training quantized model, as ``paddleseg val --quantize
            int8`` runs it (:mod:`paddle_psp.inference.quantize`); 'none': fp32.
        calib_images (int): Calibration images (train_dataset) of 'int8'.
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
    quantize: str = 'none'
    calib_images: int = quantization.DEFAULT_CALIB_IMAGES

    def __post_init__(self):
        quantization.check_quantize(self.quantize, self.calib_images, fast=not self.dygraph)
        object.__setattr__(self, 'scales', tta.check_scales(self.scales, '--scales'))
        if len(set(self.scales)) != len(self.scales):
            raise UserError(f'--scales {" ".join(f"{s:g}" for s in self.scales)}: a scale is repeated; '
                            'expected each scale once')
        if self.limit is not None and self.limit < 1:
            raise UserError(f'--limit {self.limit}: expected a positive number of images')
        if self.log_every < 1:
            raise UserError(f'--log_every {self.log_every}: expected a positive number of images')
        if self.data_root is not None and not os.path.isdir(self.data_root):
            raise UserError(f'--data_root {self.data_root}: no such directory; expected a prepared dataset')

    @property
    def int8(self):
        """Whether the forward passes run the int8 model."""
        return self.quantize == 'int8'

    def forward_kind(self):
        """What runs the forward passes: 'dygraph', 'fast_forward' or 'fast_forward_int8'."""
        return 'dygraph' if self.dygraph else 'fast_forward_int8' if self.int8 else 'fast_forward'

    def plan(self, test_config):
        """The :class:`ColumnPlan` for a config: window settings from the flags, else its ``test_config``."""
        window = {key: getattr(self, key) if getattr(self, key) is not None else test_config.get(key)
                  for key in ('is_slide', 'crop_size', 'stride')}
        crop_size, stride = (tta.check_window(window['crop_size'], window['stride']) if window['is_slide']
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
        return {'miou': [SINGLE], 'miou_flip': tta.augmentations((1.0,), True),
                'miou_ms_flip': tta.augmentations(self.scales, True)}

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
            return tta.subset_logits(forward, image, ordered, None, self.crop_size, self.stride)
        plain = dict(tta.iter_augmented_logits(forward, image, columns['miou_flip'], None, self.crop_size,
                                                 self.stride))
        chained = tta.subset_logits(forward, image, {'ms': columns['miou_ms_flip']}, None, self.crop_size,
                                      self.stride, legacy=True)['ms']
        probabilities = [tta.softmax(plain[aug][np.newaxis])[0] for aug in columns['miou_flip']]
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
        pred = tta.labels_of(logits)
        if pred.size != label.size:
            raise UserError(f'val_dataset: prediction {list(pred.shape)} and label {list(label.shape)} differ '
                            'in size; expected val transforms that record every resize / padding')
        confusions[column] = metrics.confusion_matrix(pred, label, num_classes, ignore_index)
    return confusions
