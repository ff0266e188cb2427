"""``distilled``: a smaller student trained to imitate the trained baseline (the teacher).

The student is loaded by name (``--option student=NAME``; default resnet18 for a resnet50 teacher, else
mobilenet_v3_small), given a head for the dataset's classes and trained on the training split with the
Hinton loss (:func:`mlperf_track.training.distill.hinton_loss`, against the teacher's outputs computed once),
until its holdout top-1 reaches the teacher's or stops improving (the budget of
:mod:`mlperf_track.variants.retrain`) or for ``distill_epochs``. Its accuracy delta is
against the baseline, i.e. the teacher. When the student is not smaller than the teacher the build says so
in the log and in the tag ``distill.student_smaller``.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from mlperf_track.errors import ConfigError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.options import OptionSpec
from mlperf_track.training.distill import distill
from mlperf_track.variants.base import Variant, VariantContext
from mlperf_track.variants.common import copy_module, count_params, derive
from mlperf_track.variants.memo import memoized
from mlperf_track.variants.options import option_float, option_str
from mlperf_track.variants.retrain import RetrainPlan, budget_tags, option_epochs, recovery_target, retrain_plan
from mlperf_track.variants.variant_cache import variant_cache
from mlperf_track.variants.weights_cache import model_identity

logger = logging.getLogger(__name__)

DEFAULT_TEMPERATURE = 4.0
DEFAULT_ALPHA = 0.7
#: Default student for a teacher, by teacher name; any other teacher gets :data:`FALLBACK_STUDENT`.
DEFAULT_STUDENTS = {"resnet50": "resnet18", "resnet101": "resnet18", "resnet152": "resnet50"}
FALLBACK_STUDENT = "mobilenet_v3_small"


def default_student(teacher: str) -> str:
    """The student used unless ``--option student=NAME`` is given."""
    return DEFAULT_STUDENTS.get(teacher, FALLBACK_STUDENT)


class DistilledVariant(Variant):
    """Knowledge distillation into a smaller architecture.

    Options:
        student: Model name of the student (default: :func:`default_student`).
        temperature: Softmax temperature ``T > 0`` (default 4).
        alpha: Weight of the soft-target term in [0, 1] (default 0.7).
        distill_epochs: Training epochs, or ``auto``: until the student's holdout top-1 reaches the
            teacher's or stops improving (default: the pipeline's ``epochs``, at least 1; ``auto`` when the
            pipeline's is).
    """

    name = "distilled"
    trains = True
    accepted_options = (
        OptionSpec(
            "student", "model name of the student", "text", default="resnet18 for resnet50, else mobilenet_v3_small"
        ),
        OptionSpec("temperature", "softmax temperature", "float", low=0, default=str(DEFAULT_TEMPERATURE)),
        OptionSpec(
            "alpha", "weight of the soft-target loss", "float", low=0, high=1, closed=True, default=str(DEFAULT_ALPHA)
        ),
        OptionSpec(
            "distill_epochs",
            "training epochs of the student (auto: until its holdout top-1 reaches the teacher's or stops improving)",
            "int",
            low=1,
            default="the pipeline's epochs (at least 1)",
            accepts_auto=True,
        ),
    )

    @memoized
    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Train a student from the baseline.

        Raises:
            DataError: The dataset has no labelled training split.
            ConfigError: A bad option, or an unknown student name.
        """
        from mlperf_track.models.heads import replace_classifier
        from mlperf_track.models.registry import load_model

        student_name = option_str(context.options, "student", default_student(baseline.name))
        temperature = option_float(context.options, "temperature", DEFAULT_TEMPERATURE, low=0.0)
        alpha = option_float(context.options, "alpha", DEFAULT_ALPHA)
        if not 0 <= alpha <= 1:
            raise ConfigError("alpha", context.options["alpha"], "a number in [0, 1]")
        default_epochs = None if context.epochs is None else max(context.epochs, 1)
        epochs = option_epochs(context.options, "distill_epochs", default_epochs, minimum=1)
        plan = retrain_plan(context, epochs, "distillation", target_top1=recovery_target(baseline.tags))
        try:
            loaded_student = load_model(student_name)
        except ConfigError as error:
            raise ConfigError(
                "student", student_name, "a model name (see mlperf-track bench --model)", str(error)
            ) from error
        student = loaded_student.module
        assert context.data.num_classes is not None  # labelled_train checked it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(context.seed)
            replace_classifier(student, context.data.num_classes)
        settings = {
            "student": model_identity(loaded_student),  # its weights with the new head: the seed is in them
            "temperature": temperature,
            "alpha": alpha,
            "distill_epochs": epochs,
        }
        cache = variant_cache(self.name, baseline, context, settings)
        tags = cache.load(student)
        if tags is None:
            trained = self._train(
                student,
                baseline,
                context,
                plan=plan,
                student_name=student_name,
                temperature=temperature,
                alpha=alpha,
            )
            tags = cache.save(student, trained)
        artifact = derive(baseline, self.name, student.eval(), tags)
        artifact.name = f"{baseline.name}-distilled-{student_name}"
        return artifact

    def _train(
        self,
        student: nn.Module,
        baseline: ModelArtifact,
        context: VariantContext,
        *,
        plan: RetrainPlan,
        student_name: str,
        temperature: float,
        alpha: float,
    ) -> dict[str, str]:
        """Distill (a copy of) the baseline into ``student`` in place; returns the artifact tags of the run."""
        teacher = copy_module(baseline, self.name)
        student_params, teacher_params = count_params(student), count_params(teacher)
        smaller = student_params < teacher_params
        if not smaller:
            logger.warning(
                "distillation student %s (%d parameters) is not smaller than teacher %s (%d parameters)",
                student_name,
                student_params,
                baseline.name,
                teacher_params,
            )
        result = distill(
            student,
            teacher,
            plan.train,
            plan.config,
            device=context.device,
            temperature=temperature,
            alpha=alpha,
            holdout=plan.holdout,
            rule=plan.rule,
            fresh_head=True,  # replace_classifier above
        )
        return {
            "distill.student": student_name,
            "distill.teacher": baseline.name,
            "distill.student_params": str(student_params),
            "distill.teacher_params": str(teacher_params),
            "distill.student_smaller": str(smaller).lower(),
            "distill.temperature": f"{temperature:g}",
            "distill.alpha": f"{alpha:g}",
            "distill.epochs": str(result.epochs),
            "distill.train_s": f"{result.seconds:.2f}",
            **budget_tags(baseline.tags, result),
        }
