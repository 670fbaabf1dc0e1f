"""mlpcli: multilayer perceptrons on classic image features, backprop written by hand in NumPy.

The Python API (README, "Python API"), imported on first use so that `mlp` starts fast:

    import mlpcli

    cfg = mlpcli.load_config("configs/cifar10_hog_color_quick.yaml", ["optim.lr=0.02"])   # load_config(): defaults
    result = mlpcli.run(cfg)                          # one training run, as `mlp train` does it
    clf = mlpcli.Classifier.from_checkpoint(result.run.path)
    labels = clf.predict(images)                      # images (N, H, W, C) uint8 -> (N,) indices into classes

    from mlpcli import HOG, MLPClassifier             # scikit-learn estimators (scikit-learn itself optional)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "mlpcli.config", "load_config": "mlpcli.config", "dump_config": "mlpcli.config",
    "load_splits": "mlpcli.data", "Dataset": "mlpcli.data.dataset",
    "run": "mlpcli.experiment", "resume": "mlpcli.experiment", "RunResult": "mlpcli.experiment",
    "extract_features": "mlpcli.experiment",
    "Classifier": "mlpcli.predictor",
    "MLPClassifier": "mlpcli.estimators", "Pixels": "mlpcli.estimators", "ColorHist": "mlpcli.estimators",
    "HOG": "mlpcli.estimators", "BagOfWords": "mlpcli.estimators",
    "MlpError": "mlpcli.errors", "ConfigError": "mlpcli.errors", "DataError": "mlpcli.errors",
    "CheckpointError": "mlpcli.errors", "TrainingError": "mlpcli.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    """Import an exported name's module on first access."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mlpcli' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
