"""DeepMind's RMSProp (epsilon inside the square root, centred) against two steps worked by hand."""

import pytest
import torch


def test_deepmind_rmsprop_two_steps_by_hand():
    """w <- w - lr g / sqrt(E[g^2] - E[g]^2 + eps), both averages from zero: computed here with
    plain floats for two steps, and different from torch's RMSprop (eps outside the root)."""
    import math

    from dqn_atari.optimizers import DeepMindRMSprop

    lr, alpha, eps = 0.1, 0.95, 1e-3
    w0 = [1.0, -2.0]
    grads = [[0.5, 0.1], [-0.3, 0.2]]
    expected = []
    for i in range(2):
        w, mean_g, mean_g2 = w0[i], 0.0, 0.0
        for g in (grads[0][i], grads[1][i]):
            mean_g = alpha * mean_g + (1 - alpha) * g
            mean_g2 = alpha * mean_g2 + (1 - alpha) * g * g
            w -= lr * g / math.sqrt(mean_g2 - mean_g**2 + eps)
        expected.append(w)

    def two_steps(make):
        w = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
        opt = make([w])
        for g in grads:
            w.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
        return w.detach().tolist()

    assert two_steps(lambda p: DeepMindRMSprop(p, lr=lr, alpha=alpha, eps=eps)) == pytest.approx(expected, rel=1e-12)
    torch_version = two_steps(lambda p: torch.optim.RMSprop(p, lr=lr, alpha=alpha, eps=eps, centered=True))
    assert torch_version != pytest.approx(expected, rel=1e-3)
