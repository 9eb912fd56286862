"""Training, evaluation, test-time augmentation, prediction and export."""
