"""Figures of a study: cost/accuracy Pareto fronts, the method comparison and the error avalanche.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas rather than pyplot, so nothing here
touches pyplot's global state or the backend a notebook or a test has chosen, and nothing leaks.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.avalanche import TEACHER_KEY_CHARS
from analysis.load import is_missing, ordered_groups, sort_by_group, successful
from analysis.pareto import Direction, pareto_front
from analysis.paired import confirmed_per_group
from analysis.ranking import best_per_method

DPI = 120

# Fixed colours so a method group looks the same in every figure of every run.
GROUP_COLOURS: dict[str, str] = {
    "nokd": "#7f7f7f", "kd": "#1f77b4", "takd": "#ff7f0e", "dgkd": "#2ca02c",
    "ensemble-mean": "#d62728", "ensemble-learned": "#9467bd", "ensemble-confidence": "#8c564b",
}
# A group no built-in method reports (a method added later) takes one of these, none a built-in group's: its own
# colour, the same in every figure of every run, whichever other groups the run has (so not its position among them).
NEW_GROUP_COLOURS: tuple[str, ...] = (
    "#17becf", "#e377c2", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
    "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194",
)
TA_MARKERS: dict[int, str] = {0: "o", 1: "s", 2: "^", 3: "D", 4: "v", 5: "P", 6: "X"}
_OTHER_MARKER = "*"

AXIS_LABELS: dict[str, str] = {
    "train_flops": "chain training FLOPs from scratch (teachers' outputs cached)",
    "reference_flops": "chain training FLOPs from scratch (every upper model forwarded on every batch)",
    "train_seconds": "chain training time from scratch (s)",
    "spent_flops": "FLOPs this trial computed (reused hops: 0)",
    "spent_seconds": "seconds this trial trained (reused hops: 0)",
    "wait_seconds": "seconds waiting for hops other trials trained",
    "student_params": "student parameters",
    "student_flops": "student inference FLOPs per sample",
    "student_val_acc": "student validation accuracy (%)",
    "student_test_acc": "student test accuracy (%)",
    "num_tas": "number of teacher assistants",
}


def pareto_plot(trials: pd.DataFrame, x: str, y: str, x_dir: Direction, y_dir: Direction,
                path: str | Path) -> Path:
    """Every successful trial (colour: method group, marker: number of TAs) with the front as a step line."""
    ok = successful(trials).dropna(subset=[x, y])
    fig, ax = new_figure((9.5, 5.5))
    # drawn in report order, so where points overlap a group lies above the same groups in every figure
    ordered = sort_by_group(ok)
    for (group, num_tas), part in ordered.groupby(["group", "num_tas"], sort=False):
        ax.scatter(_values(part, x), _values(part, y), s=42, alpha=0.8, color=group_colour(group),
                   marker=ta_marker(num_tas), edgecolors="white", linewidths=0.5, zorder=2)
    front = ok[pareto_front(ok, x, y, x_dir, y_dir)].sort_values([x, y])
    front_x, front_y = _values(front, x), _values(front, y)
    # A minimised x is reached from the left, so the staircase steps after each point; a maximised one before.
    ax.step(front_x, front_y, where="post" if x_dir == "min" else "pre", color="black", linewidth=1.2,
            alpha=0.7, zorder=1)
    ax.scatter(front_x, front_y, s=170, facecolors="none", edgecolors="black", linewidths=1.4, zorder=3)
    if _wants_log(ok, x):
        ax.set_xscale("log")
    ax.set_xlabel(axis_label(x, x_dir))
    ax.set_ylabel(axis_label(y, y_dir))
    ax.set_title(f"{axis_label(y)} vs {axis_label(x)}\n"
                 f"{len(ok)} successful trials, {len(front)} on the Pareto front", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    _pareto_legends(fig, ok)
    return save_figure(fig, path)


def method_comparison_plot(trials: pd.DataFrame, confirm: pd.DataFrame | None, path: str | Path) -> Path:
    """Per method group: the best trial's val and test accuracy (one seed) and, where the group is confirmed, its
    confirmed configuration's mean test accuracy over the new seeds with a 95 % CI (`analysis.paired`'s rule).

    Each bar names its configuration inside it, as the confirmed configuration of a group need not be its best
    trial's. A configuration confirmed on a single seed has no interval: it is drawn as a hollow point, not a bar.
    """
    best = best_per_method(trials)
    confirmed = confirmed_per_group(confirm).set_index("group").reindex(best["group"])
    has_confirm = confirmed["source_trial_id"].notna().any()
    fig, ax = new_figure((max(7.0, 1.3 * len(best) + 3), 7.0))  # tall enough for the labels inside the bars
    positions = np.arange(len(best))
    bars = 3 if has_confirm else 2
    width = 0.8 / bars
    offsets = [(i - (bars - 1) / 2) * width for i in range(bars)]
    val, test = 100 * best["student_val_acc"].to_numpy(float), 100 * best["student_test_acc"].to_numpy(float)
    handles = [ax.bar(positions + offsets[0], val, width, label="best trial: validation (1 seed)", color="#4c72b0"),
               ax.bar(positions + offsets[1], test, width, label="best trial: test (1 seed)", color="#dd8452")]
    heights, errors = [val, test], [None, None]
    if has_confirm:
        mean = 100 * confirmed["test_acc_mean"].to_numpy(float)
        half = 100 * confirmed["test_acc_ci95"].to_numpy(float)  # NaN below 2 seeds
        with_ci = np.isfinite(half)
        if with_ci.any():
            handles.append(ax.bar(positions[with_ci] + offsets[2], mean[with_ci], width, yerr=half[with_ci],
                                  capsize=4, error_kw={"elinewidth": 1.2}, color="#55a868",
                                  label="confirmed: mean test, 95 % CI (≥ 2 seeds)"))
        single = ~with_ci & np.isfinite(mean)
        if single.any():
            handles.append(ax.scatter(positions[single] + offsets[2], mean[single], s=60, marker="o",
                                      facecolors="none", edgecolors="#55a868", linewidths=2, zorder=3,
                                      label="confirmed: test on 1 seed (no interval)"))
        heights.append(mean)
        errors.append(np.where(with_ci, half, 0))
    _zoom_to_bars(ax, heights, errors)
    _name_bars(ax, positions + offsets[0], best["config_label"].tolist())
    if has_confirm:
        named = [None if is_missing(label) else f"{label} ({int(n)} seed{'s' * (n != 1)})"
                 for label, n in zip(confirmed["config_label"], confirmed["n_seeds"])]
        _name_bars(ax, positions + offsets[2], named)
    # "ensemble-confidence" is wider than a bar group: break it at the dash.
    ax.set_xticks(positions, [g.replace("-", "\n") for g in best["group"]])
    ax.set_ylabel("student accuracy (%)")
    ax.set_title("Best configuration per method group" + (" and its confirmed configuration" if has_confirm else ""),
                 fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return save_figure(fig, path)


def _name_bars(ax: Axes, x: np.ndarray, labels: list[str | None]) -> None:
    """Each label upright at the foot of its bar (x in data, y in axes units: the foot stays in view whatever the
    zoom); the best trial's label sits on its validation bar and covers the test bar beside it."""
    for position, label in zip(x, labels):
        if label:
            ax.text(position, 0.02, label, transform=ax.get_xaxis_transform(), rotation=90, ha="center",
                    va="bottom", fontsize=6.5, color="black", clip_on=True)


AVALANCHE_TITLE = "Error avalanche: share of the teacher's test errors repeated down the chain"
# Horizontal distance between the groups' points at one chain position: chains that reuse the same teacher or
# TA hops have identical values there, and undodged the last group drawn would hide all the others.
DODGE = 0.06


def _plot_positions(curve: pd.DataFrame, last_position: int) -> np.ndarray:
    # students share the right-most column so chains with fewer TAs stay comparable at the end that matters
    return np.where(curve["role"].to_numpy() == "student", last_position, curve["hop"].to_numpy())


CONTROL_COLOUR = GROUP_COLOURS["nokd"]
# where the controls sit right of the students' column: clear of the dodged students, still in "student"
_CONTROL_OFFSET = 0.3


def avalanche_plot(summary_curve_df: pd.DataFrame, path: str | Path, pairs: pd.DataFrame | None = None) -> Path:
    """Line plot of teacher_error_carried (%) along the chain per method group, baselines dashed; saves a PNG.

    With `pairs` (`analysis.avalanche.student_pairs`): the students' intervals as error bars, the nokd controls
    beside them, and a second panel of the same-class share of every row with its interval.
    """
    with_pairs = pairs is not None and not pairs.empty
    fig = Figure(figsize=(14, 5) if with_pairs else (10, 5))
    FigureCanvasAgg(fig)
    if with_pairs:
        ax, share_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1], "wspace": 0.4})  # room for labels
    else:
        ax, share_ax = fig.add_subplot(), None
    groups, last_position = _avalanche_curves(ax, summary_curve_df)
    if with_pairs:
        _student_intervals(ax, pairs, groups, last_position)
        _same_class_panel(share_ax, pairs)
    if groups:
        # one entry per group plus a line-style key, outside the axes: inside it hides the lines it explains
        handles, labels = ax.get_legend_handles_labels()
        handles += [Line2D([], [], color="black", marker="o"), Line2D([], [], color="black", linestyle="--")]
        labels += ["wrong where the teacher is wrong", "wrong where the teacher is right"]
        if with_pairs:
            handles.append(Line2D([], [], color=CONTROL_COLOUR, marker="D", linestyle=""))
            labels.append("nokd control of the same teacher\n(filled: teacher wrong, open: right)")
        # right of the right-most panel: inside an axes it would hide what it explains
        (share_ax or ax).legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, path)


def _avalanche_curves(ax: Axes, summary_curve_df: pd.DataFrame) -> tuple[list[str], int]:
    """The teacher-error curves of `avalanche_plot`; returns the groups drawn, in order, and the students' x."""
    empty = summary_curve_df.empty
    max_tas = 0 if empty else int((summary_curve_df.groupby("group")["hop"].max() - 1).clip(lower=0).max())
    last_position = max_tas + 1
    groups = [] if empty else ordered_groups(summary_curve_df["group"])
    for i, group in enumerate(groups):
        curve = summary_curve_df[summary_curve_df["group"] == group].sort_values("hop")
        x = _plot_positions(curve, last_position) + _dodge(i, len(groups))
        colour = group_colour(group)  # the same colour as in the Pareto and method figures
        ax.plot(x, 100 * curve["teacher_error_carried"], marker="o", color=colour, label=group)
        ax.plot(x, 100 * curve["baseline"], marker=".", linestyle="--", color=colour)
    ax.set_xticks(range(last_position + 1))
    ax.set_xticklabels(["teacher", *(f"TA{k}" for k in range(1, max_tas + 1)), "student"])
    ax.set_xlabel("position along the chain (students aligned at the right)")
    ax.set_ylabel("test samples wrong (%)")
    # shares: the teacher's own point is 100 % carried / 0 % baseline by definition; the margin keeps those
    # markers whole instead of cut in half by the frame
    ax.set_ylim(-3, 103)
    ax.set_title(AVALANCHE_TITLE, fontsize=10)
    ax.grid(alpha=0.3)
    return groups, last_position


def _dodge(i: int, count: int) -> float:
    return (i - (count - 1) / 2) * DODGE


def _interval_errors(rows: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, 2×n error bar lengths) in %, an interval that misses its value (percentile bootstrap) clipped."""
    values = 100 * rows[metric].to_numpy(float)
    low, high = 100 * rows[f"{metric}_low"].to_numpy(float), 100 * rows[f"{metric}_high"].to_numpy(float)
    return values, np.clip(np.stack([values - low, high - values]), 0, None)


def _student_intervals(ax: Axes, pairs: pd.DataFrame, groups: list[str], last_position: int) -> None:
    """Error bars on each group's student point, and the controls beside the students (dodged by teacher)."""
    control = pairs["is_control"].astype(bool)
    for i, group in enumerate(groups):
        rows = pairs[~control & (pairs["group"] == group)]
        for metric, marker in (("teacher_error_carried", "o"), ("baseline", ".")):
            values, errors = _interval_errors(rows, metric)
            ax.errorbar(np.full(len(rows), last_position + _dodge(i, len(groups))), values, yerr=errors,
                        fmt="none", ecolor=group_colour(group), capsize=3, elinewidth=1.0)
    controls = pairs[control]
    x = last_position + _CONTROL_OFFSET + DODGE * np.arange(len(controls))
    for metric, face in (("teacher_error_carried", CONTROL_COLOUR), ("baseline", "white")):
        values, errors = _interval_errors(controls, metric)
        ax.errorbar(x, values, yerr=errors, fmt="D", color=CONTROL_COLOUR, markerfacecolor=face, capsize=3,
                    elinewidth=1.0, markersize=5)


def _same_class_panel(ax: Axes, pairs: pd.DataFrame) -> None:
    """Same-class share of every row with its interval, top to bottom in table order; controls shaded across."""
    control = pairs["is_control"].astype(bool).to_numpy()
    values, errors = _interval_errors(pairs, "same_class_share")
    y = np.arange(len(pairs))[::-1]
    teachers = pairs["teacher_key"].nunique(dropna=False)
    for k in range(len(pairs)):
        colour = CONTROL_COLOUR if control[k] else group_colour(pairs["group"].iat[k])
        ax.errorbar(values[k], y[k], xerr=errors[:, k:k + 1], fmt="D" if control[k] else "o", color=colour,
                    capsize=3, elinewidth=1.2)
        if control[k] and control.sum() == 1:  # the only control: every row reads against this band
            ax.axvspan(values[k] - errors[0, k], values[k] + errors[1, k], color=CONTROL_COLOUR, alpha=0.15)
    labels = [f"{g} (control)" if c else g for g, c in zip(pairs["group"], control)]
    if teachers > 1:
        labels = [f"{label} · {str(key)[:TEACHER_KEY_CHARS]}" for label, key in zip(labels, pairs["teacher_key"])]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("same-class share of the student's errors (%)")
    ax.set_title("Student errors in the teacher's exact wrong class, 95 % CI", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)


def group_colour(group: str) -> str:
    """A built-in group's fixed colour; any other group's from a hash of its name (crc32, not `hash()`, which
    changes with every process), so two new groups differ but for a collision in NEW_GROUP_COLOURS."""
    if group in GROUP_COLOURS:
        return GROUP_COLOURS[group]
    return NEW_GROUP_COLOURS[zlib.crc32(group.encode()) % len(NEW_GROUP_COLOURS)]


def ta_marker(num_tas: object) -> str:
    try:
        return TA_MARKERS.get(int(num_tas), _OTHER_MARKER)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return _OTHER_MARKER


def axis_label(column: str, direction: Direction | None = None) -> str:
    label = AXIS_LABELS.get(column, column.replace("_", " "))
    if direction is None:
        return label
    return f"{label}  ({'lower' if direction == 'min' else 'higher'} is better)"


def new_figure(size: tuple[float, float]) -> tuple[Figure, Axes]:
    """A pyplot-free figure with one axes (see the module docstring for why not pyplot)."""
    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Saves `fig` as a white PNG at DPI, creating the folder, and frees it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # "tight" keeps the legends placed outside the axes inside the image.
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    fig.clear()  # a pyplot-free figure is not registered anywhere; clearing frees its artists now
    return path


def _values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Plot units: accuracies (stored as fractions) in %."""
    values = frame[column].to_numpy(dtype=float)
    return 100 * values if column.endswith("_acc") else values


def _wants_log(frame: pd.DataFrame, column: str) -> bool:
    """FLOPs always span orders of magnitude; other costs only get a log axis when they do too."""
    values = frame[column].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() <= 0:
        return False
    return "flops" in column or values.max() / values.min() > 100


def _pareto_legends(fig: Figure, ok: pd.DataFrame) -> None:
    """Two figure-level legends right of the axes (figure legends, unlike a second axes legend, are kept
    inside the image by the tight bounding box)."""
    groups = ordered_groups(ok["group"])
    group_handles = [Line2D([], [], linestyle="", marker="o", markersize=7, color=group_colour(g), label=g)
                     for g in groups]
    fig.legend(handles=group_handles, title="method group", loc="upper left", bbox_to_anchor=(0.91, 0.88),
               fontsize=9, title_fontsize=9, frameon=False, alignment="left")
    tas = sorted(int(n) for n in ok["num_tas"].dropna().unique())
    ta_handles = [Line2D([], [], linestyle="", marker=ta_marker(n), markersize=7, color="#555555",
                         label=f"{n} TA{'s' if n != 1 else ''}") for n in tas]
    ta_handles.append(Line2D([], [], linestyle="-", marker="o", markersize=10, markerfacecolor="none",
                             markeredgecolor="black", color="black", label="Pareto front"))
    fig.legend(handles=ta_handles, title="teacher assistants", loc="lower left", bbox_to_anchor=(0.91, 0.11),
               fontsize=9, title_fontsize=9, frameon=False, alignment="left")


def _zoom_to_bars(ax: Axes, heights: list[np.ndarray], errors: list[np.ndarray | None]) -> None:
    """Accuracies of rival chains differ by a few points; a zero baseline would hide the differences."""
    lows = [np.nanmin(h - (e if e is not None else 0)) for h, e in zip(heights, errors) if np.isfinite(h).any()]
    highs = [np.nanmax(h + (e if e is not None else 0)) for h, e in zip(heights, errors) if np.isfinite(h).any()]
    if not lows:
        return
    low, high = min(lows), max(highs)
    margin = max(1.0, 0.15 * (high - low))
    ax.set_ylim(max(0.0, low - 3 * margin), min(100.0, high + margin))
