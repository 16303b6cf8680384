"""Where a study lives: a local folder or any URI pyarrow understands (s3://bucket/path?endpoint_override=…).

One rule for the whole project: a location is a pyarrow filesystem plus a path on it, and a child location keeps
the parent's scheme and query options (`s3://b/studies?scheme=http` / "run" = `s3://b/studies/run?scheme=http`).
Writes are atomic: readers see a whole file or none — on local disks and NFS through a temporary file and a
rename, on object stores because a finished upload becomes visible at once.

A URI that holds credentials is refused: it would travel into Tune's pickles, Ray's object store, the journal and
every log line, and the trials rebuild their URIs without it anyway. Credentials come from where the cloud's SDK
looks for them (environment variables, a profile, an instance role), which every trial's process sees too.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Location:
    uri: str  # as a user writes it: an absolute local path, or scheme://path?query
    fs: pafs.FileSystem
    path: str  # the path on `fs`

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def __truediv__(self, child: str) -> Location:
        path = f"{self.path.rstrip('/')}/{child}"
        return Location(path if self.is_local else _with_path(self.uri, path), self.fs, path)

    def __str__(self) -> str:
        return self.uri


def locate(text: str) -> Location:
    """A local path (absolute or relative, `~` expanded, `file://` accepted) or a pyarrow URI.

    Raises ValueError, one line that starts "cannot use <uri>" and gives the reason, when the URI is not usable
    or holds credentials; the message never holds a secret (the URI is shown masked then)."""
    local = text.removeprefix("file://")
    if "://" not in local:
        path = str(Path(local).expanduser().resolve())
        return Location(path, pafs.LocalFileSystem(), path)
    if _holds_credentials(text):  # before pyarrow, whose parse errors quote the whole URI
        raise ValueError(f"cannot use {_masked(text)} (it holds credentials, which would be written into Tune's "
                         f"files and logs; give them through {_credential_sources(text)})")
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowInvalid, OSError, ValueError) as error:
        raise ValueError(f"cannot use {text} ({error})") from None
    if not path.strip("/"):
        raise ValueError(f"cannot use {text} (the URI names no bucket or folder)")
    return Location(_with_path(text, path.rstrip("/")), fs, path.rstrip("/"))


# scheme://user:password@…; the password may hold an unescaped "/" (AWS secret keys do), the user may not
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<user>[^/:@?#]*)(?::(?P<password>[^@?#]*))?@")
# query options that carry a secret: Azure's client_secret (pyarrow takes it), and the access_key, secret_key and
# session_token other tools spell (pyarrow refuses them, quoting the URI); no option pyarrow needs has these words
_SECRET_OPTION = re.compile(r"(?P<name>(?<=[?&])[^=&#]*(?:key|secret|token|password)[^=&#]*)=[^&#]*", re.I)
_AZURE_SOURCES = "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, or a managed identity"
_GOOGLE_SOURCES = "GOOGLE_APPLICATION_CREDENTIALS or the machine's service account"
_CREDENTIAL_SOURCES = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile (AWS_PROFILE, ~/.aws/credentials) or an "
          "instance role",
    "abfs": _AZURE_SOURCES, "abfss": _AZURE_SOURCES, "gs": _GOOGLE_SOURCES, "gcs": _GOOGLE_SOURCES,
}


def _holds_credentials(uri: str) -> bool:
    """A password in the user part (S3's secret key, Azure's account key), a user in an S3 URI (pyarrow takes it
    as the access key; elsewhere a user names a container or "anonymous"), or a secret query option."""
    userinfo = _USERINFO.match(uri)
    if userinfo and (userinfo["password"] is not None or userinfo["scheme"].lower() == "s3"):
        return True
    return _SECRET_OPTION.search(uri) is not None


def _masked(uri: str) -> str:
    """`uri` with its user part and secret options' values replaced by ***."""
    uri = _USERINFO.sub(lambda m: f"{m['scheme']}://***@", uri, count=1)
    return _SECRET_OPTION.sub(lambda m: f"{m['name']}=***", uri)


def _credential_sources(uri: str) -> str:
    scheme = uri.split("://", 1)[0].lower()
    return _CREDENTIAL_SOURCES.get(scheme, "the environment, as the storage's SDK expects")


def _with_path(uri: str, path: str) -> str:
    """`uri`'s scheme and query options around another path: the options stay after the path."""
    parts = urlsplit(uri)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{path}{query}"


def exists(location: Location) -> bool:
    return location.fs.get_file_info(location.path).type != pafs.FileType.NotFound


def read_bytes(location: Location) -> bytes | None:
    """The file's bytes, or None when there is no such file."""
    try:
        with location.fs.open_input_stream(location.path) as stream:
            return stream.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        if "not found" in str(error).lower() or "does not exist" in str(error).lower():
            return None
        raise


def write_bytes(location: Location, data: bytes) -> None:
    _write(location, lambda target: _write_stream(location.fs, target, data))


def write_parquet(location: Location, table: pa.Table, row_group_size: int | None = None) -> None:
    _write(location, lambda target: pq.write_table(table, target, filesystem=location.fs,
                                                   row_group_size=row_group_size))


def is_empty(folder: Location) -> bool:
    """True when `folder` does not exist or holds nothing."""
    return not folder.fs.get_file_info(pafs.FileSelector(folder.path, allow_not_found=True))


def read_parquet_folder(folder: Location) -> pa.Table | None:
    """Every Parquet file directly in `folder` as one table, None when there is none. Files may differ in columns
    (a KD method added later brings its settings): the table has them all, null where a file has none."""
    files = list_files(folder, ".parquet")
    if not files:
        return None
    dataset = ds.dataset([f.path for f in files], filesystem=folder.fs, format="parquet")
    unified = pa.unify_schemas([f.physical_schema for f in dataset.get_fragments()], promote_options="permissive")
    return dataset.replace_schema(unified).to_table()


def list_files(folder: Location, suffix: str = "") -> list[Location]:
    """The files directly in `folder` whose names end with `suffix`, sorted; none when it does not exist."""
    selector = pafs.FileSelector(folder.path, allow_not_found=True)
    infos = folder.fs.get_file_info(selector)
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(suffix)
                   and not i.base_name.startswith("."))
    return [folder / name for name in names]


def _write(location: Location, write: Callable[[str], None]) -> None:
    parent = location.path.rsplit("/", 1)[0]
    location.fs.create_dir(parent, recursive=True)
    if not location.is_local:
        write(location.path)
        return
    tmp = f"{parent}/.{location.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write(tmp)
        location.fs.move(tmp, location.path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_stream(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    with fs.open_output_stream(path) as stream:
        stream.write(data)
