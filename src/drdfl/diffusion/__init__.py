"""The diffusion ambiguity model: a DDPM over segments of the normalized demand series.

- :mod:`~drdfl.diffusion.schedule`: noise schedules as tensors, the reverse-step formula.
- :mod:`~drdfl.diffusion.samplers`: DDPM (ancestral) and DDIM samplers, the sampling loop.
- :mod:`~drdfl.diffusion.transitions`: the stored last steps of reverse trajectories.
- :mod:`~drdfl.diffusion.trajectory`: log-probabilities of stored transitions and their ratios.
- :mod:`~drdfl.diffusion.ddpm`: the denoising score-matching loss ``J(θ, S)``.
- :mod:`~drdfl.diffusion.model`: :class:`DiffusionModel`, its configuration and presets.
- :mod:`~drdfl.diffusion.train`: seeded training with EMA and resumable checkpoints.
- :mod:`~drdfl.diffusion.segments`: segments of a series, and windows cut from segments.
- :mod:`~drdfl.diffusion.quality`: Wasserstein, ACF and discriminative quality metrics, the
  reference model's quality gate and the realism figures of any batch of segments.
"""

from drdfl.diffusion.ddpm import denoising_loss, score_matching_loss
from drdfl.diffusion.model import (
    PRESETS,
    DiffusionModel,
    DiffusionModelConfig,
    DiffusionTrainConfig,
    SampleResult,
    get_preset,
    read_quality,
)
from drdfl.diffusion.quality import (
    QualityGate,
    detect_period,
    gate_split,
    quality_gate,
    realism,
)
from drdfl.diffusion.samplers import Sampler, get_sampler, run_reverse
from drdfl.diffusion.schedule import NoiseSchedule
from drdfl.diffusion.segments import cut_segments, random_segments, segments_to_windows
from drdfl.diffusion.train import TrainResult, fit_series, train_diffusion
from drdfl.diffusion.trajectory import log_ratio, step_log_probs, trajectory_log_prob
from drdfl.diffusion.transitions import Transitions
from drdfl.diffusion.verdict import GateConfig

__all__ = [
    "PRESETS",
    "DiffusionModel",
    "DiffusionModelConfig",
    "DiffusionTrainConfig",
    "GateConfig",
    "NoiseSchedule",
    "QualityGate",
    "SampleResult",
    "Sampler",
    "TrainResult",
    "Transitions",
    "cut_segments",
    "denoising_loss",
    "detect_period",
    "fit_series",
    "gate_split",
    "get_preset",
    "get_sampler",
    "log_ratio",
    "quality_gate",
    "random_segments",
    "read_quality",
    "realism",
    "run_reverse",
    "score_matching_loss",
    "segments_to_windows",
    "step_log_probs",
    "train_diffusion",
    "trajectory_log_prob",
]
