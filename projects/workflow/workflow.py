"""Run entry points of the mlperf_track project as nested steps of one MLflow run."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import mlflow
from mlflow.exceptions import ExecutionException

logger = logging.getLogger("workflow")

#: Entry points of the root project this workflow can run.
STEPS = ("main", "benchmark", "profile", "tune", "report")
#: Which workflow parameters each step takes (the root MLproject's parameter names).
PIPELINE_PARAMS = ("model", "device", "batch_sizes", "image_size", "max_time")
STEP_PARAMS = {
    "main": PIPELINE_PARAMS,
    "benchmark": PIPELINE_PARAMS,
    "profile": PIPELINE_PARAMS,
    "tune": ("model", "device", "batch_sizes", "image_size", "n_trials"),
    "report": (),
}
#: What quick=true sets (for the steps that take the parameter).
QUICK = {
    "image_size": "32",
    "batch_sizes": "1,2",
    "epochs": "0",
    "runtimes": "eager",
    "precisions": "fp32",
    "dataset": "synthetic",
    "max_time": "1",
    "target_ci": "0.25",
    "variants": "none",
    "n_trials": "2",
}
QUICK_STEPS = {"main", "benchmark", "profile", "tune"}


def step_parameters(step: str, args: argparse.Namespace, experiment: str, quick: bool) -> dict[str, str]:
    """The parameters of one step: the workflow's values it takes, quick overrides, the experiment to report."""
    values = {name: str(getattr(args, name)) for name in STEP_PARAMS[step]}
    if quick and step in QUICK_STEPS:
        allowed = {*PIPELINE_PARAMS, "epochs", "runtimes", "precisions", "dataset", "variants", "target_ci"}
        if step == "tune":
            allowed = {"image_size", "batch_sizes", "runtimes", "precisions", "variants", "n_trials"}
        values.update({key: value for key, value in QUICK.items() if key in allowed})
    if step == "report":
        values["experiment"] = experiment
    return values


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--steps", default="benchmark,profile,report")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", dest="batch_sizes", default="auto")
    parser.add_argument("--image-size", dest="image_size", default="auto")
    parser.add_argument("--max-time", dest="max_time", default="auto")
    parser.add_argument("--n-trials", dest="n_trials", default="20")
    parser.add_argument("--root", default="../..")
    parser.add_argument("--quick", default="false")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    unknown = [step for step in steps if step not in STEPS]
    if unknown:
        raise SystemExit(f"workflow: error: unknown steps {unknown}; allowed: {', '.join(STEPS)}")
    quick = args.quick.strip().lower() in ("1", "true", "yes")
    root = str(Path(args.root).resolve())
    client = mlflow.MlflowClient()
    with mlflow.start_run() as parent:  # resumes the run `mlflow run` made for this workflow
        experiment = client.get_experiment(parent.info.experiment_id).name
        for step in steps:
            parameters = step_parameters(step, args, experiment, quick)
            logger.info("step %s: %s %s", step, root, parameters)
            try:
                submitted = mlflow.projects.run(
                    uri=root,
                    entry_point=step,
                    parameters=parameters,
                    env_manager="local",
                    experiment_id=parent.info.experiment_id,
                    run_name=step,
                    synchronous=True,
                )
            except ExecutionException:
                mlflow.set_tag(f"step.{step}.status", "FAILED")
                raise
            mlflow.set_tags({f"step.{step}.run_id": submitted.run_id, f"step.{step}.status": "FINISHED"})
            best = {
                f"{step}/{key}": value
                for key, value in client.get_run(submitted.run_id).data.metrics.items()
                if key.startswith("best/")
            }
            if best:
                mlflow.log_metrics(best)


if __name__ == "__main__":
    main()
