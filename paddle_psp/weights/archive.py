"""Unpack a downloaded checkpoint archive (zip or possibly compressed tar), refusing members that escape it."""
import gzip
import posixpath
import re
import tarfile
import zipfile
import zlib

from paddle_psp.core.errors import UserError, one_line

ARCHIVE_SUFFIXES = ('.tar.gz', '.tgz', '.tar', '.zip')


def unpack(archive, dest, url, holds):
    """Unpack ``archive`` into the folder ``dest``.

    Args:
        archive (str): The zip or tar file.
        dest (str): An existing folder.
        url (str): Where the archive came from, named in errors.
        holds (str): The file the archive should hold, named in errors.

    Raises:
        UserError: Not a valid archive, or a member with an absolute or ``..`` path, a link leaving the
            archive, or a device or fifo.
    """
    try:
        if zipfile.is_zipfile(archive):
            _unpack_zip(archive, dest, url)
        else:
            _unpack_tar(archive, dest, url)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise UserError(f'{url}: not a valid archive ({one_line(err)}); expected a .tar.gz, .tgz, '
                        f'.tar or .zip holding {holds}') from None


def _unpack_zip(archive, dest, url):
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            _check_member_path(name, name, url)
        zf.extractall(dest)


def _unpack_tar(archive, dest, url):
    with tarfile.open(archive, 'r:*') as tf:
        members = tf.getmembers()
        for member in members:
            _check_tar_member(member, url)
        safety = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
        tf.extractall(dest, members=members, **safety)


def _check_tar_member(member, url):
    _check_member_path(member.name, member.name, url)
    if member.issym():
        target = posixpath.join(posixpath.dirname(member.name), member.linkname)
        _check_member_path(member.name, posixpath.normpath(target), url, link=member.linkname)
    elif member.islnk():
        _check_member_path(member.name, posixpath.normpath(member.linkname), url, link=member.linkname)
    elif not (member.isfile() or member.isdir()):
        raise UserError(f'{url}: archive member {member.name!r} is a device or fifo; expected files only')


def _check_member_path(name, path, url, link=None):
    """Refuse an absolute ``path`` or one with a ``..`` part (for links: one leaving the folder)."""
    parts = path.replace('\\', '/').split('/')
    if path.startswith(('/', '\\')) or re.match(r'^[A-Za-z]:', path) or '..' in parts:
        what = f'links to {link!r}' if link is not None else 'has an absolute or ".." path'
        raise UserError(f'{url}: archive member {name!r} {what}, outside the archive; '
                        'expected paths inside the archive only')
