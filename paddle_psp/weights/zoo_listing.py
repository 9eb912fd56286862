"""``paddleseg models``: the model zoo as a table, from the manifest alone (no Paddle import).

The manifest is ``paddle_psp/weights/zoo.json`` (read here, by path, so that listing it costs no Paddle
import; :mod:`paddle_psp.weights.zoo` reads it through :func:`manifest`). ``--check`` builds the four models
and runs one forward pass each instead (:mod:`paddle_psp.models.summary`).
"""
import functools
import json
import os
import urllib.parse

from paddle_psp.weights import shipped_configs

MANIFEST_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'zoo.json')
COLUMNS = (('name (= config name)', '<'), ('model', '<'), ('backbone', '<'), ('dataset', '<'), ('crop', '<'),
           ('iters', '>'), ('mIoU', '>'), ('flip', '>'), ('ms+flip', '>'), ('weights', '<'))


@functools.lru_cache(maxsize=1)
def manifest():
    """The zoo manifest, read once.

    Returns:
        dict: ``{'datasets': {key: {...}}, 'models': [entry, ...]}``, shared; callers must copy.
    """
    with open(MANIFEST_PATH, encoding='utf-8') as f:
        return json.load(f)


def cached_weights_file(url, environ=None):
    """Where the download cache keeps a zoo entry's weights file, as PaddleSeg names it, if it is there.

    The path is ``$SEG_HOME/pretrained_model/<URL's last folder>/<file>`` (``SEG_HOME`` defaults to
    ``~/.paddleseg``), the rule of :mod:`paddle_psp.weights.hub` for a plain (not archived) file.

    Args:
        url (str): the entry's ``checkpoint_url``.
        environ (dict, optional): environment; default ``os.environ``.

    Returns:
        str|None: the cached file, or None when it is not cached (or ``SEG_HOME`` is empty).
    """
    environ = os.environ if environ is None else environ
    home = environ.get('SEG_HOME', os.path.join(os.path.expanduser('~'), '.paddleseg'))
    parts = urllib.parse.unquote(urllib.parse.urlparse(url).path).split('/')
    if not home or len(parts) < 3:
        return None
    path = os.path.join(home, 'pretrained_model', parts[-2], parts[-1])
    return path if os.path.isfile(path) else None


def rows(environ=None):
    """One row of cells per zoo entry, in manifest order (see :data:`COLUMNS`)."""
    table = []
    for entry in manifest()['models']:
        cached = cached_weights_file(entry['checkpoint_url'], environ)
        table.append([entry['name'], entry['model'], entry['backbone'], entry['dataset'], entry['resolution'],
                      str(entry['iters']), f'{entry["miou"]:.2f}', f'{entry["miou_flip"]:.2f}',
                      f'{entry["miou_ms_flip"]:.2f}', 'cached' if cached else 'download'])
    return table


def render(table):
    """The header and ``table`` as aligned text lines."""
    header = [name for name, _ in COLUMNS]
    widths = [max(len(str(row[i])) for row in [header] + table) for i in range(len(COLUMNS))]
    return [' '.join(f'{cell:{align}{width}}' for cell, (_, align), width in zip(row, COLUMNS, widths)).rstrip()
            for row in [header] + table]


def other_configs():
    """Shipped configs that are no zoo entry, as ``name (file name)`` texts."""
    zoo_names = {entry['name'] for entry in manifest()['models']}
    shipped = shipped_configs.shipped_configs()
    return [f'{name} ({os.path.basename(path)})' if os.path.splitext(os.path.basename(path))[0] != name else name
            for name, path in shipped.items() if name not in zoo_names]


def main(args):
    """Print the zoo table and the other shipped configs; returns 0.

    Args:
        args (argparse.Namespace): ``paddleseg models`` flags (parsed; ``--check`` unset).
    """
    print('\n'.join(render(rows())))
    extra = other_configs()
    if extra:
        print('\nother configs: ' + ', '.join(extra))
    print('\nmIoU columns: published Cityscapes val / VOC val scores in %. --config takes a name above; '
          'weights: "download" ones are fetched on first use (paddleseg download NAME).')
    return 0
