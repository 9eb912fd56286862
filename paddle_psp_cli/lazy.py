"""Imports the command line defers: modules a dependency imports at start-up but rarely uses.

PaddleSeg imports ``sklearn.metrics`` when it is imported, for its ``auc_roc`` only; scikit-learn in turn
imports SciPy and pandas, which is most of the time ``import paddleseg`` takes. :func:`defer_imports`
puts stand-ins for them in ``sys.modules``: the real import happens at the first use of one of their
attributes (``paddleseg val --auc_roc``), and never on a run that does not use them. Python's
``importlib.util.LazyLoader`` cannot do this here: the import system reads ``__spec__`` of a module it
finds in ``sys.modules``, which makes a lazy module load at once. Only the ``paddleseg`` command defers;
``import paddle_psp`` in a program changes nothing.
"""
import importlib
import importlib.machinery
import sys
import types

DEFERRED = ('sklearn', 'sklearn.metrics')  # parents first


class _Deferred(types.ModuleType):
    """Stands in for module ``name`` until an attribute it does not hold is asked for; then imports the real
    module (and its deferred parents) and answers from it."""

    def __init__(self, name):
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)  # what the import system reads

    def __getattr__(self, attribute):
        return getattr(_load(self.__name__), attribute)


def _load(name):
    """Replace the stand-ins of ``name`` and its parents with the real modules; return the real ``name``."""
    for deferred in DEFERRED:
        if isinstance(sys.modules.get(deferred), _Deferred):
            del sys.modules[deferred]
    return importlib.import_module(name)


def defer_imports(names=DEFERRED):
    """Put a stand-in for each of ``names`` in ``sys.modules``, unless one of them is imported already or
    is not installed."""
    if any(name in sys.modules for name in names) or importlib.util.find_spec(names[0]) is None:
        return
    for name in names:
        module = sys.modules[name] = _Deferred(name)
        parent, _, child = name.rpartition('.')
        if parent:
            setattr(sys.modules[parent], child, module)
