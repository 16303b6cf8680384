"""No KD: the student learns from labels alone — the baseline every KD method must beat."""

from trainables.methods.base import LabelsOnly, register_method


@register_method
class NoKD(LabelsOnly):
    name = "nokd"
    order = 0
