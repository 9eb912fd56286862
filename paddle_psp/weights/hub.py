"""Weights files, fetched, verified and cached: :func:`resolve` and the ``paddleseg download`` verb.

A *weights file* is a ``.pdparams`` file of a model's tensors, what ``--model_path`` names (a training
checkpoint's ``model.pdparams`` is one); :mod:`paddle_psp.weights.state_dict` loads it into a model.

A *spec* is one of:

* a local ``.pdparams`` file, or a local directory holding ``model.pdparams``;
* a ``file://`` URL to either of those;
* an http(s) URL to a ``.pdparams`` file, or to a ``.tar.gz`` / ``.tgz`` / ``.tar`` / ``.zip`` archive
  holding ``model.pdparams`` at its top or in a top-level folder (PaddleSeg's ImageNet backbones);
* a zoo name such as ``pspnet_resnet50_os8_cityscapes_1024x512_80k``, looked up in :mod:`paddle_psp.weights.zoo`.

Cache layout, the one PaddleSeg 2.8 uses, so that an existing PaddleSeg cache is reused::

    $SEG_HOME/pretrained_model/       $SEG_HOME defaults to ~/.paddleseg
        <parent>/<file>               from .../<parent>/<file>, e.g. <config name>/model.pdparams
        <stem>/model.pdparams         from an archive .../<stem>.tar.gz (stem: file name up to its first dot)
        <parent>/<file>.part          an interrupted download, resumed with an HTTP Range request
        <stem>.tar.gz.part            an interrupted archive download (same for .tgz, .tar, .zip)
        <parent>.lock, <stem>.lock    file locks: one process downloads, the others wait, then reuse it
        .unpack-*                     an archive being unpacked, renamed into place once verified

Names are taken from the original URL (percent-decoded), never from a mirror. A download reaches its
final name only after its checks pass: complete body (Content-Length), not HTML, the pinned sha256 if
any, and ``paddle.load`` giving a dict of tensors. An entry already in the cache (downloaded before,
by PaddleSeg, or put there by hand) is reused as it is; a pinned sha256 is checked on it when it is a
plain file (for an archive the pin covers the archive, which is not kept).

Environment variables:

* ``SEG_HOME``: the cache root, as in PaddleSeg (default ``~/.paddleseg``).
* ``PADDLE_PSP_MIRROR``: a base URL that replaces ``https://bj.bcebos.com`` at the start of any URL,
  e.g. ``https://mirror.example.com/bcebos`` or ``file:///shared/bcebos`` (a copy of the bucket's
  tree). Cache paths do not change.

Downloads are retried and time-bounded by :mod:`paddle_psp.weights.fetch` (its ``RetryPolicy``); what is
still missing afterwards is a one-line :class:`~paddle_psp.core.errors.UserError` naming the URL and the
cache path where a file fetched by hand can be put. Before anything is created, the cache folder is
checked (:mod:`paddle_psp.core.outputs`): an empty ``SEG_HOME``, a file in the way or a read-only folder
stops the download with one line; so does a full disk while downloading, which deletes the partial file.
"""
import dataclasses
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request

from paddle_psp.core.atomic import replace_dir
from paddle_psp.core.errors import UserError
from paddle_psp.core.outputs import require_dir, require_file, writing
from paddle_psp.core.files import file_lock, sha256_file
from paddle_psp.weights import zoo
from paddle_psp.weights.archive import ARCHIVE_SUFFIXES, unpack
from paddle_psp.weights.fetch import DEFAULT_RETRY, discard, download, html_error, looks_like_html
from paddle_psp.weights.pdparams import read_state_dict
from paddle_psp.weights.flags import MIRROR_ENV, download_parser

WEIGHTS_NAME = 'model.pdparams'
MIRRORED_BASE = re.compile(r'^https?://bj\.bcebos\.com(?=/)')
CACHE_EXPECTED = 'a writable directory for the download cache (set SEG_HOME to move it)'


@dataclasses.dataclass(frozen=True)
class _Entry:
    """Where a URL's weights file lives in the cache."""
    url: str  # the URL fetched (mirror applied)
    path: str  # the final .pdparams
    part: str  # the partial download
    lock: str
    archive: bool

    @property
    def folder(self):
        """The folder holding ``path`` (for an archive: its unpacked contents)."""
        return os.path.dirname(self.path)


def resolve(spec, sha256=None, *, force=False, retry=None):
    """A local path to a loadable ``.pdparams`` file for ``spec``, downloading it if needed.

    Args:
        spec (str|os.PathLike): A local file or directory, a file:// or http(s) URL, or a zoo name.
        sha256 (str, optional): Pinned SHA-256 (hex) of the file, or of the archive for archive URLs.
            For a zoo name, the manifest's ``sha256`` is used when this is not given.
        force (bool, optional): Download again even if the cache has the entry. Default: False.
        retry (fetch.RetryPolicy, optional): Retries and time bounds. Default: ``DEFAULT_RETRY``.

    Returns:
        str: The path of the weights file.

    Raises:
        UserError: One line naming the spec or URL and what went wrong.
    """
    sha256 = _normalise_sha256(sha256, 'sha256')
    path, url, pinned = _locate(os.fspath(spec))
    if url is None:
        return _resolve_local(path, sha256)
    return _resolve_url(url, sha256 or _normalise_sha256(pinned, f'{spec}: sha256'), force, retry or DEFAULT_RETRY)


def cached_path(spec):
    """The file :func:`resolve` returns for ``spec`` when it needs no download, found without reading it (no
    digest is checked); None when it would download, or when ``spec`` is not valid (:func:`resolve` says why).
    """
    try:
        path, url, _ = _locate(os.fspath(spec))
        if url is None:
            return _resolve_local(path, None)
        path = _entry_for(url).path
    except UserError:
        return None
    return path if os.path.isfile(path) else None


def cache_dir():
    """The folder of cached weights files: ``$SEG_HOME/pretrained_model`` (``~/.paddleseg`` by default)."""
    home = os.environ.get('SEG_HOME')
    if home is None:
        home = os.path.join(os.path.expanduser('~'), '.paddleseg')
    elif not home:
        raise UserError('SEG_HOME: empty path; expected the path of a directory for the download cache, '
                        'or SEG_HOME unset for ~/.paddleseg')
    if os.path.isfile(home):
        raise UserError(f'SEG_HOME: {home} is a file; expected a directory for the download cache')
    return os.path.join(home, 'pretrained_model')


# ----------------------------------------------------------------------------- specs

def _looks_like_path(spec):
    return os.sep in spec or '/' in spec or spec.startswith(('.', '~')) or spec.endswith('.pdparams')


def _file_url_path(url):
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ('', 'localhost'):
        raise UserError(f'{url}: file URL names host {parsed.netloc!r}; expected file:///absolute/path')
    return urllib.request.url2pathname(parsed.path)


def _resolve_local(path, sha256):
    if os.path.isdir(path):
        path = os.path.join(path, WEIGHTS_NAME)
        if not os.path.isfile(path):
            raise UserError(f'{path}: no such file; expected the directory to hold {WEIGHTS_NAME}')
    elif not os.path.isfile(path):
        raise UserError(f'{path}: no such file; expected a .pdparams file, a directory holding '
                        f'{WEIGHTS_NAME}, an http(s) or file URL, or a zoo name')
    if sha256:
        _check_sha256(path, sha256, label=path)
    return os.path.abspath(path)


def _locate(spec):
    """What ``spec`` names: ``(local path, None, None)`` or ``(None, URL, the zoo entry's sha256 or None)``.

    Raises:
        UserError: An unsupported URL scheme, or neither a path nor a zoo name with a weights file URL.
    """
    scheme = urllib.parse.urlparse(spec).scheme.lower()
    if scheme == 'file':
        return _file_url_path(spec), None, None
    if scheme in ('http', 'https'):
        return None, spec, None
    if '://' in spec:
        raise UserError(f'{spec}: unsupported URL scheme; expected http://, https:// or file://')
    path = os.path.expanduser(spec)
    if os.path.exists(path) or _looks_like_path(spec):
        return path, None, None
    known = zoo.names()
    if spec not in known:
        raise UserError(f'{spec}: no such file, URL or zoo name; expected a path, a URL or one of: '
                        + ', '.join(known))
    entry = zoo.get(spec)
    if not entry.get('checkpoint_url'):
        raise UserError(f'{spec}: the zoo entry has no checkpoint_url; expected a published checkpoint')
    return None, entry['checkpoint_url'], entry.get('sha256')


def _normalise_sha256(value, key):
    if not value:
        return None
    digest = str(value).strip().lower()
    if not re.fullmatch(r'[0-9a-f]{64}', digest):
        raise UserError(f'{key}: {value!r} is not a SHA-256 digest; expected 64 hex digits')
    return digest


# ----------------------------------------------------------------------------- cache entries

def _resolve_url(url, sha256, force, retry):
    entry = _entry_for(url)
    if not force and os.path.isfile(entry.path):
        return _reuse_cached(entry, sha256)
    _require_writable(entry)
    os.makedirs(os.path.dirname(entry.lock), exist_ok=True)
    waiting = f'waiting for another process to finish {entry.folder} ...'
    with file_lock(entry.lock, on_wait=lambda: _say(waiting)):
        if force:
            discard(entry.part)
        elif os.path.isfile(entry.path):  # another process fetched it while this one waited
            return _reuse_cached(entry, sha256)
        _fetch(entry, sha256, retry)
    return entry.path


def _entry_for(url):
    """The cache entry of ``url``, named as PaddleSeg names it."""
    parts = urllib.parse.unquote(urllib.parse.urlparse(url).path).split('/')
    file_name = _safe_component(parts[-1], url)
    home = cache_dir()
    fetched = _mirrored(url)
    if file_name.lower().endswith(ARCHIVE_SUFFIXES):
        stem = _safe_component(file_name.split('.')[0], url)
        return _Entry(fetched, os.path.join(home, stem, WEIGHTS_NAME),
                      os.path.join(home, file_name + '.part'), os.path.join(home, stem + '.lock'), True)
    parent = parts[-2] if len(parts) > 2 and parts[-2] else file_name.split('.')[0]
    parent = _safe_component(parent, url)
    path = os.path.join(home, parent, file_name)
    return _Entry(fetched, path, path + '.part', os.path.join(home, parent + '.lock'), False)


def _require_writable(entry):
    """Stop before anything is created unless the cache can take ``entry``."""
    require_dir(entry.folder, CACHE_EXPECTED)
    for path in (entry.part, entry.lock):
        require_file(path, f'a file the download cache writes ({CACHE_EXPECTED})')


def _safe_component(name, url):
    if name in ('', '.', '..') or '\0' in name:
        raise UserError(f'{url}: cannot name a cache entry after this URL; expected .../<folder>/<file>')
    return name


def _mirrored(url):
    mirror = os.environ.get(MIRROR_ENV, '').strip().rstrip('/')
    if not mirror or not MIRRORED_BASE.match(url):
        return url
    if urllib.parse.urlparse(mirror).scheme not in ('http', 'https', 'file'):
        raise UserError(f'{MIRROR_ENV}: {mirror!r} is not a base URL; '
                        'expected e.g. https://mirror.example.com')
    return MIRRORED_BASE.sub(lambda _: mirror, url, count=1)


def _reuse_cached(entry, sha256):
    if sha256 and not entry.archive:
        _check_sha256(entry.path, sha256, label=entry.path,
                      hint=f'; delete it or run "paddleseg download {entry.url} --force"')
    return entry.path


def _say(message):
    print(f'paddle-psp: {message}', file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- fetch and install

def _fetch(entry, sha256, retry):
    """Download ``entry`` into its ``.part`` file, check it and move it (or its contents) into place."""
    _say(f'downloading {entry.url}')
    os.makedirs(os.path.dirname(entry.part), exist_ok=True)
    by_hand = ('unpack the archive so that its model.pdparams is at' if entry.archive
               else 'put the file at')
    download(entry.url, entry.part, retry, label=os.path.basename(entry.path),
             advice=f'check the network or set {MIRROR_ENV}, or fetch it by hand and {by_hand} {entry.path}')
    try:
        _check_body(entry.part, entry.url, sha256)
        if entry.archive:
            _install_archive(entry)
        else:
            _check_weights_file(entry.part, entry.url)
            os.replace(entry.part, entry.path)
    finally:
        discard(entry.part)  # complete but rejected, or already unpacked: nothing to resume


def _install_archive(entry):
    home = os.path.dirname(entry.folder)
    scratch = tempfile.mkdtemp(prefix='.unpack-', dir=home)
    try:
        with writing(entry.folder):  # a full disk while unpacking
            unpack(entry.part, scratch, entry.url, WEIGHTS_NAME)
        found = _folder_with_weights(scratch, entry.url)
        _check_weights_file(os.path.join(found, WEIGHTS_NAME), entry.url)
        replace_dir(found, entry.folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _folder_with_weights(root, url):
    """``root`` or its first top-level folder that holds model.pdparams."""
    folders = [root] + sorted(e.path for e in os.scandir(root) if e.is_dir(follow_symlinks=False))
    for folder in folders:
        if os.path.isfile(os.path.join(folder, WEIGHTS_NAME)):
            return folder
    raise UserError(f'{url}: the archive holds no {WEIGHTS_NAME}; expected it at the top or in a '
                    'top-level folder')


# ----------------------------------------------------------------------------- checks

def _check_body(path, url, sha256):
    with open(path, 'rb') as f:
        head = f.read(512)
    if looks_like_html(head):
        raise html_error(url)
    if sha256:
        _check_sha256(path, sha256, label=url)


def _check_sha256(path, expected, label, hint=''):
    actual = sha256_file(path)
    if actual != expected:
        raise UserError(f'{label}: SHA-256 is {actual}; expected the pinned {expected}{hint}')


def _check_weights_file(path, url):
    """Raise a UserError naming ``url`` unless ``path`` loads as a non-empty dict of tensors."""
    read_state_dict(path, label=url)


# ----------------------------------------------------------------------------- CLI

def main(argv=None):
    """``paddleseg download NAME|URL [--sha256 HEX] [--force]``: print the cached path."""
    args = download_parser().parse_args(argv)
    sha256 = _normalise_sha256(args.sha256, '--sha256')
    print(resolve(args.spec, sha256, force=args.force))
    return 0
