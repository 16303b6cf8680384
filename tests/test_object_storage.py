"""A study on object storage: a real S3 API server (moto's server mode) on 127.0.0.1, a study run, reported,
confirmed and grown through `s3://…?endpoint_override=…&scheme=http` URIs, with hops shared through the store on
the bucket and the Optuna journal kept beside the results. Credentials come from the environment; a URI that
holds them is refused before anything is written."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import optuna
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from analysis.load import load_run
from cli.main import main
from runstore.storage import locate
from tests.conftest import PLANTED_SECRET
from tests.journals import load_journal

BUCKET = "kdstudy-test"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("the S3 server did not start")
                time.sleep(0.2)
        endpoint = f"127.0.0.1:{port}"
        _s3(endpoint).create_dir(BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait()


def _s3(endpoint: str) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1",
                             allow_bucket_creation=True)


def _names(fs: pafs.FileSystem, folder: str) -> list[str]:
    return sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)))


def test_a_study_on_s3_runs_reports_confirms_and_grows_past_a_journal_that_lost_its_tail(
        ray_cluster: str, ray_session_dir: Path, spec_file: Path, s3_endpoint: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the driver's local copy of the journal
    query = f"endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    storage, run_uri = f"s3://{BUCKET}/studies?{query}", f"s3://{BUCKET}/studies/ons3?{query}"
    # kd chains (a teacher and a student): the shortest with a teacher to share through the bucket
    argv = ["run", "--spec", str(spec_file), "--storage", storage, "--name", "ons3", "--methods", "kd", "--no-report"]
    assert main([*argv, "--trials", "3"]) == 0
    fs, results = _s3(s3_endpoint), f"{BUCKET}/studies/ons3/results"
    journal = f"{results}/optuna_journal.log"

    assert len(_names(fs, f"{results}/trials")) == 3
    hops = pq.read_table(f"{results}/hops", filesystem=fs).to_pylist()
    teachers = [h for h in hops if h["role"] == "teacher"]
    assert len(teachers) == 3 and sum(not h["reused"] for h in teachers) == 1  # shared through the bucket's store
    assert len(_names(fs, f"{BUCKET}/studies/ons3/models")) >= 1

    # the journal beside the results opens in Optuna (what optuna-dashboard does) after a download
    local = tmp_path / "journal.log"
    local.write_bytes(_read(fs, journal))
    study = load_journal(local, "ons3")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE and "trial_id" in t.user_attrs for t in study.trials) == 3

    console = [capfd.readouterr()]
    assert main(["report", run_uri]) == 0
    console.append(capfd.readouterr())
    assert console[-1].out.strip() == f"report: s3://{BUCKET}/studies/ons3/report?{query}/"
    report = _names(fs, f"{BUCKET}/studies/ons3/report")
    assert {"summary.md", "best_config.json", "pareto.png", "methods.png"} <= set(report)

    assert main(["confirm", run_uri, "--top", "1", "--seeds", "1"]) == 0
    confirm = pq.read_table(f"{results}/confirm", filesystem=fs).to_pylist()
    assert len(confirm) == 1 and confirm[0]["status"] == "TERMINATED"

    # a rerun from another machine: no local journal, it starts from the bucket's copy and grows the study. That
    # copy lost its tail: the driver uploads the journal at most every 30 s, and one that died between uploads
    # leaves a copy missing trials the results hold. The rerun adds them back, so the sampler and the count agree
    # with the truth.
    lines = _read(fs, journal).splitlines(keepends=True)
    with fs.open_output_stream(journal) as stream:  # as if the last upload had happened before the 2nd trial
        stream.write(b"".join(lines[: _end_of_first_trial(lines)]))
    shutil.rmtree(tmp_path / "cache")
    assert main([*argv, "--trials", "4"]) == 0
    loaded = load_run(run_uri)
    assert len(loaded.trials) == 4 and loaded.trials["trial_id"].is_unique and len(loaded.confirm) == 1
    local.write_bytes(_read(fs, journal))
    study = load_journal(local, "ons3")
    assert sorted(t.user_attrs["trial_id"] for t in study.trials if "trial_id" in t.user_attrs) == \
        sorted(loaded.trials["trial_id"])  # each trial once, those the lost tail held included

    # the secret every process used (from the environment) is in nothing the study wrote or printed: the bucket
    # (results, models, Tune's files, the journal, the report), the local journal cache, the console, Ray's logs
    console = "".join(c.out + c.err for c in [*console, capfd.readouterr()])
    assert PLANTED_SECRET not in console
    assert _objects_holding(PLANTED_SECRET, fs, BUCKET) == [] and _files_holding(PLANTED_SECRET, tmp_path) == []
    assert _files_holding(PLANTED_SECRET, ray_session_dir) == []  # Ray's logs: no runtime_env carries it


def _objects_holding(secret: str, fs: pafs.FileSystem, bucket: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(bucket, recursive=True))
    return [i.path for i in infos if i.type == pafs.FileType.File and secret.encode() in _read(fs, i.path)]


def _files_holding(secret: str, folder: Path) -> list[str]:
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    return [str(p) for p in files if secret.encode() in p.read_bytes()]


def _read(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as stream:
        return stream.read()


def _end_of_first_trial(lines: list[bytes]) -> int:
    """The journal lines up to the first trial's completion (a "set state and values" entry, state COMPLETE)."""
    for i, line in enumerate(lines):
        entry = json.loads(line)
        if entry.get("op_code") == 6 and entry.get("state") == optuna.trial.TrialState.COMPLETE.value:
            return i + 1
    raise AssertionError("no finished trial in the journal")


# An AWS-shaped secret: the "/" it holds is one pyarrow's URI parser stops at, quoting the whole URI in its error
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
CREDENTIAL_SPELLINGS = {
    "user part": f"AKIAEXAMPLE:{quote(SECRET, safe='')}@",
    "user part, unescaped": f"AKIAEXAMPLE:{SECRET}@",
    "query options": "",
}


def _uri_with_credentials(spelling: str, endpoint: str, path: str) -> str:
    query = f"endpoint_override={endpoint}&scheme=http&region=us-east-1"
    if spelling == "query options":
        query += f"&access_key=AKIAEXAMPLE&secret_key={quote(SECRET, safe='')}&session_token={SECRET}"
    return f"s3://{CREDENTIAL_SPELLINGS[spelling]}{BUCKET}/{path}?{query}"


def _bucket_listing(endpoint: str) -> list[str]:
    return sorted(i.path for i in _s3(endpoint).get_file_info(pafs.FileSelector(BUCKET, recursive=True)))


def _assert_refused(argv: list[str], field: str, endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capfd: pytest.CaptureFixture) -> None:
    """`kdstudy argv` exits 2 with one line on `field` naming the standard credential sources and not the secret,
    and writes nothing: not on the bucket, not in the journal cache, not in the working folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    before = _bucket_listing(endpoint)
    capfd.readouterr()

    assert main(argv) == 2
    out, err = capfd.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"kdstudy {argv[0]}: {field}: ") and "AWS_ACCESS_KEY_ID" in err
    assert all(form not in err for form in (SECRET, quote(SECRET, safe=""), SECRET.split("/")[-1]))
    assert _bucket_listing(endpoint) == before
    assert not (tmp_path / "cache" / "kdstudy").exists() and not any((tmp_path / "cwd").iterdir())


@pytest.mark.parametrize("spelling", CREDENTIAL_SPELLINGS)
def test_run_refuses_a_storage_uri_with_credentials(spelling: str, ray_cluster: str, spec_file: Path,
                                                    s3_endpoint: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capfd: pytest.CaptureFixture) -> None:
    """Such a URI would travel into Tune's pickles and every log line; the trials would drop it and be denied."""
    storage = _uri_with_credentials(spelling, s3_endpoint, "studies")
    argv = ["run", "--spec", str(spec_file), "--storage", storage, "--name", "creds", "--no-report"]
    _assert_refused(argv, "storage", s3_endpoint, tmp_path, monkeypatch, capfd)


@pytest.mark.parametrize("command", ["report", "confirm"])
@pytest.mark.parametrize("spelling", CREDENTIAL_SPELLINGS)
def test_report_and_confirm_refuse_a_run_uri_with_credentials(command: str, spelling: str, s3_endpoint: str,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capfd: pytest.CaptureFixture) -> None:
    run = _uri_with_credentials(spelling, s3_endpoint, "studies/creds")
    _assert_refused([command, run], "run", s3_endpoint, tmp_path, monkeypatch, capfd)


@pytest.mark.parametrize("uri", [
    f"abfs://account:{quote(SECRET, safe='')}@container/studies",
    f"abfss://container/studies?tenant_id=t&client_id=c&client_secret={quote(SECRET, safe='')}",
    f"gs://user:{quote(SECRET, safe='')}@bucket/studies",
])
def test_other_stores_uris_with_credentials_are_refused_without_showing_them(uri: str) -> None:
    with pytest.raises(ValueError, match=r"^cannot use \S+ \(it holds credentials") as refused:
        locate(uri)
    assert quote(SECRET, safe="") not in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("uri", ["abfs://container@account.dfs.core.windows.net/studies",
                                 "gs://anonymous@bucket/studies"])
def test_a_user_part_that_is_no_credential_is_accepted(uri: str) -> None:
    """Azure's container@account and GCS's anonymous user name no secret (pyarrow needs no network for these)."""
    assert locate(uri).path.endswith("/studies")
