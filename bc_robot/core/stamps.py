"""ROS time stamps as plain numbers, without rclpy: the one place seconds become
(sec, nanosec), for the nodes' messages and the synthetic bags alike."""
from __future__ import annotations

NS_PER_S = 1_000_000_000


def split_seconds(seconds: float) -> tuple[int, int]:
    """(sec, nanosec) with 0 <= nanosec < 10⁹, rounded to the nanosecond as a whole: sim time
    summed from 1 ms steps reaches 1.9999999999999998 s, which must be 2 s, not 1 s with a
    nanosecond field that rounded to 10⁹ and wrapped to 0 (a /clock jumping back a second)."""
    sec, nanosec = divmod(int(round(seconds * 1e9)), NS_PER_S)
    return sec, nanosec
