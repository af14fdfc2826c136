"""dqn_atari: the Nature DQN (Mnih et al. 2015) from Atari pixels."""

__version__ = "0.1.0"
