"""The flags of ``paddleseg prepare``, one sub-command per dataset. Standard library only (see
:mod:`paddle_psp.core.flags`)."""
import argparse

from paddle_psp.core.flags import OneLineParser


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'{text}: expected an integer >= 1')
    return value


def prepare_parser():
    """The ``paddleseg prepare`` argument parser with one sub-command per dataset."""
    parser = OneLineParser(
        prog='paddleseg prepare',
        description='Convert a dataset from its official format into what PaddleSeg\'s datasets read. '
                    'Safe to re-run: up-to-date outputs are skipped, every file is written atomically.')
    datasets = parser.add_subparsers(dest='dataset', required=True, metavar='DATASET')
    city = datasets.add_parser(
        'cityscapes', help='gtFine *_labelIds.png -> *_labelTrainIds.png, plus ROOT/{train,val,test}.txt',
        description='Write gtFine/SPLIT/CITY/*_gtFine_labelTrainIds.png beside each *_gtFine_labelIds.png '
                    '(official cityscapesscripts label table) and ROOT/SPLIT.txt lists.')
    city.add_argument('--root', required=True,
                      help='Cityscapes root holding leftImg8bit/ and gtFine/ (from leftImg8bit_trainvaltest.zip '
                           'and gtFine_trainvaltest.zip)')
    voc = datasets.add_parser(
        'voc12aug', help='VOC 2012 + SBD -> VOC2012/SegmentationClassAug and ImageSets/Segmentation/aug.txt',
        description='Write VOC2012/SegmentationClassAug/*.png (VOC SegmentationClass without palette, SBD '
                    'cls/*.mat for the other images) and ImageSets/Segmentation/{aug,trainaug}.txt, as '
                    'PaddleSeg\'s PascalVOC(mode="trainaug") expects.')
    voc.add_argument('--voc', required=True, help='the VOCdevkit folder (holding VOC2012/)')
    voc.add_argument('--sbd', required=True, help="SBD's benchmark_RELEASE folder or its dataset/ subfolder")
    for sub in (city, voc):
        sub.add_argument('--workers', type=_positive_int, default=2, help='conversion processes (default: 2)')
        sub.add_argument('--force', action='store_true', help='convert even outputs that are up to date')
    return parser
