"""Imports deferred while Paddle and PaddleSeg are imported: modules they import at start-up but only a few
of their functions use; and the hook that registers paddle-psp's models the moment PaddleSeg is imported.

``import paddleseg`` imports scikit-learn (``paddleseg/utils/metrics.py``: ``import sklearn.metrics as skmetrics``,
for its ``auc_roc`` only) and SciPy (``from scipy.optimize import linear_sum_assignment`` in a MaskFormer loss,
``from scipy.ndimage import ...`` in a DecoupledSegNet loss and an edge transform); scikit-learn in turn
imports pandas. Together they are most of the time ``import paddleseg`` takes, and no verb of this package
calls those functions except ``paddleseg val --auc_roc``. The HTTP clients PaddleSeg and Paddle import for
their own downloads (requests, httpx) are deferred too: this package downloads with the standard library.

``import paddle_psp`` imports none of them: it installs :class:`_ImportHook` (:func:`when_paddleseg_imported`),
which runs the import of Paddle and of PaddleSeg, whoever imports them first, inside :func:`deferred_imports`,
and calls back once PaddleSeg is imported (the package then imports :mod:`paddle_psp.models`, which
registers). While that block runs, ``sys.modules`` holds a stand-in for each module of :data:`DEFERRED`, so
Paddle and PaddleSeg bind stand-ins instead of the real modules: a stand-in module imports the real one at
the first use of an attribute it does not hold, and a stand-in function (the names PaddleSeg imports with
``from MODULE import NAME``) imports its module at its first call. When the block ends the stand-ins leave
``sys.modules``: any later ``import sklearn`` or ``import scipy``, anywhere, is the real module, and only
Paddle's and PaddleSeg's own references stay stand-ins.

Python 3.11 semantics this relies on: ``import sklearn.metrics as m`` finds ``sklearn.metrics`` in
``sys.modules``, returns the top-level ``sklearn`` and reads its attribute ``metrics`` (set here on the
parent stand-in); ``from scipy.ndimage import shift`` reads ``__path__`` of the module (a stand-in has an
empty one) and then the attribute ``shift`` (a stand-in function, set here). Anything else asked of a
stand-in during the block (another attribute, a submodule such as ``scipy.io``, which a :class:`_Fallback`
finder on ``sys.meta_path`` sees) replaces every stand-in with the real modules first: an unforeseen
use costs the old start-up time, never a wrong answer. ``importlib.util.LazyLoader`` cannot do this: the
import system reads ``__spec__`` of a lazy module it finds in ``sys.modules``, which makes it load at once.
Nothing is deferred when the deferred package itself is imported already, or when the package is not
installed; a block inside a running one (PaddleSeg importing Paddle) adds nothing.
"""
import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

# module -> the functions PaddleSeg 2.8 imports from it by name (parents before their submodules)
DEFERRED = {
    'sklearn': (),
    'sklearn.metrics': (),  # paddleseg/utils/metrics.py, auc_roc only
    'scipy': (),
    'scipy.ndimage': ('distance_transform_edt', 'shift'),  # transforms/functional.py, a DecoupledSegNet loss
    'scipy.optimize': ('linear_sum_assignment',),  # the MaskFormer loss
    'requests': (),  # paddleseg/utils/download.py, to download pretrained weights (paddle_psp has its own)
    'httpx': (),  # Paddle's paddle/utils/download.py and paddle/dataset/common.py (Paddle is imported by PaddleSeg)
}


# the packages whose first import runs inside deferred_imports (PaddleSeg imports Paddle; either may come first)
HOOKED = ('paddle', 'paddleseg')
_active = []  # not empty while a deferred_imports block runs


class _Deferred(types.ModuleType):
    """Stands in for module ``name``; imports the real module at the first use of an attribute it does not hold."""

    def __init__(self, name):
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)  # what the import system reads
        self.__path__ = []  # a package: ``from name import function`` reads the function, not a submodule

    def __getattr__(self, attribute):
        return getattr(_load(self.__name__), attribute)


class _DeferredFunction:
    """Stands in for function ``name`` of module ``module``; imports the module at the first call."""

    def __init__(self, module, name):
        self.__module__, self.__name__, self.__qualname__ = module, name, name

    def __call__(self, *args, **kwargs):
        return getattr(_load(self.__module__), self.__name__)(*args, **kwargs)

    def __repr__(self):
        return f'<deferred function {self.__module__}.{self.__name__}>'


class _Fallback:
    """During :func:`deferred_imports`: an import of a submodule of a deferred package that has no stand-in
    (``import scipy.io``) replaces the stand-ins with the real modules, then is found as usual."""

    def __init__(self, packages):
        self.packages = packages

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition('.')[0] not in self.packages or fullname in DEFERRED:
            return None
        _load(fullname.rpartition('.')[0])
        return importlib.util.find_spec(fullname)


def _remove_stand_ins():
    """Take every stand-in out of ``sys.modules`` (those still there) and the fallback finder off ``sys.meta_path``."""
    for name in DEFERRED:
        if isinstance(sys.modules.get(name), _Deferred):
            del sys.modules[name]
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _Fallback)]


def _load(name):
    """The real module ``name``, imported now if need be (stand-ins of a running :func:`deferred_imports`
    are replaced first: a real module's own imports must never meet one)."""
    _remove_stand_ins()
    return importlib.import_module(name)


@contextlib.contextmanager
def deferred_imports():
    """While the block runs, :data:`DEFERRED` modules are stand-ins (see the module doc); wraps the import of
    Paddle and PaddleSeg. A block inside a running one does nothing."""
    if _active:
        yield
        return
    packages = set()
    for package in {name.partition('.')[0] for name in DEFERRED}:
        names = [name for name in DEFERRED if name.partition('.')[0] == package]
        if not any(name in sys.modules for name in names) and importlib.util.find_spec(package) is not None:
            packages.add(package)
    _active.append(True)
    try:
        for name, functions in DEFERRED.items():
            if name.partition('.')[0] in packages:
                module = sys.modules[name] = _Deferred(name)
                for function in functions:
                    setattr(module, function, _DeferredFunction(name, function))
                parent, _, child = name.rpartition('.')
                if parent:
                    setattr(sys.modules[parent], child, module)
        if packages:
            sys.meta_path.insert(0, _Fallback(packages))
        yield
    finally:
        _active.clear()
        _remove_stand_ins()


def _defer_while_executing(loader, name, done):
    """Make ``loader`` (the fresh loader of Paddle's or PaddleSeg's spec) run module ``name`` inside
    :func:`deferred_imports`, then call ``done(name)``. The loader stays itself (its type, its resource
    reader): only its ``exec_module`` is shadowed, once."""
    execute = loader.exec_module

    def exec_module(module):
        del loader.exec_module  # the class's own again
        with deferred_imports():
            execute(module)
        done(name)
    loader.exec_module = exec_module


class _ImportHook(importlib.abc.MetaPathFinder):
    """On ``sys.meta_path`` until PaddleSeg is imported: the first import of ``paddle`` and of ``paddleseg``
    runs inside :func:`deferred_imports`; ``on_paddleseg`` is called when PaddleSeg's import has run. A spec
    only looked up (``importlib.util.find_spec``) and never loaded leaves the hook in place."""

    def __init__(self, on_paddleseg):
        self.on_paddleseg = on_paddleseg
        self.pending = set(HOOKED)
        self.finding = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.pending or self.finding:
            return None
        self.finding = True
        try:
            spec = importlib.util.find_spec(fullname)  # the other finders' answer (this one passes meanwhile)
        finally:
            self.finding = False
        if spec is not None and spec.loader is not None:
            _defer_while_executing(spec.loader, fullname, self.imported)
        return spec

    def imported(self, name):
        """``name`` has been imported: it is hooked no more; for PaddleSeg, the hook leaves and calls back."""
        self.pending.discard(name)
        if name == 'paddleseg':
            sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not self]
            self.on_paddleseg()


def when_paddleseg_imported(callback):
    """Call ``callback()`` once PaddleSeg is imported (by anyone), and import Paddle and PaddleSeg inside
    :func:`deferred_imports`; nothing is hooked while a hook is pending already.

    Args:
        callback (callable): Called with no arguments right after ``paddleseg/__init__.py`` has run.
    """
    if not any(isinstance(finder, _ImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ImportHook(callback))
