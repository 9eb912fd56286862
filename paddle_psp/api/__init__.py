"""The Python API: :class:`Segmenter` (a model with its weights: predict, evaluate, benchmark, submissions)
and :class:`Prediction` (one image's class map, colours and overlay). Also reachable as
``paddle_psp.Segmenter`` and ``paddle_psp.Prediction``; bad input raises :class:`UserError`.
See docs/python_api.md.
"""
from paddle_psp.api.prediction import Prediction
from paddle_psp.api.segmenter import Segmenter
from paddle_psp.core.errors import UserError

__all__ = ['Prediction', 'Segmenter', 'UserError']
