"""A KD method = which upper models teach a hop × how their outputs are combined into one loss.

A method is one class in one file: besides its loss it declares everything the rest of the system derives from
the registry — its name, which models teach a hop, whether its chains have TAs, the settings it adds to a chain
(searched by the study, typed Parquet columns), what identifies a hop it trains, its label and group in reports,
and the names of its loss terms (epochs columns `loss_<term>`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from trainables.losses import soft_log_probs
from trainables.methods.params import ALPHA, Param, Value
from trainables.typed import InputError

if TYPE_CHECKING:
    from trainables.config import ChainConfig

TeacherSelection = Literal["none", "previous", "all_above"]


class KDMethod(ABC):
    """One hop's teaching. Teachers arrive as logits (K, B, C) in the order the hop's teacher list gives."""

    name: ClassVar[str]
    teachers: ClassVar[TeacherSelection]
    uses_tas: ClassVar[bool] = False  # True: chains run through TAs, and the study searches which
    params: ClassVar[tuple[Param, ...]] = ()
    loss_terms: ClassVar[tuple[str, ...]] = ("ce", "kd")
    order: ClassVar[int] = 100  # position in listings: baselines first, then the methods in the order they came

    def __init__(self, cfg: ChainConfig, num_teachers: int) -> None:
        self.cfg = cfg
        self.num_teachers = num_teachers

    # --- the chain ---------------------------------------------------------------------------------------------

    @classmethod
    def teacher_indices(cls, hop: int) -> list[int]:
        """Indices (into the chain, top first) of the models that teach hop `hop`."""
        if cls.teachers == "none" or hop == 0:
            return []
        return [hop - 1] if cls.teachers == "previous" else list(range(hop))

    @classmethod
    def teaching(cls, cfg: ChainConfig, num_teachers: int) -> KDMethod:
        """The loss a hop with `num_teachers` teachers trains with. With one teacher every distilling method
        reduces to plain KD, so it *is* plain KD: such hops are interchangeable (and shared through the model
        store) across methods. A method for which that is false overrides this."""
        if num_teachers == 0:
            return LabelsOnly(cfg, 0)
        if num_teachers == 1:
            return method_class("kd")(cfg, 1)
        return cls(cfg, num_teachers)

    @classmethod
    def check(cls, cfg: ChainConfig) -> InputError | None:
        """A problem with `cfg` that single params cannot see (e.g. more teachers dropped than exist), or None."""
        return None

    def identity(self) -> dict[str, Any]:
        """What, besides the architecture, data, recipe and teachers, shapes the weights of a hop taught this
        way; equal identities share stored weights. By default: the method's name and all of its settings, except
        at α = 0, where the distillation term is multiplied by zero and what only shapes it (`distillation_only`
        settings, `kl_reduction`) cannot change the weights."""
        distils = not (ALPHA in self.params and self.cfg.param(ALPHA.name) == 0)
        settings = {p.name: self.cfg.param(p.name) for p in self.params if distils or not p.distillation_only}
        return {"kind": self.name, **settings, **({"kl_reduction": self.cfg.kl_reduction} if distils else {})}

    # --- training ----------------------------------------------------------------------------------------------

    @classmethod
    def fits_on_fit_split(cls, params: Mapping[str, Any]) -> bool:
        """Whether a hop taught this way, with these settings of the method, calls `fit` before it trains: then the
        chain needs a fit hold-out (`fit_size` > 0), and each teacher forwards it once."""
        return False

    def fit(self, teacher_logits: Tensor, targets: Tensor) -> None:
        """Prepares on the fit split (training images no hop trains on, and that neither select epochs nor rank
        configurations) before the hop trains; most methods need nothing."""

    def active_teachers(self, generator: torch.Generator) -> list[int]:
        """Which teachers take part in the next mini-batch (all, except for stochastic methods); drawn on the host
        from the hop's generator, and handed to `loss` as a 0/1 mask, so that the step has no control flow."""
        return list(range(self.num_teachers))

    def mean_active_teachers(self) -> float:
        """How many teachers `active_teachers` draws on average: what a planned cost counts per batch."""
        return float(self.num_teachers)

    def teacher_targets(self, teacher_logits: Tensor, targets: Tensor) -> Tensor:
        """What `loss` learns from, made of the teachers' logits (K, N, C) and the samples' labels (N,): (R, N, C),
        by default one row per teacher, its log-probabilities at T. A sample's rows must depend on that sample alone:
        where the teachers' outputs are cached, a hop computes them once for the whole training split and each step
        gathers its batch's rows (softening the teachers again at every step would cost as much as the student's
        own loss)."""
        return soft_log_probs(teacher_logits, self.cfg.param("temperature"))

    @abstractmethod
    def loss(self, student_logits: Tensor, teachers: Tensor, targets: Tensor, active: Tensor) -> dict[str, Tensor]:
        """Named loss terms (`loss_terms`) whose sum is minimised. `teachers`: the batch's rows (R, B, C) of
        `teacher_targets`; `active`: (K,) 1.0 for the teachers this mini-batch learns from, 0.0 for those
        `active_teachers` left out (methods that leave none out may ignore it)."""

    def kl_terms(self, active: int) -> int:
        """KL terms one step computes with `active` teachers: one for a single (pseudo-)teacher."""
        return 1

    def learned_weights(self) -> list[float] | None:
        return None

    # --- reports -----------------------------------------------------------------------------------------------

    @classmethod
    def title(cls, cfg: ChainConfig) -> str:
        """How a configuration's label starts: the method's name, plus settings worth reading first."""
        return cls.name

    @classmethod
    def group(cls, cfg: ChainConfig) -> str:
        """The comparison group of reports and plots: the method, unless a setting makes a different method."""
        return cls.name

    @classmethod
    def label_parts(cls, cfg: ChainConfig) -> list[str]:
        return [text for p in cls.params if (text := p.format(cfg.param(p.name))) is not None]


class LabelsOnly(KDMethod):
    """Cross-entropy on the true labels: how the teacher, and the `nokd` student, learn."""

    name = "labels"
    teachers = "none"
    loss_terms = ("ce",)

    def identity(self) -> dict[str, Any]:
        return {"kind": "labels"}

    def loss(self, student_logits: Tensor, teachers: Tensor, targets: Tensor, active: Tensor) -> dict[str, Tensor]:
        return {"ce": F.cross_entropy(student_logits.float(), targets)}

    def kl_terms(self, active: int) -> int:
        return 0


_METHODS: dict[str, type[KDMethod]] = {}


def register_method(cls: type[KDMethod]) -> type[KDMethod]:
    """Class decorator: makes `cls` available under `cls.name` everywhere (config, search, study, reports)."""
    existing = _METHODS.get(cls.name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"method: {cls.name!r} is already registered by {existing.__module__}")
    _METHODS[cls.name] = cls
    return cls


def unregister_method(name: str) -> None:
    _METHODS.pop(name, None)


def method_class(name: str) -> type[KDMethod]:
    try:
        return _METHODS[name]
    except KeyError:
        raise InputError("method", f"one of {', '.join(method_names())}", name) from None


def method_names() -> tuple[str, ...]:
    """Registered methods, by `order`, then name."""
    return tuple(sorted(_METHODS, key=lambda name: (_METHODS[name].order, name)))


def all_params() -> dict[str, Param]:
    """Every registered method's settings by name; methods that share a setting (T, α) declare the same Param."""
    found: dict[str, Param] = {}
    for cls in map(method_class, method_names()):
        for param in cls.params:
            if found.setdefault(param.name, param) != param:
                raise ValueError(f"{param.name}: declared differently by two methods ({cls.name} and another)")
    return found


def all_loss_terms() -> tuple[str, ...]:
    terms: dict[str, None] = dict.fromkeys(LabelsOnly.loss_terms)
    for cls in map(method_class, method_names()):
        terms.update(dict.fromkeys(cls.loss_terms))
    return tuple(terms)


def param_values(cls: type[KDMethod], given: dict[str, Any]) -> dict[str, Value]:
    """The method's settings from `given` (missing ones at their default), each checked."""
    return {p.name: p.coerce(given[p.name]) if p.name in given else p.default for p in cls.params}

