"""The model-zoo table of the README, made from ``paddle_psp/weights/zoo.json``: a maintainer's script.

Run from the repository root::

    python scripts/zoo_readme.py                          # print the table
    python scripts/zoo_readme.py --write-readme README.md # refresh it between the zoo markers
    python scripts/zoo_readme.py --check-readme README.md # exit status 1 when it is out of date

The table sits between the ``<!-- zoo:start -->`` and ``<!-- zoo:end -->`` lines of the README.
"""
import sys

from paddle_psp.core import atomic
from paddle_psp.core.errors import UserError
from paddle_psp.weights import zoo
from paddle_psp.core.flags import OneLineParser
from paddle_psp.weights.zoo_listing import manifest

README_START = '<!-- zoo:start -->'
README_END = '<!-- zoo:end -->'


def _table_row(entry):
    """One markdown row in the upstream README layout."""
    links = (f'[model]({entry["checkpoint_url"]}) \\| [log]({entry["log_url"]}) '
             f'\\| [vdl]({entry["vdl_url"]})')
    cells = [entry['model'], entry['backbone'], entry['resolution'], str(entry['iters']),
             f'{entry["miou"]:.2f}%', f'{entry["miou_flip"]:.2f}%', f'{entry["miou_ms_flip"]:.2f}%', links]
    return '|' + '|'.join(cells) + '|'


def _remeasured_note(dataset_entries):
    """One bullet listing the ms+flip scores re-measured after the TTA fix."""
    title = zoo.dataset_info(dataset_entries[0]['dataset'])['title']
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
    for dataset in manifest()['datasets']:
        dataset_entries = zoo.entries(dataset=dataset)
        rows = [_table_row(entry) for entry in dataset_entries]
        heading = f'### {zoo.dataset_info(dataset)["title"]}'
        blocks.append('\n'.join([heading, '', zoo.TABLE_HEADER, zoo.TABLE_ALIGN] + rows))
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
    """Command-line parser of ``python scripts/zoo_readme.py``."""
    parser = OneLineParser(
        prog='python scripts/zoo_readme.py',
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
                  f'run: python scripts/zoo_readme.py --write-readme {args.check_readme}', file=sys.stderr)
            return 1
        if args.write_readme:
            changed = write_readme(args.write_readme)
            print(f'{args.write_readme}: zoo table {"updated" if changed else "already up to date"}')
            return 0
    except UserError as error:
        print(f'python scripts/zoo_readme.py: error: {error}', file=sys.stderr)
        return 2
    print(markdown_table())
    return 0


if __name__ == '__main__':
    sys.exit(main())
