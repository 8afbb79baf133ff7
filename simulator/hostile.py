"""Hostile deliveries: the broken files a department really sends now and then.

Each kind replaces that date's file drop with a faulty one, so the pipeline's checks
(encoding, schema drift, empty extract, oversized field) can be exercised on demand.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Literal, get_args

import pandas as pd

from simulator.build import STATE_DIR, drop_path
from simulator.catalog_view import DatasetView, catalog_by_id
from simulator.writers import CsvSink, JsonlSink, Sink, XlsxSink

HostileKind = Literal[
    "truncated",
    "wrong_encoding",
    "added_column",
    "missing_column",
    "renamed_column",
    "empty",
    "header_only",
    "huge_field",
    "mixed_encoding",
    "nul_in_name",
]
HOSTILE_KINDS: tuple[str, ...] = get_args(HostileKind)
HUGE_FIELD_BYTES = 10 * 1024 * 1024
ADDED_COLUMN = "remark"
HUGE_MARKER = "@@HUGE@@"
MIXED_ENCODING_ROWS = 3  # rows a mixed_encoding delivery writes in the other encoding
# how a clerk renames a column when the vendor "upgrades" the export
RENAMES = {
    "id_no": "sfzh",
    "name": "xm",
    "tax_no": "nsrsbh",
    "org_code": "jgdm",
    "taxpayer_name": "nsrmc",
    "phone": "lxdh",
    "insured_no": "grbh",
    "record_no": "dabh",
}


def make_hostile_delivery(out_dir: Path, dataset: str, kind: HostileKind, ds: date) -> Path:
    """Replace the ``ds`` delivery of file drop ``dataset`` (``dept.dataset`` or its
    connection id) by a broken one of ``kind``; return the path written."""
    if kind not in HOSTILE_KINDS:
        raise ValueError(f"unknown hostile kind {kind!r}; one of {', '.join(HOSTILE_KINDS)}")
    out_dir = Path(out_dir).resolve()
    view = _find(dataset)
    if kind in ("mixed_encoding", "nul_in_name") and view.source.kind == "excel":
        raise ValueError(f"{kind} is for text files (CSV, JSON Lines), not {view.id}'s .xlsx")
    path = drop_path(out_dir, view, ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
        return path
    frame = pd.read_parquet(out_dir / STATE_DIR / f"{view.id}.parquet", columns=list(view.fields))
    if kind == "header_only" and view.source.kind == "jsonl":
        path.write_bytes(b"\n")  # JSON Lines has no header: a blank line, no records
    elif kind == "header_only":
        _deliver(view, path, frame.iloc[:0], ds)
    elif kind == "truncated":
        _deliver(view, path, frame, ds)
        _truncate(path, view)
    elif kind == "wrong_encoding":
        _wrong_encoding(view, path, frame)
    elif kind == "added_column":
        frame[ADDED_COLUMN] = "备注"
        _deliver(view, path, frame, ds)
    elif kind == "missing_column":
        _deliver(view, path, frame.drop(columns=[victim(view)]), ds)
    elif kind == "renamed_column":
        column = victim(view)
        _deliver(view, path, frame.rename(columns={column: renamed(column)}), ds)
    elif kind == "huge_field":
        _huge_field(view, path, frame, ds)
    elif kind == "mixed_encoding":
        _deliver(view, path, frame, ds)
        _mix_encodings(view, path)
    elif kind == "nul_in_name":
        _deliver(view, path, _nul_in_name(view, frame), ds)
    return path


def victim(view: DatasetView) -> str:
    """The column a missing/renamed-column delivery loses: the first ordinary one."""
    return next(f for f in view.fields if f not in (view.key, "updated_at"))


def renamed(column: str) -> str:
    return RENAMES.get(column, column.upper())


def _find(dataset: str) -> DatasetView:
    views = catalog_by_id()
    view = views.get(dataset) or next(
        (v for v in views.values() if v.source.connection_id == dataset), None
    )
    if view is None:
        raise KeyError(f"unknown dataset or connection {dataset!r}")
    if view.source.kind == "sql":
        raise ValueError(f"{view.id} is a SQL system; hostile deliveries are for file drops")
    return view


def _deliver(view: DatasetView, path: Path, frame: pd.DataFrame, ds: date) -> None:
    """Write ``frame`` (whatever its columns) in the view's file format at ``path``."""
    view = replace(view, fields=tuple(frame.columns))
    sink = _sink_at(view, path, ds)
    try:
        for start in range(0, max(len(frame), 1), 200_000):
            sink.write(frame.iloc[start : start + 200_000])
    finally:
        sink.close()


def _sink_at(view: DatasetView, path: Path, ds: date) -> Sink:
    if view.source.kind == "csv":
        return CsvSink(path, view.source.encoding or "utf-8")
    if view.source.kind == "jsonl":
        return JsonlSink(path)
    return XlsxSink(path, list(view.fields), ds)


def _truncate(path: Path, view: DatasetView) -> None:
    """Cut the file in the middle of a row (for .xlsx: in the middle of the zip)."""
    data = path.read_bytes()
    if view.source.kind == "excel":
        path.write_bytes(data[: len(data) // 2])
        return
    encoding = view.source.encoding or "utf-8"
    text = data.decode(encoding)  # cut between characters: a broken row, not a bad byte
    line_start = text.rfind("\n", 0, int(len(text) * 0.6)) + 1
    line_end = text.find("\n", line_start)
    path.write_bytes(text[: line_start + max(1, (line_end - line_start) // 2)].encode(encoding))


def _wrong_encoding(view: DatasetView, path: Path, frame: pd.DataFrame) -> None:
    """GBK declared -> UTF-8 written; UTF-8 declared -> GBK written (.xlsx: a GBK CSV)."""
    declared = (view.source.encoding or "utf-8").lower()
    actual = "utf-8" if declared == "gbk" else "gbk"
    frame = frame.map(
        lambda v: v.replace("\u200b", "").replace("\ufeff", "") if isinstance(v, str) else v
    )
    if view.source.kind == "jsonl":
        text = frame.to_json(orient="records", lines=True, force_ascii=False)
        path.write_bytes(text.encode(actual))
        return
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    path.write_bytes(buf.getvalue().encode(actual))


def _mix_encodings(view: DatasetView, path: Path) -> None:
    """A few rows carry text in another encoding than the rest of the file.

    In a GBK file: the row's fields whose UTF-8 bytes still decode as GBK are written in
    UTF-8 (values pasted from another system): they decode into mojibake (张三 → 寮犱笁),
    the kind that passes the decoder. In a UTF-8 file: whole GBK rows, invalid UTF-8. The
    rows are taken near a quarter, half and three quarters of the file.
    """
    declared = view.source.encoding or "utf-8"
    into_gbk = not codecs.lookup(declared).name.startswith("utf")
    data = path.read_bytes()
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    lines = data[len(bom) :].decode(declared).splitlines(keepends=True)
    data_rows = len(lines) - (0 if view.source.kind == "jsonl" else 1)
    first = len(lines) - data_rows
    encoded = [line.encode(declared) for line in lines]
    for part in range(1, MIXED_ENCODING_ROWS + 1):
        for i in range(first + data_rows * part // (MIXED_ENCODING_ROWS + 1), len(lines)):
            mixed = _utf8_fields(lines[i], declared) if into_gbk else lines[i].encode("gbk")
            if mixed != encoded[i]:
                encoded[i] = mixed
                break
    path.write_bytes(bom + b"".join(encoded))


def _utf8_fields(line: str, encoding: str) -> bytes:
    """A CSV line in ``encoding`` whose fields that survive being read so are in UTF-8."""
    out = line.encode(encoding)
    for value in next(csv.reader([line])):
        as_utf8 = value.encode("utf-8")
        if as_utf8 != value.encode(encoding) and _decodes(as_utf8, encoding) is not None:
            out = out.replace(value.encode(encoding), as_utf8, 1)
    return out


def _decodes(data: bytes, encoding: str) -> str | None:
    """``data`` decoded strictly, or None where it is not valid in ``encoding``."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        return None


def _nul_in_name(view: DatasetView, frame: pd.DataFrame) -> pd.DataFrame:
    """A NUL byte inside the first row's name (a C export that forgot where strings end)."""
    column = next(f for f in view.fields if f == "name" or f.endswith("_name"))
    frame = frame.copy()
    value = str(frame.loc[frame.index[0], column])
    frame.loc[frame.index[0], column] = value[:1] + "\x00" + value[1:]
    return frame


def _huge_field(view: DatasetView, path: Path, frame: pd.DataFrame, ds: date) -> None:
    """One field of the first row is 10 MB long."""
    frame = frame.iloc[: min(len(frame), 1000)].copy()
    column = victim(view)
    huge = "超长字段" * (HUGE_FIELD_BYTES // 8 + 1)  # >= 10 MB in GBK and in UTF-8
    if view.source.kind != "excel":
        frame.loc[frame.index[0], column] = huge
        _deliver(view, path, frame, ds)
        return
    # XlsxWriter caps cells at 32767 chars, as Excel does; a broken exporter does not.
    frame.loc[frame.index[0], column] = HUGE_MARKER
    _deliver(view, path, frame, ds)
    _replace_in_zip(path, HUGE_MARKER, huge)


def _replace_in_zip(path: Path, marker: str, value: str) -> None:
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if marker.encode() in data:
                data = data.replace(marker.encode(), value.encode("utf-8"))
            target.writestr(item, data)
