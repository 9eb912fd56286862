"""Segmentation metrics from a confusion matrix: mIoU, pixel accuracy, Kappa, Dice, per-class scores.

Definitions follow PaddleSeg (``paddleseg.utils.metrics``) with one difference: a per-class score whose
denominator is zero (a class that occurs neither in the labels nor in the predictions, for IoU and Dice;
never predicted, for precision; never labelled, for recall) is ``nan`` and left out of the means, where
PaddleSeg counts it as 0. On Cityscapes and VOC val every class occurs, so the numbers agree there; on a
small dataset with few classes the mean is over the classes that occur.
"""
import numpy as np

from paddle_psp.core.log import logger
from paddle_psp.data.datasets import IGNORE_INDEX


def confusion_matrix(pred, label, num_classes, ignore_index=IGNORE_INDEX):
    """Counts of (label, prediction) pairs over the pixels whose label is a class.

    Pixels labelled ``ignore_index`` (or any value outside ``[0, num_classes)``) are not counted.
    Predictions must be class ids in ``[0, num_classes)``.

    Args:
        pred (np.ndarray): Predicted class ids, any integer dtype and shape.
        label (np.ndarray): Labels of the same number of pixels.
        num_classes (int): Number of classes C.
        ignore_index (int, optional): Label value to ignore. Default: 255.

    Returns:
        np.ndarray: int64 matrix (C, C); rows are labels, columns predictions.
    """
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    label = np.asarray(label).reshape(-1).astype(np.int64)
    if pred.size != label.size:
        raise ValueError(f'prediction has {pred.size} pixels, label {label.size}')
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f'predictions must be class ids in [0, {num_classes}), got {pred.min()}..{pred.max()}')
    valid = (label != ignore_index) & (label >= 0) & (label < num_classes)
    pairs = label[valid] * num_classes + pred[valid]
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


class ConfusionMatrix:
    """A running confusion matrix for one evaluation.

    Args:
        num_classes (int): Number of classes.
        ignore_index (int, optional): Label value to ignore. Default: 255.
    """

    def __init__(self, num_classes, ignore_index=IGNORE_INDEX):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, pred, label):
        """Add one prediction / label pair (same number of pixels)."""
        self.matrix += confusion_matrix(pred, label, self.num_classes, self.ignore_index)

    def scores(self):
        """The metrics of the pixels seen so far; see :func:`scores_from_confusion`."""
        return scores_from_confusion(self.matrix)


def _ratio(numerator, denominator):
    """Element-wise ratio, ``nan`` where the denominator is 0."""
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _mean(values):
    """Mean over the defined (non-nan) values; 0.0 if there are none."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else 0.0


def scores_from_confusion(matrix):
    """mIoU, Acc, Kappa, Dice and per-class IoU / precision / recall / Dice of a confusion matrix.

    Args:
        matrix (np.ndarray): (C, C) counts, rows labels, columns predictions.

    Returns:
        dict: ``mIoU``, ``Acc``, ``Kappa``, ``Dice`` (floats); ``class_IoU``, ``class_precision``,
        ``class_recall``, ``class_Dice`` (float arrays of C, nan where undefined); ``confusion`` (the matrix).
    """
    matrix = np.asarray(matrix, np.int64)
    intersect = np.diag(matrix).astype(np.float64)
    label_area = matrix.sum(axis=1).astype(np.float64)
    pred_area = matrix.sum(axis=0).astype(np.float64)
    total = label_area.sum()
    class_iou = _ratio(intersect, label_area + pred_area - intersect)
    class_dice = _ratio(2 * intersect, label_area + pred_area)
    accuracy = intersect.sum() / total if total else 0.0
    chance = (label_area * pred_area).sum() / (total * total) if total else 0.0
    kappa = (accuracy - chance) / (1 - chance) if chance < 1 else 0.0
    return {
        'mIoU': _mean(class_iou), 'Acc': float(accuracy), 'Kappa': float(kappa), 'Dice': _mean(class_dice),
        'class_IoU': class_iou, 'class_precision': _ratio(intersect, pred_area),
        'class_recall': _ratio(intersect, label_area), 'class_Dice': class_dice, 'confusion': matrix,
    }


def format_report(scores, names, num_images=None):
    """The metric report as text: one summary line, then one line per class.

    Args:
        scores (dict): From :func:`scores_from_confusion`.
        names (list[str]): Class names.
        num_images (int, optional): Shown in the summary line.

    Returns:
        str: The report (no trailing newline).
    """
    head = '[EVAL] ' + (f'#Images: {num_images} ' if num_images is not None else '')
    lines = [head + 'mIoU: {mIoU:.4f} Acc: {Acc:.4f} Kappa: {Kappa:.4f} Dice: {Dice:.4f}'.format(**scores)]
    width = max([len('class')] + [len(n) for n in names])
    columns = ('IoU', 'Precision', 'Recall', 'Dice', '#label')
    lines.append(f'[EVAL] {"class":<{width}}' + ''.join(f'{c:>10}' for c in columns))
    counts = scores['confusion'].sum(axis=1)
    for i, name in enumerate(names):
        values = [scores[k][i] for k in ('class_IoU', 'class_precision', 'class_recall', 'class_Dice')]
        cells = ''.join(f'{"-":>10}' if np.isnan(v) else f'{v:>10.4f}' for v in values)
        lines.append(f'[EVAL] {name:<{width}}{cells}{counts[i]:>10d}')
    return '\n'.join(lines)


def log_report(scores, names, num_images=None):
    """Log :func:`format_report` line by line with the package logger."""
    for line in format_report(scores, names, num_images).split('\n'):
        logger.info(line)
