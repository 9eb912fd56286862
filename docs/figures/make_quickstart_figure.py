"""Make the README picture: a quickstart val image, the quickstart model's prediction and their overlay.

Usage (from the repository root, after ``paddleseg quickstart``, which writes ./quickstart_output):

    python docs/figures/make_quickstart_figure.py --quickstart quickstart_output --out docs/figures/quickstart.png

It predicts the first val image of the quickstart's generated dataset with the newest checkpoint of its
training run, through ``paddleseg predict``, and puts the image, the colour map and the overlay side by
side, each enlarged twice (nearest neighbour, so class borders stay sharp).
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile

from PIL import Image

SCALE = 2
GAP = 8


def newest_checkpoint(quickstart):
    """The ``model.pdparams`` of the highest ``iter_N`` under ``QUICKSTART/train``."""
    found = glob.glob(os.path.join(quickstart, 'train', 'iter_*', 'model.pdparams'))
    if not found:
        sys.exit(f'{quickstart}/train: no iter_N/model.pdparams; run paddleseg quickstart --save_dir {quickstart}')
    return max(found, key=lambda path: int(re.search(r'iter_(\d+)', path).group(1)))


def predict(quickstart, image, save_dir):
    """Run ``paddleseg predict`` on ``image``; returns (colour map, overlay) paths."""
    data = os.path.join(quickstart, 'data')
    subprocess.run([sys.executable, '-m', 'paddle_psp_cli', 'predict', '--config', 'quickstart',
                    '--model_path', newest_checkpoint(quickstart), '--image_path', image, '--save_dir', save_dir,
                    '--opts', f'train_dataset.dataset_root={data}', f'val_dataset.dataset_root={data}'],
                   check=True)
    name = os.path.basename(image)
    return (os.path.join(save_dir, 'pseudo_color_prediction', os.path.splitext(name)[0] + '.png'),
            os.path.join(save_dir, 'added_prediction', name))


def side_by_side(paths, out):
    """Write the images of ``paths`` in one row, enlarged SCALE times, GAP white pixels apart."""
    images = [Image.open(path).convert('RGB') for path in paths]
    images = [image.resize((image.width * SCALE, image.height * SCALE), Image.NEAREST) for image in images]
    width = sum(image.width for image in images) + GAP * (len(images) - 1)
    canvas = Image.new('RGB', (width, max(image.height for image in images)), 'white')
    left = 0
    for image in images:
        canvas.paste(image, (left, 0))
        left += image.width + GAP
    canvas.save(out, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quickstart', default='quickstart_output', help='--save_dir of paddleseg quickstart')
    parser.add_argument('--out', default=os.path.join('docs', 'figures', 'quickstart.png'), help='PNG to write')
    args = parser.parse_args()
    images = sorted(glob.glob(os.path.join(args.quickstart, 'data', 'leftImg8bit', 'val', '*', '*.png')))
    if not images:
        sys.exit(f'{args.quickstart}/data: no val images; run paddleseg quickstart --save_dir {args.quickstart}')
    with tempfile.TemporaryDirectory() as work:
        colour, overlay = predict(args.quickstart, images[0], work)
        side_by_side([images[0], colour, overlay], args.out)
    print(args.out)


if __name__ == '__main__':
    main()
