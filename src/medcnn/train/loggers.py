"""Experiment loggers of a training run (Lightning's): the run folder's CSV always, TensorBoard and
MLflow on request.

- ``csv``: ``logs/metrics.csv`` and ``logs/hparams.yaml`` in the run folder (always written).
- ``tensorboard``: event files under ``logs/tensorboard`` (``tensorboard --logdir RUN/logs``); needs
  the ``tensorboard`` package (``pip install 'medcnn[tensorboard]'``).
- ``mlflow``: to the server named by ``MLFLOW_TRACKING_URI`` when set, else to a local file store in
  ``logs/mlruns`` (MLflow 3 opens file stores only when told: ``MLFLOW_ALLOW_FILE_STORE=true mlflow ui
  --backend-store-uri RUN/logs/mlruns``); experiment ``medcnn``, the run
  named after its folder (an ensemble's members side by side in the run's store), the plan logged
  as parameters; needs ``mlflow-skinny`` or ``mlflow``
  (``pip install 'medcnn[mlflow]'``).

Each ensemble member logs as its own run (its own folder under ``members/``).
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from medcnn.errors import ConfigError

LOGGERS = ("csv", "tensorboard", "mlflow")
_PACKAGE = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}  # module, extra


def check_loggers(names) -> tuple[str, ...]:
    """``names`` without repeats, each known and importable (else one line saying what to install)."""
    out = []
    for n in names or ():
        n = n.strip().lower()
        if n not in LOGGERS:
            raise ConfigError(f"unknown logger {n!r}: choose from {', '.join(LOGGERS)}")
        if n in _PACKAGE and importlib.util.find_spec(_PACKAGE[n][0]) is None:
            raise ConfigError(f"--logger {n} needs the {_PACKAGE[n][0]} package: pip install 'medcnn[{_PACKAGE[n][1]}]'")
        if n not in out:
            out.append(n)
    return tuple(out)


def make_loggers(names, run_dir: Path, part: int = 0) -> list:
    """Lightning loggers for ``run_dir``: CSV first, then the requested ones. Lightning logs the
    module's hyperparameters (the plan) to each. ``part`` k > 0 (the k-th resumption of an
    interrupted run) writes its CSV to logs/resumed-k/, since Lightning's CSV logger deletes the
    metrics.csv it finds (metrics.json holds every epoch of all parts)."""
    from lightning.pytorch.loggers import CSVLogger

    run_dir = Path(run_dir)
    loggers = [CSVLogger(run_dir, name="logs", version=f"resumed-{part}" if part else "")]
    for name in check_loggers(names):
        if name == "tensorboard":
            from lightning.pytorch.loggers import TensorBoardLogger

            loggers.append(TensorBoardLogger(run_dir / "logs", name="tensorboard", version="", default_hp_metric=False))
        elif name == "mlflow":
            loggers.append(_mlflow(run_dir))
    return loggers


def hyperparameters(params) -> dict[str, str | int | float | bool]:
    """Nested parameters as flat ``a/b/c`` ones, without the plan's data fingerprint (statistics of
    the data, not choices; its keys are class names); names keep only the characters MLflow allows."""
    out = {}

    def walk(d, prefix):
        for k, v in d.items():
            if k == "fingerprint":
                continue
            key = re.sub(r"[^\w\-. :/]", "_", f"{prefix}{k}")
            if isinstance(v, dict):
                walk(v, f"{key}/")
            else:
                out[key] = v if isinstance(v, (str, int, float, bool)) else str(v)

    walk(dict(params), "")
    return out


# MLflow sets MLFLOW_TRACKING_URI once a logger opens a store: the user's value is read before that,
# so each run of a process (a bench trains many) gets its own store unless the user named a server.
_USER_URI = os.environ.get("MLFLOW_TRACKING_URI")


def mlflow_uri(run_dir: Path) -> str:
    """Where the ``mlflow`` logger of ``run_dir`` writes: the user's ``MLFLOW_TRACKING_URI``, else the
    run's own store (an ensemble member's is its run's, so the members sit side by side)."""
    return _USER_URI or (_top_run(run_dir) / "logs" / "mlruns").as_uri()


def _mlflow(run_dir: Path):
    from lightning.pytorch.loggers import MLFlowLogger

    class Logger(MLFlowLogger):
        def log_hyperparams(self, params) -> None:
            super().log_hyperparams(hyperparameters(vars(params) if hasattr(params, "__dict__") else params))

    if not _USER_URI:
        # MLflow 3 refuses a file store unless told; a local store keeps a run without a server readable
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Logger(experiment_name="medcnn", run_name=run_name(run_dir), tracking_uri=mlflow_uri(run_dir))


def _top_run(run_dir: Path) -> Path:
    path = Path(run_dir).resolve()
    return path.parent.parent if path.parent.name == "members" else path


def run_name(run_dir: Path) -> str:
    """The run folder's name; an ensemble member's is its run's name and its own (``breast-m0``)."""
    path, top = Path(run_dir).resolve(), _top_run(run_dir)
    return path.name if path == top else f"{top.name}-{path.name}"
