"""Training, the only place torch is imported: datasets built from recorded bags through
the same preprocessing the observation node uses, a shared image/state encoder with
chunked policy heads (mse, gmm, discrete, act, diffusion, flow), HG-DAgger aggregation and
weighting, ONNX export with a parity check, and evaluation.
"""
