"""Hostile deliveries: the broken files a department really sends now and then.

Each kind replaces that date's file drop with a faulty one, so the pipeline's checks
(encoding, schema drift, empty extract, oversized field, control file, header contract)
can be exercised on demand.

Every drop comes with a control file (``<file>.ctl``: rows and SHA-256). What happens to it
is the ``control`` argument: ``fresh`` (the department's tool wrote it for the file it
sent), ``stale`` (the control file of the full export stays while the data file was cut),
``wrong_rows`` (the checksum fits the file, the row count is the full export's: an export
tool that counted before it lost rows), ``none`` (no control file). Cuts default to
``stale``, every other kind to ``fresh``.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import zipfile
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from etl.contract import control_path
from simulator.build import STATE_DIR, drop_path
from simulator.catalog_view import DatasetView, catalog_by_id
from simulator.writers import CsvSink, JsonlSink, Sink, XlsxSink, write_control_file

HostileKind = Literal[
    "truncated",
    "cut_at_row",
    "notes_sheet",
    "headerless",
    "duplicated_column",
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
ControlMode = Literal["fresh", "stale", "wrong_rows", "none"]
CUT_SHARE = 0.6  # a row-boundary cut keeps the first 60 % of the rows
# what a clerk types on the notes sheet in front of the data (personal: must never leak)
NOTES = ["导出说明: 纳税人登记, 每日导出", "导出人: 陈大文 13812345678"]
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


def make_hostile_delivery(
    out_dir: Path,
    dataset: str,
    kind: HostileKind,
    ds: date,
    *,
    control: ControlMode | None = None,
) -> Path:
    """Replace the ``ds`` delivery of file drop ``dataset`` (``dept.dataset`` or its
    connection id) by a broken one of ``kind``; return the path written.

    ``control`` says what becomes of the control file (module doc); by default a cut
    leaves the full export's control file in place and every other kind gets a fresh one.
    """
    if kind not in HOSTILE_KINDS:
        raise ValueError(f"unknown hostile kind {kind!r}; one of {', '.join(HOSTILE_KINDS)}")
    out_dir = Path(out_dir).resolve()
    view = _find(dataset)
    _check_applies(view, kind)
    path = drop_path(out_dir, view, ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
        return path
    frame = pd.read_parquet(out_dir / STATE_DIR / f"{view.id}.parquet", columns=list(view.fields))
    full_export = None
    if kind in ("truncated", "cut_at_row"):
        _deliver(view, path, frame, ds)
        full_export = json.loads(control_path(path).read_text(encoding="utf-8"))
    _write_kind(view, path, frame, ds, kind)
    _settle_control(path, view, control or ("stale" if full_export else "fresh"), full_export)
    return path


# kinds that only make sense for some formats (JSON Lines has no header row or sheets)
FORMATS = {
    "notes_sheet": ("excel",),
    "headerless": ("csv", "excel"),
    "duplicated_column": ("csv", "excel"),
    "mixed_encoding": ("csv", "jsonl"),
    "nul_in_name": ("csv", "jsonl"),
}


def hostile_kinds(dataset: str) -> tuple[str, ...]:
    """The hostile kinds that apply to file drop ``dataset`` (by its format)."""
    kind = _find(dataset).source.kind
    return tuple(k for k in HOSTILE_KINDS if kind in FORMATS.get(k, (kind,)))


def _check_applies(view: DatasetView, kind: str) -> None:
    formats = FORMATS.get(kind)
    if formats and view.source.kind not in formats:
        raise ValueError(f"a {kind} delivery applies to {'/'.join(formats)} drops, not {view.id}")


def _write_kind(
    view: DatasetView, path: Path, frame: pd.DataFrame, ds: date, kind: HostileKind
) -> None:
    """Write the faulty data file of ``kind`` (its control file is settled afterwards)."""
    if kind == "header_only" and view.source.kind == "jsonl":
        path.write_bytes(b"\n")  # JSON Lines has no header: a blank line, no records
        write_control_file(path, 0)
    elif kind == "header_only":
        _deliver(view, path, frame.iloc[:0], ds)
    elif kind == "truncated":
        _truncate(path, view)
    elif kind == "cut_at_row":
        _cut_at_row(path, view, frame, ds)
    elif kind == "notes_sheet":
        _deliver(view, path, frame, ds, notes=NOTES)
    elif kind == "headerless":
        _deliver(view, path, frame, ds, header=False)
    elif kind == "duplicated_column":
        # the exporter labels a second column with the same name as the first ordinary one
        column = victim(view)
        other = next(f for f in reversed(view.fields) if f not in (view.key, column))
        header = [column if f == other else f for f in view.fields]
        _deliver(view, path, frame, ds, header=header)
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


def _settle_control(
    path: Path, view: DatasetView, mode: ControlMode, full_export: dict | None
) -> None:
    """Leave the control file as ``mode`` says (see the module doc)."""
    ctl = control_path(path)
    if mode == "none":
        ctl.unlink(missing_ok=True)
        return
    if mode == "stale" and full_export is not None:
        ctl.write_text(json.dumps(full_export) + "\n", encoding="utf-8")
        return
    # the writer's own count stands unless the file was cut; the checksum is the file's
    rows = _data_rows(path, view) if full_export or not ctl.exists() else _rows_in(ctl)
    write_control_file(path, rows)
    if mode == "wrong_rows" and full_export is not None:
        body = json.loads(ctl.read_text(encoding="utf-8")) | {"rows": full_export["rows"]}
        ctl.write_text(json.dumps(body) + "\n", encoding="utf-8")


def _rows_in(ctl: Path) -> int:
    return int(json.loads(ctl.read_text(encoding="utf-8"))["rows"])


def _data_rows(path: Path, view: DatasetView) -> int:
    """Rows a department's tool would count in the file as it is (complete lines)."""
    if view.source.kind == "excel":
        from python_calamine import CalamineWorkbook

        try:
            book = CalamineWorkbook.from_path(str(path))
            sheet = book.get_sheet_by_name(view.source.sheet or "taxpayer")
        except Exception:  # noqa: BLE001 - a cut workbook: the tool counted nothing
            return 0
        return max(sum(1 for _ in sheet.iter_rows()) - 1, 0)
    data = path.read_bytes()
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    return lines - (1 if view.source.kind == "csv" else 0)


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


def _deliver(
    view: DatasetView,
    path: Path,
    frame: pd.DataFrame,
    ds: date,
    *,
    header: list[str] | bool = True,
    notes: list[str] | None = None,
) -> None:
    """Write ``frame`` (whatever its columns) in the view's file format at ``path``.

    ``header`` may be ``False`` (no header row) or the names to write instead of the
    frame's (e.g. one name twice); ``notes`` puts a notes sheet in front (.xlsx).
    """
    view = replace(view, fields=tuple(frame.columns))
    sink = _sink_at(view, path, ds, header=header, notes=notes)
    try:
        for start in range(0, max(len(frame), 1), 200_000):
            sink.write(frame.iloc[start : start + 200_000])
    finally:
        sink.close()
    if view.source.kind == "csv" and header is not True:
        _replace_csv_header(path, view, header)


def _sink_at(
    view: DatasetView,
    path: Path,
    ds: date,
    *,
    header: list[str] | bool = True,
    notes: list[str] | None = None,
) -> Sink:
    if view.source.kind == "csv":
        return CsvSink(path, view.source.encoding or "utf-8")
    if view.source.kind == "jsonl":
        return JsonlSink(path)
    names = header if isinstance(header, list) else list(view.fields)
    return XlsxSink(
        path,
        names,
        ds,
        sheet=view.source.sheet or "taxpayer",
        notes=notes,
        header=header is not False,
    )


def _replace_csv_header(path: Path, view: DatasetView, header: list[str] | bool) -> None:
    """Drop the header line (``False``) or write other names in it (a list)."""
    data = path.read_bytes()
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    body = data[len(bom) :].split(b"\n", 1)[1]
    if isinstance(header, list):
        names = ",".join(f'"{n}"' for n in header) + "\n"
        body = names.encode(view.source.encoding or "utf-8") + body
    path.write_bytes(bom + body)


def _cut_at_row(path: Path, view: DatasetView, frame: pd.DataFrame, ds: date) -> None:
    """Keep the first 60 % of the rows, cut cleanly after a row (.xlsx: a shorter export)."""
    keep = int(len(frame) * CUT_SHARE)
    if view.source.kind == "excel":
        _deliver(view, path, frame.iloc[:keep], ds)
        return
    data = path.read_bytes()
    line_ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
    lines = keep + (1 if view.source.kind == "csv" else 0)  # + the header line
    path.write_bytes(data[: line_ends[lines - 1] + 1])


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
