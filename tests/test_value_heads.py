"""Each value head's loss against hand-computed numbers on tiny batches, and the quantile heads
against an independent, loop-by-loop implementation of the papers' formulas."""

import math

import numpy as np
import pytest
import torch

from dqn_atari.config import typed
from dqn_atari.value_heads import (
    Categorical,
    ImplicitQuantile,
    QuantileRegression,
    ScalarTD,
    categorical_projection,
    value_head_from_config,
)


def one(*values):
    """(K=1, B=1, len(values)): one member, one sample."""
    return torch.tensor([[list(values)]], dtype=torch.float64)


@pytest.mark.parametrize("loss,expected", [("huber", 1.03 - 0.5), ("mse", 1.03**2)])
def test_scalar_td_loss_and_priority_by_hand(loss, expected):
    # target = 1 + 0.99 * 3 = 3.97, Q(s, a) = 5: error 1.03
    per_sample, priority = ScalarTD(loss).loss(one(5.0), one(3.0), torch.tensor([[1.0]]), torch.tensor([[0.99]]))
    assert per_sample.item() == pytest.approx(expected, rel=1e-6)
    assert priority.item() == pytest.approx(1.03, rel=1e-6)


def test_categorical_projection_by_hand():
    """Support -2..2 (5 atoms, spacing 1). Rows: a terminal with reward 0.5; reward 1 and
    gamma^k 0.5 on a uniform distribution; targets beyond either end of the support."""
    support = torch.linspace(-2, 2, 5)
    uniform = torch.full((4, 5), 0.2)
    projected = categorical_projection(
        uniform, torch.tensor([0.5, 1.0, 5.0, -5.0]), torch.tensor([0.0, 0.5, 1.0, 0.9]), support
    )
    expected = torch.tensor(
        [
            [0.0, 0.0, 0.5, 0.5, 0.0],  # all mass at 0.5: half to atom 0, half to atom 1
            [0.0, 0.0, 0.3, 0.4, 0.3],  # 1 + 0.5 z = 0, 0.5, 1, 1.5, 2
            [0.0, 0.0, 0.0, 0.0, 1.0],  # clipped at v_max
            [1.0, 0.0, 0.0, 0.0, 0.0],  # clipped at v_min
        ]
    )
    torch.testing.assert_close(projected, expected)
    torch.testing.assert_close(projected.sum(dim=1), torch.ones(4))


def test_c51_loss_is_the_cross_entropy_to_the_projected_target():
    head = Categorical(5, -2.0, 2.0)
    taken = torch.log(one(0.1, 0.2, 0.3, 0.2, 0.2))
    next_log_probs = torch.log(one(0.2, 0.2, 0.2, 0.2, 0.2))
    # terminal, reward 0.5: the target is half on atom 0 (index 2), half on atom 1 (index 3)
    per_sample, priority = head.loss(taken, next_log_probs, torch.tensor([[0.5]]), torch.tensor([[0.0]]))
    expected = -(0.5 * math.log(0.3) + 0.5 * math.log(0.2))
    assert per_sample.item() == pytest.approx(expected, rel=1e-6)
    assert priority.item() == pytest.approx(expected, rel=1e-6)
    # Q = -2(0.1) - 1(0.2) + 0(0.3) + 1(0.2) + 2(0.2) = 0.2
    assert head.q_values(taken.unsqueeze(2)).item() == pytest.approx(0.2, abs=1e-6)


def test_quantile_regression_loss_by_hand():
    """Two quantiles at tau = 0.25, 0.75, theta = (0, 4); the target's quantiles (1, 3), r = 0,
    gamma^n = 1. u_ij = T_j - theta_i: (1, 3) and (-3, -1). With kappa 1: Huber (0.5, 2.5) and
    (2.5, 0.5), weights 0.25 and |0.75 - 1| = 0.25: means over j 0.375 and 0.375, sum 0.75."""
    head = QuantileRegression(2, kappa=1.0)
    assert head.fractions.tolist() == [0.25, 0.75]
    per_sample, priority = head.loss(one(0.0, 4.0), one(1.0, 3.0), torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    assert per_sample.item() == pytest.approx(0.75)
    assert priority.item() == pytest.approx(0.75)


def quantile_loss_reference(theta, taus, targets, kappa):
    """The papers' formula, one term at a time in float64: sum_i (1/N') sum_j
    |tau_i - 1{u < 0}| L_kappa(u) / kappa, u = target_j - theta_i (Dabney et al. 2018a eq. 10,
    2018b eq. 3)."""
    total = 0.0
    for i, tau in enumerate(taus):
        for target in targets:
            u = target - theta[i]
            huber = 0.5 * u * u if abs(u) <= kappa else kappa * (abs(u) - 0.5 * kappa)
            total += abs(tau - (1.0 if u < 0 else 0.0)) * huber / kappa / len(targets)
    return total


@pytest.mark.parametrize("kappa", [1.0, 0.5])
def test_quantile_heads_match_the_papers_formula_on_random_inputs(kappa):
    rng = np.random.default_rng(0)
    members, batch, n, n_prime = 2, 3, 5, 7
    rewards = rng.normal(size=(members, batch))
    discounts = rng.choice([0.0, 0.97], size=(members, batch))
    theta = rng.normal(scale=2, size=(members, batch, n))
    next_theta = rng.normal(scale=2, size=(members, batch, n_prime))
    taus = rng.random((members, batch, n))
    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    iqn, _ = ImplicitQuantile(n, n_prime, 4, kappa).loss(t(theta), t(next_theta), t(rewards), t(discounts), t(taus))
    qr_head = QuantileRegression(n, kappa)
    qr_head.fractions = qr_head.fractions.double()
    qr, _ = qr_head.loss(t(theta), t(next_theta), t(rewards), t(discounts))
    for k in range(members):
        for b in range(batch):
            targets = rewards[k, b] + discounts[k, b] * next_theta[k, b]
            midpoints = (np.arange(n) + 0.5) / n
            assert iqn[k, b].item() == pytest.approx(quantile_loss_reference(theta[k, b], taus[k, b], targets, kappa))
            assert qr[k, b].item() == pytest.approx(quantile_loss_reference(theta[k, b], midpoints, targets, kappa))


def test_quantile_loss_gradient_moves_each_quantile_toward_its_fraction():
    """Minimising the loss against many target samples puts theta_i at the tau_i-quantile of
    the targets: the loss is a quantile regression, not a mean (with a small kappa: at kappa 1
    the Huber part pulls the outer quantiles of these targets 0.34 inward)."""
    head = QuantileRegression(4, kappa=0.05)
    targets = torch.linspace(-10, 10, 201).view(1, 1, 201)
    theta = torch.zeros(1, 1, 4, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=0.1)
    for _ in range(2000):
        loss, _ = head.loss(theta, targets, torch.zeros(1, 1), torch.ones(1, 1))
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
    expected = np.quantile(np.linspace(-10, 10, 201), [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(theta.detach().numpy().ravel(), expected, atol=0.3)


def test_heads_come_from_the_config_and_old_configs_read_as_before():
    def head(**agent):
        return value_head_from_config(typed({"agent": agent}).agent)

    scalar = head(value_head="scalar", loss="mse")
    assert isinstance(scalar, ScalarTD) and scalar.loss_name == "mse"
    c51 = head(distributional=True, atoms=21)  # written before value_head
    assert isinstance(c51, Categorical) and c51.outputs_per_action == 21
    qr = head(value_head="qr_dqn", quantiles=200, huber_kappa=2.0)
    assert qr.outputs_per_action == 200 and qr.kappa == 2.0
    iqn = head(value_head="iqn", iqn_tau_samples=64, iqn_tau_prime_samples=16, iqn_policy_samples=32)
    assert (iqn.online_samples, iqn.target_samples, iqn.policy_samples) == (64, 16, 32)
