"""Model readers: every way a model comes in (state_dicts and checkpoints, ONNX, the zoo) ends here as named
layer weights and their `K x N` GEMM matrices (the first stage of model -> matrices -> packed -> report)."""
