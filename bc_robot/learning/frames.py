"""The frame a policy predicts its actions in, and the conversion to and from the absolute
targets the artifact outputs (inside the graph, so the policy node never sees it).

- absolute: the base frame, as the targets are published;
- `model.relative_position`: positions minus the latest measured TCP position (all or some
  axes), orientation absolute;
- `model.action_frame: tool`: positions relative to the TCP *and* position and orientation
  rotated into the TCP's own frame (the relative trajectory of UMI, Chi et al. 2024). With
  a wrist camera, "push forward along the paddle, steer toward what the camera sees" is then
  one action whatever direction the push runs in the base frame, instead of a direction
  the network must read off the front camera and hold to a degree.

Torch, used by the network and by the normalization statistics, so both see one conversion.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def rot6d_to_rotation(rot6d: torch.Tensor) -> torch.Tensor:
    """[..., 6] (first two columns) → [..., 3, 3] by Gram-Schmidt, as core.pose does; written
    with elementwise ops only so the ONNX exporter needs nothing special."""
    a, b = rot6d[..., :3], rot6d[..., 3:6]
    x = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    b = b - (x * b).sum(-1, keepdim=True) * x
    y = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    z = torch.stack([x[..., 1] * y[..., 2] - x[..., 2] * y[..., 1],
                     x[..., 2] * y[..., 0] - x[..., 0] * y[..., 2],
                     x[..., 0] * y[..., 1] - x[..., 1] * y[..., 0]], -1)
    return torch.stack([x, y, z], -1)


@dataclass(frozen=True)
class ActionFrame:
    """Where in the state vector the anchor lives and how actions relate to it.

    `position`: the ee_position slice (None: absolute positions); `mask`: 1 on the axes made
    relative; `rotation`: the ee_rot6d slice when actions are in the tool frame (None: base
    frame). Actions are [x, y, z, rot6d(6), gripper] in the tool frame."""

    position: slice | None = None
    mask: tuple[float, float, float] = (1.0, 1.0, 1.0)
    rotation: slice | None = None

    def __post_init__(self) -> None:
        if self.rotation is not None and (self.position is None or tuple(self.mask) !=
                                          (1.0, 1.0, 1.0)):
            raise ValueError(f'the tool action frame needs positions relative on every axis, '
                             f'got position {self.position} and mask {self.mask}')

    def _offset(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mask = torch.tensor(self.mask, dtype=actions.dtype, device=actions.device)
        return (state[:, self.position].to(actions.dtype) * mask)[:, None, :]

    def _rotation(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return rot6d_to_rotation(state[:, self.rotation].to(actions.dtype))[:, None]  # [B,1,3,3]

    def to_model(self, actions: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """Absolute chunks [B, H, A] → the frame the network predicts in; `state` is the raw
        latest state [B, D]."""
        if self.position is None or state is None:
            return actions
        shifted = torch.cat([actions[..., :3] - self._offset(state, actions), actions[..., 3:]],
                            -1)
        if self.rotation is None:
            return shifted
        return _rotate(shifted, self._rotation(state, actions))  # Rᵀ·v

    def from_model(self, actions: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
        """The inverse of `to_model`: what the graph outputs."""
        if self.position is None or state is None:
            return actions
        if self.rotation is not None:
            actions = _rotate(actions, self._rotation(state, actions).transpose(-1, -2))  # R·v
        return torch.cat([actions[..., :3] + self._offset(state, actions), actions[..., 3:]], -1)


def _rotate(actions: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """matrixᵀ·v for each 3-vector of an action (the position and both rot6d columns), as
    rows: vᵀ·matrix."""
    rows = actions[..., :9].unflatten(-1, (3, 3)) @ matrix
    return torch.cat([rows.flatten(-2), actions[..., 9:]], -1)


def objects_on_table(sim_objects: torch.Tensor, tcp: torch.Tensor) -> torch.Tensor:
    """The `sim_objects` state (cube − TCP x, y, z; goal − cube x, y) and the TCP → cube x, y,
    z and goal x, y on the table: what a fixed camera sees, whatever the arm does."""
    cube = sim_objects[..., :3] + tcp
    return torch.cat([cube, sim_objects[..., 3:5] + cube[..., :2]], -1)


def objects_from_table(table: torch.Tensor, tcp: torch.Tensor) -> torch.Tensor:
    """The inverse of `objects_on_table`: table positions [..., 5] → the `sim_objects` state."""
    cube = table[..., :3]
    return torch.cat([cube - tcp, table[..., 3:5] - cube[..., :2]], -1)
