"""Cross-entropy that is correct on Paddle 3 (PaddleSeg 2.8's raises a float32/int64 promotion error)."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.cvlibs import manager


@manager.LOSSES.add_component
class ZooCrossEntropyLoss(nn.Layer):
    """Pixel-wise softmax cross-entropy averaged over the pixels that are not ``ignore_index``.

    Args:
        weight (list[float], optional): Per-class weights; the mean is then weighted too. Default: None.
        ignore_index (int, optional): Label value that contributes nothing. Default: 255.
    """

    def __init__(self, weight=None, ignore_index=255):
        super().__init__()
        self.ignore_index = ignore_index
        self.weight = None if weight is None else paddle.to_tensor(weight, dtype='float32')

    def forward(self, logit, label):
        """Args: logit (N, C, H, W) float; label (N, H, W) or (N, 1, H, W) integer. Returns a 0-D loss."""
        if label.ndim == 4:
            label = label.squeeze(1)
        label = label.astype('int64')
        valid = label != self.ignore_index
        safe_label = paddle.where(valid, label, paddle.zeros_like(label))
        loss = F.cross_entropy(logit.transpose([0, 2, 3, 1]), safe_label.unsqueeze(-1), reduction='none',
                               axis=-1).squeeze(-1)
        pixel_weight = valid.astype(loss.dtype)
        if self.weight is not None:
            pixel_weight = pixel_weight * paddle.gather(self.weight, safe_label.flatten()).reshape(label.shape)
        return (loss * pixel_weight).sum() / paddle.clip(pixel_weight.sum(), min=1e-8)
