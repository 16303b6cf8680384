"""Studies that survive: a real driver process (`kdstudy run`, joined to the session's cluster) killed with
SIGKILL at precise points, interrupted with SIGINT and SIGTERM, and run again until its study is complete.

The points are fault-injection hooks (`study.faults`): a hook writes a marker and blocks, and the test kills the
driver's process group once the marker is there. The drivers are forked from a process that imported the CLI
already (tests/drivers.py).
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest

from tests.analysis_fixtures import ROOT
from tests.drivers import Driver
from tests.journals import run_journal

# Three trials at once, so that one killed session leaves three kinds behind: a hop in progress (hop 2's first
# epoch done, not stored; the hops above it stored), a trial whose rows are written but whose result never reached
# the driver, and a result the driver has not told Optuna yet. Hop 2 is each method's own: a trial held inside a
# hop all three share would hold its claim, and the others would wait for it. The next session is killed with a
# trial in the journal that never started.
IN_FLIGHT = ["epoch-2-1", "results-written", "before-tell"]
NEVER_STARTED = "after-ask"
TRIALS = 4


def _driver(spec: Path, storage: Path, name: str, address: str, faults: Path, fault: str = "",
            trials: int = TRIALS, concurrent: int = 1) -> Driver:
    env = {**os.environ, "KDSTUDY_FAULT": fault, "KDSTUDY_FAULT_DIR": str(faults)}
    argv = ["run", "--spec", str(spec), "--storage", str(storage), "--name", name, "--address", address,
            "--trials", str(trials), "--max-concurrent", str(concurrent), "--no-report"]
    if concurrent > 2:  # the session's cluster has 2 CPUs: half a CPU each lets up to 4 trials run at once
        argv += ["--cpus-per-trial", "0.5"]
    return Driver(argv, env, ROOT)


def _wait_for(marker: Path, driver: Driver, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if driver.poll() is not None:
            out, err = driver.communicate()
            pytest.fail(f"the driver ended before {marker.name}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            os.killpg(driver.pid, signal.SIGKILL)
            pytest.fail(f"no {marker.name} in {timeout} s")
        time.sleep(0.1)


def _kill_group(driver: Driver) -> str:
    os.killpg(driver.pid, signal.SIGKILL)
    out, _ = driver.communicate()
    return out


def _rows(run: Path, table: str) -> list[dict]:
    folder = run / "results" / table
    return pq.read_table(folder).to_pylist() if folder.exists() else []


def _trial_files(run: Path) -> dict[str, int]:
    return {p.stem: p.stat().st_mtime_ns for p in (run / "results" / "trials").glob("*.parquet")}


def test_a_study_killed_at_any_point_resumes_to_exactly_its_trials(ray_cluster: str, spec_file: Path,
                                                                  tmp_path: Path) -> None:
    run, faults = tmp_path / "kills", tmp_path / "faults"
    faults.mkdir()
    outputs = []
    finished_at: list[dict[str, int]] = []  # the trials' result files after each killed session
    asked: list[set[str]] = []  # the trials in the journal after each killed session
    for points, concurrent in ((IN_FLIGHT, len(IN_FLIGHT)), ([NEVER_STARTED], 2)):
        driver = _driver(spec_file, tmp_path, "kills", ray_cluster, faults, ",".join(points), concurrent=concurrent)
        for point in points:
            _wait_for(faults / f"{point}.fired", driver)
        outputs.append(_kill_group(driver))
        finished_at.append(_trial_files(run))
        journal = run_journal(run).trials
        asked.append({t.user_attrs["trial_id"] for t in journal if "trial_id" in t.user_attrs})
        assert optuna.trial.TrialState.RUNNING in [t.state for t in journal], points  # behind the truth

    # two of the three trials wrote their rows (one of them also reached the driver); the third was killed inside
    # hop 2; the next session, resuming it, asked one trial more
    assert len(asked[0]) == len(IN_FLIGHT) and len(finished_at[0]) == 2 and set(finished_at[0]) < asked[0]
    held, = asked[0] - set(finished_at[0])
    assert len(asked[1]) == len(IN_FLIGHT) + 1 and set(finished_at[0]) <= set(finished_at[1])

    driver = _driver(spec_file, tmp_path, "kills", ray_cluster, faults, concurrent=2)
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, err
    outputs.append(out)

    trials = _rows(run, "trials")
    ids = [t["trial_id"] for t in trials]
    assert len(ids) == len(set(ids)) == TRIALS and all(t["status"] == "TERMINATED" for t in trials)
    journal = [t for t in run_journal(run).trials if "trial_id" in t.user_attrs]
    assert sorted(t.user_attrs["trial_id"] for t in journal) == sorted(ids)  # once each in the journal ...
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in journal)  # ... and COMPLETE
    values = {t["trial_id"]: t["student_val_acc"] for t in trials}
    assert all(t.value == pytest.approx(values[t.user_attrs["trial_id"]]) for t in journal)
    # a trial that had finished was never trained again: its files are as the session that finished it left them
    final = _trial_files(run)
    for finished in finished_at:
        assert {k: final[k] for k in finished} == finished
    shown = [m for out in outputs for m in re.findall(r"^\[ *\d+/\d+\] (\w+) ", out, flags=re.M)]
    # the two whose rows the first session wrote: one's result never reached a driver, the other's was killed
    # before the driver told Optuna (and so before its line); the next session counts them, silently
    assert len(shown) == len(set(shown)) and not set(finished_at[0]) & set(shown)
    # the trial killed inside hop 2 resumed there: the hops above it came back from the model store
    hops = sorted((h for h in _rows(run, "hops") if h["trial_id"] == held), key=lambda h: h["index"])
    assert [h["reused"] for h in hops] == [True, True, False, False]


def test_sigint_and_sigterm_stop_cleanly_and_the_study_resumes(ray_cluster: str, spec_file: Path,
                                                               tmp_path: Path) -> None:
    run, faults = tmp_path / "signals", tmp_path / "faults"
    faults.mkdir()
    # Ctrl-C: SIGINT to the driver's whole process group, while the first trial is held inside its teacher's hop
    driver = _driver(spec_file, tmp_path, "signals", ray_cluster, faults, "epoch-0-1", trials=2)
    _wait_for(faults / "epoch-0-1.fired", driver)
    os.killpg(driver.pid, signal.SIGINT)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 130, err
    assert re.search(r"^interrupted: 0 of 2 trials finished; run the same command to resume$", err, flags=re.M)
    assert "best configuration" not in out
    assert [t.state for t in run_journal(run).trials][0] == optuna.trial.TrialState.RUNNING  # left for the next session

    # SIGTERM (a scheduler's kill), sent by the driver to itself once it has told Optuna of one trial
    driver = _driver(spec_file, tmp_path, "signals", ray_cluster, faults, "after-tell:sigterm", trials=2)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 143, err
    assert re.search(r"^interrupted: 1 of 2 trials finished; run the same command to resume$", err, flags=re.M)
    assert "best configuration" not in out and "resuming 1" in out

    driver = _driver(spec_file, tmp_path, "signals", ray_cluster, faults, trials=2)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    assert "best configuration" in out
    trials = _rows(run, "trials")
    assert len({t["trial_id"] for t in trials}) == 2
    assert sum("trial_id" in t.user_attrs and t.state == optuna.trial.TrialState.COMPLETE
               for t in run_journal(run).trials) == 2


def test_every_trial_failing_the_same_way_shows_the_error_once(ray_cluster: str, spec_file: Path,
                                                                tmp_path: Path) -> None:
    driver = _driver(spec_file, tmp_path, "failing", ray_cluster, tmp_path, "trial-start:raise", trials=2,
                     concurrent=2)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 1
    console = out + err
    assert console.count("RuntimeError: injected fault at trial-start") == 1, console
    assert "Traceback" not in console and console.count("same error as trial") == 1
    assert re.search(r"^kdstudy run: no trial finished its chain \(2 ERROR\); the errors are shown above$", err,
                     flags=re.M)


def test_the_interruption_pickles_without_the_handlers_it_replaced() -> None:
    # Tune pickles its stopper with the experiment; the SIGTERM handler Ray installs for a node started in the
    # driver's process (ray.cluster_utils) holds locks, which cannot be pickled
    import threading

    import ray

    from study.runner import Interruption

    lock = threading.Lock()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: lock.locked())
    try:
        with Interruption() as interruption:
            assert ray.cloudpickle.loads(ray.cloudpickle.dumps(interruption)).signal is None
    finally:
        signal.signal(signal.SIGTERM, previous)
