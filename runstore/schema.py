"""The Parquet layout of a study's results: the contract between the writers (`study/`) and the readers.

Torch-free on purpose: notebooks that only read results must not load the training engine.

A run keeps each table as a folder of Parquet files, one file per writer's unit of work, so no writer ever
rewrites what another wrote and a growing study never rewrites a growing file:

    <run>/results/trials/<trial_id>.parquet        one row: the trial (config columns + outcome)
    <run>/results/hops/<trial_id>.parquet          one row per hop of its chain
    <run>/results/predictions/<trial_id>.parquet   one row per hop: its test predictions as list columns
    <run>/results/epochs/<hop key>.parquet         one row per epoch of a hop, written by the trial that trained it
    <run>/results/trained/<hop key>-<trial_id>.parquet   one row: a hop that trial trained, written as the hop is
                                                   stored (or its divergence marked), whatever becomes of the trial
    <run>/results/confirm/<trial_id>-s<seed>.parquet   seed confirmation: one trials-shaped row

The trials table's columns are the fixed ones below plus one per chain setting (`ChainConfig` fields and every
registered KD method's settings, written by the study from the registry); the epochs table has one `loss_<term>`
column per loss term a method declares. Readers take whatever columns the files have.

Cost columns. `train_*` is what a chain (or hop) costs from scratch, whichever trial trained each hop; `spent_*` is
what this trial itself computed (a hop it trained: its `train_*`, less a shorter training of it that it resumed,
`resumed_from`; a reused hop: 0), so both count the same work and spent ≤ train holds for every row. Both count a
hop's training steps, its validation after every epoch, its teachers' forward passes (as kdstudy runs them: once
per split, or per batch with augmentation; a resumed hop computes them again) and a learned ensemble's fitting;
neither counts test evaluation, which is reporting. Seconds run from the start of a hop's
training, its claim held, to its best weights. `wait_seconds` (not a cost of the configuration) is the time a
trial spent getting to its hops: store lookups, waiting for a claim another trial held, loading stored weights.
`reference_flops` is `train_flops` had every upper model been forwarded on every training batch of every epoch,
as the TAKD and DGKD reference code does (`trainables.chain.reference_flops`). The `trained` table counts every
hop training that reached its end (weights stored, or divergence marked), whether its trial then finished, failed
or was killed: its sum is what the study spent, but for hops cut mid-training (a killed node, an ASHA stop). Under
successive halving a trial's row holds the chain of the last rung it reached (its `train_*` and `spent_*` are that
chain's); what its lower rungs trained is in `trained`, and `naive_flops` is its configuration's full-fidelity cost.
"""

from __future__ import annotations

import pyarrow as pa

# Trial statuses. TERMINATED: the chain finished; DIVERGED: a hop's loss blew up (the error says where);
# STOPPED: an early-stopping scheduler cut it; ERROR: it raised (the error holds the root cause's last line).
FINISHED, DIVERGED, STOPPED, ERROR = "TERMINATED", "DIVERGED", "STOPPED", "ERROR"
STATUSES = (FINISHED, DIVERGED, STOPPED, ERROR)
# Outcomes that settle a configuration; an ERROR (a raise, an OOM, a lost node) says nothing about it: retried.
FINAL = (FINISHED, DIVERGED, STOPPED)

TRIAL_HEAD = [
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("group", pa.string()),  # the comparison group its KD method puts it in (e.g. ensemble-learned)
    pa.field("config_label", pa.string()),  # e.g. "takd 10→8→6→2 T=4.0 α=0.50"
]
TRIAL_TAIL = [
    pa.field("num_tas", pa.int64()),
    pa.field("student_val_acc", pa.float64()),
    pa.field("student_test_acc", pa.float64()),
    pa.field("train_flops", pa.int64()),  # the chain's from-scratch training cost (teachers' outputs cached)
    pa.field("reference_flops", pa.int64()),  # the same, every upper model forwarded on every training batch
    pa.field("train_seconds", pa.float64()),  # the chain's from-scratch training time: its hops' train_seconds
    pa.field("spent_flops", pa.int64()),  # what this trial computed itself (0 for each reused hop)
    pa.field("spent_seconds", pa.float64()),
    pa.field("wait_seconds", pa.float64()),  # time it spent getting to its hops, waiting on other trials' claims
    pa.field("student_params", pa.int64()),
    pa.field("student_flops", pa.int64()),  # inference, per image
    pa.field("ensemble_weights", pa.list_(pa.float64())),  # learned weights of the student's teachers, top first
    # Successive halving (a study's `scheduler = "halving"`): the epochs per hop below the teacher of the rung the
    # trial reached (a STOPPED trial stopped there; `epochs` for a chain trained in full), its student's
    # validation accuracy at each rung it reached, lowest first, and the configuration's from-scratch cost at full
    # fidelity: train_flops for a chain trained in full, planned (`trainables.plan`) for one stopped below.
    pa.field("rung_epochs", pa.int64()),
    pa.field("rung_accs", pa.list_(pa.float64())),
    pa.field("naive_flops", pa.int64()),
]
CONFIRM_HEAD = [pa.field("source_trial_id", pa.string(), nullable=False)]
# Everything in a trials row that is not the configuration.
OUTCOME_COLUMNS = frozenset(f.name for f in [*CONFIRM_HEAD, *TRIAL_HEAD, *TRIAL_TAIL])


def trials_schema(config: list[pa.Field], confirm: bool = False) -> pa.Schema:
    return pa.schema([*(CONFIRM_HEAD if confirm else []), *TRIAL_HEAD, *config, *TRIAL_TAIL])


def config_columns(columns: list[str]) -> list[str]:
    """The columns of a trials table that are chain settings (what `ChainConfig.from_flat` takes back)."""
    return [c for c in columns if c not in OUTCOME_COLUMNS]


HOPS = pa.schema([
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("index", pa.int64()),  # 0 = teacher
    pa.field("arch", pa.string()),
    pa.field("role", pa.string()),  # teacher | ta | student
    pa.field("key", pa.string()),  # content hash: equal keys, equal weights
    pa.field("teachers", pa.list_(pa.int64())),
    pa.field("best_epoch", pa.int64()),
    pa.field("val_acc", pa.float64()),
    pa.field("test_acc", pa.float64()),  # of the best-validation weights
    pa.field("params", pa.int64()),
    pa.field("flops", pa.int64()),
    pa.field("train_flops", pa.int64()),
    pa.field("reference_flops", pa.int64()),
    pa.field("train_seconds", pa.float64()),
    pa.field("spent_flops", pa.int64()),
    pa.field("spent_seconds", pa.float64()),
    pa.field("wait_seconds", pa.float64()),
    pa.field("upper_forward_samples", pa.int64()),
    pa.field("kl_terms", pa.int64()),
    pa.field("reused", pa.bool_()),
    pa.field("resumed_from", pa.int64()),  # the epochs of a shorter training of it that the trial resumed; 0 = none
    pa.field("ensemble_weights", pa.list_(pa.float64())),
])

EPOCH_HEAD = [
    pa.field("trial_id", pa.string(), nullable=False),  # the trial that trained the hop
    pa.field("key", pa.string(), nullable=False),
    pa.field("hop", pa.int64()),
    pa.field("role", pa.string()),
    pa.field("arch", pa.string()),
    pa.field("epoch", pa.int64()),
    pa.field("global_epoch", pa.int64()),
    pa.field("lr", pa.float64()),
    pa.field("train_loss", pa.float64()),
]
EPOCH_TAIL = [
    pa.field("val_acc", pa.float64()),
    pa.field("val_loss", pa.float64()),
    pa.field("seconds", pa.float64()),
]


def epochs_schema(loss_terms: tuple[str, ...]) -> pa.Schema:
    """`loss_<term>` per loss term (null where a hop's method has no such term)."""
    return pa.schema([*EPOCH_HEAD, *(pa.field(f"loss_{t}", pa.float64()) for t in loss_terms), *EPOCH_TAIL])


# One row per hop training: what the study spent, counted once per training however many trials reuse the hop.
TRAINED = pa.schema([
    pa.field("trial_id", pa.string(), nullable=False),  # the trial (or attempt of it) that trained the hop
    pa.field("key", pa.string(), nullable=False),
    # what this training computed: of a hop that resumed a shorter training of it, the epochs it added and its
    # teachers' outputs computed again, not the resumed training's (that has its own row)
    pa.field("train_flops", pa.int64()),
    pa.field("train_seconds", pa.float64()),
    pa.field("diverged", pa.bool_()),  # trained to a blow-up (its cost up to there): no weights were stored
])

# One row per trial × hop with list columns: 10,000 CIFAR test images stay one row, and a whole hop's predictions
# are one contiguous read.
PREDICTIONS = pa.schema([
    pa.field("trial_id", pa.string(), nullable=False),
    pa.field("hop", pa.int64()),
    pa.field("arch", pa.string()),
    pa.field("role", pa.string()),
    pa.field("predicted", pa.list_(pa.int16())),  # predicted class per test sample
    pa.field("true_prob", pa.list_(pa.float16())),  # probability given to the true class
    pa.field("target", pa.list_(pa.int16())),  # the true class (same for every hop; kept so a row stands alone)
])

# The columns a reader can count on when a table has no file yet.
EMPTY: dict[str, pa.Schema] = {
    "trials": trials_schema([]),
    "confirm": trials_schema([], confirm=True),
    "hops": HOPS,
    "epochs": epochs_schema(("ce", "kd")),
    "predictions": PREDICTIONS,
    "trained": TRAINED,
}
