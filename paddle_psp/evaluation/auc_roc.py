"""``paddleseg val --auc_roc``: the area under the ROC curve of the per-pixel softmax scores.

PaddleSeg 2.8 (``utils.metrics.auc_roc``) keeps the softmax scores of every pixel of every image and calls
scikit-learn's ``roc_auc_score``: with two classes on the scores of class 1, otherwise one-vs-rest and
macro-averaged. The same is computed here, one-vs-rest class by class, which equals scikit-learn's
multi-class value when every class occurs in the labels and also answers when some do not (those classes
are left out of the average; PaddleSeg raises). Pixels labelled ``ignore_index`` are left out (PaddleSeg
refuses labels holding it). Like PaddleSeg's, this holds every pixel's scores in memory.
"""
import numpy as np

from paddle_psp.inference.tta import softmax


class AucRoc:
    """Collects softmax scores and labels image by image; :meth:`value` is the AUC-ROC.

    Args:
        num_classes (int): Classes (score columns).
        ignore_index (int): Label of pixels left out.
    """

    def __init__(self, num_classes, ignore_index):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.scores, self.labels = [], []

    def update(self, logits, label):
        """Add one image: ``logits`` (C, H, W) as the model gives them, ``label`` (H, W)."""
        label = np.asarray(label).reshape(-1)
        keep = label != self.ignore_index
        probabilities = softmax(np.asarray(logits, np.float32)[None])[0].reshape(self.num_classes, -1)
        self.scores.append(probabilities[:, keep].T.astype(np.float32))
        self.labels.append(label[keep].astype(np.int64))

    def value(self):
        """The AUC-ROC (float), or None when no class has both positive and negative pixels."""
        from sklearn.metrics import roc_auc_score  # lazy: scikit-learn only for this option

        scores, labels = np.concatenate(self.scores), np.concatenate(self.labels)
        if self.num_classes == 2:
            return float(roc_auc_score(labels, scores[:, 1])) if len(np.unique(labels)) == 2 else None
        areas = [roc_auc_score(labels == c, scores[:, c]) for c in range(self.num_classes)
                 if 0 < np.count_nonzero(labels == c) < labels.size]
        return float(np.mean(areas)) if areas else None
