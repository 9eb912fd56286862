"""Which convolutions cost the int8 model its accuracy: the quickstart model quantized with groups of them kept fp32.

Usage (from the repository root, on a ``paddleseg quickstart`` output)::

    python benchmarks/experiments/int8_layers.py --quickstart quickstart_output
    python benchmarks/experiments/int8_layers.py --quickstart DIR --groups 0:3 3:13 13:30 30:65

The quickstart model (its last checkpoint) is exported as the fast path exports it and quantized as
``--quantize int8`` quantizes it (Paddle's post-training quantization, 'abs_max', the first ``--calib`` train
images through the val transforms), except which convolutions stay fp32: for each ``--groups`` entry
``A:B``, the convolutions A to B-1 in program order (counting only those with a weight parameter: for a
ResNet50-vd, 0-2 the stem, 3-12 the first stage); ``none`` quantizes every convolution, ``rule`` keeps the
ones :func:`paddle_psp.inference.quantize.fine_resolution_filters` names (what ``--quantize int8`` does).

Printed: the CPU and load, the fp32 mIoU and per-class IoU on the val split, then per group the int8 mIoU,
its drop and per-class IoU, and the int8 forward's speed-up over fp32 on one val image (median of 7
interleaved runs).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'benchmarks'))  # speed.py
QUICKSTART_CONFIG = os.path.join(REPO, 'configs', 'quickstart', 'pspnet_resnet50_os8_synthcity_quickstart.yml')


def conv_filters(fp32_dir):
    """(filter names of the convolutions with a weight parameter, in program order; the program)."""
    import paddle
    from paddle_psp.inference import export
    paddle.enable_static()
    try:
        with paddle.pir_utils.OldIrGuard():
            program = paddle.static.load_inference_model(
                fp32_dir, paddle.static.Executor(paddle.CPUPlace()), model_filename=export.MODEL_FILES[0],
                params_filename=export.MODEL_FILES[1])[0]
            params = {var.name for var in program.list_vars() if var.persistable}
            return [op.input('Filter')[0] for op in program.global_block().ops
                    if op.type in ('conv2d', 'depthwise_conv2d') and op.input('Filter')[0] in params], program
    finally:
        paddle.disable_static()


def quantize_keeping(fp32_dir, int8_dir, batches, keep):
    """``quantize.quantize_model`` with the convolutions of the filter names ``keep`` left fp32."""
    from unittest import mock
    from paddle_psp.inference import export, quantize
    with mock.patch.object(quantize, 'fine_resolution_filters', lambda program: list(keep)):
        quantize.quantize_model(fp32_dir, int8_dir, export.MODEL_FILES, batches)


def speed_up(fp32, int8, batch, repeat=7):
    """Median fp32 time over median int8 time, interleaved, after one run of each."""
    fp32(batch), int8(batch)
    times = {fp32: [], int8: []}
    for _ in range(repeat):
        for forward in (fp32, int8):
            start = time.perf_counter()
            forward(batch)
            times[forward].append(time.perf_counter() - start)
    return statistics.median(times[fp32]) / statistics.median(times[int8])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quickstart', required=True, help='a paddleseg quickstart output folder')
    parser.add_argument('--groups', nargs='+', default=['none', 'rule', '0:3', '3:13', '13:30', '30:65'])
    parser.add_argument('--calib', type=int, default=32, help='calibration images')
    args = parser.parse_args(argv)
    from paddle_psp.config import load_config
    from paddle_psp.core import machine
    from paddle_psp.evaluation.evaluate import evaluate
    from paddle_psp.inference import export, quantize
    from paddle_psp.inference.entry import inference_copy
    from paddle_psp.inference.runner import inference_forward
    from paddle_psp.weights.state_dict import load_for_eval
    root = os.path.join(args.quickstart, 'data')
    cfg = load_config(QUICKSTART_CONFIG, opts=[f'train_dataset.dataset_root={root}', f'val_dataset.dataset_root={root}'])
    weights = os.path.join(args.quickstart, 'train', f'iter_{cfg.iters}', 'model.pdparams')
    from speed import where_and_when
    print(f'{where_and_when("int8_layers.py")}; load {machine.load_average_text()}, {weights}, '
          f'{args.calib} calibration images', flush=True)
    model = load_for_eval(cfg.build_model(pretrained=False), weights)
    batches = quantize.config_calibration(cfg, 'int8', args.calib)
    batch = cfg.val_dataset[0]['img'][None]

    def report(name, forward):
        scores = evaluate(forward, cfg.val_dataset, print_detail=False)
        ious = {n: f'{100 * v:.1f}' for n, v in zip(scores['class_names'], scores['class_IoU']) if v and v > 0}
        print(f'{name:<12} mIoU {100 * scores["mIoU"]:6.2f}  {ious}', flush=True)
        return 100 * scores['mIoU']

    with tempfile.TemporaryDirectory(prefix='int8_layers.') as folder:
        fp32_dir = os.path.join(folder, 'fp32')
        export.save_static_model(inference_copy(model), fp32_dir, [None, 3, None, None], 'none')
        filters, program = conv_filters(fp32_dir)
        fp32 = inference_forward(fp32_dir)
        base = report('fp32', fp32)
        for group in args.groups:
            if group == 'none':
                keep = []
            elif group == 'rule':
                keep = quantize.fine_resolution_filters(program)
            else:
                start, stop = (int(value) for value in group.split(':'))
                keep = filters[start:stop]
            int8_dir = os.path.join(folder, f'int8_{group.replace(":", "_")}')
            quantize_keeping(fp32_dir, int8_dir, batches, keep)
            int8 = inference_forward(int8_dir, int8=True)
            mark = f'{group} fp32' if group not in ('none', 'rule') else group
            miou = report(mark, int8)
            print(f'{"":<12} {len(keep)} convolutions fp32, drop {base - miou:.2f} points, speed-up '
                  f'{speed_up(fp32, int8, batch):.2f}x', flush=True)


if __name__ == '__main__':
    main()
