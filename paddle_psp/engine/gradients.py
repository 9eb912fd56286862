"""Gradients freed after each optimizer step rather than zeroed, with the updates of zeroing.

PaddleSeg's loop ends a step with ``model.clear_gradients()``, which sets every gradient to zero and keeps
its memory: the gradients (as large as the weights: 0.2 GiB for a ResNet-50 model) stay allocated through
the next forward, at the activations' peak, and sit between the large blocks the step allocates and frees.
:class:`GradientRelease` frees them instead (``clear_grad(set_to_zero=False)``), which lowers a training
step's peak RSS, most with ``PADDLE_PSP_TRAIN_MALLOC=reuse`` (see docs/performance.md), and changes no
update: a fresh gradient is written where a zeroed one would have been added to, and a parameter that had a
gradient in an earlier step but gets none in this one is given a zero gradient before the update, as it
would have with zeroing (the optimizer then still applies its momentum and weight decay to it).
"""
import paddle


class GradientRelease:
    """Frees the gradients of ``parameters`` after each step with the updates of zeroing them.

    Call :meth:`before_update` between the backward and the optimizer's update, :meth:`after_update` after it.

    Args:
        parameters (iterable[paddle.Tensor]): The model's parameters (those with ``stop_gradient`` are
            left alone).
    """

    def __init__(self, parameters):
        self.parameters = [p for p in parameters if not p.stop_gradient]
        self.had_gradient = [False] * len(self.parameters)

    def before_update(self):
        """Give a zero gradient to each parameter that had one in an earlier step and got none in this one."""
        for index, parameter in enumerate(self.parameters):
            if parameter.grad is not None:
                self.had_gradient[index] = True
            elif self.had_gradient[index]:
                parameter.grad = paddle.zeros_like(parameter)

    @staticmethod
    def after_update(optimizer):
        """Free the gradients of ``optimizer``'s parameters."""
        optimizer.clear_grad(set_to_zero=False)


class GradientZeroing:
    """PaddleSeg's way behind the same calls, for comparisons (benchmarks, tests): gradients kept and zeroed
    after each update."""

    def before_update(self):
        """Nothing: a zeroed gradient is still there."""

    @staticmethod
    def after_update(optimizer):
        """Zero the gradients of ``optimizer``'s parameters, keeping their memory."""
        optimizer.clear_grad()
