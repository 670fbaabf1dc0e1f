"""mlpcli's estimators in scikit-learn: image features and the hand-written network in a Pipeline, a grid
search over both, and the bag of visual words (which scikit-learn lacks).

    python examples/sklearn_pipeline.py

Needs scikit-learn (pip install scikit-learn); runs on generated shapes in seconds.
"""

import time

from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import FeatureUnion, Pipeline

import mlpcli
from mlpcli import HOG, BagOfWords, ColorHist, MLPClassifier


def main() -> None:
    # Image arrays (N, 32, 32, 3) uint8 and labels (N,): six generated shape classes.
    cfg = mlpcli.load_config(overrides=["data.shapes.classes=6", "data.shapes.per_class=60", "cache_dir=null"])
    splits = mlpcli.load_splits(cfg)
    X, y = splits["train"].images, splits["train"].labels
    X_val, y_val = splits["val"].images, splits["val"].labels

    # HOG and color histograms side by side (configs/cifar10_hog_color.yaml as a Pipeline), then the network;
    # MLPClassifier standardizes its input with the training statistics, as `mlp train` does.
    features = FeatureUnion([("hog", HOG(interpolate=True)), ("color", ColorHist())])
    model = Pipeline([("features", features),
                      ("mlp", MLPClassifier(hidden=(64,), epochs=15, batch_size=32, random_state=0))])
    tick = time.perf_counter()
    model.fit(X, y)
    print(f"HOG + color histograms -> MLP: validation accuracy {model.score(X_val, y_val):.1%} "
          f"({time.perf_counter() - tick:.1f} s)")

    # A grid search over a feature option and a network parameter, cross-validated on 2 folds.
    grid = {"features__hog__orientations": [6, 9], "mlp__lr": [0.01, 0.05]}
    search = GridSearchCV(model, grid, cv=2).fit(X, y)
    print(f"grid search: best {search.best_params_}, cross-validated {search.best_score_:.1%}, "
          f"validation {search.score(X_val, y_val):.1%}")

    # Bag of visual words: a k-means codebook of whitened 6x6 patches, triangle-coded and pooled 2x2.
    bow = Pipeline([("bow", BagOfWords(words=64, patches=5000, random_state=0)),
                    ("mlp", MLPClassifier(hidden=(64,), epochs=15, batch_size=32, random_state=0))])
    tick = time.perf_counter()
    bow.fit(X, y)
    print(f"bag of words (64 words) -> MLP: validation accuracy {bow.score(X_val, y_val):.1%} "
          f"({time.perf_counter() - tick:.1f} s)")


if __name__ == "__main__":
    main()
