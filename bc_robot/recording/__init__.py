"""Episode recording to rosbag2 directories with MCAP storage, and reading them back.

Raw serialized messages go through a bounded queue to a dedicated writer thread (no
re-serialization); per-topic received/written/dropped counts and the episode metadata
(task, operator, success, interventions, model sha256, latency statistics) are written
alongside so every bag opens in `ros2 bag`, Foxglove and the `mcap` reader.
"""
