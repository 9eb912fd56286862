"""Inference: test-time augmentation (:mod:`tta`), export to Paddle Inference (:mod:`export`, ``paddleseg
export``), colour predictions (:mod:`predict`, ``paddleseg predict``), and the fast CPU path.

The fast path answers three questions, one module each: what names a cache entry (:mod:`cache_key`: the
model's fingerprint, and the recipe that is its alias), how an entry is made (:mod:`entry`: the exact
inference copy, exported once), and how it is run (:mod:`runner`: Paddle Inference with oneDNN); :mod:`cache`
is the store, and :mod:`forward` makes the ``forward`` that ``val``, ``predict`` and ``benchmark`` run from a
config and a weights file (:func:`forward.make_forward`) or from a built model (:func:`forward.model_forward`).
"""
