"""Value heads: what the network outputs per action, how Q-values come from it, the per-sample
loss against the bootstrapped target, and the priority that prioritized replay reads from it.

A head sees one network's output at the taken action, `taken` (B, k), and the target network's
at the bootstrap action, `target_next` (B, k'), with n-step rewards and discounts gamma^n (0
after a learning terminal), each (B,); any leading dimensions pass through. Which action the target bootstraps on
(Double DQN or not) is the agent's choice, shared by every head.

    ScalarTD          DQN (Mnih et al. 2015): one value per action, Huber or squared TD error
    Categorical       C51 (Bellemare et al. 2017): log-probabilities over fixed atoms, cross-entropy
                      to the target projected onto the atoms
    QuantileRegression  QR-DQN (Dabney et al. 2018a): N fixed quantile midpoints, quantile Huber loss
    ImplicitQuantile    IQN (Dabney et al. 2018b): values at sampled fractions tau, quantile Huber loss

A new head is one class here and one preset in configs/; the loop and the replay do not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dqn_atari.config import AgentConfig


class ValueHead:
    """The seam: subclasses say how many values per action the network's last layer gives
    (`outputs_per_action`), or that it is evaluated at sampled fractions (`samples_taus`)."""

    name = "value head"
    outputs_per_action = 1
    # IQN: the network takes sampled quantile fractions as input, these many per purpose
    samples_taus = False
    online_samples = target_samples = policy_samples = 0

    def to(self, device: torch.device | str) -> ValueHead:
        """Keep the head's constant tensors (C51's atoms, QR-DQN's fractions) on the device:
        a captured CUDA graph cannot copy them there."""
        for name, value in vars(self).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        return self

    def output(self, raw: torch.Tensor) -> torch.Tensor:
        """The network's (..., A, k) last-layer values as this head reads them."""
        return raw

    def q_values(self, output: torch.Tensor) -> torch.Tensor:
        """(..., A) from (..., A, k)."""
        return output.mean(dim=-1)

    def loss(
        self,
        taken: torch.Tensor,
        target_next: torch.Tensor,
        rewards: torch.Tensor,
        discounts: torch.Tensor,
        taus: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-sample loss, per-sample priority), each (B,). `taus`: IQN's fractions of `taken`."""
        raise NotImplementedError


class ScalarTD(ValueHead):
    """Q(s, a) itself; loss on r + gamma^n Q_target(s', a') - Q(s, a). Huber: Nature's "clip
    the error term from the update to be between -1 and 1"; MSE: CleanRL's. Priority |TD error|."""

    name = "scalar"

    def __init__(self, loss: str = AgentConfig.loss):
        if loss not in ("huber", "mse"):
            raise ValueError(f"scalar TD loss must be huber or mse, got {loss!r}")
        self.loss_name = loss

    def loss(self, taken, target_next, rewards, discounts, taus=None):
        q_taken = taken[..., 0]
        target = rewards + discounts * target_next[..., 0]
        if self.loss_name == "huber":
            per_sample = F.smooth_l1_loss(q_taken, target, beta=1.0, reduction="none")
        else:
            per_sample = F.mse_loss(q_taken, target, reduction="none")
        return per_sample, (target - q_taken).detach().abs()


class Categorical(ValueHead):
    """C51: a distribution over `atoms` returns evenly spaced on [v_min, v_max]; the network
    gives log-probabilities, Q is the expected value. The loss is the cross-entropy to the
    target distribution projected onto the atoms (Bellemare et al. 2017, Algorithm 1); the
    priority is that cross-entropy, as Dopamine and DQN Zoo use it (Hessel et al. 2018 say the
    KL divergence: the two differ by the target's entropy, which does not depend on the
    network)."""

    name = "c51"

    def __init__(
        self, atoms: int = AgentConfig.atoms, v_min: float = AgentConfig.v_min, v_max: float = AgentConfig.v_max
    ):
        self.outputs_per_action = atoms
        self.support = torch.linspace(v_min, v_max, atoms)

    def output(self, raw):
        return F.log_softmax(raw, dim=-1)

    def q_values(self, output):
        return (output.exp() * self.support).sum(dim=-1)

    def loss(self, taken, target_next, rewards, discounts, taus=None):
        with torch.no_grad():
            target = categorical_projection(target_next.exp(), rewards, discounts, self.support)
        per_sample = -(target * taken).sum(dim=-1)
        return per_sample, per_sample.detach()


def categorical_projection(
    next_probs: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor, support: torch.Tensor
) -> torch.Tensor:
    """Project r + gamma^k z (each atom z of the next state's distribution, clipped to the
    support's ends) back onto the support, splitting each atom's mass between its two
    neighbours in proportion to closeness (Bellemare et al. 2017, Algorithm 1). `discounts` is
    0 at a terminal: all mass then lands on r. next_probs (..., atoms); rewards and discounts
    (...). Returns (..., atoms), each row summing to 1."""
    v_min, v_max, atoms = support[0], support[-1], len(support)
    delta = (v_max - v_min) / (atoms - 1)
    shifted = (rewards.unsqueeze(-1) + discounts.unsqueeze(-1) * support).clamp(v_min, v_max)
    b = ((shifted - v_min) / delta).clamp(0, atoms - 1)  # rounding must not leave the support
    lower, upper = b.floor().long(), b.ceil().long()
    # b on an atom exactly: lower == upper, and the whole mass goes to it
    lower_share = torch.where(lower == upper, torch.ones_like(b), upper.to(b.dtype) - b)
    upper_share = b - lower.to(b.dtype)
    projected = torch.zeros_like(next_probs)
    projected.scatter_add_(-1, lower, next_probs * lower_share)
    projected.scatter_add_(-1, upper, next_probs * upper_share)
    return projected


def quantile_huber_loss(
    quantiles: torch.Tensor, fractions: torch.Tensor, targets: torch.Tensor, kappa: float
) -> torch.Tensor:
    """sum_i mean_j |tau_i - 1{u_ij < 0}| L_kappa(u_ij) / kappa with u_ij = target_j - theta_i
    (Dabney et al. 2018a, eq. 10; 2018b, eq. 3): quantiles theta (..., N) at `fractions` tau
    (..., N) or (N,), targets (..., N'). Summed over the online quantiles, averaged over the
    targets, as DQN Zoo (rlax) and Dopamine do. Returns (...). The division by kappa is IQN's
    form (2018b, eq. 3); QR-DQN's paper and DQN Zoo's QR-DQN leave it out. Both presets use
    kappa = 1, where the two forms are the same."""
    u = targets.unsqueeze(-2) - quantiles.unsqueeze(-1)  # (..., N, N')
    abs_u = u.abs()
    huber = torch.where(abs_u <= kappa, 0.5 * u * u, kappa * (abs_u - 0.5 * kappa))
    weight = (fractions.unsqueeze(-1) - (u.detach() < 0).to(u.dtype)).abs()
    return (weight * huber / kappa).mean(dim=-1).sum(dim=-1)


class QuantileRegression(ValueHead):
    """QR-DQN: N quantiles of the return at the fixed fractions tau_i = (2i + 1) / 2N, Q their
    mean; the quantile Huber loss to the target's quantiles r + gamma^n theta_j(s', a')
    (Dabney et al. 2018a, Algorithm 1). Priority: that loss."""

    name = "qr_dqn"

    def __init__(self, quantiles: int = AgentConfig.quantiles, kappa: float = AgentConfig.huber_kappa):
        self.outputs_per_action = quantiles
        self.kappa = kappa
        self.fractions = (torch.arange(quantiles, dtype=torch.float32) + 0.5) / quantiles

    def loss(self, taken, target_next, rewards, discounts, taus=None):
        targets = (rewards.unsqueeze(-1) + discounts.unsqueeze(-1) * target_next).detach()
        per_sample = quantile_huber_loss(taken, self.fractions, targets, self.kappa)
        return per_sample, per_sample.detach()


class ImplicitQuantile(ValueHead):
    """IQN: the network maps a state and fractions tau ~ U(0, 1) to the return's quantiles at
    tau. The loss samples N fractions for the online network and N' for the target, quantile
    Huber loss between them; the bootstrap action is greedy in the mean over K further samples
    (Dabney et al. 2018b, Algorithm 1). Acting also averages K samples. Priority: the loss."""

    name = "iqn"
    samples_taus = True

    def __init__(
        self,
        online_samples: int = AgentConfig.iqn_tau_samples,
        target_samples: int = AgentConfig.iqn_tau_prime_samples,
        policy_samples: int = AgentConfig.iqn_policy_samples,
        kappa: float = AgentConfig.huber_kappa,
    ):
        self.online_samples, self.target_samples, self.policy_samples = online_samples, target_samples, policy_samples
        self.kappa = kappa

    def loss(self, taken, target_next, rewards, discounts, taus=None):
        assert taus is not None, "IQN's loss needs the online network's fractions"
        targets = (rewards.unsqueeze(-1) + discounts.unsqueeze(-1) * target_next).detach()
        per_sample = quantile_huber_loss(taken, taus, targets, self.kappa)
        return per_sample, per_sample.detach()


def value_head_from_config(agent: AgentConfig) -> ValueHead:
    """The head a run's `agent` section asks for."""
    if agent.value_head == "c51":
        return Categorical(agent.atoms, agent.v_min, agent.v_max)
    if agent.value_head == "qr_dqn":
        return QuantileRegression(agent.quantiles, agent.huber_kappa)
    if agent.value_head == "iqn":
        return ImplicitQuantile(
            agent.iqn_tau_samples, agent.iqn_tau_prime_samples, agent.iqn_policy_samples, agent.huber_kappa
        )
    return ScalarTD(agent.loss)
