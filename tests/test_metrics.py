"""Metrics against a reference written with per-class boolean masks (no confusion matrix, no bincount)."""
import numpy as np
import pytest

from paddle_psp.evaluation import metrics

IGNORE = 255


def reference_scores(preds, labels, num_classes):
    """mIoU & co. from per-class boolean masks over all pixels; nan where a class' denominator is 0."""
    pred = np.concatenate([p.ravel() for p in preds])
    label = np.concatenate([l.ravel() for l in labels])
    keep = label != IGNORE
    pred, label = pred[keep], label[keep]
    iou, precision, recall, dice = [], [], [], []
    for c in range(num_classes):
        is_pred, is_label = pred == c, label == c
        both = np.logical_and(is_pred, is_label).sum()
        either = np.logical_or(is_pred, is_label).sum()
        iou.append(both / either if either else np.nan)
        dice.append(2 * both / (is_pred.sum() + is_label.sum()) if either else np.nan)
        precision.append(both / is_pred.sum() if is_pred.sum() else np.nan)
        recall.append(both / is_label.sum() if is_label.sum() else np.nan)
    accuracy = np.mean(pred == label)
    chance = sum(np.mean(pred == c) * np.mean(label == c) for c in range(num_classes))
    return {'mIoU': np.nanmean(iou), 'Acc': accuracy, 'Kappa': (accuracy - chance) / (1 - chance),
            'Dice': np.nanmean(dice), 'class_IoU': np.array(iou), 'class_precision': np.array(precision),
            'class_recall': np.array(recall), 'class_Dice': np.array(dice)}


def random_pair(rng, shape, num_classes, used_classes):
    """A label (with ignored pixels) and a prediction that agrees with it on about 60 % of the pixels."""
    label = rng.choice(used_classes, size=shape).astype(np.uint8)
    label[rng.rand(*shape) < 0.1] = IGNORE
    pred = np.where(rng.rand(*shape) < 0.6, label, rng.randint(0, num_classes - 1, shape)).astype(np.int64)
    pred[pred == IGNORE] = 0
    return pred, label


def test_scores_match_per_class_mask_reference():
    rng = np.random.RandomState(0)
    num_classes = 7
    pairs = [random_pair(rng, (23, 31), num_classes, [0, 1, 2, 4, 5]) for _ in range(3)]
    confusion = metrics.ConfusionMatrix(num_classes)
    for pred, label in pairs:
        confusion.update(pred, label)
    got = confusion.scores()
    expected = reference_scores(*zip(*pairs), num_classes)
    for key in ('mIoU', 'Acc', 'Kappa', 'Dice'):
        assert got[key] == pytest.approx(expected[key], rel=1e-12), key
        assert isinstance(got[key], float)
    for key in ('class_IoU', 'class_precision', 'class_recall', 'class_Dice'):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-12, equal_nan=True, err_msg=key)
    assert np.isnan(got['class_IoU'][6]) and got['class_IoU'][3] == 0  # class 3 predicted, never labelled
    assert got['confusion'].sum() == sum((label != IGNORE).sum() for _, label in pairs)
    assert 0.3 < got['mIoU'] < 0.9


def test_confusion_matrix_rows_are_labels_and_out_of_range_labels_are_ignored():
    pred = np.array([[0, 1, 1], [2, 2, 0]])
    label = np.array([[0, 0, 1], [2, 255, 9]])  # 255 and 9 (>= num_classes) are not counted
    matrix = metrics.confusion_matrix(pred, label, 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match='class ids'):
        metrics.confusion_matrix(np.array([3]), np.array([0]), 3)


def test_perfect_prediction_scores_one():
    label = np.random.RandomState(1).randint(0, 4, (16, 16))
    scores = metrics.scores_from_confusion(metrics.confusion_matrix(label, label, 4))
    assert scores['mIoU'] == scores['Acc'] == scores['Kappa'] == scores['Dice'] == 1.0


def test_empty_confusion_matrix_gives_zeros_not_errors():
    scores = metrics.scores_from_confusion(np.zeros((3, 3), np.int64))
    assert scores['mIoU'] == scores['Acc'] == scores['Kappa'] == 0.0
    assert np.isnan(scores['class_IoU']).all()


def test_report_names_every_class_and_marks_undefined_scores():
    matrix = np.array([[5, 1, 0], [2, 6, 0], [0, 0, 0]])
    scores = metrics.scores_from_confusion(matrix)
    report = metrics.format_report(scores, ['road', 'sidewalk', 'building'], num_images=2).split('\n')
    assert report[0] == ('[EVAL] #Images: 2 mIoU: {:.4f} Acc: {:.4f} Kappa: {:.4f} Dice: {:.4f}'
                         .format(scores['mIoU'], scores['Acc'], scores['Kappa'], scores['Dice']))
    assert report[2].split()[1:] == ['road'] + [f'{v:.4f}' for v in (5 / 8, 5 / 7, 5 / 6, 10 / 13)] + ['6']
    assert report[4].split()[1:] == ['building', '-', '-', '-', '-', '0']
