"""Which convolutions int8 keeps in fp32 (quantize.fine_resolution_filters), on a small exported model whose
strides are known, and in the int8 model Paddle's quantization writes from it."""
import os

import numpy as np
import paddle
import pytest

from paddle_psp.inference import export, quantize


class StridedNet(paddle.nn.Layer):
    """conv s2 (1/2), conv s1 (1/2), conv s2 (1/4), conv s2 (1/8), then a pyramid-pooling-like branch:
    adaptive pooling, a 1x1 conv at a size that does not follow the image, resized back and added."""

    def __init__(self):
        super().__init__()
        self.convs = paddle.nn.LayerList([paddle.nn.Conv2D(3 if i == 0 else 8, 8, 3, stride=s, padding=1)
                                          for i, s in enumerate((2, 1, 2, 2))])
        self.pooled = paddle.nn.Conv2D(8, 8, 1)
        self.classifier = paddle.nn.Conv2D(8, 4, 1)

    def forward(self, x):
        for conv in self.convs:
            x = paddle.nn.functional.relu(conv(x))
        pooled = self.pooled(paddle.nn.functional.adaptive_avg_pool2d(x, 2))
        x = x + paddle.nn.functional.interpolate(pooled, size=x.shape[2:], mode='bilinear')
        return [self.classifier(x)]


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    paddle.seed(0)
    model = StridedNet()
    model.eval()
    folder = str(tmp_path_factory.mktemp('strided'))
    export.save_static_model(model, folder, [None, 3, None, None], 'none')
    return model, folder


def load_program(folder, max_strides=(quantize.FP32_MAX_STRIDE,)):
    """(the program's conv2d ops, fine_resolution_filters at each of ``max_strides``)."""
    paddle.enable_static()
    try:
        with paddle.pir_utils.OldIrGuard():
            program = paddle.static.load_inference_model(
                folder, paddle.static.Executor(paddle.CPUPlace()), model_filename=export.MODEL_FILES[0],
                params_filename=export.MODEL_FILES[1])[0]
            convs = [op for op in program.global_block().ops if op.type == 'conv2d']
            return convs, [quantize.fine_resolution_filters(program, limit) for limit in max_strides]
    finally:
        paddle.disable_static()


def test_fine_resolution_filters_are_the_convolutions_up_to_stride_4(exported):
    convs, (fine, up_to_2, none, unlimited) = load_program(exported[1], (4, 2, 1, 10 ** 6))
    filters = [op.input('Filter')[0] for op in convs]
    assert len(filters) == 6
    assert fine == filters[:3]  # outputs at 1/2, 1/2, 1/4 of the image
    assert up_to_2 == filters[:2] and none == []
    # the conv after adaptive pooling has no stride (its size does not follow the image's), however coarse the
    # limit; the classifier after the sum with the 1/8 map is at 1/8
    assert unlimited == filters[:4] + filters[5:]


def test_int8_model_keeps_the_fine_convolutions_fp32(exported, tmp_path):
    _, folder = exported
    _, (fine,) = load_program(folder)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((1, 3, 32, 32)).astype('float32') for _ in range(2)]
    quantize.quantize_model(folder, str(tmp_path), export.MODEL_FILES, batches)
    int8_convs, _ = load_program(str(tmp_path))
    program_inputs = [[name for slot in op.input_names for name in op.input(slot)] for op in int8_convs]
    quantized = [any('quant' in name for name in names) for names in program_inputs]
    assert quantized == [False] * len(fine) + [True] * (len(int8_convs) - len(fine))
