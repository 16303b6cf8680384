"""TAKD (Mirzadeh et al., AAAI 2020, "Improved Knowledge Distillation via Teacher Assistant"): a chain of KD hops."""

from trainables.methods.base import register_method
from trainables.methods.kd import KD


@register_method
class TAKD(KD):
    """Each model distils only from the model directly above it, so upper errors are passed down the chain."""

    name = "takd"
    order = 2
    uses_tas = True
