"""Cross-entropy that is correct on Paddle 3 (PaddleSeg 2.8's raises a float32/int64 promotion error), with
every argument of PaddleSeg's ``CrossEntropyLoss``; configs naming PaddleSeg's get this one (see
:mod:`paddle_psp.config.upstream`)."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg.cvlibs import manager

DATA_FORMATS = ('NCHW', 'NHWC')
EPS = 1e-8


@manager.LOSSES.add_component
class ZooCrossEntropyLoss(nn.Layer):
    """Pixel-wise softmax cross-entropy, PaddleSeg 2.8's ``CrossEntropyLoss`` semantics.

    The loss of a pixel labelled ``ignore_index`` is 0. The result is the sum of the pixel losses (times the
    class weight of the pixel's label, and ``semantic_weights``) divided by the sum of the class weights of
    the pixels counted: the pixels that are not ignored (``avg_non_ignore``) or all of them.

    Args:
        weight (list[float], optional): Per-class weights; the mean is then weighted too. Default: None.
        ignore_index (int, optional): Label value that contributes nothing. Default: 255.
        top_k_percent_pixels (float, optional): In (0, 1]: below 1, only the largest ``top_k_percent_pixels``
            of the pixel losses are averaged (hard pixel mining), divided by the mean class weight of those
            pixels (an ignored pixel counts with class 0's weight, as PaddleSeg). Default: 1.0.
        avg_non_ignore (bool, optional): Average over the pixels that are not ignored; False: over all
            pixels (ignored ones count with weight 1; PaddleSeg 2.8 fails there when ``weight`` is given).
            Default: True.
        data_format (str, optional): 'NCHW' or 'NHWC': where the class axis of the logits is. Default: 'NCHW'.
    """

    def __init__(self, weight=None, ignore_index=255, top_k_percent_pixels=1.0, avg_non_ignore=True,
                 data_format='NCHW'):
        super().__init__()
        if data_format not in DATA_FORMATS:
            raise ValueError(f'data_format: expected one of {list(DATA_FORMATS)}, got {data_format!r}')
        if not 0 < top_k_percent_pixels <= 1:
            raise ValueError(f'top_k_percent_pixels: expected a number in (0, 1], got {top_k_percent_pixels!r}')
        self.ignore_index = ignore_index
        self.top_k_percent_pixels = top_k_percent_pixels
        self.avg_non_ignore = avg_non_ignore
        self.data_format = data_format
        self.weight = None if weight is None else paddle.to_tensor(weight, dtype='float32')

    def forward(self, logit, label, semantic_weights=None):
        """Args: logit (N, C, H, W), or (N, H, W, C) for NHWC, float; label (N, H, W) or (N, 1, H, W)
        integer; semantic_weights (N, H, W) float per-pixel factors of the loss, optional. Returns a 0-D loss."""
        if self.data_format == 'NCHW':
            logit = logit.transpose([0, 2, 3, 1])
        if self.weight is not None and logit.shape[-1] != self.weight.shape[0]:
            raise ValueError(f'weight: {self.weight.shape[0]} class weights but the logits have '
                             f'{logit.shape[-1]} classes; expected one weight per class')
        if label.ndim == 4:
            label = label.squeeze(1)
        label = label.astype('int64')
        valid = label != self.ignore_index
        safe_label = paddle.where(valid, label, paddle.zeros_like(label))
        loss = F.cross_entropy(logit, safe_label.unsqueeze(-1), reduction='none', axis=-1).squeeze(-1)
        class_weight = paddle.ones_like(loss) if self.weight is None else \
            paddle.gather(self.weight, safe_label.flatten()).reshape(label.shape)
        loss = loss * valid.astype(loss.dtype) * class_weight
        if semantic_weights is not None:
            loss = loss * semantic_weights
        if self.top_k_percent_pixels < 1:
            loss, indices = paddle.topk(loss.flatten(), int(self.top_k_percent_pixels * loss.numel()))
            return loss.mean() / (paddle.gather(class_weight.flatten(), indices).mean() + EPS)
        counted = valid.astype(loss.dtype) * class_weight if self.avg_non_ignore else \
            paddle.where(valid, class_weight, paddle.ones_like(class_weight))
        return loss.sum() / paddle.clip(counted.sum(), min=EPS)
