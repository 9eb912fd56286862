"""The flags of ``paddleseg quickstart`` (:mod:`paddle_psp.quickstart`), and its steps and outputs, described
once, in the verb's help. Standard library only (see :mod:`paddle_psp.core.flags`)."""
import argparse
import os

from paddle_psp.core.flags import OneLineParser

QUICKSTART_SAVE_DIR = os.path.join('.', 'quickstart_output')
QUICKSTART_DESCRIPTION = 'The built-in demo, end to end on a CPU in a few minutes, no network needed.'
QUICKSTART_STEPS = """
1. Generates a small deterministic street-scene dataset in Cityscapes layout.
2. Trains PSPNet on a dilated ResNet50-vd (output stride 8) as paddleseg train does, with VisualDL logs,
   from random weights (no ImageNet weights: they would need a download) with a 64-channel pyramid head,
   small crops and a short schedule (the config named quickstart).
3. Benchmarks the trained model as paddleseg benchmark does (mIoU, flip, ms+flip from one pass per image)
   and prints the table with the chance level next to it.

Everything goes to --save_dir (./quickstart_output): data/, train/ (checkpoints, VisualDL records),
benchmark/ (benchmark.json, benchmark.md) and summary.json.
"""


def quickstart_parser():
    """The ``paddleseg quickstart`` argument parser."""
    parser = OneLineParser(prog='paddleseg quickstart', description=QUICKSTART_DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=QUICKSTART_STEPS)
    parser.add_argument('--save_dir', default=QUICKSTART_SAVE_DIR,
                        help=f'output directory ({QUICKSTART_SAVE_DIR})')
    parser.add_argument('--iters', type=int, help='training iterations (default: the quickstart config\'s)')
    parser.add_argument('--overwrite', action='store_true', help='replace the results of an earlier quickstart')
    parser.add_argument('--dygraph', action='store_true',
                        help='benchmark the dygraph model instead of the fast CPU path')
    return parser
