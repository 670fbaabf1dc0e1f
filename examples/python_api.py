"""mlpcli from Python: extract features, train a run, load its classifier, predict on image arrays.

    python examples/python_api.py

Trains on the built-in shapes in a few seconds; everything it writes goes to a temporary folder.
"""

import tempfile
from pathlib import Path

import numpy as np

import mlpcli


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # A config: the defaults (HOG features of generated shapes, one hidden layer) with overrides, exactly
        # as on the command line; load_config("my.yaml", [...]) reads a file first.
        cfg = mlpcli.load_config(overrides=["data.shapes.per_class=200", "model.hidden=[64]", "train.epochs=10",
                                            "output.plots=false", f"cache_dir={tmp}/cache"])

        # Fit the features on the training split and store every split's (the run below reuses them).
        widths = mlpcli.extract_features(cfg)
        print(f"features: {' + '.join(map(str, widths))} per image")

        # One training run, as `mlp train` does it: a run folder with checkpoints, metrics and a summary.
        result = mlpcli.run(cfg, Path(tmp) / "shapes")
        print(f"run: {result.status} after {result.epochs} epochs; best validation accuracy "
              f"{result.best_val_acc:.1%} (epoch {result.best_epoch})")

        # The trained classifier, rebuilt from the run folder's best checkpoint alone.
        clf = mlpcli.Classifier.from_checkpoint(result.run.path)

    # Image arrays: here the run's own validation split, (N, 32, 32, 3) uint8.
    val = mlpcli.load_splits(cfg)["val"]
    images = val.images
    probabilities = clf.predict_proba(images)               # (N, C), rows sum to 1
    predicted = probabilities.argmax(axis=1)                 # = clf.predict(images)
    print(f"predict on {len(images)} images: accuracy {np.mean(predicted == val.labels):.1%}")
    for i in range(3):
        print(f"  image {i}: {clf.classes[predicted[i]]} ({probabilities[i, predicted[i]]:.2f}), "
              f"truly {val.classes[val.labels[i]]}")
    print(f"features the network sees: {clf.features(images[:5]).shape}")


if __name__ == "__main__":
    main()
