"""A pickle reader for checkpoint files that admits data and refuses code.

``paddle.load`` reads ``.pdparams`` / ``.pdopt`` files with Python's unrestricted ``pickle.load``: a pickle
names any importable callable (``os.system``, ``builtins.eval``, ``subprocess.Popen``) and calls it while
loading. :func:`load` reads the same files with an unpickler whose ``find_class`` resolves only the globals
that ``paddle.save`` of a state dict writes (Paddle 2.x and 3.x, pickle protocols 2 to 4, NumPy 1.x and
2.x module names), so a foreign global stops the read before any of it is called.

What a checkpoint may hold:

* dicts and ordered dicts with string (or integer) keys, lists, tuples, sets;
* strings, bytes, Python scalars (bool, int, float, complex, None);
* NumPy arrays and scalars of numeric, boolean, string or bytes dtypes, rebuilt by NumPy's own
  reconstruction functions. Arrays of ``object`` dtype (which would hold arbitrary Python objects) are
  refused.

Nothing else: no classes, functions, modules, ``eval`` or ``exec``, no persistent ids. The result is also
walked once (without recursion) to check these types, so a file of nothing but allowed globals still
cannot hand over anything else.

This module needs only the standard library and NumPy.
"""
import _compat_pickle
import codecs
import collections
import importlib
import io
import pickle

import numpy as np

MAX_DEPTH = 64  # nesting a checkpoint never reaches; deeper would overflow paddle's recursive post-processing
_LATIN1 = frozenset({'latin1', 'latin-1', 'iso-8859-1', 'iso8859-1', 'l1'})


class Refused(pickle.UnpicklingError):
    """The file asks for something a checkpoint never holds. The message is a predicate naming it, e.g.
    ``names the global os.system``."""


def _numpy_function(module, name):
    """NumPy's pickle-reconstruction function ``module.name`` (e.g. ``multiarray._reconstruct``), from where
    this NumPy keeps it: ``numpy._core`` from NumPy 2, ``numpy.core`` before."""
    package = 'numpy._core' if int(np.__version__.split('.')[0]) >= 2 else 'numpy.core'
    return getattr(importlib.import_module(f'{package}.{module}'), name)


def _checked_dtype(spec, align=False, copy=True):
    """``numpy.dtype(spec, align, copy=True)`` as a pickle of a dtype asks for it, refusing object dtypes
    (whose arrays would hold arbitrary objects). Always a copy: the pickle's state is then applied to it,
    never to NumPy's shared built-in dtypes."""
    dtype = np.dtype(spec, bool(align), True)
    if dtype.hasobject:
        raise Refused(f'holds an object dtype ({spec!r})')
    return dtype


def _latin1_encode(text, encoding='utf-8', errors='strict'):
    """``_codecs.encode`` as protocol 2 writes bytes: ``encode(str, 'latin1')``; other codecs refused."""
    if not isinstance(text, str) or str(encoding).lower() not in _LATIN1 or errors != 'strict':
        raise Refused(f'calls _codecs.encode with codec {encoding!r}')
    return codecs.encode(text, 'latin1')


def _allowed_globals():
    """``{(module, name): object}``: every global a checkpoint may name, under each module name it is
    written with (``numpy.core`` by NumPy 1.x, ``numpy._core`` by NumPy 2.x)."""
    numpy_functions = {('multiarray', '_reconstruct'), ('multiarray', 'scalar'), ('numeric', '_frombuffer')}
    allowed = {
        ('numpy', 'ndarray'): np.ndarray,
        ('numpy', 'dtype'): _checked_dtype,
        ('_codecs', 'encode'): _latin1_encode,
        ('collections', 'OrderedDict'): collections.OrderedDict,
        ('builtins', 'tuple'): tuple, ('builtins', 'list'): list, ('builtins', 'set'): set,
        ('builtins', 'frozenset'): frozenset, ('builtins', 'complex'): complex,
    }
    for package in ('numpy.core', 'numpy._core'):
        for module, name in numpy_functions:
            allowed[(f'{package}.{module}', name)] = _numpy_function(module, name)
    return allowed


def _python3_name(module, name):
    """The Python 3 name of a global as Python 2 (and protocols 0-2 of Python 3) write it, e.g.
    ``__builtin__.exec`` -> ``builtins.exec``, as ``pickle`` itself maps it."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class _Unpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals come from an allow-list and which has no persistent ids."""

    allowed = None

    def find_class(self, module, name):
        """The allowed object for ``module.name``; :class:`Refused` naming it otherwise."""
        if _Unpickler.allowed is None:
            _Unpickler.allowed = _allowed_globals()
        module, name = _python3_name(module, name)
        try:
            return _Unpickler.allowed[(module, name)]
        except (KeyError, TypeError):
            raise Refused(f'names the global {module}.{name}') from None

    def persistent_load(self, pid):
        """Persistent ids load objects from outside the file: refused."""
        raise Refused(f'names the persistent id {str(pid)[:40]!r}')


def load(file):
    """Unpickle a checkpoint from binary ``file`` (an open file or bytes) as ``paddle.load`` does (latin-1
    strings of Python 2 pickles), admitting only data.

    Args:
        file (file|bytes): The pickle stream.

    Returns:
        object: The unpickled data, as ``pickle.load(file, encoding='latin1')`` would return it.

    Raises:
        Refused: The stream names a global outside the allow-list (the message is its dotted name, e.g.
            ``names the global posix.system``) or holds something a checkpoint never holds.
        pickle.UnpicklingError, EOFError, ValueError: Not a (complete) pickle.
    """
    if isinstance(file, (bytes, bytearray, memoryview)):
        file = io.BytesIO(file)
    result = _Unpickler(file, encoding='latin1').load()
    check_data(result)
    return result


_SCALARS = (str, bytes, bool, int, float, complex, type(None))


def check_data(obj):
    """Raise :class:`Refused` unless ``obj`` is made only of what a checkpoint may hold (see the module
    docstring), nested at most :data:`MAX_DEPTH` deep. Iterative: any depth is safe to check."""
    pending, seen = [(obj, 0)], set()
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise Refused(f'nests data deeper than {MAX_DEPTH} levels')
        if isinstance(item, _SCALARS):
            continue
        if isinstance(item, (np.ndarray, np.generic)):
            if item.dtype.hasobject:
                raise Refused('holds a numpy array of object dtype')
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            bad = next((k for k in item if not isinstance(k, (str, int))), None)
            if bad is not None:
                raise Refused(f'holds a dict key of type {type(bad).__name__}')
            pending.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            pending.extend((value, depth + 1) for value in item)
        else:
            raise Refused(f'holds an object of type {type(item).__module__}.{type(item).__qualname__}')
