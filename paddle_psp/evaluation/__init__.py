"""Evaluation: ``paddleseg val`` (:mod:`evaluate`), the confusion-matrix metrics (:mod:`metrics`) and
``--auc_roc`` (:mod:`auc_roc`), shared by training's ``--do_eval``, the benchmark and the Python API.

It sits between inference, which gives it a forward, and the engine, which calls it while training.
"""
