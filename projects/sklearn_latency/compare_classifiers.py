"""Train six scikit-learn classifiers and compare them on latency, throughput and accuracy.

Each classifier gets a nested run (under the run ``mlflow run`` made, or a new parent) with its model and the
mlperf_track evaluator's metrics; the parent gets the comparison table and two figures.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from typing import Any

import mlflow
import pandas as pd
import seaborn as sns
import sklearn
from matplotlib.figure import Figure
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

from mlperf_track import metrics as m
from mlperf_track.tracking.setup import configure_tracking

logger = logging.getLogger("sklearn_latency")

#: Types MLflow's skops serialization must be told to trust, per classifier (we made the models ourselves).
_ADAM = "sklearn.neural_network._stochastic_optimizers.AdamOptimizer"
TRUSTED_TYPES = {"random_forest": ["sklearn.tree._tree.Tree"], "mlp_small": [_ADAM], "mlp_large": [_ADAM]}


def classifiers(quick: bool, seed: int) -> dict[str, Any]:
    """The six classifiers, scaled where the model needs it."""
    iterations = 30 if quick else 300
    large = (128, 128) if quick else (512, 512, 256)
    return {
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "random_forest": RandomForestClassifier(n_estimators=10 if quick else 200, n_jobs=1, random_state=seed),
        "linear_svm": make_pipeline(StandardScaler(), LinearSVC(random_state=seed)),
        "rbf_svm": make_pipeline(StandardScaler(), SVC(kernel="rbf", random_state=seed)),
        "mlp_small": make_pipeline(StandardScaler(), MLPClassifier((32,), max_iter=iterations, random_state=seed)),
        "mlp_large": make_pipeline(StandardScaler(), MLPClassifier(large, max_iter=iterations, random_state=seed)),
    }


def ensure_evaluator() -> None:
    """Register the mlperf_track evaluator when the package's entry point is not installed."""
    from mlflow.models.evaluation.evaluator_registry import _model_evaluation_registry as registry

    if not registry.is_registered("mlperf_track"):
        from mlperf_track.tracking.evaluator import MlperfTrackEvaluator

        registry.register("mlperf_track", MlperfTrackEvaluator)


def evaluate_one(name: str, model: Any, data: tuple[Any, ...], config: dict[str, Any]) -> dict[str, Any]:
    """Train, log and evaluate one classifier in a nested run; return its comparison row."""
    x_train, x_test, y_train, y_test = data
    with mlflow.start_run(run_name=name, nested=True) as run:
        mlflow.log_params({"classifier": name, "n_train": len(x_train), "n_test": len(x_test)})
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, y_train)
        mlflow.log_metric("train_s", time.perf_counter() - start)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=x_test[:2],
            skops_trusted_types=TRUSTED_TYPES.get(name),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],  # explicit: skips a slow inference step
        )
        result = mlflow.models.evaluate(
            info.model_uri,
            x_test,
            targets=y_test,
            model_type="classifier",
            evaluators="mlperf_track",
            evaluator_config=config,
        )
    first = config["batch_sizes"][0]
    last = config["batch_sizes"][-1]
    return {
        "classifier": name,
        "run_id": run.info.run_id,
        m.ACCURACY_TOP1: result.metrics.get(m.ACCURACY_TOP1),
        f"{m.LATENCY_P50}_bs{first}": result.metrics.get(f"{m.LATENCY_P50}_bs{first}"),
        f"{m.THROUGHPUT}_bs{last}": result.metrics.get(f"{m.THROUGHPUT}_bs{last}"),
        m.MODEL_SIZE: result.metrics.get(m.MODEL_SIZE),
    }


def comparison_figures(table: pd.DataFrame, first: int, last: int) -> dict[str, Figure]:
    """Accuracy against single-batch latency, and throughput at the largest batch size."""
    scatter = Figure(figsize=(7, 4.5), layout="constrained")
    axes = scatter.add_subplot()
    sns.scatterplot(data=table, x=f"{m.LATENCY_P50}_bs{first}", y=m.ACCURACY_TOP1, hue="classifier", s=80, ax=axes)
    axes.set_xscale("log")
    axes.set_xlabel(f"p50 latency at batch {first} (ms, log scale)")
    axes.set_ylabel("test accuracy")
    bars = Figure(figsize=(7, 4.5), layout="constrained")
    axes = bars.add_subplot()
    sns.barplot(data=table, x="classifier", y=f"{m.THROUGHPUT}_bs{last}", ax=axes)
    axes.set_ylabel(f"samples/s at batch {last}")
    axes.tick_params(axis="x", rotation=30)
    return {"figures/accuracy_vs_latency.png": scatter, "figures/throughput_by_classifier.png": bars}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=4000)
    parser.add_argument("--n-features", type=int, default=32)
    parser.add_argument("--batch-sizes", default="1,64")
    parser.add_argument("--max-time", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", default="false", help="true: small data, short timing (a smoke test)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quick = args.quick.strip().lower() in ("1", "true", "yes")
    n_samples = min(args.n_samples, 400) if quick else args.n_samples
    batch_sizes = [int(size) for size in args.batch_sizes.split(",") if size.strip()]
    timing = {
        "max_time_s": 0.2 if quick else args.max_time,
        "min_iters": 5,
        "warmup_iters": 2,
        "warmup_s": 0.0 if quick else 0.2,
    }
    config = {"batch_sizes": batch_sizes, "timing": timing}
    features, labels = make_classification(
        n_samples=n_samples,
        n_features=args.n_features,
        n_informative=args.n_features // 2,
        n_classes=3,
        random_state=args.seed,
    )
    data = train_test_split(features, labels, test_size=0.25, random_state=args.seed, stratify=labels)
    configure_tracking(None)
    ensure_evaluator()
    with mlflow.start_run(run_name="sklearn_latency") as parent:
        # mlflow run already logged the -P values; effective values get their own keys (params are immutable)
        mlflow.log_params({"effective.n_samples": n_samples, "effective.max_time_s": timing["max_time_s"]})
        rows = []
        for name, model in classifiers(quick, args.seed).items():
            logger.info("training and measuring %s", name)
            rows.append(evaluate_one(name, model, data, config))
            mlflow.log_table(pd.DataFrame([rows[-1]]), "comparison.json")  # one row per classifier as it ends
        table = pd.DataFrame(rows)
        mlflow.log_text(table.to_csv(index=False), "comparison.csv")
        for path, figure in comparison_figures(table, batch_sizes[0], batch_sizes[-1]).items():
            mlflow.log_figure(figure, path)
        best = table.loc[table[f"{m.THROUGHPUT}_bs{batch_sizes[-1]}"].idxmax()]
        mlflow.set_tags({"best.classifier": best["classifier"], "best.run_id": best["run_id"]})
        logger.info("parent run %s:\n%s", parent.info.run_id, table.to_string(index=False))


if __name__ == "__main__":
    main()
