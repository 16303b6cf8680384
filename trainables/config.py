"""The typed, frozen description of one KD chain; built from the flat dicts that Optuna, JSON and the CLI produce.

The chain's own settings are declared here, once each (`setting`: type, default, bounds or choices, help), and read
back as `CHAIN_SETTINGS`, from which the CLI's flags, the bounds checks and the README's table follow; the settings
of its KD method (T, α, an ensemble's weighting, …) are
declared by the method class (`trainables.methods`) and kept in `params`. In the flat form both sit side by side,
so a Parquet row, a JSON file or an Optuna trial holds one flat set of named values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from trainables.methods.params import Param, declared, setting
from trainables.models import INITS, parse_arch
from trainables.typed import InputError, coerce

__all__ = ["CHAIN_SETTINGS", "ChainConfig", "InputError", "KL_REDUCTIONS", "LR_SCHEDULES", "MAX_BATCH_SIZE",
           "MAX_WIDTH", "PRECISIONS"]

LR_SCHEDULES = ("constant", "cosine")
# "batchmean": the true KL per sample; "mean": the reference code's nn.KLDivLoss(), which also divides by C.
KL_REDUCTIONS = ("batchmean", "mean")
PRECISIONS = ("auto", "fp32", "bf16")
# Bounds on sizes that are always a typo: a plain10 at width 8 already has ~150M parameters.
MAX_WIDTH = 8.0
MAX_BATCH_SIZE = 2**16


@dataclass(frozen=True)
class ChainConfig:
    """One chain: teacher → TAs → student, the KD method and the training recipe (shared by every hop)."""

    dataset: str = setting("mnist5k", "mnist5k (embedded), digits, cifar10, cifar100, or any registered dataset")
    data_dir: str | None = setting(None, "folder with CIFAR files in torchvision's layout")
    val_size: float = setting(0.1, "validation hold-out, out of the training images: a fraction or a count")
    # Training images held out for what a method fits besides the hops (the learned ensemble's stacking weights):
    # a fraction or a count, like val_size; 0 = none. No hop trains on them, no selection or ranking reads them.
    fit_size: float = setting(0.0, "fit hold-out, out of the training images: a fraction or a count, 0 = none; "
                                   "weighting learned needs it (the ensemble's weights are fitted there)")
    train_size: int | None = setting(None, "train on a stratified subset of this many images", low=1)
    augment: bool = setting(False, "random crops and flips of the training images")

    teacher: str = setting("plain10", "teacher architecture, e.g. plain10 or resnet56")
    ta_depths: tuple[int, ...] = setting((), "TA depths top-down, comma-separated (e.g. 8,6,4 or plain8,plain6), in "
                                             "the teacher's family; may be empty", flag="tas")
    student: str = setting("plain2", "student architecture, e.g. plain2")
    width: float = setting(1.0, "channel width multiplier", low=0.0, low_open=True, high=MAX_WIDTH)
    init: str = setting("reference", "reference (as each family's reference code) or he (He-normal fan-out, no "
                                     "conv bias)", choices=INITS)

    method: str = setting("kd", "nokd, kd, takd, dgkd, ensemble, or any registered method")
    # The method's own settings, complete (defaults filled in) once constructed; see `trainables.methods`.
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    kl_reduction: str = setting("batchmean", "batchmean (the true KL per sample) or mean (the reference code's, "
                                             "divided by the class count)", choices=KL_REDUCTIONS)

    epochs: int = setting(10, "epochs per hop", low=1)
    # The fidelity successive halving promotes a chain along: every hop below the teacher trains this many epochs,
    # while the teacher (trained once, shared by every chain of a study) always trains `epochs`.
    lower_epochs: int = setting(0, "epochs of every hop below the teacher (successive halving's fidelity); "
                                   "0 = epochs", low=0)
    patience: int = setting(0, "epochs without a better validation accuracy that end a hop early; 0 = off", low=0)
    batch_size: int = setting(128, "images per batch", low=1, high=MAX_BATCH_SIZE)
    lr: float = setting(0.01, "SGD learning rate", low=0.0, low_open=True)
    lr_schedule: str = setting("constant", "constant, or cosine (annealed over each hop's epochs)",
                               choices=LR_SCHEDULES)
    momentum: float = setting(0.9, "SGD momentum", low=0.0, high=1.0, high_open=True)
    weight_decay: float = setting(1e-4, "SGD weight decay", low=0.0)
    seed: int = setting(0, "seed of the split, the initialisation and the batches", low=0)
    device: str = setting("auto", "auto, cpu or cuda[:N]")
    precision: str = setting("auto", "auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16", choices=PRECISIONS)
    cuda_graphs: bool = setting(True, "replay each training step as a CUDA graph (on CUDA; the CPU never does)")

    def __post_init__(self) -> None:
        # Normalise types so equal configs compare and hash equal however they were built (200 vs 200.0).
        for name, declared_setting in CHAIN_SETTINGS.items():
            object.__setattr__(self, name, coerce(name, declared_setting.kind, getattr(self, name)))
        object.__setattr__(self, "params", _method_params(self.method, self.params))
        _validate(self)

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> ChainConfig:
        """Typed config from a flat dict; unknown keys and ill-typed values are rejected naming the field.

        Settings of other methods than `flat["method"]` may appear as null (a Parquet row has a column for every
        method's settings); with a value they are an error."""
        from trainables.methods import all_params

        chain = {name: value for name, value in flat.items() if name in CHAIN_SETTINGS}
        rest = {name: value for name, value in flat.items() if name not in CHAIN_SETTINGS}
        known = sorted({*CHAIN_SETTINGS, *all_params()})
        for name in sorted(rest):
            _check(name in known, name, f"unknown config key; expected one of {', '.join(known)}")
        params = {name: value for name, value in rest.items() if value is not None}
        return cls(**chain, params=params)

    def to_flat(self) -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "params":
                flat.update(self.params)
            else:
                flat[f.name] = list(self.ta_depths) if f.name == "ta_depths" else getattr(self, f.name)
        return flat

    def replace(self, **changes: Any) -> ChainConfig:
        flat = self.to_flat()
        if "method" in changes and changes["method"] != self.method:
            flat = {k: v for k, v in flat.items() if k not in self.params}  # the old method's settings go
        return ChainConfig.from_flat({**flat, **changes})

    def param(self, name: str) -> Any:
        """A setting of the chain's method (e.g. "temperature"); KeyError when the method has no such setting."""
        return self.params[name]

    def hop_epochs(self, index: int) -> int:
        """The epochs hop `index` (0 = top) trains: the teacher `epochs`, every hop below it `lower_epochs` when set
        (a chain without a teacher, nokd's, has only hops below it)."""
        is_teacher = index == 0 and self.method_class.teachers != "none"
        return self.epochs if is_teacher or not self.lower_epochs else self.lower_epochs

    @property
    def method_class(self) -> type:
        from trainables.methods import method_class

        return method_class(self.method)

    @property
    def ta_archs(self) -> tuple[str, ...]:
        """TAs belong to the teacher's family; the search varies only their depths."""
        family, _ = _parse_arch("teacher", self.teacher)
        return tuple(f"{family}{depth}" for depth in self.ta_depths)

    @property
    def val_holdout(self) -> float | int:
        """`val_size` as the data loader reads it: a fraction below 1, a count when whole (1.5 stays invalid)."""
        return _holdout(self.val_size)

    @property
    def fit_holdout(self) -> float | int:
        """`fit_size` as the data loader reads it, as `val_holdout` (0 = no fit hold-out)."""
        return _holdout(self.fit_size)

    @property
    def archs(self) -> tuple[str, ...]:
        """Every model the chain trains, top to bottom."""
        if self.method_class.teachers == "none":
            return (self.student,)
        return (self.teacher, *self.ta_archs, self.student)

    # --- how reports name a configuration -----------------------------------------------------------------------

    @property
    def group(self) -> str:
        return self.method_class.group(self)

    @property
    def label(self) -> str:
        """A short human label, e.g. `takd 10→8→6→2 T=4.0 α=0.50`; seeds are left out so repeats share it."""
        method = self.method_class
        parts = [method.title(self), self.chain_label, *method.label_parts(self)]
        if self.width != 1.0:
            parts.append(f"w={self.width:g}")
        return " ".join(parts)

    @property
    def chain_label(self) -> str:
        """Depths joined by arrows; the family is named only when it is not the default plain CNN."""
        families = {_parse_arch("arch", arch)[0] for arch in self.archs}
        if families == {"plain"}:
            return "→".join(str(_parse_arch("arch", arch)[1]) for arch in self.archs)
        if len(families) == 1:
            family = families.pop()
            return family + "→".join(str(_parse_arch("arch", arch)[1]) for arch in self.archs)
        return "→".join(self.archs)


CHAIN_SETTINGS: dict[str, Param] = declared(ChainConfig, "chain")


def _holdout(size: float) -> float | int:
    return int(size) if size >= 1 and size.is_integer() else size


def _method_params(method: str, given: dict[str, Any]) -> dict[str, Any]:
    from trainables.methods import all_params, method_class, param_values

    cls = method_class(method)
    own = {p.name for p in cls.params}
    for name in sorted(set(given) - own):
        if name not in all_params():
            raise InputError(name, problem=f"unknown setting; method {method!r} takes "
                                           f"{', '.join(sorted(own)) or 'none'}")
        raise InputError(name, problem=f"not a setting of method {method!r} "
                                       f"(it takes {', '.join(p.name for p in cls.params) or 'none'})")
    return param_values(cls, given)


def _parse_arch(name: str, arch: str) -> tuple[str, int]:
    return parse_arch(arch, field=name)


def _check(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise InputError(name, problem=message)


def _validate(cfg: ChainConfig) -> None:
    _validate_data(cfg)
    _validate_chain(cfg)
    _validate_method(cfg)
    for name, declared_setting in CHAIN_SETTINGS.items():
        declared_setting.check(getattr(cfg, name))
    _check(cfg.device == "auto" or cfg.device == "cpu" or cfg.device.startswith("cuda"), "device",
           f"expected auto, cpu or cuda[:N], got {cfg.device!r}")


def _validate_data(cfg: ChainConfig) -> None:
    from trainables.data import available_datasets, check_holdout_size

    names = available_datasets()
    _check(cfg.dataset in names, "dataset", f"expected one of {', '.join(names)}, got {cfg.dataset!r}")
    check_holdout_size("val_size", cfg.val_holdout)
    check_holdout_size("fit_size", cfg.fit_holdout, optional=True)


def _validate_chain(cfg: ChainConfig) -> None:
    teacher_family, teacher_depth = _parse_arch("teacher", cfg.teacher)
    _, student_depth = _parse_arch("student", cfg.student)
    if cfg.method_class.teachers != "none":
        _check(teacher_depth > student_depth, "teacher",
               f"expected a model deeper than the student {cfg.student}, got {cfg.teacher}")
    depths = list(cfg.ta_depths)
    if not cfg.method_class.uses_tas:
        _check(not depths, "ta_depths", f"method {cfg.method!r} takes no TAs, got {depths}")
    _check(all(student_depth < d < teacher_depth for d in depths), "ta_depths",
           f"expected depths strictly between the student ({student_depth}) and the teacher ({teacher_depth}), "
           f"got {depths}")
    _check(all(a > b for a, b in zip(depths, depths[1:])), "ta_depths",
           f"expected strictly decreasing depths, got {depths}")
    for depth in depths:
        _parse_arch("ta_depths", f"{teacher_family}{depth}")


def _validate_method(cfg: ChainConfig) -> None:
    problem = cfg.method_class.check(cfg)
    if problem is not None:
        raise problem
    method = cfg.method_class
    _check(cfg.fit_size > 0 or not method.fits_on_fit_split(cfg.params), "fit_size",
           f"{method.title(cfg)} fits its weights on training images held out for it; expected a fraction in (0, 1) "
           f"or a count >= 1, got {cfg.fit_size:g}")
