"""The one door between the ROS node (or any caller) and a policy: observation in, output out.

``Policy`` is what the node is given: ``cosmos_policy_ros.engine.policy.CosmosPolicy`` implements
it, and so does ``cosmos_policy_ros.testing.FakePolicy``. A ``BatchPolicy`` also runs several
``InferenceRequest`` s (the ticks of several robots) in one batched pass (``infer_batch``): what
the policy server of cosmos_policy_ros.fleet batches. numpy only, no torch, no rclpy.
"""
from dataclasses import dataclass, field
import math
from typing import List, Mapping, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

from cosmos_policy_ros.layout import LatentLayout

# Seeds are uint32 (numpy RandomState seeds, ActionChunk.seed): every derived seed wraps here.
SEED_MODULUS = 2 ** 32


@dataclass(frozen=True)
class Observation:
    """One synchronized observation.

    images: camera name (as in the layout) -> uint8 RGB array (H, W, 3), any size.
    proprio: raw proprio vector (D,) in the robot's units (normalized by the policy).
    instruction: the task text, looked up in the model's text embeddings; or
    text_embedding: a precomputed T5 embedding (L, 1024) used instead of the instruction.
    seed: seed of the diffusion noise (the same seed gives the same chunk).
    """

    images: Mapping[str, np.ndarray]
    proprio: np.ndarray
    instruction: Optional[str] = None
    text_embedding: Optional[np.ndarray] = None
    seed: int = 0


@dataclass(frozen=True)
class PolicyOutput:
    """What one inference produced.

    actions: (K, d) float32 action chunk in the robot's units.
    value: predicted value in [0, 1] (the joint pass's V(s'), or the planning model's score),
        NaN when the model produced none.
    future_proprio: (D,) predicted proprio after the chunk, unnormalized, or None.
    future_images: camera name -> predicted uint8 RGB image, or None (decoding is optional).
    timings: stage name -> seconds (e.g. 'preprocess', 'encode', 'denoise', 'extract', 'total').
    evaluation_times: seconds of each network evaluation, in call order.
    seed, num_steps: the noise seed and the sampler step count used (the
    reference's num_steps; network evaluations: engine.sampling.num_evaluations).
    candidate_values: value of every best-of-N candidate in seed order (empty without planning).
    selected_candidate: index of the returned candidate in candidate_values (0 without planning).
    num_conditioned_steps: the chunk's first steps inpainted from given known actions (0: none;
        see cosmos_policy_ros.execution and docs/stitching.md).
    batch_size: observations computed in the same batched pass as this one (1: alone; see
        BatchPolicy); `timings` and `evaluation_times` are then the whole pass's.
    """

    actions: np.ndarray
    value: float = math.nan
    future_proprio: Optional[np.ndarray] = None
    future_images: Optional[Mapping[str, np.ndarray]] = None
    timings: Mapping[str, float] = field(default_factory=dict)
    evaluation_times: Tuple[float, ...] = ()
    seed: int = 0
    num_steps: int = 0
    candidate_values: Tuple[float, ...] = ()
    selected_candidate: int = 0
    num_conditioned_steps: int = 0
    batch_size: int = 1


@dataclass(frozen=True)
class InferenceRequest:
    """One inference of a batch: an observation and the options of ``Policy.infer``."""

    observation: Observation
    num_steps: Optional[int] = None
    num_candidates: Optional[int] = None
    known_actions: Optional[np.ndarray] = None  # (k, d) robot units, for inpainting; None: none

    def infer_kwargs(self):
        """The keyword arguments of ``Policy.infer`` for this request (known_actions only when
        given: policies without inpainting keep working)."""
        kwargs = {'num_steps': self.num_steps, 'num_candidates': self.num_candidates}
        if self.known_actions is not None:
            kwargs['known_actions'] = self.known_actions
        return kwargs


class Policy(Protocol):
    """What the node needs from a policy."""

    layout: LatentLayout  # cameras, chunk size, action and proprio sizes
    model_id: str  # reported in every published message

    def infer(self, observation: Observation, *, num_steps: Optional[int] = None,
              num_candidates: Optional[int] = None) -> PolicyOutput:
        """Predict one chunk; num_steps / num_candidates override the policy's defaults.

        A policy that supports stitching by inpainting also takes `known_actions` ((k, d)
        robot units: the chunk's first k steps, docs/stitching.md); the control loop passes it
        only with an inpaint stitching method, so other policies need not.
        """

    def reset(self) -> None:
        """Forget per-episode state (caches keyed on the instruction, etc.)."""


class BatchPolicy(Policy, Protocol):
    """A Policy that also infers several requests in one batched pass."""

    def infer_batch(self, requests: Sequence[InferenceRequest]
                    ) -> List[Union[PolicyOutput, Exception]]:
        """One result per request, in order: its PolicyOutput, or the exception its inference
        raised (a bad request fails alone; the others are still computed).

        A request's output does not depend on which others share its batch: it equals
        ``infer`` of that request alone up to floating-point rounding of batched kernels.
        """
