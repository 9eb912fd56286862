"""Fill the mIoU / mIoU (flip) / mIoU (ms+flip) table: the same as ``paddleseg benchmark``.

    python benchmarks/run.py --zoo all --dataset cityscapes --data_root data/cityscapes
    python benchmarks/run.py --config my.yml --model_path output/iter_1000/model.pdparams --limit 20

Run ``python benchmarks/run.py --help`` for every option (see paddle_psp/benchmark/).
"""
import sys

from paddle_psp_cli import main

if __name__ == '__main__':
    sys.exit(main(['benchmark'] + sys.argv[1:]))
