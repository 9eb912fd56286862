"""The model zoo manifest: the eight published PSPNet/DeepLabV3 checkpoints, their configs and scores.

The manifest lives in ``zoo.json`` next to this module (shipped as package data). The YAML configs
ship with the package too (:mod:`paddle_psp_cli.configs`).

Run ``python -m paddle_psp.weights.zoo`` to print the README zoo table, ``--write-readme README.md`` to
refresh the table between the ``<!-- zoo:start -->`` and ``<!-- zoo:end -->`` markers, and
``--check-readme README.md`` to fail (exit status 1) when that table is out of date.
"""
import copy
import os
import sys

from paddle_psp.core import atomic
from paddle_psp.core.errors import UserError
from paddle_psp_cli.configs import configs_root
from paddle_psp_cli.zoo_listing import MANIFEST_PATH  # noqa: F401  (where the manifest is)
from paddle_psp_cli.zoo_listing import manifest as _manifest
from paddle_psp_cli.parsers import OneLineParser

README_START = '<!-- zoo:start -->'
README_END = '<!-- zoo:end -->'
TABLE_HEADER = ('| Model | Backbone | Resolution | Training Iters | mIoU | mIoU (flip) | mIoU (ms+flip) '
                '| Links |')
TABLE_ALIGN = '|:-:|:-:|:-:|:-:|:-:|:-:|:-:|:-:|'
FILTER_FIELDS = ('model', 'dataset', 'backbone')


def names():
    """Names of all zoo entries (upstream config names), in manifest order.

    Returns:
        list[str]: e.g. ``'pspnet_resnet50_os8_cityscapes_1024x512_80k'``.
    """
    return [entry['name'] for entry in _manifest()['models']]


def get(name):
    """Look up one zoo entry by name.

    Args:
        name (str): a config name such as ``'deeplabv3_resnet101_os8_voc12aug_512x512_40k'``.

    Returns:
        dict: a copy of the manifest entry.

    Raises:
        UserError: ``name`` is not in the zoo; the message lists the valid names.
    """
    for entry in _manifest()['models']:
        if entry['name'] == name:
            return copy.deepcopy(entry)
    raise UserError(f'model name {name!r}: not in the zoo; expected one of: {", ".join(names())}')


def entries(model=None, dataset=None, backbone=None):
    """Zoo entries matching every given filter (case-insensitive exact match).

    Args:
        model (str, optional): ``'PSPNet'`` or ``'DeepLabV3'``.
        dataset (str, optional): ``'cityscapes'`` or ``'voc12aug'``.
        backbone (str, optional): ``'ResNet50_OS8'`` or ``'ResNet101_OS8'``.

    Returns:
        list[dict]: copies of the matching entries, in manifest order.

    Raises:
        UserError: a filter value matches no entry at all; the message lists the valid values.
    """
    wanted = {'model': model, 'dataset': dataset, 'backbone': backbone}
    selected = _manifest()['models']
    for field in FILTER_FIELDS:
        if wanted[field] is not None:
            _check_filter_value(field, wanted[field])
            selected = [e for e in selected if e[field].lower() == wanted[field].lower()]
    return copy.deepcopy(selected)


def _check_filter_value(field, value):
    """Raise UserError if no entry has ``value`` (case-insensitively) in ``field``."""
    valid = sorted({entry[field] for entry in _manifest()['models']})
    if value.lower() not in {v.lower() for v in valid}:
        raise UserError(f'{field} {value!r}: not in the zoo; expected one of: {", ".join(valid)}')


def dataset_info(dataset):
    """Title and class count of a zoo dataset key.

    Args:
        dataset (str): ``'cityscapes'`` or ``'voc12aug'``.

    Returns:
        dict: ``{'title': ..., 'num_classes': ...}``.

    Raises:
        UserError: unknown dataset key.
    """
    datasets = _manifest()['datasets']
    if dataset not in datasets:
        raise UserError(f'dataset {dataset!r}: not in the zoo; expected one of: {", ".join(datasets)}')
    return dict(datasets[dataset])


def config_path(name, root=None):
    """Absolute path of an entry's YAML config.

    The configs ship with the package (``paddle_psp_cli.configs``); ``root`` looks in another folder holding
    a ``configs/`` tree instead.

    Args:
        name (str): a zoo entry name.
        root (str, optional): a folder holding ``configs/`` (default: the shipped configs).

    Returns:
        str: path of an existing ``.yml`` file.

    Raises:
        UserError: unknown name, or the config is not where it is looked for.
    """
    relative = get(name)['config']
    configs = os.path.join(root, 'configs') if root is not None else configs_root()
    if configs is not None:
        path = os.path.join(configs, os.path.relpath(relative, 'configs'))
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise UserError(f'{relative}: not found under {configs or "this installation"}; expected the configs '
                    'shipped with paddle-psp (reinstall it: pip install paddle-psp)')


def _table_row(entry):
    """One markdown row in the upstream README layout."""
    links = (f'[model]({entry["checkpoint_url"]}) \\| [log]({entry["log_url"]}) '
             f'\\| [vdl]({entry["vdl_url"]})')
    cells = [entry['model'], entry['backbone'], entry['resolution'], str(entry['iters']),
             f'{entry["miou"]:.2f}%', f'{entry["miou_flip"]:.2f}%', f'{entry["miou_ms_flip"]:.2f}%', links]
    return '|' + '|'.join(cells) + '|'


def _remeasured_note(dataset_entries):
    """One bullet listing the ms+flip scores re-measured after the TTA fix."""
    title = dataset_info(dataset_entries[0]['dataset'])['title']
    scores = ', '.join(f'{e["model"]} {e["backbone"]} {e["miou_ms_flip_remeasured"]:.2f}%'
                       for e in dataset_entries)
    return f'- {title}: {scores}'


def markdown_table():
    """The zoo as markdown: one table per dataset in the upstream README layout, then a note.

    The ms+flip column holds the published numbers, which predate PaddleSeg's fix of multi-scale
    test-time augmentation (PR #2933); the note lists the numbers re-measured after it.

    Returns:
        str: markdown text without a trailing newline.
    """
    blocks = []
    notes = []
    for dataset in _manifest()['datasets']:
        dataset_entries = entries(dataset=dataset)
        rows = [_table_row(entry) for entry in dataset_entries]
        heading = f'### {dataset_info(dataset)["title"]}'
        blocks.append('\n'.join([heading, '', TABLE_HEADER, TABLE_ALIGN] + rows))
        notes.append(_remeasured_note(dataset_entries))
    note = ('The ms+flip column is as published, measured before PaddleSeg fixed multi-scale test-time '
            'augmentation (PR #2933, Feb 2023). Re-measured after the fix (ms+flip):\n\n' + '\n'.join(notes))
    return '\n\n'.join(blocks + [note])


def replace_zoo_block(text, source, table):
    """Put ``table`` between the zoo markers of a README text.

    Args:
        text (str): README content.
        source (str): file name used in error messages.
        table (str): new content for the block.

    Returns:
        str: ``text`` with the block replaced; everything outside the markers is unchanged.

    Raises:
        UserError: the markers are missing, repeated or out of order.
    """
    if text.count(README_START) != 1 or text.count(README_END) != 1:
        raise UserError(f'{source}: needs exactly one {README_START!r} and one {README_END!r} line; '
                        f'found {text.count(README_START)} and {text.count(README_END)}')
    start = text.index(README_START) + len(README_START)
    end = text.index(README_END)
    if end < start:
        raise UserError(f'{source}: {README_END!r} comes before {README_START!r}; expected start then end')
    return text[:start] + '\n' + table.strip('\n') + '\n' + text[end:]


def _read_readme(path):
    """Read a README as text, turning a missing file into a UserError."""
    try:
        with open(path, encoding='utf-8') as f:
            return f.read()
    except FileNotFoundError:
        raise UserError(f'{path}: no such file; expected a README with the zoo markers') from None


def check_readme(path):
    """Whether the zoo table in a README is current.

    Args:
        path (str): README file with the zoo markers.

    Returns:
        bool: True if the text between the markers equals :func:`markdown_table`.

    Raises:
        UserError: missing file or markers.
    """
    text = _read_readme(path)
    return replace_zoo_block(text, path, markdown_table()) == text


def write_readme(path):
    """Refresh the zoo table in a README in place (atomically), if it changed.

    Args:
        path (str): README file with the zoo markers.

    Returns:
        bool: True if the file was rewritten, False if it was already current.

    Raises:
        UserError: missing file or markers; the file is left untouched.
    """
    text = _read_readme(path)
    updated = replace_zoo_block(text, path, markdown_table())
    if updated == text:
        return False
    atomic.write_text(path, updated)
    return True


def _build_parser():
    """Command-line parser of ``python -m paddle_psp.weights.zoo``."""
    parser = OneLineParser(
        prog='python -m paddle_psp.weights.zoo',
        description='Print the model zoo table, or check/refresh it in a README.')
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--check-readme', metavar='README', help='exit 1 if the zoo table in README is stale')
    group.add_argument('--write-readme', metavar='README', help='rewrite the zoo table in README in place')
    return parser


def main(argv=None):
    """Entry point: print, check or write the zoo table.

    Args:
        argv (list[str], optional): arguments without the program name; default ``sys.argv[1:]``.

    Returns:
        int: 0 on success (or README current), 1 if ``--check-readme`` found a stale table,
        2 on bad input (missing file or markers).
    """
    args = _build_parser().parse_args(argv)
    try:
        if args.check_readme:
            if check_readme(args.check_readme):
                return 0
            print(f'{args.check_readme}: zoo table is out of date; '
                  f'run: python -m paddle_psp.weights.zoo --write-readme {args.check_readme}', file=sys.stderr)
            return 1
        if args.write_readme:
            changed = write_readme(args.write_readme)
            print(f'{args.write_readme}: zoo table {"updated" if changed else "already up to date"}')
            return 0
    except UserError as error:
        print(f'python -m paddle_psp.weights.zoo: error: {error}', file=sys.stderr)
        return 2
    print(markdown_table())
    return 0


if __name__ == '__main__':
    sys.exit(main())
