"""Inference: test-time augmentation (:mod:`tta`), the fast CPU path (:mod:`predictor`), export to Paddle
Inference (:mod:`export`, ``paddleseg export``) and colour predictions (:mod:`predict`, ``paddleseg predict``)."""
