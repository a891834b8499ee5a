"""Pose math used by every node: quaternions are (x, y, z, w) as in ROS messages.

One convention everywhere keeps the sim (MuJoCo is w-first), the bridge and the policy from
disagreeing silently; `quat_from_wxyz`/`quat_to_wxyz` are the only crossings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A quaternion whose norm is further than this from 1 is a fault, not rounding.
QUAT_NORM_TOLERANCE = 1e-2
# Largest |R Rᵀ - I| element accepted as a rotation matrix.
ROTATION_MATRIX_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Pose:
    """A rigid pose: position in metres and a unit quaternion (x, y, z, w)."""

    position: np.ndarray
    orientation: np.ndarray

    def __post_init__(self) -> None:
        position = np.asarray(self.position, dtype=np.float64).reshape(-1)
        orientation = np.asarray(self.orientation, dtype=np.float64).reshape(-1)
        if position.shape != (3,):
            raise ValueError(f'pose position must have 3 values, got {position.shape[0]}')
        if orientation.shape != (4,):
            raise ValueError(f'pose orientation must have 4 values, got {orientation.shape[0]}')
        object.__setattr__(self, 'position', position)
        object.__setattr__(self, 'orientation', orientation)

    @classmethod
    def identity(cls) -> Pose:
        return cls(np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))

    def as_vector(self) -> np.ndarray:
        """(x, y, z, qx, qy, qz, qw) — the layout used in recordings and chunks."""
        return np.concatenate([self.position, self.orientation])

    @classmethod
    def from_vector(cls, vector: np.ndarray) -> Pose:
        vector = np.asarray(vector, dtype=np.float64).reshape(-1)
        if vector.shape != (7,):
            raise ValueError(f'pose vector must have 7 values, got {vector.shape[0]}')
        return cls(vector[:3], vector[3:])


def is_finite(values: np.ndarray) -> bool:
    """True when no element is NaN (quiet or signalling) or ±Inf."""
    return bool(np.all(np.isfinite(np.asarray(values, dtype=np.float64))))


def quat_normalize(q: np.ndarray, tolerance: float = QUAT_NORM_TOLERANCE) -> np.ndarray:
    """Return q scaled to unit norm; raise when it is non-finite or its norm is off by more
    than `tolerance` (a zero or garbage quaternion must never be 'fixed' into a rotation)."""
    q = np.asarray(q, dtype=np.float64).reshape(-1)
    if q.shape != (4,):
        raise ValueError(f'quaternion must have 4 values, got {q.shape[0]}')
    if not is_finite(q):
        raise ValueError(f'quaternion is not finite: {q.tolist()}')
    norm = float(np.linalg.norm(q))
    if abs(norm - 1.0) > tolerance:
        raise ValueError(
            f'quaternion norm {norm:.6g} is not within {tolerance} of 1: {q.tolist()}')
    return q / norm


def quat_canonical(q: np.ndarray) -> np.ndarray:
    """q and -q are the same rotation; pick w >= 0 so comparisons and learning are stable."""
    q = np.asarray(q, dtype=np.float64)
    return -q if q[3] < 0 else q


def quat_from_wxyz(q_wxyz: np.ndarray) -> np.ndarray:
    q = np.asarray(q_wxyz, dtype=np.float64)
    return np.array([q[1], q[2], q[3], q[0]])


def quat_to_wxyz(q_xyzw: np.ndarray) -> np.ndarray:
    q = np.asarray(q_xyzw, dtype=np.float64)
    return np.array([q[3], q[0], q[1], q[2]])


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a ⊗ b (apply b, then a)."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    ])


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    return np.array([-q[0], -q[1], -q[2], q[3]], dtype=np.float64)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = quat_normalize(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrix → unit quaternion (x, y, z, w), w >= 0 (Shepperd's method)."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3) or not is_finite(m):
        raise ValueError(f'rotation matrix must be a finite 3x3 array, got {m.tolist()}')
    # A scaled, sheared or mirrored matrix has no quaternion; refuse it instead of returning
    # some rotation (float32 round-off is far inside this tolerance).
    if np.abs(m @ m.T - np.eye(3)).max() > ROTATION_MATRIX_TOLERANCE or np.linalg.det(m) < 0:
        raise ValueError(f'matrix is not a rotation (orthonormal, det +1): {m.tolist()}')
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q)
    return quat_canonical(q / np.linalg.norm(q))


def matrix_to_rot6d(matrix: np.ndarray) -> np.ndarray:
    """The first two columns (Zhou et al. 2019): continuous, so networks learn it well."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.concatenate([m[:, 0], m[:, 1]])


def rot6d_to_matrix(rot6d: np.ndarray) -> np.ndarray:
    """Gram-Schmidt the two predicted columns back into a rotation matrix."""
    v = np.asarray(rot6d, dtype=np.float64).reshape(-1)
    if v.shape != (6,) or not is_finite(v):
        raise ValueError(f'6D rotation must be 6 finite values, got {v.tolist()}')
    a, b = v[:3], v[3:]
    norm_a = np.linalg.norm(a)
    if norm_a < 1e-9:
        raise ValueError(f'6D rotation first column is zero: {v.tolist()}')
    x = a / norm_a
    b = b - np.dot(x, b) * x
    norm_b = np.linalg.norm(b)
    if norm_b < 1e-9:
        raise ValueError(f'6D rotation columns are parallel: {v.tolist()}')
    y = b / norm_b
    return np.stack([x, y, np.cross(x, y)], axis=1)


# The tool's x axis must stand out of x xᵀ by at least this (a unit axis gives 1; a blend of
# two axes 90° apart gives 0.5 twice): below it the prediction names no axis.
AXIAL_MIN_EIGENVALUE = 0.25
# Without a reference, axial_to_matrix takes the orientation nearest the tool pointing down
# with its x axis along base +x.
AXIAL_DEFAULT_REFERENCE = np.array([1.0, 0.0, 0.0, 0.0])


def matrix_to_axial(matrix: np.ndarray) -> np.ndarray:
    """The tool z axis and the outer product x xᵀ (xx, yy, zz, xy, xz, yz): the same for a
    rotation and for it turned half a turn about its own z axis. For a tool that is symmetric
    that way (a parallel gripper), the expert's choice between the two is arbitrary and
    flips as the task varies; rot6d would teach the policy that flip, this does not."""
    m = np.asarray(matrix, dtype=np.float64)
    x, z = m[:, 0], m[:, 2]
    return np.array([z[0], z[1], z[2], x[0] * x[0], x[1] * x[1], x[2] * x[2],
                     x[0] * x[1], x[0] * x[2], x[1] * x[2]])


def axial_to_matrix(axial: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Back to a rotation: z normalized, x the dominant axis of x xᵀ across z, and of the
    two rotations that leaves (half a turn apart) the one nearest `reference` (a quaternion;
    AXIAL_DEFAULT_REFERENCE when None), so consecutive targets never turn half a turn for
    nothing."""
    v = np.asarray(axial, dtype=np.float64).reshape(-1)
    if v.shape != (9,) or not is_finite(v):
        raise ValueError(f'axial rotation must be 9 finite values, got {v.tolist()}')
    z_norm = np.linalg.norm(v[:3])
    if z_norm < 1e-6:
        raise ValueError(f'axial rotation z axis is zero: {v.tolist()}')
    z = v[:3] / z_norm
    xx, yy, zz, xy, xz, yz = v[3:]
    outer = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    across = np.eye(3) - np.outer(z, z)
    values, vectors = np.linalg.eigh(across @ outer @ across)
    if values[-1] < AXIAL_MIN_EIGENVALUE:
        raise ValueError(f'axial rotation x xᵀ has no dominant axis across z (largest '
                         f'eigenvalue {values[-1]:.3g} < {AXIAL_MIN_EIGENVALUE}): {v.tolist()}')
    x = vectors[:, -1] - np.dot(vectors[:, -1], z) * z
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    near = quat_to_matrix(AXIAL_DEFAULT_REFERENCE if reference is None else reference)
    # trace(nearᵀ R) grows with closeness; the half turn negates the x and y terms
    if np.dot(x, near[:, 0]) + np.dot(y, near[:, 1]) < 0:
        x, y = -x, -y
    return np.stack([x, y, z], axis=1)


def quat_to_axial(q: np.ndarray) -> np.ndarray:
    return matrix_to_axial(quat_to_matrix(q))


def axial_to_quat(axial: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    return matrix_to_quat(axial_to_matrix(axial, reference))


def quat_to_rot6d(q: np.ndarray) -> np.ndarray:
    return matrix_to_rot6d(quat_to_matrix(q))


def rot6d_to_quat(rot6d: np.ndarray) -> np.ndarray:
    return matrix_to_quat(rot6d_to_matrix(rot6d))


def quat_to_rotvec(q: np.ndarray) -> np.ndarray:
    """Axis-angle vector (rad) of the shortest rotation equal to q."""
    q = quat_canonical(quat_normalize(q))
    sin_half = np.linalg.norm(q[:3])
    if sin_half < 1e-12:
        return 2.0 * q[:3]
    angle = 2.0 * np.arctan2(sin_half, q[3])
    return q[:3] / sin_half * angle


def rotvec_to_quat(rotvec: np.ndarray) -> np.ndarray:
    rotvec = np.asarray(rotvec, dtype=np.float64).reshape(-1)
    if rotvec.shape != (3,) or not is_finite(rotvec):
        raise ValueError(f'rotation vector must be 3 finite values, got {rotvec.tolist()}')
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        q = np.array([0.5 * rotvec[0], 0.5 * rotvec[1], 0.5 * rotvec[2], 1.0])
        return q / np.linalg.norm(q)
    axis = rotvec / angle
    return np.concatenate([axis * np.sin(angle / 2.0), [np.cos(angle / 2.0)]])


def quat_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vector that takes `current` to `target`, expressed in the base frame."""
    return quat_to_rotvec(quat_multiply(target, quat_conjugate(current)))


def quat_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (rad, in [0, π]) of the rotation between two orientations."""
    # atan2 of the relative rotation keeps precision for tiny angles (arccos of a dot
    # product near 1 loses half the digits).
    relative = quat_multiply(quat_conjugate(quat_normalize(a)), quat_normalize(b))
    return 2.0 * float(np.arctan2(np.linalg.norm(relative[:3]), abs(relative[3])))


def quat_slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation along the shorter arc; t=0 → a, t=1 → b."""
    a = quat_normalize(a)
    b = quat_normalize(b)
    dot = float(np.dot(a, b))
    if dot < 0.0:
        b, dot = -b, -dot
    if dot > 0.9995:
        q = a + t * (b - a)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    sin_theta = np.sin(theta)
    return (np.sin((1.0 - t) * theta) * a + np.sin(t * theta) * b) / sin_theta


def pose_interpolate(start: Pose, end: Pose, t: float) -> Pose:
    """Linear position + slerp orientation; t is clipped to [0, 1] so it never extrapolates."""
    t = min(1.0, max(0.0, float(t)))
    position = start.position + t * (end.position - start.position)
    return Pose(position, quat_slerp(start.orientation, end.orientation, t))


def pose_distance(a: Pose, b: Pose) -> tuple[float, float]:
    """(translation in m, rotation in rad) between two poses."""
    return float(np.linalg.norm(a.position - b.position)), quat_angle(a.orientation, b.orientation)
