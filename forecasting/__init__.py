"""The forecasting kernel: raw daily rows + weights → quantile forecasts.

Feature definitions, the networks, the forecast path, quantile maths, baselines and scores.
It imports numpy, pandas, scipy and torch only, and its own modules only relatively, so a
registered version can ship exactly this folder (MLflow `code_paths`) and be served by it under
a private module name (core.kernels), whatever the running code has become. Its fingerprint
(core.fingerprint) hashes exactly this folder.
"""
