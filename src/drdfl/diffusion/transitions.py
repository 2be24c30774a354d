"""Stored reverse-process transitions: what a sampler keeps and 3D-Learning scores.

A leaf module (torch only), so that samplers, the model and the scoring functions can all
use it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Transitions:
    """The last ``K`` reverse steps of ``n`` trajectories, in the model's data space.

    ``states [n, K + 1, L]`` holds ``x_{t_0}, x_{t_1}, …, x_{t_K}`` for the visited
    timesteps ``timesteps [K + 1]`` (descending, ``t_K = 0`` is the sample itself); step
    ``k`` goes from ``x_t = states[:, k]`` at ``t = timesteps[k]`` to
    ``x_s = states[:, k + 1]`` at ``s = timesteps[k + 1]``. ``eta`` is the stochasticity
    of the sampler that drew them (1 for DDPM).
    """

    states: torch.Tensor
    timesteps: torch.Tensor
    eta: float = 1.0

    def __post_init__(self) -> None:
        if self.states.ndim != 3 or self.states.shape[1] != self.timesteps.shape[0]:
            raise ValueError(
                f"transitions: states {tuple(self.states.shape)} do not match "
                f"{self.timesteps.shape[0]} timesteps"
            )

    def __len__(self) -> int:
        return int(self.states.shape[0])

    @property
    def n_steps(self) -> int:
        """Number of stored transitions per trajectory (``K``)."""
        return int(self.timesteps.shape[0] - 1)

    @property
    def x_t(self) -> torch.Tensor:
        """Sources of the steps, ``[n, K, L]``."""
        return self.states[:, :-1]

    @property
    def x_prev(self) -> torch.Tensor:
        """Targets of the steps (``x_{t-1}`` for DDPM), ``[n, K, L]``."""
        return self.states[:, 1:]

    @property
    def t(self) -> torch.Tensor:
        """Timestep of each step's source, ``[K]``."""
        return self.timesteps[:-1]

    @property
    def s(self) -> torch.Tensor:
        """Timestep of each step's target, ``[K]``."""
        return self.timesteps[1:]

    @property
    def samples(self) -> torch.Tensor:
        """The final states ``x_0`` of the trajectories, ``[n, L]``."""
        return self.states[:, -1]

    def subset(self, index: torch.Tensor | slice) -> Transitions:
        """The trajectories selected by ``index`` (e.g. a minibatch)."""
        return Transitions(self.states[index], self.timesteps, self.eta)

    def to(self, device: str | torch.device) -> Transitions:
        return Transitions(self.states.to(device), self.timesteps, self.eta)
