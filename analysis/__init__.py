"""Analysis of a kdstudy run: load its Parquet results, Pareto fronts, rankings, figures and the report.

Names are re-exported lazily so `import analysis` stays cheap (matplotlib loads only with the plots).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Run": "analysis.load",
    "load_run": "analysis.load",
    "successful": "analysis.load",
    "pareto_front": "analysis.pareto",
    "DEFAULT_FRONTS": "analysis.pareto",
    "rank_configurations": "analysis.ranking",
    "best_per_method": "analysis.ranking",
    "best_per_num_tas": "analysis.ranking",
    "best_config": "analysis.ranking",
    "confirmation_summary": "analysis.ranking",
    "pareto_plot": "analysis.plots",
    "method_comparison_plot": "analysis.plots",
    "learning_curves_plot": "analysis.plots",
    "write_report": "analysis.report",
    "avalanche_summary": "analysis.avalanche",
    "avalanche_plot": "analysis.avalanche",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
