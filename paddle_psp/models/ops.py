"""PSPNet's fusion convolution computed without building its input: :func:`factored_fusion_conv`.

The pyramid pooling module ends with one k x k convolution (k = 3) over
``concat([x, up(p_1), ..., up(p_n)])``: the input ``x`` (C channels, H x W) and each pooled branch
``p_i`` (B channels, s_i x s_i) upsampled bilinearly to H x W. The upsampled half of that input is the
largest tensor of the model and costs as much convolution work as ``x`` itself, yet it only holds
``n * B * s_i^2`` distinct numbers. The factored form never builds it:

1. Convolution is linear in its input channels. Splitting the weight ``W`` along its input channels into
   ``W_x`` (C) and ``W_i`` (B each), ``conv(concat[x, u_1, ...], W) = conv(x, W_x) + sum_i conv(u_i, W_i)``.
2. A k x k convolution with zero padding is a sum over its k^2 taps ``(dy, dx)``: tap ``W_i[:, :, dy, dx]``
   mixes channels (a 1x1 convolution), then its result is shifted by ``(dy - k // 2, dx - k // 2)`` with
   zeros entering at the border.
3. Channel mixing acts on channels only; bilinear upsampling and shifting act on positions only, and each
   is a linear map on its own axes. So they commute: ``shift(up(W_tap . p_i)) = W_tap . shift(up(p_i))``.
   Each tap is therefore applied at the pooled resolution (one 1x1 convolution with k^2 x out channels
   per branch, on s_i x s_i positions) and only its result is upsampled and shifted.
4. Bilinear upsampling is separable: a product with a ``[s_i, H]`` matrix along the rows, then a
   ``[s_i, W]`` one along the columns. A shift is a shift of the matrix's columns (:func:`tap_matrix`).
   Stacking the k shifted matrices of one axis turns "shift, upsample and sum over that axis' taps" into
   one matrix product over (tap, pooled position); stacking all branches along the column product sums
   the branches in the same product.

The interpolation matrices are built by resizing an identity with Paddle's own bilinear resize, so the
weights are those of ``F.interpolate``: the result is the same function of the same parameters, with the
same gradients, up to floating-point summation order.
"""
import paddle
import paddle.nn.functional as F


def factored_fusion_conv(x, branches, weight, bias=None, align_corners=False):
    """``conv2d(concat([x] + [up(b) for b in branches]), weight, bias)`` (same padding) without the concat.

    ``up`` is bilinear resizing to ``x``'s height and width; see the module docstring for why the two
    agree.

    Args:
        x (paddle.Tensor): N x C x H x W.
        branches (list[paddle.Tensor]): N x B_i x h_i x w_i each, in the order of the concat.
        weight (paddle.Tensor): out x (C + sum B_i) x k x k, k odd.
        bias (paddle.Tensor, optional): out. Default: None.
        align_corners (bool, optional): ``align_corners`` of ``up``. Default: False.

    Returns:
        paddle.Tensor: N x out x H x W.
    """
    out_channels, _, kernel, _ = weight.shape
    # One split, not slices: the gradient of a split is one concat, each slice's a weight-sized tensor.
    direct, *branch_weights = paddle.split(weight, [x.shape[1]] + [b.shape[1] for b in branches], axis=1)
    shape = paddle.shape(x)
    columns, column_matrices = [], []
    for branch, branch_weight in zip(branches, branch_weights):
        rows, cols = branch.shape[2], branch.shape[3]
        taps = branch_weight.transpose([2, 3, 0, 1]).reshape([kernel * kernel * out_channels, branch.shape[1], 1, 1])
        tapped = F.conv2d(branch, taps).reshape([-1, kernel, kernel, out_channels, rows, cols])
        tapped = tapped.transpose([0, 3, 2, 5, 1, 4]).reshape(
            [-1, out_channels, kernel * cols, kernel * rows])  # N, out, (dx, column), (dy, row)
        vertical = F.linear(tapped, tap_matrix(shape[2], rows, kernel, align_corners, x.dtype))
        columns.append(vertical.transpose([0, 1, 3, 2]))  # N, out, H, (dx, column)
        column_matrices.append(tap_matrix(shape[3], cols, kernel, align_corners, x.dtype))
    # The column products of all branches and taps as one 2-D product (oneDNN runs the broadcast
    # 4-D x 2-D form far slower).
    columns = paddle.concat(columns, axis=3)
    pyramid = F.linear(columns.reshape([-1, columns.shape[3]]), paddle.concat(column_matrices, axis=0))
    fused = F.conv2d(x, direct, bias, padding=kernel // 2)
    return fused + pyramid.reshape([shape[0], out_channels, shape[2], shape[3]])


def tap_matrix(length, size, kernel, align_corners, dtype='float32'):
    """The ``[kernel * size, length]`` matrix that upsamples ``size`` positions to ``length`` and shifts.

    Row (tap d, pooled position j), column i holds the bilinear weight of position j at output position
    ``i + d - kernel // 2`` (zero outside the image: the convolution's zero padding).
    """
    identity = paddle.eye(size, dtype=dtype).reshape([1, size, size, 1])
    weights = F.interpolate(identity, size=[length, 1], mode='bilinear', align_corners=align_corners)
    weights = weights.reshape([size, -1])  # pooled position, output position
    half = kernel // 2
    zeros = paddle.zeros([size, half], dtype)
    padded = paddle.concat([zeros, weights, zeros], axis=1)
    return paddle.concat([padded[:, start:(start - 2 * half) or None] for start in range(kernel)], axis=0)
