"""The experiment schema. One YAML file (plus `key=value` overrides) declares a whole run.

Every section forbids unknown keys, so a typo is an error that names the key. Options of pluggable
parts (a task's, an optimizer's) are validated against the schema that part declares. Reading files and
overrides, the error line and the schedule warnings: iclab/config_files.py.

Length: the whole schema stays in one file, section after section, so a reader sees every key and its
description in one place (docs/reference/config.md is generated from it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from iclab.config_files import (
    ConfigError,
    apply_overrides,
    format_validation_error,
    read_yaml,
    warn_schedule,
)
from iclab.registry import BASELINES, MODELS, OPTIMIZERS, SHAPES, TASKS

PositiveInt = Field(gt=0)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskConfig(Strict):
    name: str = Field(
        "linear_regression", description="the task (`iclab list tasks`): a function class or a token workload"
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v):
        TASKS.get(v)
        return v

    n_dims: int = Field(20, gt=0, description="regression: input dimension d (the model's x width)")
    n_points: int = Field(41, gt=0, description="regression: in-context points per training prompt (incl. the query)")
    seq_len: int | None = Field(
        None,
        gt=0,
        description="token workloads: the length a sequence task trains at (the "
        "LM's context, the numbers to sort); default: the task's own",
    )
    options: dict[str, Any] = Field(default_factory=dict, validate_default=True, description="task-specific options")

    @field_validator("options")
    @classmethod
    def _check_options(cls, v, info: ValidationInfo):
        if "name" not in info.data:
            return v
        task_cls = TASKS.get(info.data["name"])
        opts = task_cls.Options(**v)
        if "n_dims" in info.data:
            task_cls.check(opts, info.data["n_dims"])
        return opts.model_dump(mode="json")

    @property
    def family(self) -> str:
        """regression (function classes, prompts of (x, y) points) or sequence (token workloads)."""
        return TASKS.get(self.name).family


class AttentionConfig(Strict):
    """model.attention: the attention of every block (iclab/models/attention.py explains each option).

    causal: GPT-2's causal self-attention (the default). reflex (seed 002): a layer splits its heads between
    self-attention and cross heads that read the K/V of earlier layers; give `allocation` (heads for self,
    layer i-1, layer i-2, ...; or one such list per layer) or `all_layers: true` (one head per earlier layer)."""

    name: Literal["causal", "reflex"] = Field(
        "causal",
        description="causal self-attention, or Reflex (heads split between the current layer and earlier layers' K/V)",
    )
    allocation: list[int] | list[list[int]] | None = Field(
        None,
        description="reflex: heads per source [self, i-1, i-2, ...] for every layer (a layer lacking a source "
        "gives its heads to self), or a list of such lists, one per layer",
    )
    all_layers: bool = Field(
        False, description="reflex: layer i gives one head to each earlier layer, the rest to self"
    )
    kv_source: Literal["reuse", "reproject"] = Field(
        "reuse",
        description="reuse: a cross head takes the K/V the earlier layer computed for its head index (seed); "
        "reproject: this layer's K/V weights applied to the earlier layer's attention input",
    )
    combine: Literal["fixed", "linear"] = Field(
        "fixed",
        description="linear: each cross head's K/V is a learned combination over the previous k layers' K/V "
        "(k = the allocation's sources), initialized one-hot on the head's allocated layer",
    )
    top_k: int | None = Field(
        None,
        gt=0,
        description="reflex: the k cross-head groups read the k earlier layers of "
        "highest learned score (straight-through gradient on softmax(scores))",
    )

    @model_validator(mode="after")
    def _check(self):
        if self.name == "causal":
            extra = [
                k
                for k in ("allocation", "all_layers", "kv_source", "combine", "top_k")
                if getattr(self, k) != AttentionConfig.model_fields[k].default
            ]
            if extra:
                raise ValueError(f"model.attention: {', '.join(extra)}: reflex-only option(s); set name: reflex")
            return self
        if (self.allocation is None) == (not self.all_layers):
            raise ValueError("model.attention (reflex): give either allocation or all_layers: true, exactly one")
        if self.top_k is not None:
            if self.all_layers or self.allocation is None or isinstance(self.allocation[0], list):
                raise ValueError(
                    "model.attention: top_k needs one uniform allocation [self, g_1, ..., g_k] (group r "
                    "reads the r-th best-scoring earlier layer); not all_layers or per-layer lists"
                )
            if len(self.allocation) - 1 != self.top_k:
                raise ValueError(
                    f"model.attention: top_k={self.top_k} needs {self.top_k} cross-head groups after the "
                    f"self heads, allocation {self.allocation} has {len(self.allocation) - 1}"
                )
            if self.combine != "fixed":
                raise ValueError("model.attention: top_k and combine: linear are alternatives; use one")
        return self


class ModelConfig(Strict):
    name: str = Field("gpt2", description="the model family (`iclab list models`)")

    @field_validator("name")
    @classmethod
    def _known(cls, v):
        MODELS.get(v)
        return v

    n_embd: int = Field(256, gt=0, description="model width")
    n_layer: int = Field(
        12,
        gt=0,
        validation_alias=AliasChoices("n_layer", "layers_per_loop"),
        description="distinct blocks; in a looped model, the blocks of one loop iteration",
    )
    n_head: int = Field(8, gt=0, description="attention heads per block (n_embd must divide by it)")
    n_positions: int = Field(256, gt=0, description="max tokens (2 per point) the position table holds")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="dropout after attention, MLP and embeddings (training only)"
    )
    loops: int = Field(1, gt=0, description="b: how many times the block group is applied")
    loop_window: int | None = Field(None, gt=0, description="T: loss averages the last T iterations (default b)")
    loop_loss: Literal["mean", "last"] = Field(
        "mean",
        description="mean: the loss averages the predictions of the last T iterations (Yang et al.); last: "
        "only the final iteration's prediction counts, the gradient still flows through the last T iterations",
    )
    injection: Literal["add", "mul", "none"] = Field(
        "add", description="looped models: input injection, h_{t+1} = f(h_t + e) (add) or f(h_t * e) (mul)"
    )
    pos_embedding: Literal["every_loop", "once"] = Field(
        "every_loop",
        description="looped models: add the position embedding at every loop iteration or once before the first",
    )
    final_norm: Literal["every_loop", "once"] = Field(
        "every_loop",
        description="looped models: the final layer norm after every iteration (read-out of each) or once "
        "after the last",
    )
    drop_tokens: int = Field(
        0, ge=0, description="d: iteration t (0-based) sees only the last max(2n - t*d, min_tokens) tokens"
    )
    min_tokens: int = Field(2, ge=2, description="k: never drop below this many tokens (>= 2, so the query's x stays)")
    drop_positions: Literal["original", "restart"] = Field(
        "original",
        description="position ids of the kept tokens: their ids in the full prompt, or 0..L-1 (seed 000's code)",
    )
    io_init: Literal["torch", "gpt2"] = Field(
        "torch",
        description="init of read-in and read-out: torch = nn.Linear's default, uniform(+-1/sqrt(fan_in)), as in "
        "Garg et al.'s and Yang et al.'s code (their read-in/out sit outside the GPT-2 backbone); "
        "gpt2 = N(0, 0.02) like the blocks. The larger read-in leaves the ICL plateau several times sooner "
        "(see README)",
    )
    read_in_std: float | None = Field(
        None,
        gt=0,
        description="if set, the read-in weights are drawn from N(0, read_in_std^2) instead (its bias per "
        "io_init): a larger read-in leaves the plateau sooner and more reliably across seeds",
    )
    activation: Literal["gelu_tanh", "gelu", "relu"] = Field(
        "gelu_tanh", description="MLP nonlinearity: gelu_tanh is GPT-2's; gelu (erf) and relu are cheaper on the CPU"
    )
    attention: AttentionConfig = Field(default_factory=AttentionConfig, description="causal (default) or reflex")

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data):
        if isinstance(data, dict) and "n_layer" in data and "layers_per_loop" in data:
            raise ValueError(
                "n_layer and layers_per_loop are one setting (the blocks of one loop iteration); give only one"
            )
        return data

    @model_validator(mode="after")
    def _check(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if self.loop_window is not None and self.loop_window > self.loops:
            raise ValueError(f"loop_window (T={self.loop_window}) must not exceed loops (b={self.loops})")
        if self.attention.name == "reflex":  # models/reflex_plan.py: raises ValueError on a scheme the shape can't hold
            MODELS.check("reflex_plan")(self.attention, self.n_layer, self.n_head)
        return self

    @property
    def window(self) -> int:
        return self.loop_window or self.loops


class OptimizerConfig(Strict):
    name: str = Field("adam", description="the optimizer (`iclab list optimizers`)")

    @field_validator("name")
    @classmethod
    def _known(cls, v):
        OPTIMIZERS.get(v)
        return v

    options: dict[str, Any] = Field(
        default_factory=dict, validate_default=True, description="optimizer-specific options"
    )
    impl: Literal["auto", "fused", "foreach", "for_loop"] = Field(
        "auto",
        description="torch implementation: auto = fused where the optimizer has one (fastest measured, "
        "CPU and CUDA), else foreach on CUDA and for_loop on the CPU",
    )

    @field_validator("options")
    @classmethod
    def _check_options(cls, v, info: ValidationInfo):
        if "name" not in info.data:
            return v
        return OPTIMIZERS.get(info.data["name"]).Options(**v).model_dump(mode="json")

    @model_validator(mode="after")
    def _check_impl(self):
        if self.impl == "fused" and not OPTIMIZERS.get(self.name).fused:
            raise ValueError(f"optimizer {self.name!r} has no fused implementation; use impl auto, foreach or for_loop")
        return self


class ScheduleConfig(Strict):
    """How one quantity (dims, points or loops) grows during training.

    shape=step is Garg et al.'s: start + inc * (step // interval), capped at end. Other shapes (linear,
    sqrt, log, cos) give the fraction of the (end - start) / inc levels reached at a step; the value is
    rounded down to start + a multiple of inc. See iclab/training/curriculum.py for each shape's definition.
    """

    shape: str = Field("step", description="how the value grows (`iclab list curricula`): step, linear, sqrt, log, cos")
    start: int = Field(gt=0, description="the value at step 0")
    end: int = Field(gt=0, description="the final value (reached and held)")
    inc: int = Field(1, gt=0, description="the size of one level: values are start + a multiple of inc")
    interval: int = Field(
        2000, gt=0, description="step: steps per level; log: hold time of the first level; cos: period"
    )
    duration: int | None = Field(
        None, gt=0, description="linear, sqrt: the steps over which the values rise (default: training.steps)"
    )
    base: float = Field(2.0, gt=1.0, description="log: each level is held `base` times longer than the one before")

    @model_validator(mode="after")
    def _check(self):
        SHAPES.get(self.shape)
        if self.start > self.end:
            raise ValueError(f"start={self.start} is larger than end={self.end}")
        return self


class CurriculumConfig(Strict):
    dims: ScheduleConfig | None = None
    points: ScheduleConfig | None = None
    loops: ScheduleConfig | None = None
    seq_len: ScheduleConfig | None = Field(None, description="token workloads: the sequence length (task.seq_len)")


class TrainingConfig(Strict):
    steps: int = Field(500_000, gt=0, description="training steps (optimizer updates)")
    batch_size: int = Field(
        64, gt=0, description="prompts or sequences per step (the global batch, split over data-parallel ranks)"
    )
    lr: float = Field(1e-4, gt=0, description="peak learning rate (the schedule multiplies it)")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: Literal["constant", "warmup_cosine", "warmup_stable_decay", "linear_decay", "inverse_sqrt"] = Field(
        "constant",
        description="lr factor: constant; warmup_cosine: linear warmup, cosine to min_lr_ratio at the last "
        "step; warmup_stable_decay: linear warmup, constant, then linear to min_lr_ratio over the last decay_fraction "
        "of the steps; linear_decay: linear warmup, then linear to min_lr_ratio at the last step; inverse_sqrt: linear "
        "warmup, then sqrt(warmup_steps / (step + 1)), floored at min_lr_ratio (iclab/training/optim/schedules.py)",
    )
    warmup_steps: int = Field(0, ge=0, description="linear warmup steps of every schedule but constant")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="the lr factor a decaying schedule ends at")
    decay_fraction: float = Field(
        0.2, gt=0.0, le=1.0, description="warmup_stable_decay: share of the steps spent decaying"
    )
    grad_clip: float | None = Field(1.0, gt=0, description="clip the total gradient norm to this (null: no clipping)")
    device: str = Field("auto", description="auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps")
    compile: bool = Field(False, description="torch.compile the model (see compile_scope)")
    compile_scope: Literal["blocks", "model"] = Field(
        "blocks",
        description="blocks: compile each transformer block (one graph reused by every layer and loop "
        "iteration, shapes marked dynamic, so loop/points curricula and token dropping recompile a bounded number "
        "of times); model: the whole forward with the loop unrolled, static shapes (recompiles for each number of "
        "loops and prompt length; after torch._dynamo.config.recompile_limit=8 of them, falls back to eager)",
    )
    threads: int | None = Field(
        None,
        gt=0,
        description="torch CPU threads (torch.set_num_threads); default: torch's, "
        "one per core. 1 is faster for small models and on a CPU shared with other jobs",
    )
    fsdp: bool = Field(
        False,
        description="data parallel (torchrun / --nproc): shard parameters, gradients and optimizer "
        "state over the ranks with FSDP2 (fully_shard per block, then the root) instead of DDP's full copy "
        "per rank, for models that do not fit one device; no effect in a single process",
    )
    dtype: Literal["auto", "float32", "bfloat16", "bfloat16_where_native"] = Field(
        "auto",
        description="bfloat16: autocast matmuls to bf16 (CUDA, or a CPU with AVX512-BF16/AMX; the read-out and "
        "loss stay fp32; refused elsewhere); auto = bfloat16 on a CUDA device that supports it, float32 elsewhere "
        "(also on the CPU); bfloat16_where_native = bfloat16 wherever the device runs it natively (such a CUDA "
        "device or CPU), float32 elsewhere: for configs that should run fast on any machine (wide models)",
    )
    init_from: str | None = Field(
        None,
        description="fine-tuning: a run directory (its model.safetensors) or an iclab weights file whose weights "
        "initialize the model; the architecture and the vocabulary (token workloads) must match",
    )
    nonfinite: Literal["stop", "skip"] = Field(
        "stop",
        description="a non-finite loss or gradient: stop (keep the last good checkpoint) or skip the step "
        "(checks every step)",
    )
    max_skipped_steps: int = Field(10, ge=0, description="with nonfinite=skip: stop after this many bad steps")

    @model_validator(mode="after")
    def _schedule_free(self):
        if OPTIMIZERS.get(self.optimizer.name).schedule_free:
            if self.schedule != "constant":
                raise ValueError(
                    f"schedule={self.schedule}: optimizer {self.optimizer.name} is schedule-free and "
                    "replaces the LR schedule; use schedule constant"
                )
            if self.warmup_steps:
                raise ValueError(
                    f"warmup_steps={self.warmup_steps} is not used by schedule constant; optimizer "
                    f"{self.optimizer.name} warms up itself: set training.optimizer.options.warmup_steps"
                )
        return self


class EvalConfig(Strict):
    n_prompts: int = Field(1000, gt=0, description="regression: prompts the evaluation averages over")
    n_points: int | None = Field(None, gt=0, description="prompt length at evaluation (default: task.n_points)")
    batch_size: int = Field(500, gt=0, description="prompts per evaluation batch")
    seed: int = Field(
        12345,
        ge=0,
        lt=2**63,
        description="seed of the evaluation prompts (the same for every run: runs are compared on the same data)",
    )
    loops: int | None = Field(None, gt=0, description="loop iterations at evaluation (default: model.loops)")
    max_loops: int | None = Field(
        None,
        gt=0,
        description="looped models: error vs loops is drawn for 1..max_loops "
        "(default: max(2 * model.loops, eval loops))",
    )
    baselines: list[str | dict[str, Any]] | None = Field(
        None,
        description="names, or mappings {name, options, label} (options checked against the baseline's own); "
        "default: the task's default_baselines that are available",
    )

    @field_validator("baselines", mode="before")
    @classmethod
    def _check_baselines(cls, v):
        if v is None:
            return v
        if not isinstance(v, list):
            raise ValueError(f"must be a list of baseline names or mappings, not {v!r}")
        return BASELINES.check("entries")(v)  # evaluation/baselines: each entry's options, unique labels


class LoggingConfig(Strict):
    log_every: int = Field(
        100, gt=0, description="steps between metrics.jsonl records (the only host syncs of training)"
    )
    ckpt_every: int = Field(1000, gt=0, description="steps between checkpoints")
    keep_last: int = Field(2, gt=0, description="recent checkpoints kept besides milestones")
    milestone_every: int | None = Field(None, gt=0, description="checkpoints at multiples of this are kept forever")
    val_examples: int = Field(
        0,
        ge=0,
        description="regression and sorting: at every log step, the validation metric on "
        "this many fixed fresh prompts/sequences (val/error; val/exact_match, val/token_accuracy, "
        "val/loss); 0: none (the LM's is task.options.log_val_windows, modular arithmetic "
        "and classification log their whole held-out set)",
    )
    tensorboard: bool = Field(True, description="write TensorBoard event files into RUN_DIR/tensorboard")
    wandb: bool = Field(False, description="log to Weights & Biases too (pip install 'iclab[wandb]')")
    wandb_project: str = Field("iclab", description="the W&B project")
    progress: bool = Field(True, description="show a progress bar while training")


class Config(Strict):
    seed: int = Field(0, ge=0, lt=2**63, description="seeds the model init and the data of every step")
    init_seed: int | None = Field(
        None,
        ge=0,
        lt=2**63,
        description="if set, seeds the model init (and dropout) instead of `seed`, which then seeds "
        "only the data: separates what the initialization decides from what the data order decides",
    )
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _cross_checks(self):
        t, m, c = self.task, self.model, self.curriculum
        if c.loops is not None and c.loops.end > m.loops:
            raise ValueError(f"curriculum.loops.end={c.loops.end} exceeds model.loops={m.loops}")
        if c.loops is not None and c.loops.start < m.window:
            raise ValueError(f"curriculum.loops.start={c.loops.start} is below model.loop_window={m.window}")
        if self.training.warmup_steps > self.training.steps:
            raise ValueError(
                f"training.warmup_steps={self.training.warmup_steps} exceeds training.steps={self.training.steps}"
            )
        warn_schedule(self.training)
        TASKS.get(t.name).check_config(self)  # the workload family's own checks (lengths, positions, baselines)
        return self


def validate(data: dict, source: str = "") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source, Config)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    return validate(data, str(path) if path else "<defaults>")


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
