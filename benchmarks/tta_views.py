"""Test-time augmentation: a trained run's validation accuracy under each set of evaluation views.

    python benchmarks/tta_views.py RUN [--data PATH] [--shifts 1,2,3]

RUN is a run folder (its best.npz) or a checkpoint. The script rebuilds the run's validation split (on
`--data` instead of the config's data.path if given), extracts the features of every view once with the
checkpoint's feature state, and prints the validation accuracy of the mean class scores over each view set
`mlp train` would use: data.flip_eval false and true, times data.shift_eval 0 and each of `--shifts`
(the views are mlpcli.data.augment.evaluation_views, so the rows are what a config with those settings
scores). The run's own setting is one of the rows, and should give summary.json's validation accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from mlpcli.data.augment import evaluation_views
from mlpcli.features.store import StoreRoot
from mlpcli.parallel import ProcessPool
from mlpcli.predictor import Classifier, batched_scores
from mlpcli.report import validation_split
from environment import clean_blas_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run folder or a checkpoint .npz")
    parser.add_argument("--data", help="the dataset's path, if it moved since the run")
    parser.add_argument("--shifts", default="1,2,3", help="data.shift_eval values to try besides 0")
    args = parser.parse_args()
    clean_blas_env()
    clf = Classifier.from_checkpoint(args.run)
    cfg = clf.config
    if args.data:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=args.data))
    val = validation_split(cfg)
    print(f"{args.run}: {clf.model.describe()}, {len(val)} validation images")
    settings = [(flip, shift) for shift in [0, *map(int, args.shifts.split(","))] for flip in (False, True)]
    view_sets = {setting: evaluation_views(_with(cfg, *setting), clf.image_shape) for setting in settings}
    scores, readable = {}, np.ones(len(val), bool)
    stores = StoreRoot(None)
    try:
        with ProcessPool() as pool:
            for view in dict.fromkeys(view for views in view_sets.values() for view in views):
                store = clf.pipeline.store(val, stores, pool, (view,))
                scores[view] = batched_scores(clf.model, store.rows(in_memory=True))
                if store.unreadable() is not None:
                    readable &= ~store.unreadable()
    finally:
        stores.close()
    print("| data.flip_eval | data.shift_eval | views | validation accuracy |\n|---|---:|---:|---:|")
    for (flip, shift), views in view_sets.items():
        mean = np.mean([scores[view] for view in views], axis=0)
        accuracy = np.mean(mean.argmax(axis=1)[readable] == val.labels[readable])
        print(f"| {str(flip).lower()} | {shift} | {len(views)} | {100 * accuracy:.2f}% |")


def _with(cfg, flip_eval: bool, shift_eval: int):
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, flip_eval=flip_eval, shift_eval=shift_eval))


if __name__ == "__main__":
    sys.exit(main())
