"""``paddle_psp.Segmenter``: a model with its weights, for notebooks and services.

A :class:`Segmenter` is what ``paddleseg predict`` and ``paddleseg val`` build at start-up (a config, a
weights file, the fast CPU path with its export cache, the test-time augmentation), built once and kept: each
call then costs only the images' own work. Its predictions, metrics and submission files are made by the
same functions as the command's, so they are the same, pixel for pixel.
"""
import argparse
import os

from paddleseg.transforms import Compose

from paddle_psp.benchmark import runner
from paddle_psp.benchmark.plan import Settings, weights_target
from paddle_psp.config import build_val_dataset, load_config
from paddle_psp.core import runtime
from paddle_psp.core.device import use_device
from paddle_psp.core.errors import UserError
from paddle_psp.core.flags import DEVICES
from paddle_psp.core.outputs import require_dir
from paddle_psp.core.stages import Stages
from paddle_psp.data import datasets
from paddle_psp.evaluation.evaluate import evaluate_with_options
from paddle_psp.inference import predict as predicting, submission, tta
from paddle_psp.inference.flags import DEFAULT_SCALES
from paddle_psp.inference.forward import ForwardOptions, make_forward
from paddle_psp.inference.quantize import DEFAULT_CALIB_IMAGES
from paddle_psp.weights import zoo

from paddle_psp.api import inputs
from paddle_psp.api.prediction import Prediction

TTA_KEYS = ('aug', 'scales', 'flip_horizontal', 'flip_vertical', 'legacy_tta', 'is_slide', 'crop_size', 'stride')


def resolve_config(config, model_path):
    """The config file for ``config`` (a path or a zoo name), or for the zoo name ``model_path`` when None.

    Raises:
        UserError: No config and ``model_path`` is not a zoo name.
    """
    if config is None:
        if model_path in zoo.names():
            return zoo.config_path(model_path)
        raise UserError(f'config: not given, and model_path {model_path!r} is not a zoo name; expected the '
                        'config (a YAML path or a zoo name) the checkpoint was trained with')
    config = os.fspath(config)
    if not os.path.exists(config) and config in zoo.names():
        return zoo.config_path(config)
    return config


def tta_flags(aug=None, **flags):
    """``paddleseg predict``'s TTA flags as :func:`tta.options_from_args` reads them; a scale or flip given
    without ``aug`` turns the augmentation on (the command line needs ``--aug_pred`` as well)."""
    if aug is None and any(flags.get(key) for key in ('scales', 'flip_horizontal', 'flip_vertical')):
        aug = True
    return argparse.Namespace(aug=aug, **{key: flags.get(key) for key in TTA_KEYS if key != 'aug'})


class Segmenter:
    """A segmentation model with its weights, ready to predict, evaluate and write submissions.

    Example:
        seg = paddle_psp.Segmenter('pspnet_resnet50_os8_cityscapes_1024x512_80k')
        prediction = seg.predict('street.png')
        prediction.label_map              # int32 (H, W) class ids

    Args:
        model_path (str|os.PathLike): What ``paddleseg predict --model_path`` takes: a zoo name, a
            ``model.pdparams`` file, a folder holding one (``best_model/``, ``iter_N/``) or a URL
            (downloaded once into the download cache).
        config (str|os.PathLike, optional): The config (a YAML path or a zoo name). Default: None, the zoo
            config of ``model_path`` (which must then be a zoo name).
        device (str, optional): 'cpu' or 'gpu'. Default: None (the GPU when Paddle has one, else the CPU).
        aug, scales, flip_horizontal, flip_vertical, legacy_tta, is_slide, crop_size, stride: The test-time
            augmentation and sliding window, as ``paddleseg predict``'s flags of these names (a config's
            ``test_config`` gives the defaults; ``scales`` or a flip alone turns ``aug`` on).
        quantize (str, optional): 'int8' runs the fast path quantized (opt-in, not exact). Default: 'none'.
        calib_images (int, optional): Calibration images for 'int8'. Default: 32.
        fast (bool, optional): The fast CPU path (Paddle Inference, exported once into the cache; a later
            ``Segmenter`` of the same config and weights starts warm). False: the dygraph model, as
            ``--dygraph``. Default: True.
        opts (list[str], optional): ``key=value`` config overrides, as ``--opts``. Default: None.
        cpu_tuning (bool, optional): Apply the command's CPU tuning (math threads; MKL's code path on AMD)
            to this process. Default: True.

    Raises:
        UserError: A bad name, path, config or option (one line naming it), before anything is loaded.
    """

    def __init__(self, model_path, config=None, *, device=None, quantize='none', calib_images=DEFAULT_CALIB_IMAGES,
                 fast=True, opts=None, cpu_tuning=True, **tta_options):
        unknown = sorted(set(tta_options) - set(TTA_KEYS))
        if unknown:
            raise UserError(f'Segmenter: unknown option {unknown[0]!r}; expected one of device, quantize, '
                            f'calib_images, fast, opts, cpu_tuning, {", ".join(TTA_KEYS)}')
        if device not in (None,) + DEVICES:
            raise UserError(f'device: {device!r}; expected one of {", ".join(DEVICES)} or None')
        if cpu_tuning:
            runtime.apply_cpu_tuning()
        use_device(device)
        self.model_path = os.fspath(model_path)
        self.config_path = resolve_config(config, self.model_path)
        self.opts = list(opts or [])
        self.cfg = load_config(self.config_path, opts=self.opts)
        self.options = tta.options_from_args(tta_flags(**tta_options), self.cfg.test_config)
        kind = self.cfg.section('val_dataset').get('type')
        self.classes = datasets.class_names(kind, self.cfg.num_classes)
        self.palette = datasets.palette(kind)
        self._compose = Compose(list(self.cfg.val_transforms))
        self._forward_options = ForwardOptions(fast=fast, quantize=quantize, calib_images=calib_images,
                                               shapes=self.options.input_shapes())
        self._forward = make_forward(self.cfg, self.model_path, self._forward_options, Stages(enabled=False))

    def __repr__(self):
        return (f'Segmenter({self.model_path!r}, config={self.config_path!r}, {len(self.classes)} classes, '
                f'{self.options.summary()})')

    def predict(self, images, rgb=False, scores=False):
        """Segment images.

        Args:
            images: An image file path, a folder (searched recursively) or list file of images, a ``numpy``
                uint8 (H, W, 3) array, an RGB PIL image, or a list of these; images may differ in size.
            rgb (bool, optional): Arrays are RGB (``np.asarray`` of a PIL image, matplotlib) rather than BGR
                (OpenCV). Default: False.
            scores (bool, optional): Keep each image's class scores in ``Prediction.scores``. Default: False.

        Returns:
            Prediction|list[Prediction]: One for a single file or array, else a list in input order (a
            folder's images sorted by path).

        Raises:
            UserError: An input that is not one of these (an empty list, a grey or 4-channel or non-uint8
                array, a missing path), before any image is predicted; an unreadable image file.
        """
        found, single = inputs.sources(images, rgb)
        results = [self._predict_one(source, scores) for source in found]
        return results[0] if single else results

    __call__ = predict

    def iter_predict(self, images, rgb=False, scores=False):
        """:meth:`predict` one image at a time, for folders too large to hold every result in memory.

        Returns:
            iterator: Of :class:`Prediction`, in input order; the input is checked before this returns.
        """
        found, _ = inputs.sources(images, rgb)
        return (self._predict_one(source, scores) for source in found)

    def _predict_one(self, source, scores):
        image = source.bgr()
        logits = predicting.image_logits(self._forward, self._compose, image, self.options)
        return Prediction(tta.labels_of(logits), logits if scores else None, source.path, image, self.classes,
                          self.palette)

    def save_predictions(self, image_path, save_dir):
        """Write what ``paddleseg predict`` writes: ``save_dir/pseudo_color_prediction/*.png`` and
        ``save_dir/added_prediction/*`` for an image, folder or list file; returns the PNGs' paths."""
        paths, base = predicting.list_images(os.fspath(image_path), key='image_path')
        for folder in ('pseudo_color_prediction', 'added_prediction'):
            require_dir(os.path.join(save_dir, folder), 'a folder for the predictions', 'save_dir')
        return predicting.predict(self._forward, self.cfg.val_transforms, paths, save_dir, self.palette,
                                  self.options, base)

    def write_submission(self, image_path, save_dir, server):
        """Write a test server's submission (``paddleseg predict --submission``) and return the zip's path.

        Args:
            image_path (str): The test split's images: a folder (e.g. ``leftImg8bit/test``), a list file
                or one image.
            save_dir (str): Output folder (see :mod:`paddle_psp.inference.submission` for its layout).
            server (str): 'cityscapes' or 'voc'.

        Raises:
            UserError: An unknown server, a model of another class count, or a badly named image, before
                any image is predicted.
        """
        found = submission.get_format(server, self.cfg.num_classes)
        paths, base = predicting.list_images(os.fspath(image_path), key='image_path')
        require_dir(os.path.join(save_dir, found.folder), f'a folder for the {server} submission', 'save_dir')
        submission.output_names(found, paths)
        return predicting.predict(self._forward, self.cfg.val_transforms, paths, save_dir, self.palette,
                                  self.options, base, found)[-1]

    def evaluate(self, data=None, num_workers=0, print_detail=False, auc_roc=False):
        """Score the model on a validation set, as ``paddleseg val`` does.

        Args:
            data (str, optional): A dataset root replacing the config's ``val_dataset.dataset_root``, or a
                config file whose ``val_dataset`` (and its transforms) is scored. Default: None, the
                config's own ``val_dataset``.
            num_workers (int, optional): Processes reading images. Default: 0.
            print_detail (bool, optional): Log progress and the report, as ``paddleseg val``. Default: False.
            auc_roc (bool, optional): Also ``auc_roc``, as ``--auc_roc``. Default: False.

        Returns:
            dict: ``mIoU``, ``Acc``, ``Kappa``, ``Dice``; per class ``class_IoU``, ``class_precision``,
            ``class_recall``, ``class_Dice`` (arrays, NaN where undefined); ``confusion``, ``class_names``,
            ``num_images``, ``seconds`` (see :func:`paddle_psp.evaluation.evaluate.evaluate`).
        """
        if data is None:
            dataset = self.cfg.val_dataset
        elif os.path.isfile(os.fspath(data)):
            dataset = load_config(os.fspath(data)).val_dataset
        else:
            dataset = build_val_dataset(self.cfg, os.fspath(data))
        return evaluate_with_options(self._forward, dataset, self.options, num_workers, print_detail, auc_roc)

    def benchmark(self, data_root=None, save_dir=os.path.join('output', 'benchmark'), scales=DEFAULT_SCALES,
                  limit=None, name=None):
        """The mIoU / flip / ms+flip table of ``paddleseg benchmark`` for this model, as a structure.

        Args:
            data_root (str, optional): Replaces ``val_dataset.dataset_root``. Default: None.
            save_dir (str, optional): Where ``benchmark.json`` and ``benchmark.md`` go (replaced).
            scales (tuple, optional): The ms+flip column's scales. Default: (0.75, 1.0, 1.25).
            limit (int, optional): Score only the first ``limit`` images. Default: None.
            name (str, optional): The table's row name. Default: the config's file stem.

        Returns:
            dict: As ``benchmark.json``: ``entries`` (one, with ``columns``), ``settings``, ``environment``,
            and ``markdown`` (the table).
        """
        forwards = self._forward_options
        window = {'is_slide': self.options.crop_size is not None, 'crop_size': self.options.crop_size,
                  'stride': self.options.stride}
        settings = Settings(scales=tuple(scales), legacy=self.options.legacy, limit=limit, data_root=data_root,
                            opts=tuple(self.opts), dygraph=not forwards.fast, quantize=forwards.quantize,
                            calib_images=forwards.calib_images, **window)
        target = weights_target(self.config_path, self.model_path, name)
        return runner.run([target], settings, save_dir, overwrite=True)
