"""The `mlp` command line: a thin layer over the library that turns MlpError into one-line errors."""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import shutil
import sys
import warnings
from pathlib import Path

import click
import numpy as np
from click.shell_completion import BashComplete, add_completion_class
from tqdm import tqdm

from mlpcli import __version__
from mlpcli.errors import MlpError, quote
from mlpcli.limits import MAX_CLASSES, MAX_WIDTH

MESSAGE_LIMIT = 1000   # characters of an error or warning line; values in messages are cut at their source too
_SHOWS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())   # click >= 8.2: a bare `mlp data` shows help


class MlpGroup(click.Group):
    """Reports library errors as `Error: <message>` (exit 1), usage errors as one `Error: ...` line
    (exit 2), warnings as one `Warning: ...` line, Ctrl-C as exit 130, running out of memory as one line:
    never a traceback."""

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except _SHOWS_HELP:
            raise
        except click.UsageError as err:      # mlp's own options and arguments
            raise _UsageLine(err) from None

    def invoke(self, ctx: click.Context):
        from mlpcli.train import Interrupted

        try:
            with warnings.catch_warnings():
                warnings.showwarning = _warning_line
                return super().invoke(ctx)
        except Interrupted as err:
            click.echo(printable(str(err)), err=True)
            ctx.exit(130)
        except MlpError as err:
            raise click.ClickException(single_line(str(err))) from None
        except _SHOWS_HELP:
            raise
        except click.UsageError as err:      # a command's options and arguments
            raise _UsageLine(err) from None
        except BrokenPipeError:
            raise
        except OSError as err:
            where = f": {err.filename}" if err.filename else ""
            raise click.ClickException(single_line(f"{err.strerror or err}{where}")) from None
        except MemoryError:
            raise click.ClickException("out of memory; lower the sizes in the config (model.hidden, "
                                       "train.batch_size, features.chunk) or free some memory") from None
        except KeyboardInterrupt:
            click.echo("Aborted.", err=True)
            ctx.exit(130)


class _UsageLine(click.ClickException):
    """A usage error as one line, `Error: <problem> Try 'mlp train --help'.`, instead of click's usage
    block; exit code 2 as click's."""

    exit_code = 2

    def __init__(self, err: click.UsageError) -> None:
        message = single_line(err.format_message())
        if err.ctx is not None:
            message += ("" if message.endswith((".", "?", "!")) else ".") + f" Try '{err.ctx.command_path} --help'."
        super().__init__(message)


def printable(text: str) -> str:
    """`text` as it can be printed: file names that are not valid UTF-8 shown with \\x escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def single_line(text: str) -> str:
    """Printable `text` on one line (line breaks become spaces), cut to MESSAGE_LIMIT characters."""
    text = " ".join(part.strip() for part in printable(text).splitlines() if part.strip())
    return text if len(text) <= MESSAGE_LIMIT else text[:MESSAGE_LIMIT] + "…"


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A Python warning as one line on stderr, `Warning: <message>`, without the source line."""
    click.echo(f"Warning: {single_line(str(message))}", err=True)


@click.group(cls=MlpGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mlp")
def cli() -> None:
    """Train multilayer perceptrons on classic image features, with backprop written by hand in NumPy.

    \b
    Start with the built-in example (generated shapes, a 2-layer net, seconds on a laptop):
      mlp train
    Then look inside:
      mlp train --print-config       the full config with every default
      mlp gradcheck                  analytic vs numerical gradients of that network
      mlp eval runs/default-<time>   accuracy, per-class precision/recall, confusion matrix
    """


class RegistryChoice(click.Choice):
    """click.Choice over the sorted names of a registry (`module.attribute`: a dict, or a function giving
    one), looked up when first needed, so that `mlp` starts without importing the registry."""

    def __init__(self, module: str, attribute: str) -> None:      # click.Choice's would read the names now
        self._where = module, attribute
        self.case_sensitive = True

    @functools.cached_property
    def choices(self) -> tuple[str, ...]:
        module, attribute = self._where
        names = getattr(importlib.import_module(module), attribute)
        return tuple(sorted(names() if callable(names) else names))


class NumberRange(click.FloatRange):
    """click.FloatRange that refuses nan too (no comparison with nan is true, so the bounds let it through)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if number != number:
            self.fail(f"{value!r} is not a number in the range {self._describe_range()}.", param, ctx)
        return number


def _complete_config_args(ctx: click.Context, param: click.Parameter, incomplete: str) -> list:
    """Shell completion of [CONFIG] [KEY=VALUE]...: a config file first, dotted config keys, and the
    values of keys that have a fixed set of them."""
    from click.shell_completion import CompletionItem

    from mlpcli.completion import key_completions, value_completions

    given = ctx.params.get(param.name) or ()
    if given and (given[-1] == "=" or not incomplete):     # bash splits KEY=VALUE into KEY, "=", VALUE
        values = value_completions(given[-2] if given[-1] == "=" and len(given) > 1 else given[-1], incomplete)
        if values is not None:                               # and completes the VALUE alone
            return [CompletionItem(value) for value in values]
    key, equals, value = incomplete.partition("=")
    if equals:
        return [CompletionItem(f"{key}={choice}") for choice in value_completions(key, value) or []]
    items = [CompletionItem(item, help=text) for item, text in key_completions(incomplete)]
    return items + ([CompletionItem(incomplete, type="file")] if not given else [])


class _BashComplete(BashComplete):
    """click's bash completion, without the space after a completed `key=` (the value follows)."""

    source_template = BashComplete.source_template.replace(
        "COMPREPLY+=($value)", "COMPREPLY+=($value); [[ $value == *= ]] && compopt -o nospace")


add_completion_class(_BashComplete, "bash")


def _load_config(config: str | None, overrides: tuple[str, ...]):
    from mlpcli.config import load_config

    return load_config(config, list(overrides))


def _split_config_args(args: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """CONFIG is the first argument unless it is a key=value override."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


@cli.command(short_help="Train a network from a YAML config and overrides.")
@click.argument("args", nargs=-1, metavar="[CONFIG] [KEY=VALUE]...", shell_complete=_complete_config_args)
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default: <output.dir>/<name>-<timestamp>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, exists=True),
              help="Continue the run in this folder from its checkpoints/last.npz (with train.epochs=N: to N epochs).")
@click.option("--print-config", is_flag=True, help="Print the resolved config (defaults filled in) and exit.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or per-epoch lines.")
def train(args: tuple[str, ...], out: str | None, resume_dir: str | None, print_config: bool, quiet: bool) -> None:
    """Train a network; CONFIG is a YAML file (default: the built-in shapes example).

    Overrides set any config key by its dotted path, the value read as YAML:

    \b
      mlp train configs/cifar10_hog_color_quick.yaml optim.lr=0.05 model.hidden=[256,128]
      mlp train --print-config loss.name=hinge
      mlp train --resume runs/cifar10_hog_color_quick-20261126-101500
      mlp train --resume runs/cifar10_hog_color_quick-20261126-101500 train.epochs=30

    A run folder gets config.yaml, metrics.jsonl, summary.json, checkpoints/{last,best}.npz and plots.
    Ctrl-C saves last.npz and stops (exit 130); --resume continues exactly where it stopped, with the run's
    own config.yaml; its one override, train.epochs=N, extends a run that ran all its epochs to N.
    """
    from mlpcli import experiment
    from mlpcli.config import dump_config

    config, overrides = _split_config_args(args)
    say = (lambda line: None) if quiet else (lambda line: tqdm.write(line, file=sys.stderr))
    if resume_dir is not None:
        if config or out or print_config or any(not item.startswith("train.epochs=") for item in overrides):
            raise click.UsageError("--resume takes the run folder and at most train.epochs=N; "
                                   "the run's own config.yaml is used")
        epochs = _load_config(None, overrides).train.epochs if overrides else None
        result = experiment.resume(resume_dir, epochs=epochs, progress=not quiet, log=say)
    else:
        cfg = _load_config(config, overrides)
        if print_config:
            click.echo(dump_config(cfg), nl=False)
            return
        result = experiment.run(cfg, out, progress=not quiet, log=say)
    click.echo(_summary_line(result))


def _summary_line(result) -> str:
    """The run's one-line outcome: its scores, why it stopped, its time and folder."""
    summary = result.summary
    parts = [f"val accuracy {summary['val']['accuracy']:.2%} (best epoch {summary['best_epoch']})"]
    if "test" in summary:
        parts.append(f"test accuracy {summary['test']['accuracy']:.2%}")
    if summary["stopped"] == "early_stop":
        parts.append(f"stopped early after {summary['epochs_run']} epochs (no better validation accuracy for "
                     f"train.patience epochs)")
    else:
        parts.append(f"{summary['epochs_run']} epochs as asked (train.epochs)")
    parts.append(f"{summary['seconds']:.1f}s")
    return f"{summary['model']}: " + ", ".join(parts) + f" -> {result.run.path}"


def cluster_options(without: str):
    """--scheduler, --workers and the TLS files of the Dask cluster a command runs on (mlpcli.cluster);
    `without` says where the command's work runs when neither --scheduler nor --workers is given."""
    options = [
        click.option("--scheduler", metavar="URL", help="Run on the Dask cluster at tcp://HOST:8786 or "
                     f"tls://HOST:8786 (default: {without})."),
        click.option("--workers", type=click.IntRange(min=1), help="Worker processes of the local cluster "
                     "(default: one per core)."),
        click.option("--tls-ca", type=click.Path(dir_okay=False), help="tls://: the CA certificate (PEM) that "
                     "signed the cluster's certificates."),
        click.option("--tls-cert", type=click.Path(dir_okay=False), help="tls://: this client's certificate (PEM)."),
        click.option("--tls-key", type=click.Path(dir_okay=False), help="tls://: this client's private key (PEM)."),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


@cli.command(short_help="Search hyperparameters and repeat seeds, on local cores or a Dask cluster.")
@click.argument("args", nargs=-1, metavar="[CONFIG] [KEY=VALUE | KEY=SPACE]...")
@click.option("--method", type=click.Choice(["grid", "random", "tpe"]), help="Search method (sweep.method; "
              "default grid).")
@click.option("--trials", type=click.IntRange(min=1), help="Configurations to draw, random and tpe (sweep.trials; "
              "default 20).")
@click.option("--seeds", type=click.IntRange(min=1), help="Runs per configuration, seeds seed..seed+K-1 "
              "(sweep.seeds; default 1).")
@click.option("--prune", type=click.Choice(["none", "halving"]), help="Successive halving of poor configurations "
              "(sweep.prune; default none).")
@cluster_options(without="a local cluster, one worker process per core")
@click.option("--out", type=click.Path(file_okay=False), help="Sweep folder (default: sweeps/<name>-<timestamp>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, exists=True),
              help="Finish the sweep in this folder: keep what finished, run what is missing.")
@click.option("--dry-run", is_flag=True, help="Validate the sweep, print its spec and planned trials, and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or per-trial lines.")
def sweep(args: tuple[str, ...], method, trials, seeds, prune, scheduler, workers, tls_ca, tls_cert, tls_key, out,
          resume_dir, dry_run: bool, as_json: bool, quiet: bool) -> None:
    """Train CONFIG over a search space, each configuration with one or more seeds.

    A KEY=VALUE argument whose value is a search space is swept; a plain value overrides the config
    (quote the functions in a shell: parentheses are special there):

    \b
      KEY=a,b,c                 choices, each read as YAML: model.hidden=[256],[512,256]
      KEY=range(lo,hi,step)     lo, lo+step, ... below hi
      KEY=uniform(lo,hi)        a number from [lo, hi]           (random, tpe)
      KEY=loguniform(lo,hi)     a number from [lo, hi], log scale (random, tpe)
      KEY=int(lo,hi)            an integer from lo..hi            (random, tpe)

    \b
      mlp sweep configs/cifar10_hog_color_quick.yaml optim.lr=0.01,0.05,0.1 reg=0.0001,0.001 --seeds 2
      mlp sweep cfg.yaml 'optim.lr=loguniform(1e-3,0.3)' --method tpe --trials 30 --prune halving
      mlp sweep cfg.yaml optim.lr=0.01,0.1 --scheduler tls://node1:8786 --tls-ca ca.pem --tls-cert me.pem --tls-key me.key
      mlp sweep --resume sweeps/cifar10_hog_color_quick-20261126-101500

    The same can live in the config's sweep: section (mlp train --print-config shows it). Every trial's
    config is validated first; trials sharing data and features share one extraction. The sweep folder
    gets sweep.yaml, trials.jsonl and runs/<trial>/; Ctrl-C or a kill loses nothing: --resume finishes.
    """
    from mlpcli.cluster import TLSFiles, connect
    from mlpcli.sweep.driver import run_sweep
    from mlpcli.sweep.folder import SweepDir
    from mlpcli.sweep.results import configurations, format_table
    from mlpcli.sweep.spec import load_spec

    settings = {"method": method, "trials": trials, "seeds": seeds, "prune": prune}
    say = (lambda line: None) if quiet else (lambda line: tqdm.write(line, file=sys.stderr))
    if resume_dir is not None:
        if args or out or dry_run or any(v is not None for v in settings.values()):
            raise click.UsageError("--resume takes the sweep folder alone (and executor options); its sweep.yaml is used")
        folder = SweepDir.existing(resume_dir)
        spec = folder.load_spec()
    else:
        config, overrides = _split_config_args(args)
        spec = load_spec(config, list(overrides), settings)
        if dry_run:
            from mlpcli.sweep.spec import planned

            click.echo(planned(spec))
            return
    with connect(scheduler, workers=workers, tls=TLSFiles(tls_ca, tls_cert, tls_key), log=say) as client:
        if resume_dir is None:
            folder = SweepDir.create(spec, out)
        say(f"sweep folder: {folder.path}")
        records = run_sweep(folder, client, progress=not quiet, log=say)
    rows = configurations(records, spec.sweep.metric)
    if as_json:
        click.echo(json.dumps({"sweep": str(folder.path), "metric": spec.sweep.metric, "configurations": rows,
                               "trials": records}, indent=2))
    else:
        click.echo(format_table(rows, spec.sweep.metric))
        click.echo(f"-> {folder.path}")
    if records and all(record["status"] == "failed" for record in records):
        raise MlpError(f"every trial failed; the first: {records[0]['error']}")


@cli.command(name="eval", short_help="Score a checkpoint on a dataset split.")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]),
              help="Split to score; all: train and val (default: test if the dataset has one, else val; with --data: "
                   "test, else all).")
@click.option("--data", "data_path", help="Score another dataset with the same classes: its path (sets data.path).")
@click.option("--source", type=RegistryChoice("mlpcli.data", "SOURCES"),
              help="With --data: the dataset source, if not the checkpoint's (e.g. folder).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def eval_(checkpoint: str, split: str | None, data_path: str | None, source: str | None, as_json: bool) -> None:
    """Score CHECKPOINT (a .npz, or a run folder: its best.npz) on a dataset split: accuracy, per-class
    precision, recall, F1 and support, macro F1, and the confusion matrix.

    Features and network are rebuilt from the checkpoint alone; the split is drawn from the
    checkpoint's data config with its seed, so `val` is the very validation split of training.

    \b
      mlp eval runs/default-20261126-101500
      mlp eval model.npz --data ~/photos --source folder --json
    """
    from mlpcli.data import SOURCES, load_splits
    from mlpcli.metrics import classification_report
    from mlpcli.predictor import Classifier

    if source is not None and data_path is None:
        raise click.UsageError("--source goes with --data")
    if data_path is not None and not data_path.strip():
        raise click.BadParameter("give the dataset's path", param_hint="--data")
    if data_path is not None and split == "val":
        raise click.UsageError("--split val is the validation split drawn at training; another dataset (--data) has "
                               "none: score its training images with --split train (or all), its test/ with test")
    clf = Classifier.from_checkpoint(checkpoint, progress=True)
    cfg = clf.config
    if data_path is not None:
        source = source or cfg.data.source
        if not SOURCES[source].reads_path:
            reading = ", ".join(name for name, known in sorted(SOURCES.items()) if known.reads_path)
            raise click.UsageError(f"--data: the '{source}' source makes its own images and reads no path; "
                                   f"say what {data_path} holds with --source ({reading})")
        cfg.data.path, cfg.data.source = data_path, source
        cfg.data.val_fraction, cfg.data.limit = 0.0, None
    splits = load_splits(cfg)
    if split is None:
        split = "test" if "test" in splits else ("all" if data_path else "val")
    data = _match_classes(_pick_split(splits, split), clf.classes)
    scores, readable = clf.scores_of(data)
    report = {"checkpoint": str(checkpoint), "split": split, "samples": len(scores), "classes": clf.classes,
              **classification_report(data.labels[readable], scores.argmax(axis=1), len(clf.classes))}
    click.echo(json.dumps(report, indent=2) if as_json else _format_report(report))


def _pick_split(splits: dict, split: str):
    from mlpcli.data.dataset import Dataset
    from mlpcli.errors import DataError

    if split == "all":
        train, val = splits["train"], splits["val"]
        return Dataset(train.reader, np.concatenate([train.index, val.index]),
                       np.concatenate([train.labels, val.labels]), train.classes)
    if split not in splits or not len(splits[split]):
        have = ", ".join(name for name, images in splits.items() if len(images))
        raise DataError(f"this dataset has no '{split}' split, or it is empty (it has: {have})")
    return splits[split]


def _match_classes(data, classes: list[str]):
    """`data` with labels renumbered to the checkpoint's class order (matched by name)."""
    from mlpcli.data.dataset import Dataset
    from mlpcli.errors import DataError

    unknown = [name for name in data.classes if name not in classes]
    if unknown:
        raise DataError(f"the dataset has classes the model does not know: {', '.join(unknown)} "
                        f"(the model's classes: {', '.join(classes)})")
    renumber = np.array([classes.index(name) for name in data.classes], dtype=np.int64)
    return Dataset(data.reader, data.index, renumber[data.labels], list(classes))


def _format_report(report: dict) -> str:
    """The eval result as text: accuracy, a per-class table and the confusion matrix with class columns."""
    from mlpcli.table import Column, abbreviations, format_table

    classes = report["classes"]
    per_class = [[name, f"{p:.2%}", f"{r:.2%}", f"{f:.2%}", str(n)] for name, p, r, f, n in zip(
        classes, report["precision"], report["recall"], report["f1"], report["support"])]
    per_class.append(["(macro F1)", "", "", f"{report['macro_f1']:.2%}", str(report["samples"])])
    columns = [Column("class"), *(Column(title, right=True) for title in ("precision", "recall", "F1", "support"))]
    short, labels = abbreviations(classes), classes
    if short is None:                                  # names too alike to cut: number the classes
        short, labels = [str(i) for i in range(len(classes))], [f"{i} {name}" for i, name in enumerate(classes)]
    matrix = format_table([Column("true \\ predicted"), *(Column(title, right=True) for title in short)],
                          [[label, *map(str, row)] for label, row in zip(labels, report["confusion"])])
    return "\n".join([f"{report['split']} split, {report['samples']} images: accuracy {report['accuracy']:.2%}, "
                      f"macro F1 {report['macro_f1']:.2%}", "", format_table(columns, per_class), "",
                      "confusion matrix (rows: true class, columns: predicted class)", matrix])


@cli.command(short_help="Classify image files, folders and globs with a checkpoint.")
@click.argument("checkpoint", type=click.Path(exists=True))
@click.argument("images", nargs=-1, required=True)
@click.option("--top", default=3, show_default=True, type=click.IntRange(min=1), help="Classes shown per image "
              "(text output).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Write one row per image to this CSV file (- for stdout): image, class, then every class's "
                   "probability (or score).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per image with every "
              "class's probability (or score).")
def predict(checkpoint: str, images: tuple[str, ...], top: int, csv_path: str | None, as_json: bool) -> None:
    """Classify IMAGES with CHECKPOINT (a .npz or a run folder): image files, folders (walked
    recursively for .png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff files, in sorted order) and glob
    patterns (quoted, so that mlp expands them; ** matches any depth).

    Each image is resized and converted to the training images' size and mode first, and images are
    read in batches, so any number of files streams through. Softmax models give probabilities,
    rounded to 4 decimals so that each image's sum to 1; hinge (SVM) models give raw class scores.
    Only regular files are read. A file that cannot be read is reported on stderr and skipped; the
    exit code is 0 if at least one image was classified, else 1. The CSV file is written whole, at
    the end (an earlier file by that name is replaced only then).

    \b
      mlp predict runs/default-20261126-101500 cat.jpg dog.png
      mlp predict runs/default-20261126-101500 ~/photos 'shots/**/*.jpg' --csv labels.csv
    """
    from mlpcli.predict import classify, image_files
    from mlpcli.predictor import Classifier
    from mlpcli.table import printable

    if as_json and csv_path == "-":
        raise click.UsageError("--json and --csv - both write to stdout; choose one")
    if csv_path is not None and csv_path != "-" and not (csv_path and Path(csv_path).parent.is_dir()):
        raise click.BadParameter(f"{quote(csv_path)}: no such folder to write the file into" if csv_path else
                                 "give a file name, or - for stdout", param_hint="--csv")
    clf = Classifier.from_checkpoint(checkpoint)
    kind, key = ("probability", "probabilities") if clf.config.loss.name == "softmax" else ("score", "scores")
    skipped = []

    def skip(path: str, reason: str) -> None:
        skipped.append(path)
        tqdm.write(printable(reason if path in reason else f"{path}: {reason}"), file=sys.stderr)

    quiet_stdout = csv_path not in (None, "-") and not as_json      # rows go to the CSV file alone
    with _csv_writer(csv_path, clf.classes) as write_csv, \
            tqdm(unit=" images", disable=None if quiet_stdout else True, file=sys.stderr, leave=False) as bar:
        done = 0
        for path, values in classify(clf, image_files(images, skip), skip):
            write_csv(path, clf.classes[int(values.argmax())], values)
            if as_json:
                row = {"image": printable(path), "class": clf.classes[int(values.argmax())],
                       key: dict(zip(clf.classes, values.tolist()))}
                click.echo(("[\n" if done == 0 else ",\n") + json.dumps(row), nl=False)
            elif not quiet_stdout and csv_path != "-":
                best = np.argsort(-values, kind="stable")[:top]
                shown = ", ".join(f"{clf.classes[i]} {values[i]:.4f}" for i in best)
                click.echo(printable(f"{path}: {clf.classes[best[0]]}  ({kind}: {shown})"))
            done += 1
            bar.update()
        if done == 0:
            raise MlpError(f"no image could be classified ({len(skipped)} input(s) skipped, see above)"
                           if skipped else "no image files found in the given folders")
    if as_json:
        click.echo("\n]")
    if skipped:
        click.echo(f"{done} image(s) classified, {len(skipped)} skipped", err=True)
    if quiet_stdout:
        click.echo(f"{done} image(s) classified -> {csv_path}", err=True)


@contextlib.contextmanager
def _csv_writer(path: str | None, classes: list[str]):
    """write(image, class, values) adding a row to the CSV file `path` (- for stdout; None: no CSV).
    A file is written atomically: it appears, whole, when the block ends without an error."""
    import csv

    from mlpcli.atomic import atomic_write
    from mlpcli.table import printable

    if path is None:
        yield lambda image, name, values: None
        return
    with (contextlib.nullcontext(sys.stdout) if path == "-" else atomic_write(path, "w")) as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "class", *classes])
        yield lambda image, name, values: writer.writerow([printable(image), name, *values.tolist()])


@cli.command(short_help="Check analytic gradients against numerical ones.")
@click.argument("args", nargs=-1, metavar="[CONFIG] [KEY=VALUE]...", shell_complete=_complete_config_args)
@click.option("--gates", "per_gate", is_flag=True, help="Check each gate type alone instead of the whole network.")
@click.option("--samples", type=click.IntRange(min=1, max=10**9), help="Check a seeded sample of N entries per "
              "parameter (default: all entries).")
@click.option("--threshold", default=1e-6, show_default=True, type=NumberRange(min=0, min_open=True, max=1),
              help="Largest relative error that passes.")
@click.option("--batch", default=8, show_default=True, type=click.IntRange(min=1, max=100_000),
              help="Samples in the random batch.")
@click.option("--input-dim", default=10, show_default=True, type=click.IntRange(min=1, max=MAX_WIDTH),
              help="Input features D of the checked network (the configured hidden layers are kept).")
@click.option("--classes", default=5, show_default=True, type=click.IntRange(min=2, max=MAX_CLASSES),
              help="Classes C.")
def gradcheck(args: tuple[str, ...], per_gate: bool, samples: int | None, threshold: float, batch: int,
              input_dim: int, classes: int) -> None:
    """Compare analytic gradients with centered differences (h = 1e-5) in float64.

    Builds the configured network (hidden layers, norm, activation, dropout, loss, λ) in float64, with
    biases, γ and β moved off their constant initial values, on a small seeded random batch and
    reports, per parameter, the max relative error |a−n| / max(1e-8, |a|+|n|). Batch norm is checked
    in training mode (batch statistics), dropout with one fixed mask. Entries whose ±h step crosses a
    kink (ReLU, leaky ReLU, ELU, maxout, hinge) are counted (kinked) and skipped; gradients within
    round-off of zero are compared by absolute difference (near0). Exits 1 if any parameter fails.

    \b
      mlp gradcheck model.activation=maxout loss.name=hinge model.hidden=[20,15]
      mlp gradcheck model.norm=batch model.dropout=0.5 model.hidden=[20,15,10]
      mlp gradcheck configs/cifar10_pixels.yaml --samples 200
      mlp gradcheck --gates model.activation=elu model.norm=layer
    """
    from mlpcli import budget
    from mlpcli.nn.gradcheck import check_gates, check_model, jitter_constants
    from mlpcli.nn.model import MLP
    from mlpcli.seeding import generators

    config, overrides = _split_config_args(args)
    cfg = _load_config(config, overrides)
    cfg.model.dtype = "float64"
    budget.require(budget.gradcheck(cfg, input_dim, classes, batch, per_gate), "gradcheck")
    if not per_gate:
        _check_gradcheck_work(cfg, input_dim, classes, batch, samples)
    rngs = generators(cfg.seed)
    rng = rngs["init"]
    if per_gate:
        click.echo(f"gates of the {cfg.model.activation} network with {cfg.loss.name} loss, float64")
        rows = check_gates(cfg.model, cfg.loss, rng, threshold=threshold)
    else:
        model = MLP.from_config(input_dim, classes, cfg.model, cfg.loss, cfg.reg, rng, rngs["dropout"])
        jitter_constants(model, rng)
        X, y = rng.standard_normal((batch, input_dim)), rng.integers(0, classes, batch)
        click.echo(f"network {model.describe()}, λ = {cfg.reg:g}, batch {batch}, float64")
        rows = check_model(model, X, y, samples=samples, rng=rng, threshold=threshold)
    click.echo(_format_gradcheck(rows, threshold))
    failed = [row.name for row in rows if not row.passed]
    if failed:
        raise click.ClickException(f"gradient check failed for {', '.join(failed)} (threshold {threshold:g})")


GRADCHECK_PASS = 5e5      # fixed cost of one ±h pass through the network, in flops at ~1 GFLOP/s (measured ~0.5 ms)
GRADCHECK_WORK = 3.6e12   # flops of about an hour of checking


def _check_gradcheck_work(cfg, input_dim: int, classes: int, batch: int, samples: int | None) -> None:
    """UsageError if checking the entries asked for (two forward passes each) would take over an hour."""
    from mlpcli.budget import layer_shapes

    layers = layer_shapes(cfg.model, input_dim, classes)
    flops = 2 * batch * sum(fan_in * width for fan_in, width in layers)
    sizes = [size for fan_in, width in layers for size in (fan_in * width, width)]
    entries = sum(min(size, samples or size) for size in sizes)
    if 2 * entries * (GRADCHECK_PASS + flops) > GRADCHECK_WORK:
        raise click.UsageError(f"checking {entries:,} gradient entries, two forward passes each, would take hours; "
                               "pass --samples N to check N entries of each parameter (e.g. --samples 100)")


def _format_gradcheck(rows, threshold: float) -> str:
    width = max(9, *(len(row.name) for row in rows))
    lines = [f"{'parameter':<{width}}  {'shape':<12} {'checked':>8} {'kinked':>7} {'near0':>6}  {'max rel error':>13}  result"]
    for row in rows:
        result = "pass" if row.passed else "FAIL"
        lines.append(f"{row.name:<{width}}  {str(row.shape):<12} {row.checked:>8} {row.kinked:>7} {row.near_zero:>6}  "
                     f"{row.max_rel_error:>13.2e}  {result}")
    return "\n".join(lines)


@cli.command(short_help="Extract and cache features; report dimensions and times.")
@click.argument("args", nargs=-1, metavar="[CONFIG] [KEY=VALUE]...", shell_complete=_complete_config_args)
@cluster_options(without="no cluster: worker processes on this machine, one per core")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def features(args: tuple[str, ...], scheduler, workers, tls_ca, tls_cert, tls_key, quiet: bool) -> None:
    """Extract (and cache) the features CONFIG describes; report their dimensions and times.

    Fits the pipeline on the training split as `mlp train` would, then extracts every split into its store.
    With features.cache on (the default), a later `mlp train` of the same config reads them from the cache.
    On a Dask cluster (--scheduler, or --workers for a local one) the chunks of each split run on its workers,
    which write them into the stores: cache_dir must then be a folder every worker sees at the same path.

    \b
      mlp features configs/cifar10_bow.yaml data.path=~/data/cifar10
      mlp features big.yaml cache_dir=/shared/mlp-cache --scheduler tcp://node1:8786
    """
    from mlpcli.experiment import extract_features

    config, overrides = _split_config_args(args)
    cfg = _load_config(config, overrides)

    def report(name, split, store, seconds, cached) -> None:
        views = store.info.get("views", [])
        source = "from the cache" if cached else f"{seconds / max(store.info['rows'], 1) * 1e6:.1f} µs/image"
        kinds = f" ({', '.join(views)}: {len(split)} each)" if len(views) > 1 else ""
        click.echo(f"  {name:<5} {store.info['rows']:>7} images  {seconds:7.2f}s  ({source}){kinds}")

    click.echo(f"data: {cfg.data.source}")
    if scheduler is None and workers is None:
        dims = extract_features(cfg, progress=not quiet, report=report)
    else:
        from mlpcli.cluster import DaskPool, TLSFiles, connect

        say = (lambda line: None) if quiet else (lambda line: tqdm.write(line, file=sys.stderr))
        with connect(scheduler, workers=workers, tls=TLSFiles(tls_ca, tls_cert, tls_key), log=say) as client:
            dims = extract_features(cfg, progress=not quiet, report=report, pool=DaskPool(client))
    names = [spec.name for spec in cfg.features.extractors]
    click.echo("features: " + " + ".join(f"{name} {dim}" for name, dim in zip(names, dims))
               + f" = {sum(dims)} dimensions, normalize: {cfg.features.normalize}")
    cached = cfg.cache_dir and cfg.features.cache
    click.echo(f"stored in {Path(cfg.cache_dir).expanduser() / 'features'}" if cached
               else "not kept (features.cache or cache_dir off)")


@cli.group()
def data() -> None:
    """Get datasets and look inside them."""


@data.command(name="download", short_help="Download and verify an official dataset archive.")
@click.argument("name", type=RegistryChoice("mlpcli.data.download", "downloadable"))
@click.option("--dir", "dest_dir", default="data", show_default=True, type=click.Path(file_okay=False),
              help="Folder to unpack into (the dataset lands in DIR/NAME).")
@click.option("--mirror", metavar="URL", help="Fetch the same files from this base URL instead.")
def download_dataset(name: str, dest_dir: str, mirror: str | None) -> None:
    """Download dataset NAME's official archive, verify its sizes and checksums and unpack it.

    Prints the folder to use as data.path. An existing folder is left as it is. A transfer that brings
    less than 64 KiB in 60 s is given up.

    \b
      mlp data download cifar10            # -> data/cifar10
      mlp train configs/cifar10_pixels.yaml data.source=cifar10 data.path=data/cifar10
    """
    from mlpcli.data.download import download

    click.echo(download(name, dest_dir, base_url=mirror))


@data.command(short_help="Describe a dataset on disk.")
@click.argument("path", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def info(path: str, as_json: bool) -> None:
    """Describe the dataset at PATH: format, classes, images per split and class, sizes, modes.

    \b
      mlp data info data/cifar10
      mlp data info ~/photos --json
    """
    from mlpcli.data.info import describe

    facts = describe(path)
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    click.echo(f"{facts['path']}: {facts['format']} (data.source: {' or '.join(facts['sources'])})")
    click.echo(f"classes ({len(facts['classes'])}): {', '.join(map(str, facts['classes']))}")
    for split, counts in facts["splits"].items():
        per_class = ", ".join(f"{name} {n}" for name, n in counts["per_class"].items())
        click.echo(f"{split}: {counts['images']} images ({per_class})")
    click.echo("sizes: " + ", ".join(f"{size} ×{n}" for size, n in facts["sizes"].items()))
    click.echo("modes: " + ", ".join(f"{mode} ×{n}" for mode, n in facts["modes"].items()))
    for problem in facts.get("unreadable", []):
        click.echo(f"unreadable: {problem}")


@cli.group()
def cache() -> None:
    """Look at and free the feature cache (cache_dir; its size limit is cache_max_gb)."""


def _cache_dir(cache_dir: str | None) -> str:
    from mlpcli.config import Config

    return cache_dir or Config().cache_dir


@cache.command(name="info", short_help="Show the feature stores in the cache and their sizes.")
@click.option("--dir", "cache_dir", type=click.Path(file_okay=False), help="The cache folder (default: the default "
              "config's cache_dir, ~/.cache/mlpcli).")
@click.option("--json", "as_json", is_flag=True, help="Print the stores as JSON.")
def cache_info(cache_dir: str | None, as_json: bool) -> None:
    """List the feature stores in the cache, least recently used (the first evicted) first, then what mlp did
    not write in its features folder (never removed).

    \b
      mlp cache info
      mlp cache info --dir /shared/mlp-cache --json
    """
    from datetime import datetime

    from mlpcli.config import Config
    from mlpcli.features.store import cache_contents, foreign

    folder = _cache_dir(cache_dir)
    stores, others = cache_contents(folder), foreign(folder)
    if as_json:
        click.echo(json.dumps({"cache_dir": folder, "stores": stores, "left_alone": others}, indent=2))
        return
    total = sum(store["bytes"] for store in stores)
    click.echo(f"{folder}: {len(stores)} feature store(s), {_size(total)} (each run keeps it within its "
               f"cache_max_gb, by default {Config().cache_max_gb:g} GB)")
    for store in stores:
        used = datetime.fromtimestamp(store["last_used"]).strftime("%Y-%m-%d %H:%M")
        shape = f"{store['rows']} x {store['dim']}" if store["status"] == "ready" else store["status"]
        click.echo(f"  {store['key'][:12]}  {used}  {_size(store['bytes']):>9}  {shape:>16}  "
                   f"{'+'.join(store.get('features', []))}")
    for name in others:
        click.echo(f"  {name}: not mlp's, left alone")


@cache.command(name="clear", short_help="Remove every feature store from the cache.")
@click.option("--dir", "cache_dir", type=click.Path(file_okay=False), help="The cache folder (default: the default "
              "config's cache_dir, ~/.cache/mlpcli).")
def cache_clear(cache_dir: str | None) -> None:
    """Remove every feature store from the cache; the next run extracts its features again. What mlp did not
    write there stays (mlp cache info lists it).

    \b
      mlp cache clear
    """
    from mlpcli.features.store import clear_cache

    folder = _cache_dir(cache_dir)
    click.echo(f"removed {_size(clear_cache(folder))} from {folder}")


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024


@cli.command(short_help="Write a run's plots and report.html.")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def report(run_dir: str) -> None:
    """Regenerate the plots of RUN_DIR and write RUN_DIR/report.html (a sweep folder: its sweep page).

    The page shows the config, metrics per epoch, training curves, confusion matrices, per-class
    precision, recall and F1, and the most confident validation mistakes. It is one self-contained
    file: every picture is embedded in it, so report.html can be mailed or archived alone.

    A sweep folder gets SWEEP/report.html: each swept key against the metric, the spread over seeds,
    every trial's validation curve, and the configurations with links to each trial's report.

    \b
      mlp report runs/default-20261126-101500
      mlp report sweeps/cifar10_hog_color_quick-20261126-101500
    """
    if (Path(run_dir) / "sweep.yaml").is_file():
        from mlpcli.sweep.page import write_sweep_report

        click.echo(write_sweep_report(run_dir))
        return
    from mlpcli.report import write_report

    click.echo(write_report(run_dir))


@cli.command(short_help="List runs, with a column for each config key that differs.")
@click.argument("directory", default="runs", type=click.Path(file_okay=False))
@click.option("--sort", "sort_by", type=click.Choice(["date", "name", "status", "epochs", "val_acc", "test_acc",
                                                      "seconds"]), default="date", show_default=True,
              help="Order of the rows (accuracies best first).")
@click.option("--filter", "match", help="Only runs whose name, features, model or status contain this text.")
@click.option("--width", type=click.IntRange(min=0), help="Fit the table into this many columns (default: the "
              "terminal's width; no limit when the output is not a terminal; 0: no limit).")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
def runs(directory: str, sort_by: str, match: str | None, width: int | None, as_json: bool) -> None:
    """List the runs in DIRECTORY (default: runs/), or the trials of a sweep folder: name, date, status,
    epochs, features, model, accuracies, time, and one column per config key that differs among them.

    Runs that are still going or were killed show as "unfinished" with their best validation accuracy
    so far; folders whose files are damaged show as "damaged". On a narrow terminal long names are
    shortened in the middle and the least important columns left out (--width 0 shows everything).

    \b
      mlp runs --sort val_acc --filter hog
      mlp runs sweeps/lr-reg-20261126-101500      # one row per trial, the swept keys as columns
    """
    from mlpcli.runs import filter_runs, format_runs, list_runs, runs_json, sort_runs

    found = list_runs(directory)
    if match:
        found = filter_runs(found, match)
    found = sort_runs(found, sort_by)
    click.echo(json.dumps(runs_json(found), indent=2) if as_json else format_runs(found, _table_width(width)))


@cli.command(short_help="Compare runs side by side: differing config keys and metrics.")
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN RUN...",
                type=click.Path(exists=True, file_okay=False))
@click.option("--width", type=click.IntRange(min=0), help="Fit the table into this many columns (default: the "
              "terminal's width; no limit when the output is not a terminal; 0: no limit).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(run_dirs: tuple[str, ...], width: int | None, as_json: bool) -> None:
    """Show the config keys that differ among the RUN folders and their metrics side by side: status,
    epochs, best epoch, validation accuracy, loss and macro F1, test accuracy and loss, time.

    \b
      mlp compare runs/default-20261126-101500 runs/default-20261126-104210
      mlp compare sweeps/lr-reg-20261126-101500/runs/* --json
    """
    from mlpcli.runs import compare_runs, format_comparison

    if len(run_dirs) < 2:
        raise click.UsageError("give at least two run folders to compare")
    comparison = compare_runs(list(run_dirs))
    click.echo(json.dumps(comparison, indent=2) if as_json else format_comparison(comparison, _table_width(width)))


def _table_width(width: int | None) -> int | None:
    """The width a table is fitted into: --width (0: no limit), else the terminal's, if stdout is one."""
    if width is not None:
        return width or None
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


@cli.command(short_help="Print the shell completion script for bash, zsh or fish.")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the script that makes SHELL complete mlp's commands, options, config files, config keys
    (KEY=VALUE arguments of train, gradcheck and features) and the values of keys with choices.

    \b
      eval "$(mlp completion bash)"      # in ~/.bashrc
      eval "$(mlp completion zsh)"       # in ~/.zshrc
      mlp completion fish > ~/.config/fish/completions/mlp.fish
    """
    from click.shell_completion import get_completion_class

    click.echo(get_completion_class(shell)(cli, {}, "mlp", "_MLP_COMPLETE").source())
