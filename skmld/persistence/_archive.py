"""The zip archive of a model file: written deterministically, read with checks that name the member."""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from typing import Any

from skmld.persistence._values import short

_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_MAX_RATIO = 1000  # uncompressed / compressed size of a member: more is a zip bomb
_MIN_BOMB = 1 << 24


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deterministic zip: members sorted, fixed dates and permissions, JSON deflated."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED if name.endswith(".json") else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, whatever the platform
            zf.writestr(info, members[name], compresslevel=6)
    return buf.getvalue()


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False) + "\n").encode()


class Reader:
    """The members of an open zip archive, each read once checked; ``source`` names the file in errors."""

    def __init__(self, zf: zipfile.ZipFile, source: str):
        self.zf, self.source = zf, source
        names = zf.namelist()
        if len(names) != len(set(names)):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"{source} is not a valid skmld model file: members {dupes} appear twice.")
        self.names = names

    def read(self, name: str, what: str) -> bytes:
        if name not in self.names:
            raise ValueError(f"{self.source} is not a valid skmld model file: member {name!r} ({what}) is missing.")
        info = self.zf.getinfo(name)
        if info.file_size > _MIN_BOMB and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
            raise ValueError(f"{self.source}: member {name!r} declares {info.file_size} bytes from "
                             f"{info.compress_size} stored; refusing a likely decompression bomb.")
        try:
            return self.zf.read(name)
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError, RuntimeError) as e:
            raise ValueError(f"{self.source}: member {name!r} ({what}) is corrupted: {e}") from None

    def json(self, name: str, what: str) -> Any:
        raw = self.read(name, what)
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"{self.source}: member {name!r} ({what}) is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{self.source}: member {name!r} ({what}) must hold a JSON object, got {short(doc)}.")
        return doc

    def invalid(self, member: str, message: str) -> ValueError:
        return ValueError(f"{self.source}: member {member!r}: {message}")

    def key(self, doc: dict, key: str, kind: type, member: str, what: str) -> Any:
        """``doc[key]``, checked to be a ``kind``."""
        if key not in doc:
            raise self.invalid(member, f"key {key!r} is missing; expected {what}.")
        value = doc[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.invalid(member, f"key {key!r} must be {what}, got {short(value)}.")
        return value
