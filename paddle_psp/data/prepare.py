"""``paddleseg prepare``: turn Cityscapes and PASCAL VOC 2012 + SBD into what PaddleSeg's datasets read.

``paddleseg prepare cityscapes --root ROOT``
    ROOT holds ``leftImg8bit/`` and ``gtFine/`` as unpacked from the official ``leftImg8bit_trainvaltest.zip``
    and ``gtFine_trainvaltest.zip``. For every split folder in ``gtFine/`` (train, val, test) it writes:

    - ``ROOT/gtFine/SPLIT/CITY/X_gtFine_labelTrainIds.png`` beside each ``X_gtFine_labelIds.png``: uint8
      train ids 0..18 and 255 (ignore), mapped with the official table ``cityscapesscripts.helpers.labels``
      (label id -> trainId; trainId 255 or -1 -> 255);
    - ``ROOT/SPLIT.txt``: one line per image,
      ``leftImg8bit/SPLIT/CITY/X_leftImg8bit.png gtFine/SPLIT/CITY/X_gtFine_labelTrainIds.png``,
      paths relative to ROOT, in the order ``paddleseg.datasets.Cityscapes`` pairs them.

    Then ``Cityscapes(dataset_root=ROOT, mode=SPLIT)`` reads it.

``paddleseg prepare voc12aug --voc VOCDEVKIT --sbd SBD``
    VOCDEVKIT is the ``VOCdevkit`` folder of ``VOCtrainval_11-May-2012.tar`` (holding ``VOC2012/``; the
    ``VOC2012`` folder itself is accepted too). SBD is SBD's ``benchmark_RELEASE`` folder from ``benchmark.tgz``
    or its ``dataset/`` subfolder (holding ``cls/*.mat``, ``train.txt``, ``val.txt``). Inside
    ``VOCDEVKIT/VOC2012`` it writes:

    - ``SegmentationClassAug/NAME.png``: plain uint8 class ids 0..20 and 255 (ignore), no palette. For every
      name in VOC's ``ImageSets/Segmentation/{train,val}.txt`` it is VOC's palette-indexed
      ``SegmentationClass/NAME.png`` (its indices, 255 borders kept); for every other name in SBD's
      ``train.txt``/``val.txt`` it is ``GTcls.Segmentation`` of SBD's ``cls/NAME.mat``. VOC's annotation
      wins for images both have.
    - ``ImageSets/Segmentation/aug.txt``: SBD train+val minus VOC train+val, sorted. This is the list that
      ``PascalVOC(mode='trainaug')`` appends to VOC's ``train.txt`` (labels read from SegmentationClassAug).
    - ``ImageSets/Segmentation/trainaug.txt``: the whole train-aug set, VOC train + aug.txt, sorted (10582
      names for the official data); all its labels are in SegmentationClassAug.

    Then ``PascalVOC(dataset_root=VOCDEVKIT, mode='trainaug')`` reads it.

Every PNG and list is written atomically, so a killed run leaves no half-written file. A label PNG that
exists and is not older than its source is skipped, so a second run converts nothing and an interrupted
run resumes where it stopped; ``--force`` converts everything again. Every folder and list that a run
will write to is checked before the first conversion (a file in the way, a read-only folder): such a run
stops with one line and writes nothing. Only results go to stdout; the progress bar goes to stderr.

The conversions of each dataset are :mod:`paddle_psp.data.cityscapes` and :mod:`paddle_psp.data.voc12aug`; the
jobs, process pool and list files they share, :mod:`paddle_psp.data.label_jobs`.
"""
import sys

from paddle_psp.core.errors import UserError
from paddle_psp.data.cityscapes import prepare_cityscapes, require_cityscapesscripts
from paddle_psp.data.voc12aug import prepare_voc12aug
from paddle_psp.data.flags import prepare_parser


def _report(dataset, result):
    """Print what a run did, one line per fact."""
    if result.converted:
        print(f'{dataset}: converted {result.converted} label images '
              f'({result.total - result.converted} already up to date)')
    else:
        print(f'{dataset}: nothing to convert; all {result.total} label images are up to date')
    for list_file in result.lists:
        state = 'wrote' if list_file.changed else 'up to date:'
        print(f'{dataset}: {state} {list_file.path} ({list_file.lines} lines)')


def main(argv=None):
    """``paddleseg prepare {cityscapes,voc12aug} ...``; returns the exit status."""
    args = prepare_parser().parse_args(argv)
    for option in ('root', 'voc', 'sbd'):
        if getattr(args, option, None) == '':
            raise UserError(f'--{option}: empty path; expected the path of a dataset folder '
                            f'(see "paddleseg prepare {args.dataset} --help")')
    if args.dataset == 'cityscapes':
        require_cityscapesscripts()
        result = prepare_cityscapes(args.root, args.workers, args.force)
    else:
        result = prepare_voc12aug(args.voc, args.sbd, args.workers, args.force)
    _report(args.dataset, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
