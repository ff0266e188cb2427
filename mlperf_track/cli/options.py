"""One description of every option of ``bench``, ``run``, ``profile`` and ``tune``.

Each :class:`CliOption` says its name, how its text is parsed, its default (``auto`` = the device's default, see
:mod:`mlperf_track.pipeline.defaults`), its help and which commands take it (the optimum-benchmark idea: help
lives on the field). From this one table come the argparse flags and ``--help`` of those commands
(:func:`add_options`), the option table of ``docs/architecture.md`` (:mod:`.option_docs`) and the check that
the MLproject entry points declare the same parameters with the same defaults (``tests/projects``).

Spelling: the canonical flag is the name with dashes (``--batch-sizes``); the MLproject parameter is the name
(``batch_sizes``). Every flag is also accepted with underscores and in its other number (``--batch-size``,
``--batch_size``), so ``mlflow run -P batch_size=8`` (which appends ``--batch_size 8`` for a parameter the entry
point does not declare) works too.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mlperf_track.cli import parsers as p

PIPELINE = frozenset({"bench", "run", "profile"})
TRACKED = frozenset({"run", "profile", "tune"})
EVERY = PIPELINE | {"tune"}
#: The commands built from the table, in help order (``load`` takes the load rows; its target and HTTP flags are
#: its own, in :mod:`mlperf_track.cli.load`).
COMMANDS = ("bench", "run", "profile", "tune", "load")
#: MLproject entry point -> the command whose parameters and defaults it declares.
ENTRY_POINTS = {"main": "run", "benchmark": "bench", "profile": "profile", "tune": "tune"}

Kind = Literal["value", "bool", "list"]


@dataclass(frozen=True)
class CliOption:
    """One option.

    Attributes:
        name: The argparse ``dest`` and the MLproject parameter (``batch_sizes``).
        help: What it does (shown by ``--help`` with the default, and in the docs).
        default: The default as text (``auto``, ``none``, ``0``); ``None`` makes the flag required.
        commands: The commands that take it.
        parse: Turns an explicit value into the config's value: ``parse(flag, text)``; raises ConfigError.
        auto_key: The :func:`~mlperf_track.pipeline.defaults.auto_defaults` key that ``auto`` stands for.
        accepts_none: Whether ``none`` means "not set".
        aliases: Other names (the other number, an older spelling).
        command_defaults: Defaults that differ for some commands.
        command_help: Help that differs for some commands.
        kind: ``value``; ``bool`` (``--flag`` or ``--flag true|false``); ``list`` (repeatable, comma lists).
        in_mlproject: Whether the MLproject entry points of its commands declare it.
        mlproject_default: The entry points' default when it differs from the CLI's (a required flag).
    """

    name: str
    help: str
    default: str | None
    commands: frozenset[str]
    parse: Callable[[str, Any], Any] = p.text
    auto_key: str | None = None
    accepts_none: bool = False
    aliases: tuple[str, ...] = ()
    command_defaults: Mapping[str, str] = field(default_factory=dict)
    command_help: Mapping[str, str] = field(default_factory=dict)
    kind: Kind = "value"
    in_mlproject: bool = True
    mlproject_default: str | None = None

    @property
    def flag(self) -> str:
        """The canonical flag (``--batch-sizes``)."""
        return "--" + self.name.replace("_", "-")

    @property
    def option_strings(self) -> list[str]:
        """Every spelling argparse accepts, the canonical one first."""
        spellings = [self.flag]
        for name in (self.name, *self.aliases):
            for form in ("--" + name.replace("_", "-"), "--" + name.replace("-", "_")):
                if form not in spellings:
                    spellings.append(form)
        return spellings

    @property
    def shown_strings(self) -> list[str]:
        """The spellings ``--help`` lists: the canonical flag and its aliases with dashes."""
        return [self.flag, *("--" + alias.replace("_", "-") for alias in self.aliases)]

    @property
    def takes_auto(self) -> bool:
        """Whether ``auto`` is a value: the device default (``auto_key``), else "not set" (the consumer decides)."""
        return self.auto_key is not None or "auto" in (self.default, *self.command_defaults.values())

    def default_for(self, command: str) -> str | None:
        """The default ``command`` uses."""
        return self.command_defaults.get(command, self.default)

    def help_for(self, command: str) -> str:
        """The help ``command`` shows."""
        return self.command_help.get(command, self.help)


def _option(name: str, help: str, default: str | None, commands: frozenset[str], **kwargs: Any) -> CliOption:
    return CliOption(name=name, help=help, default=default, commands=commands, **kwargs)


TUNE = frozenset({"tune"})
LOAD = frozenset({"load"})
LOAD_RUN = frozenset({"run", "load"})
LOAD_TUNE = frozenset({"run", "tune", "load"})
_TUNE_BATCH_HELP = (
    "batch sizes to search: a list 1,2,4, max:N (powers of two up to N) or auto (powers of two up to 64 on cpu, "
    "512 on cuda)"
)

# One row per option: name, help, default, commands, then how it parses and its other spellings and defaults.
# fmt: off
OPTIONS: tuple[CliOption, ...] = (
    _option("model", "torchvision name (resnet50), tinycnn, a model file (.pt/.pt2/.ts), models:/NAME/VERSION, "
            "runs:/ID/PATH, hf:FOLDER (a transformers model folder) or hf-config:NAME (bert-base, gpt2-small, "
            "llama-small and their -tiny forms)", None, EVERY, mlproject_default="resnet18"),
    _option("weights", "weights file for a torchvision model (none: torch cache, else random)", "none", EVERY,
            parse=p.existing_file, accepts_none=True),
    _option("device", "auto, cpu or cuda (auto: cuda when a GPU is present)", "auto", EVERY | LOAD, parse=p.device),
    _option("batch_sizes", "comma-separated batch sizes, e.g. 1,8,32", "auto", EVERY, parse=p.batch_sizes,
            auto_key="batch_sizes", aliases=("batch_size",), command_help={"tune": _TUNE_BATCH_HELP}),
    _option("precisions", "comma-separated precisions (fp32, tf32, fp16, bf16, int8, fp8)", "auto", EVERY,
            parse=p.precisions, auto_key="precisions", aliases=("precision",),
            command_help={"tune": "precisions to search (auto: every precision the runtimes run here natively)"}),
    _option("runtimes", "comma-separated runtimes (eager, compile, onnxruntime, tensorrt, openvino)", "auto", EVERY,
            parse=p.runtimes, auto_key="runtimes", aliases=("runtime",),
            command_help={"tune": "runtimes to search (auto: every runtime installed that runs on the device)"}),
    _option("variants", "comma-separated variants or groups (quantized, pruned, distilled, all; a+b composes; none: "
            "the baseline only); the baseline always runs", "auto", EVERY, parse=p.variants, auto_key="variants",
            accepts_none=True, aliases=("variant",), command_defaults={"bench": "none", "profile": "none",
                                                                       "tune": "none"}),
    _option("image_size", "input height and width in pixels", "auto", EVERY, parse=p.positive_int,
            auto_key="image_size"),
    _option("dataset", "digits, synthetic, imagefolder:PATH or torchvision:NAME:ROOT; text models: pydoc-topics "
            "(decoders) or stdlib-docstrings (encoders) (auto: the model's labelled dataset when a variant or "
            "accuracy needs labels, else synthetic)", "auto", EVERY, parse=p.dataset),
    _option("epochs", "training epochs of the baseline on a labelled dataset (auto: until its holdout top-1 stops "
            "improving; N: exactly N epochs; 0: the weights as they are)",
            "auto", EVERY, parse=p.non_negative_int, auto_key="epochs"),
    _option("train_precision", "precision of that training and of the variants' retraining, image models: auto "
            "(bf16 mixed precision where the device computes bf16 natively, else fp32), fp32 or bf16", "auto", EVERY,
            parse=p.train_precision),
    _option("num_threads", "CPU threads (auto: torch's default)", "auto", EVERY, parse=p.positive_int,
            command_help={"tune": "CPU threads of every trial when --threads does not search them (auto: torch's "
                          "default)"}),
    _option("channels_last", "use the channels-last memory format", "false", EVERY, parse=p.boolean, kind="bool"),
    _option("options", "runtime or variant options KEY=VALUE, comma-separated or repeated (see the option keys in "
            "docs/architecture.md)", "none", EVERY, parse=p.key_values, accepts_none=True, aliases=("option",),
            kind="list", command_help={"tune": "runtime or variant options KEY=VALUE fixed for every trial (a "
                                       "runtime option given here is not searched)"}),
    _option("seed", "seed for data splits, training and inputs", "0", EVERY | LOAD, parse=p.non_negative_int,
            command_help={"load": "seed of the Poisson arrivals and the inputs"}),
    _option("seq_lens", "text encoders: comma-separated sequence lengths in tokens, e.g. 32,128,512", "128", EVERY,
            parse=p.positive_int_list, aliases=("seq_len",),
            command_help={"tune": "text encoders: the sequence length in tokens every trial runs at (one value)"}),
    _option("prompt_lens", "text decoders: comma-separated prompt lengths in tokens", "128", EVERY,
            parse=p.positive_int_list, aliases=("prompt_len",),
            command_help={"tune": "text decoders: the prompt length in tokens every trial runs at (one value)"}),
    _option("output_lens", "text decoders: comma-separated numbers of new tokens per prompt", "64", EVERY,
            parse=p.positive_int_list, aliases=("output_len",),
            command_help={"tune": "text decoders: the new tokens per prompt every trial generates (one value)"}),
    _option("max_time", "time cap per case in seconds", "auto", EVERY, parse=p.positive_number,
            command_help={"tune": "time cap of each trial's timed window in seconds"}),
    _option("target_ci", "stop when the median's 95% CI is this fraction of it (auto: 0.01 on cuda, 0.03 on cpu)",
            "auto", EVERY, parse=p.fraction),
    _option("repeats", "interleaved replicates of every case, merged into one result", "1", EVERY,
            parse=p.positive_int),
    _option("pin_cores", "CPU cores to pin the process to while measuring, e.g. 0,1 (none: leave affinity alone)",
            "none", EVERY, parse=p.core_list, accepts_none=True),
    _option("accuracy", "measure accuracy when the dataset has labels", "true", EVERY, parse=p.boolean,
            kind="bool"),
    _option("max_accuracy_drop", "largest top-1 drop against the baseline a case may lose and still be named best "
            "(0.01 = 1 point; none: no limit)", "0.01", EVERY, parse=p.fraction_or_zero, accepts_none=True),
    _option("scenario", "after the cases, serve the recommended case under load: single_stream, multi_stream, "
            "server, offline or concurrency (MLPerf LoadGen scenarios; each load point a child run; none: no load "
            "stage)", "none", LOAD_RUN, parse=p.scenario, accepts_none=True, command_defaults={"load": "server"},
            command_help={"load": "single_stream, multi_stream, server, offline or concurrency (MLPerf LoadGen "
                          "scenarios, and perf_analyzer's concurrency)"}),
    _option("rate", "load stage, server scenario: queries/s, a comma-separated sweep 20,40, or auto (search the "
            "highest rate whose p99 stays under --latency-bound-ms: best/max_qps)", "auto", LOAD_RUN,
            parse=p.positive_number_list, aliases=("rates",),
            command_help={"load": "server: queries/s, a comma-separated sweep, or auto (search max_qps)"}),
    _option("latency_bound_ms", "load stage: the bound in ms of the judged latency percentile (p99; p90 for "
            "single_stream); required by the server scenario", "none", LOAD_TUNE, parse=p.positive_number,
            accepts_none=True, command_help={"tune": "--objective max_qps: the p99 bound in ms each trial's Server "
                                             "rate must keep (required there)",
                                             "load": "the bound in ms of the judged percentile (server: required)"}),
    _option("min_duration", "seconds of each load point (LoadGen: 600)", "10", LOAD_TUNE,
            parse=p.non_negative_number, command_help={"tune": "--objective max_qps: seconds of each load point of a "
                                                       "trial's max_qps search"}),
    _option("concurrency", "load stage, concurrency scenario: closed-loop clients", "1", LOAD_RUN,
            parse=p.positive_int, command_help={"load": "concurrency scenario: closed-loop clients"}),
    _option("max_batch_size", "load stage: dynamic batching, the most samples one model call takes (1: off)", "1",
            LOAD_TUNE, parse=p.positive_int_list, command_defaults={"tune": "1,4,16"},
            command_help={"tune": "--objective max_qps: dynamic-batching max batch sizes to search",
                          "load": "dynamic batching: the most samples one model call takes (1: off)"}),
    _option("max_queue_delay_ms", "load stage: dynamic batching, the most ms a request waits for a fuller batch",
            "0", LOAD_TUNE, parse=p.non_negative_number_list, command_defaults={"tune": "0,2,10"},
            command_help={"tune": "--objective max_qps: queue delays in ms to search (only with a max batch size "
                          "above 1)", "load": "dynamic batching: the most ms a request waits for a fuller batch"}),
    _option("load_workers", "load stage: model instances serving the queue", "1", LOAD_TUNE,
            parse=p.positive_int_list, command_defaults={"tune": "1,2"},
            command_help={"tune": "--objective max_qps: model instance counts to search",
                          "load": "model instances serving the queue (also --workers)"}),
    _option("memory_limit_mb", "peak memory limit in MiB: on cuda the process's device memory, on cpu its peak RSS",
            "none", TUNE, parse=p.positive_number, accepts_none=True),
    _option("p99_slo_ms", "p99 latency limit per batch in ms", "none", TUNE, parse=p.positive_number,
            accepts_none=True),
    _option("objective", "throughput, latency, multi (a Pareto front) or max_qps (the highest Server rate under "
            "--latency-bound-ms, searching the dynamic-batching knobs)", "throughput", TUNE, parse=p.objective),
    _option("n_trials", "trials the study holds when it ends (shared by all workers; points reused from earlier runs "
            "count)", "30", TUNE, parse=p.positive_int),
    _option("time_budget", "seconds of wall clock the study may take from its start, preparation and the "
            "baseline's training included; it stops at this or --n-trials, whichever comes first (none: no time "
            "limit)", "none", TUNE, parse=p.positive_number,
            accepts_none=True),
    _option("warm_start", "reuse points earlier runs measured on this hardware and software: auto (the study's "
            "experiment), none, or an experiment name", "auto", TUNE),
    _option("pruner", "stop a trial after its short first measurement: auto (ci), ci (when even its CI cannot beat "
            "the best), halving (successive halving) or none (measure every trial in full)", "auto", TUNE,
            parse=p.pruner),
    _option("short_time", "seconds of a trial's short first measurement (none: measure every trial in full)", "0.3",
            TUNE, parse=p.positive_number, accepts_none=True),
    _option("search_options", "runtime option values to search instead of the declared ones, KEY=V1|V2, e.g. "
            "graph_optimization_level=all|basic (none: every runtime's declared values)", "none", TUNE,
            parse=p.key_values, accepts_none=True, aliases=("search_option",), kind="list"),
    _option("compile_modes", "torch.compile modes to search, e.g. default,max-autotune (none: the compile runtime's "
            "declared modes that run on the device)", "none", TUNE, parse=p.names, accepts_none=True),
    _option("compositions", "also search compositions of the variants (pruned/distilled then quantized)", "true",
            TUNE, parse=p.boolean, kind="bool"),
    _option("threads", "CPU thread counts to search: a list, or auto (powers of two up to the cores)", "none", TUNE,
            parse=p.positive_int_list, accepts_none=True),
    _option("sampler", "auto (costaware for one objective, tpe for several), costaware, tpe, gp, grid, random or "
            "nsga2", "auto", TUNE, parse=p.sampler),
    _option("storage", "Optuna storage: auto ($MLPERF_TRACK_STORAGE when set, else sqlite optuna.db here), none (in "
            "memory) or a database URL (a password here shows in ps: use $MLPERF_TRACK_STORAGE or "
            "--storage-password-file)", "auto", TUNE),
    _option("storage_password_file", "file whose first line is the database password, put into the storage URL "
            "(which names the user)", "none", TUNE, parse=p.existing_file, accepts_none=True),
    _option("study_name", "study to create or resume (auto: a new unique name)", "auto", TUNE),
    _option("workers", "worker processes to start on the one study (N, or gpus: one per visible GPU, each with its "
            "own CUDA_VISIBLE_DEVICES); needs a database storage; see docs/scale-out.md", "1", TUNE,
            parse=p.worker_count, in_mlproject=False),
    _option("heartbeat_interval", "seconds between heartbeats of a running trial (database storages)", "10", TUNE,
            parse=p.positive_int),
    _option("grace_period", "a trial without a heartbeat for this many seconds is failed and retried", "30", TUNE,
            parse=p.positive_int),
    _option("trust_pickle", "allow model and weights files that can run code when loaded (full-model pickles, "
            "TorchScript, .pt2 archives with pickled records or code in a symbolic shape, MLflow models saved as "
            "pickles): only files from a source you trust", "false", EVERY | LOAD, parse=p.boolean, kind="bool",
            command_help={"load": "allow model files that can run code when loaded (pickles, TorchScript; with "
                          "--serve: every model, since `mlflow models serve` unpickles scikit-learn and pyfunc "
                          "models): only from a source you trust"}),
    _option("profile", "also record a torch.profiler trace and flame graph per case", "false", frozenset({"run"}),
            parse=p.boolean, kind="bool"),
    _option("experiment_name", "MLflow experiment (auto: $MLFLOW_EXPERIMENT_NAME, else mlperf_track/<model>)",
            "auto", TRACKED, aliases=("experiment",), in_mlproject=False),
    _option("output_dir", "folder for per-case files (raw samples, result JSON, traces) and the log file",
            "mlperf_track_output", EVERY, in_mlproject=False, command_defaults={"tune": "mlperf_track_output/tune"}),
    _option("output", "also write every result as JSON to this file", "none", PIPELINE, parse=p.writable_file,
            accepts_none=True, in_mlproject=False),
    _option("keep_files", "keep each case's files (raw samples, result JSON, traces) in <output-dir>/<case>/; false "
            "deletes them once logged to MLflow", "false", PIPELINE, parse=p.boolean, kind="bool",
            command_defaults={"bench": "true"}, in_mlproject=False,
            command_help={"bench": "keep each case's files (raw samples, result JSON, traces) in <output-dir>/<case>/ "
                          "(bench logs nothing; false deletes them at the end)"}),
    _option("resume", "continue an interrupted run: last (the newest unfinished run of this configuration here) or "
            "its parent run id; its finished cases are taken over, the rest measured (none: a new run)", "none",
            frozenset({"run", "profile"}), parse=p.resume, accepts_none=True),
)
# fmt: on

#: The table by name.
BY_NAME: dict[str, CliOption] = {option.name: option for option in OPTIONS}


def options_for(command: str) -> list[CliOption]:
    """The options ``command`` takes, in table order."""
    return [option for option in OPTIONS if command in option.commands]


def add_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the flags of ``command`` to ``parser``; ``--help`` shows each default and what ``auto`` means.

    The underscore spellings (``--batch_sizes``, which ``mlflow run -P batch_sizes=...`` produces for a parameter
    an entry point does not declare) are accepted but not listed.
    """
    for option in options_for(command):
        default = option.default_for(command)
        text = _help_text(option, command)
        shown = option.shown_strings
        hidden = [spelling for spelling in option.option_strings if spelling not in shown]
        settings: dict[str, Any] = {"dest": option.name}
        if option.kind == "list":
            settings.update(action="append", metavar="KEY=VALUE")
        elif option.kind == "bool":
            settings.update(nargs="?", const="true", metavar="true|false")
        elif option.name in ("model",):
            settings.update(metavar="MODEL")
        if default is None:
            parser.add_argument(*shown, required=True, help=text, **settings)
        else:
            parser.add_argument(*shown, default=None if option.kind == "list" else default, help=text, **settings)
        if hidden:
            parser.add_argument(*hidden, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **settings)
    if any(option.name == "accuracy" for option in options_for(command)):
        parser.add_argument(
            "--no-accuracy", dest="accuracy", action="store_const", const="false", help="same as --accuracy false"
        )


def _help_text(option: CliOption, command: str) -> str:
    """The help with its default and, for a device-dependent ``auto``, the values it stands for."""
    text = option.help_for(command)
    default = option.default_for(command)
    if default is not None:
        text += f" (default: {default}"
        if option.auto_key is not None and default == "auto" and command not in option.command_help:
            text += f"; {auto_meaning(option.auto_key)}"
        text += ")"
    return text.replace("%", "%%")


def auto_meaning(key: str) -> str:
    """What ``auto`` stands for on each device, from :func:`~mlperf_track.pipeline.defaults.auto_defaults`."""
    from mlperf_track.pipeline.defaults import auto_defaults

    def show(value: Any) -> str:
        if value is None or value == "auto":
            return "until converged"
        if isinstance(value, (tuple, list)):
            return ",".join(str(item) for item in value)
        return str(value)

    return ", ".join(f"{show(auto_defaults(device)[key])} on {device}" for device in ("cpu", "cuda"))


def read(args: argparse.Namespace, name: str, defaults: Mapping[str, Any] | None = None) -> Any:
    """The parsed value of option ``name``.

    ``auto`` is the device default where the option has one (``auto_key``), else ``None`` ("not set": the consumer
    decides); ``none`` is ``None`` where the option accepts it; anything else goes through the option's parser.

    Args:
        args: The parsed flags.
        name: The option's name.
        defaults: :func:`~mlperf_track.pipeline.defaults.auto_defaults` of the resolved device (for ``auto``).

    Raises:
        ConfigError: The value is not allowed (one line naming the flag, the value and what is allowed).
    """
    option = BY_NAME[name]
    raw = getattr(args, name, None)
    if option.kind == "list":
        items = [item for item in (raw or []) if not (p.is_none(item) or p.is_auto(item))]
        return option.parse(option.flag, items) if items else None
    if p.is_auto(raw) and option.takes_auto:
        return defaults[option.auto_key] if defaults is not None and option.auto_key is not None else None
    if raw is None or (option.accepts_none and p.is_none(raw)):
        return None
    return option.parse(option.flag, raw)
