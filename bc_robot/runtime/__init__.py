"""Policy backends behind one small interface: `infer(observation) -> chunk` and `reset()`.

ONNX Runtime is the default backend (providers chosen by what actually loads, the one in
use logged); a torch backend exists only for debugging a training checkpoint. The backend
reads everything it needs from the policy artifact (`policy.onnx` + `policy.json`) and
refuses an artifact whose spec disagrees with its graph.
"""
