"""Bad data files and sizes end in one clear line: ``mtp validate`` exits 2 with a single
``mtp: error: ...`` line naming the file and column, the value and what is allowed; no
traceback, nothing allocated beyond what fits, and the files it was given left as they were.

Every case writes a real CSV or Parquet file (pyarrow) and runs the CLI in this process; a few
direct ``load_dataset`` tests pin the exact messages, and valid-data controls check that the
same loaders still accept (and number exactly as before) what they should.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtp.cli import main
from mtp_core.spec import FileDataset, SyntheticDataset, TaskKind
from tests.support.files import snapshot
from trainer import DataError
from trainer.data import (
    CSV_NULL_SPELLINGS,
    MAX_CLASSES,
    MAX_INFERRED_CLASSES,
    available_memory,
    format_bytes,
    load_dataset,
)

Make = Callable[[Path], dict[str, Any]]


def _csv(d: Path, name: str, text: str | bytes) -> dict[str, Any]:
    data = text.encode() if isinstance(text, str) else text
    (d / name).write_bytes(data)
    return {"source": "csv", "path": name}


def _pq(d: Path, name: str, table: pa.Table) -> dict[str, Any]:
    pq.write_table(table, d / name)
    return {"source": "parquet", "path": name}


def _rows(labels: list[Any]) -> str:
    """A CSV with a numeric feature ``a`` and the target ``y`` holding ``labels``."""
    return "a,y\n" + "".join(f"{i},{v}\n" for i, v in enumerate(labels))


def _feat(n: int) -> list[float]:
    return [float(i) for i in range(n)]


@dataclass(frozen=True)
class Case:
    id: str
    make: Make  # writes the file(s) into the folder; returns the task's dataset section
    expect: tuple[str, ...]  # each must appear in the one error line
    target: str = "y"
    extra: dict[str, Any] = field(default_factory=dict)  # more dataset fields (kind, ...)


def _case(id: str, make: Make, *expect: str, **extra: Any) -> Case:
    return Case(id, make, expect, extra=extra)


# -- every kind of bad input, several ways each ------------------------------------------------

DUPLICATE_COLUMNS = [
    _case("csv-feature-twice", lambda d: _csv(d, "dup.csv", "a,a,y\n1,2,0\n3,4,1\n"),
          "dup.csv", "two columns named 'a'", "columns 1 and 2", "must be unique"),
    _case("csv-target-twice", lambda d: _csv(d, "dupy.csv", "a,y,y\n1,0,0\n3,1,1\n"),
          "dupy.csv", "two columns named 'y'", "columns 2 and 3"),
    _case("csv-far-apart", lambda d: _csv(d, "dup3.csv", "b,a,c,y,b\n1,2,3,0,5\n1,2,3,1,5\n"),
          "dup3.csv", "two columns named 'b'", "columns 1 and 5"),
    _case("parquet", lambda d: _pq(d, "dup.parquet", pa.table(
        [pa.array([1, 2]), pa.array([3, 4]), pa.array([0, 1])], names=["a", "a", "y"])),
          "dup.parquet", "two columns named 'a'"),
]

INVALID_UTF8 = [
    _case("csv-target", lambda d: _csv(d, "u.csv", b"a,y\n1,ab\xff\n2,cd\n3,cd\n"),
          "u.csv", "column 'y'", "not valid UTF-8", "row 1", "b'ab\\xff'"),
    _case("csv-latin1-label", lambda d: _csv(d, "l1.csv", "a,y\n1,cafe\n2,café\n3,tea\n"
                                             .encode("latin-1")),
          "l1.csv", "column 'y'", "not valid UTF-8", "row 2", "b'caf\\xe9'"),
    _case("csv-feature", lambda d: _csv(d, "uf.csv", b"a,b,y\n1,2,0\n2,x\xfe,1\n3,4,1\n"),
          "uf.csv", "column 'b'", "not valid UTF-8", "row 2"),
    _case("csv-header", lambda d: _csv(d, "uh.csv", b"a\xff,y\n1,0\n2,1\n"),
          "uh.csv", "header", "not valid UTF-8", "\\xff"),
    _case("parquet-string-target", lambda d: _pq(d, "u.parquet", pa.table({
        "a": [1.0, 2.0, 3.0],
        "y": pa.array([b"ok", b"ok", b"\xff\xfe"], pa.binary()).view(pa.string())})),
          "u.parquet", "column 'y'", "not valid UTF-8", "row 3"),
    _case("parquet-string-feature", lambda d: _pq(d, "uf.parquet", pa.table({
        "s": pa.array([b"\xc3", b"ok"], pa.binary()).view(pa.string()), "y": [0, 1]})),
          "uf.parquet", "column 's'", "not valid UTF-8", "row 1"),
]

NON_SCALAR_TARGET = [
    _case("list", lambda d: _pq(d, "l.parquet", pa.table({"a": [1.0, 2.0], "y": [[1], [2]]})),
          "l.parquet", "dataset.target 'y'", "type list<", "a target must be a number"),
    _case("struct", lambda d: _pq(d, "s.parquet", pa.table(
        {"a": [1.0, 2.0], "y": [{"u": 1}, {"u": 2}]})), "s.parquet", "type struct<"),
    _case("map", lambda d: _pq(d, "m.parquet", pa.table({"a": [1.0, 2.0], "y": pa.array(
        [[("k", 1)], [("k", 2)]], pa.map_(pa.string(), pa.int64()))})), "m.parquet", "type map<"),
    _case("binary", lambda d: _pq(d, "b.parquet", pa.table(
        {"a": [1.0, 2.0], "y": pa.array([b"a", b"b"], pa.binary())})),
          "b.parquet", "has type binary", "text label (string or dictionary)"),
    _case("fixed-size-binary", lambda d: _pq(d, "fb.parquet", pa.table(
        {"a": [1.0, 2.0], "y": pa.array([b"ab", b"cd"], pa.binary(2))})),
          "fb.parquet", "fixed_size_binary"),
    _case("timestamp", lambda d: _pq(d, "ts.parquet", pa.table(
        {"a": [1.0, 2.0], "y": pa.array([1, 2], pa.timestamp("s"))})),
          "ts.parquet", "type timestamp"),
    _case("list-as-regression", lambda d: _pq(d, "lr.parquet", pa.table(
        {"a": [1.0, 2.0], "y": [[1.5], [2.5]]})), "lr.parquet", "type list<", kind="regression"),
]

MISSING_TARGET = [
    *[_case(f"csv-label-{spelling or 'empty'}", lambda d, s=spelling: _csv(
        d, "miss.csv", _rows(["cat", "dog", s, "cat"])), "miss.csv", "dataset.target 'y'",
        "1 missing value", "row 3", "an empty field and #N/A", "NA", "nan", "count as missing")
      for spelling in ("nan", "NaN", "NA", "", "N/A", "null", "NULL", "#N/A")],
    _case("csv-number-nan", lambda d: _csv(d, "mn.csv", _rows([0, 1, "nan", 1])),
          "mn.csv", "1 missing value", "row 3", "count as missing"),
    _case("csv-two-missing", lambda d: _csv(d, "m2.csv", _rows(["a", "NA", "b", ""])),
          "m2.csv", "2 missing values", "row 2"),
    _case("parquet-float-nan-classification", lambda d: _pq(d, "n.parquet", pa.table(
        {"a": [1.0, 2.0, 3.0], "y": [0.0, float("nan"), 1.0]})),
          "n.parquet", "1 NaN value", "row 2", "cannot be missing", kind="classification"),
    _case("parquet-float-nan-regression", lambda d: _pq(d, "nr.parquet", pa.table(
        {"a": [1.0, 2.0, 3.0], "y": [0.5, 1.5, float("nan")]})),
          "nr.parquet", "1 NaN value", "row 3"),
    _case("parquet-null-string", lambda d: _pq(d, "ns.parquet", pa.table(
        {"a": [1.0, 2.0, 3.0], "y": ["cat", None, "dog"]})),
          "ns.parquet", "1 missing value", "row 2"),
    _case("parquet-null-int", lambda d: _pq(d, "ni.parquet", pa.table(
        {"a": [1.0, 2.0, 3.0], "y": pa.array([0, 1, None], pa.int64())})),
          "ni.parquet", "1 missing value", "row 3"),
    _case("parquet-all-null", lambda d: _pq(d, "an.parquet", pa.table(
        {"a": [1.0, 2.0], "y": pa.array([None, None], pa.null())})),
          "an.parquet", "2 missing values (every row)"),
]

ONE_CLASS = [
    _case("ints-all-3", lambda d: _csv(d, "s3.csv", _rows([3, 3, 3])),
          "s3.csv", "dataset.target 'y'", "single class", "all 3 rows are labelled 3",
          "at least 2 distinct labels"),
    _case("ints-all-0", lambda d: _csv(d, "s0.csv", _rows([0, 0])),
          "s0.csv", "single class", "labelled 0"),
    _case("text-all-cat", lambda d: _csv(d, "sc.csv", _rows(["cat"] * 4)),
          "sc.csv", "single class", "labelled 'cat'"),
    _case("bool-all-true", lambda d: _pq(d, "sb.parquet", pa.table(
        {"a": [1.0, 2.0], "y": [True, True]})), "sb.parquet", "single class", "labelled True"),
    _case("max-samples-leaves-one", lambda d: _csv(d, "sm.csv", _rows([1, 1, 1, 2])),
          "sm.csv", "single class", "all 3 rows are labelled 1", max_samples=3),
]

TOO_FEW_ROWS = [
    _case("csv-one-row-label-3", lambda d: _csv(d, "one.csv", _rows([3])),
          "one.csv", "has 1 row; it needs at least 2"),
    _case("csv-one-row-text", lambda d: _csv(d, "onet.csv", _rows(["cat"])),
          "onet.csv", "has 1 row; it needs at least 2"),
    _case("parquet-one-row", lambda d: _pq(d, "one.parquet", pa.table({"a": [1.0], "y": [7]})),
          "one.parquet", "has 1 row; it needs at least 2"),
    _case("header-only", lambda d: _csv(d, "e.csv", "a,y\n"), "e.csv", "is empty: 0 rows"),
    _case("max-samples-1", lambda d: _csv(d, "m1.csv", _rows([0, 1, 0, 1])),
          "m1.csv", "has 1 row (dataset.max_samples=1 of its 4 rows)", max_samples=1),
]

TOO_MANY_CLASSES = [
    _case("int-2e9", lambda d: _csv(d, "big.csv", _rows([0, 2_000_000_000, 0])),
          "big.csv", "largest class label is 2000000000", "2,000,000,001 units",
          "7.5 GiB of weights per unit", f"MAX_CLASSES={MAX_CLASSES:,}",
          kind="classification"),
    _case("int-just-over", lambda d: _csv(d, "over.csv", _rows([0, MAX_CLASSES, 1])),
          "over.csv", f"{MAX_CLASSES + 1:,} units", kind="classification"),
    _case("parquet-uint64-huge", lambda d: _pq(d, "u64.parquet", pa.table(
        {"a": [1.0, 2.0], "y": pa.array([0, 2**64 - 1], pa.uint64())})),
          "u64.parquet", "largest class label is 18446744073709551615", kind="classification"),
    _case("text-labels", lambda d: _csv(d, "many.csv", _rows(
        [f"c{i}" for i in range(MAX_CLASSES + 1)])),
          "many.csv", f"{MAX_CLASSES + 1:,} distinct labels", "MAX_CLASSES",
          kind="classification"),
]

NOT_A_LABEL = [
    _case("float-0.37-classification", lambda d: _csv(d, "ni.csv", _rows([0, 0.37, 1])),
          "ni.csv", "holds 0.37 at row 2", "not a whole number", "dataset.kind: regression",
          kind="classification"),
    _case("float-inf-classification", lambda d: _pq(d, "inf.parquet", pa.table(
        {"a": [1.0, 2.0, 3.0], "y": [0.0, 1.0, float("inf")]})),
          "inf.parquet", "holds inf at row 3", kind="classification"),
    _case("decimal-classification", lambda d: _pq(d, "dc.parquet", pa.table(
        {"a": [1.0, 2.0], "y": pa.array([Decimal("1.00"), Decimal("2.50")],
                                        pa.decimal128(5, 2))})),
          "dc.parquet", "holds 2.5 at row 2", kind="classification"),
    _case("many-ints-no-kind", lambda d: _csv(d, "mi.csv", _rows([i * 3 for i in range(300)])),
          "mi.csv", "integers from 0 to 897 (300 distinct values)", "898 classes",
          f"more than the {MAX_INFERRED_CLASSES}", "dataset.kind: regression",
          "dataset.kind: classification"),
    _case("years-no-kind", lambda d: _csv(d, "yr.csv", _rows([1990 + i % 31 for i in range(62)])),
          "yr.csv", "integers from 1990 to 2020 (31 distinct values)", "2,021 classes"),
    _case("huge-int-no-kind", lambda d: _csv(d, "hi.csv", _rows([0, 2_000_000_000])),
          "hi.csv", "integers from 0 to 2000000000 (2 distinct values)", "set dataset.kind"),
    _case("many-text-no-kind", lambda d: _csv(d, "mt.csv", _rows(
        [f"id{i}" for i in range(150)])), "mt.csv", "150 distinct text values",
          "dataset.kind: classification"),
    _case("numbers-with-a-stray-marker", lambda d: _csv(d, "stray.csv", _rows(
        [f"{i}.5" for i in range(200)] + ["?"])), "stray.csv", "201 distinct text values",
          "looks numeric but row 201 holds '?'"),
    _case("regression-on-text", lambda d: _csv(d, "rt.csv", _rows(["1.5", "2.5", "n.a."])),
          "rt.csv", "has type string; regression needs numbers",
          "row 3 holds 'n.a.'", kind="regression"),
    _case("regression-on-numbers-as-text", lambda d: _pq(d, "nt.parquet", pa.table(
        {"a": [1.0, 2.0], "y": ["1.5", "2.5"]})), "nt.parquet", "regression needs numbers",
          "all numbers written as text", kind="regression"),
    _case("regression-on-bool", lambda d: _pq(d, "rb.parquet", pa.table(
        {"a": [1.0, 2.0], "y": [True, False]})), "rb.parquet", "regression needs numbers",
          kind="regression"),
    _case("negative-label", lambda d: _csv(d, "neg.csv", _rows([-1, 0, 1])),
          "neg.csv", "class labels must be >= 0, got -1"),
]

BAD_FEATURES = [
    _case("inf", lambda d: _csv(d, "inf.csv", "a,b,y\n1,2,0\n2,inf,1\n3,4,1\n"),
          "inf.csv", "1 row with NaN or infinite", "row 2", "feature 'b'"),
    _case("parquet-nan", lambda d: _pq(d, "nan.parquet", pa.table(
        {"a": [1.0, float("nan"), 2.0], "y": [0, 1, 0]})),
          "nan.parquet", "NaN or infinite", "row 2"),
    _case("csv-missing", lambda d: _csv(d, "fm.csv", "a,y\n1,0\nNA,1\n3,0\n"),
          "fm.csv", "feature column 'a'", "1 missing value", "row 2", "count as missing"),
    _case("csv-empty-column", lambda d: _csv(d, "fe.csv", "a,b,y\n1,,0\n2,,1\n"),
          "fe.csv", "feature column 'b'", "2 missing values (every row)", "drop the column"),
    _case("beyond-float32", lambda d: _pq(d, "r.parquet", pa.table(
        {"a": [1.0, 1e300, 3.0], "y": [0, 1, 0]})),
          "r.parquet", "feature column 'a'", "holds 1e+300 at row 2", "float32"),
    _case("text", lambda d: _csv(d, "ft.csv", "a,b,y\n1,x,0\n2,z,1\n"),
          "ft.csv", "feature column 'b'", "type string", "must be numeric"),
    _case("list", lambda d: _pq(d, "fl.parquet", pa.table({"a": [[1.0], [2.0]], "y": [0, 1]})),
          "fl.parquet", "feature column 'a'", "type list<"),
]

UNREADABLE = [
    _case("ragged-row-with-quoted-newline", lambda d: _csv(
        d, "rag.csv", 'a,y\n1,0\n"2\nx",1,5\n'), "rag.csv", "not a readable csv file",
          "Expected 2 columns, got 3"),
    _case("empty-file", lambda d: _csv(d, "zero.csv", ""), "zero.csv", "Empty CSV file"),
    _case("unterminated-quote", lambda d: _csv(d, "q.csv", 'a,y\n1,0\n"2,1\n'),
          "q.csv", "not a readable csv file"),
    _case("junk-parquet", lambda d: _csv(d, "junk.parquet", b"not parquet at all")
          | {"source": "parquet"}, "junk.parquet", "not a readable parquet file"),
    _case("truncated-parquet", lambda d: _truncated_parquet(d), "cut.parquet",
          "not a readable parquet file"),
    _case("parquet-read-as-csv", lambda d: _pq(d, "p.parquet", pa.table(
        {"a": [1.0, 2.0], "y": [0, 1]})) | {"source": "csv"}, "p.parquet"),
]


def _truncated_parquet(d: Path) -> dict[str, Any]:
    pq.write_table(pa.table({"a": _feat(100), "y": [i % 2 for i in range(100)]}), d / "x.pq")
    data = (d / "x.pq").read_bytes()
    (d / "x.pq").unlink()
    (d / "cut.parquet").write_bytes(data[: len(data) // 2] + data[-8:])
    return {"source": "parquet", "path": "cut.parquet"}


KINDS = {
    "duplicate-columns": DUPLICATE_COLUMNS,
    "invalid-utf8": INVALID_UTF8,
    "non-scalar-target": NON_SCALAR_TARGET,
    "missing-target": MISSING_TARGET,
    "one-class": ONE_CLASS,
    "too-few-rows": TOO_FEW_ROWS,
    "too-many-classes": TOO_MANY_CLASSES,
    "not-a-label": NOT_A_LABEL,
    "bad-features": BAD_FEATURES,
    "unreadable": UNREADABLE,
}
ALL_CASES = [pytest.param(case, id=f"{kind}:{case.id}")
             for kind, cases in KINDS.items() for case in cases]


# -- the CLI run and what every failure must look like -----------------------------------------


def _config(d: Path, dataset: dict[str, Any], model: dict[str, Any] | None = None) -> Path:
    task = {"name": "bad-data", "model": model or {"type": "mlp", "hidden_sizes": [8]},
            "dataset": dataset, "resources": {"num_workers": 1},
            "consistency": {"cache": {"enabled": False}, "sharing": {"enabled": False}}}
    path = d / "task.json"
    path.write_text(json.dumps(task))
    return path


def _validate(cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int | str | None, str, str]:
    try:
        code: int | str | None = main(["validate", str(cfg)])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def _fails_with_one_line(d: Path, cfg: Path, capsys: pytest.CaptureFixture[str],
                         expect: tuple[str, ...]) -> str:
    before = snapshot(d)
    code, out, err = _validate(cfg, capsys)
    assert "Traceback" not in out + err, err
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtp: error: "), err
    for part in expect:
        assert part in lines[0], f"{part!r} not in {lines[0]!r}"
    assert out == "", out
    assert snapshot(d) == before  # nothing written, nothing changed
    return lines[0]


@pytest.mark.parametrize("case", ALL_CASES)
def test_bad_data_is_one_error_line(case: Case, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    dataset = case.make(tmp_path) | {"target": case.target, **case.extra}
    _fails_with_one_line(tmp_path, _config(tmp_path, dataset), capsys, case.expect)


@pytest.fixture
def little_memory(monkeypatch: pytest.MonkeyPatch) -> int:
    """The machine has 1 GiB available, as far as the size checks can tell."""
    gib = 1 << 30
    monkeypatch.setattr("trainer.data.available_memory", lambda: gib)
    monkeypatch.setattr("trainer.models.available_memory", lambda: gib)
    return gib


@pytest.mark.parametrize(("kind", "n_samples", "n_features", "per_value"), [
    ("classification", 5_000_000, 100, 24),
    ("regression", 100_000, 1_000, 16),
    ("classification", 1_000_000, 50, 24),
])
@pytest.mark.usefixtures("little_memory")
def test_synthetic_data_beyond_memory_is_refused_before_generating(
        kind: str, n_samples: int, n_features: int, per_value: int, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    dataset = {"source": "synthetic", "kind": kind, "n_samples": n_samples,
               "n_features": n_features}
    need = format_bytes(n_samples * n_features * per_value)
    _fails_with_one_line(tmp_path, _config(tmp_path, dataset), capsys, (
        f"dataset.n_samples={n_samples} x dataset.n_features={n_features}",
        f"{n_samples * n_features:,} values", f"needs {need} of memory",
        "but 1.0 GiB is available", "lower dataset.n_samples or dataset.n_features"))


def test_files_beyond_memory_are_refused_before_reading(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 300,000 rows x 41 int8 columns: 11.7 MiB decoded (exact, from the file's metadata) plus
    # 45.8 MiB of float32 features
    monkeypatch.setattr("trainer.data.available_memory", lambda: 32 << 20)
    rows = 300_000
    table = pa.table({f"c{i}": pa.array(np.zeros(rows, np.int8)) for i in range(40)}
                     | {"y": pa.array(np.arange(rows) % 2, pa.int8())})
    pq.write_table(table, tmp_path / "wide.parquet")
    need = format_bytes(rows * 41 + rows * 40 * 4)
    cfg = _config(tmp_path, {"source": "parquet", "path": "wide.parquet", "target": "y"})
    _fails_with_one_line(tmp_path, cfg, capsys, (
        "wide.parquet", "300,000 rows x 41 used columns", f"needs {need} of memory",
        "32.0 MiB is available", "dataset.features"))
    (tmp_path / "wide.csv").write_text(  # about 130,000 rows estimated from the first MiB
        ",".join(table.column_names) + "\n" + ("0," * 40 + "1\n") * 130_000)
    cfg = _config(tmp_path, {"source": "csv", "path": "wide.csv", "target": "y"})
    _fails_with_one_line(tmp_path, cfg, capsys, (
        "wide.csv", "(about 1", "rows x 41 used columns", "32.0 MiB is available"))


@pytest.mark.usefixtures("little_memory")
def test_a_model_beyond_memory_is_refused_before_it_is_built(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _csv(tmp_path, "ok.csv", _rows([0, 1] * 5)) | {"target": "y"}
    model = {"type": "mlp", "hidden_sizes": [65536, 65536, 65536]}
    _fails_with_one_line(tmp_path, _config(tmp_path, d, model), capsys, (
        "model.hidden_sizes=[65536, 65536, 65536]", "parameters", "GiB of float32 weights",
        "adam state", "1.0 GiB of memory is available"))


# -- the exact messages (direct load_dataset) ---------------------------------------------------


def _file(path: Path, **kw: Any) -> FileDataset:
    source = "csv" if path.suffix == ".csv" else "parquet"
    return FileDataset(source=source, path=path, target=kw.pop("target", "y"), **kw)


def test_exact_messages(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,a,y\n1,2,0\n3,4,1\n")
    with pytest.raises(DataError) as err:
        load_dataset(_file(tmp_path / "d.csv"))
    assert str(err.value) == (f"{str(tmp_path / 'd.csv')!r} has two columns named 'a' "
                              "(columns 1 and 2); column names must be unique: rename one")

    (tmp_path / "m.csv").write_text(_rows(["cat", "NA", "dog"]))
    with pytest.raises(DataError) as err:
        load_dataset(_file(tmp_path / "m.csv"))
    spellings = ", ".join(s for s in CSV_NULL_SPELLINGS if s)
    assert str(err.value) == (
        f"dataset.target 'y' in {str(tmp_path / 'm.csv')!r} has 1 missing value (first: row 2)"
        f"; in a CSV an empty field and {spellings} count as missing; a target cannot be "
        "missing: fill them in or drop those rows")

    (tmp_path / "s.csv").write_text(_rows([3, 3, 3]))
    with pytest.raises(DataError) as err:
        load_dataset(_file(tmp_path / "s.csv"))
    assert str(err.value) == (
        f"dataset.target 'y' in {str(tmp_path / 's.csv')!r} has a single class: all 3 rows "
        "are labelled 3; classification needs at least 2 distinct labels")

    (tmp_path / "one.csv").write_text(_rows([3]))
    with pytest.raises(DataError) as err:
        load_dataset(_file(tmp_path / "one.csv"))
    assert str(err.value) == f"dataset {str(tmp_path / 'one.csv')!r} has 1 row; it needs at least 2"

    (tmp_path / "f.csv").write_text(_rows([0, 0.37, 1]))
    with pytest.raises(DataError) as err:
        load_dataset(_file(tmp_path / "f.csv", kind=TaskKind.CLASSIFICATION))
    assert str(err.value) == (
        f"dataset.target 'y' in {str(tmp_path / 'f.csv')!r} holds 0.37 at row 2, not a whole "
        "number, so it cannot be a class label; for a continuous target set dataset.kind: "
        "regression")


def test_synthetic_size_is_checked_against_the_memory_given() -> None:
    spec = SyntheticDataset(source="synthetic", n_samples=1000, n_features=1000)
    with pytest.raises(DataError) as err:
        load_dataset(spec, available_bytes=10_000_000)
    assert str(err.value) == (
        "dataset.n_samples=1000 x dataset.n_features=1000 (1,000,000 values; generating them "
        "as float64 takes 24 bytes per value) needs 22.9 MiB of memory but 9.5 MiB is "
        "available; lower dataset.n_samples or dataset.n_features")
    assert load_dataset(spec, available_bytes=30_000_000).features.shape == (1000, 1000)


def test_csv_size_is_estimated_from_its_first_mib(tmp_path: Path) -> None:
    rows = 400_000  # about 2.7 MiB of text: the row count is estimated from the first MiB
    (tmp_path / "big.csv").write_text(
        "a,b,y\n" + "".join(f"{i % 97},{i % 13},{i % 2}\n" for i in range(rows)))
    spec = _file(tmp_path / "big.csv")
    with pytest.raises(DataError, match=r"\(about (39\d|40\d),\d\d\d rows x 3 used columns, "
                       r"decoded, plus the float32 features\) needs 12\.\d MiB of memory but "
                       r"10\.0 MiB"):
        load_dataset(spec, available_bytes=10 << 20)
    assert load_dataset(spec, available_bytes=20 << 20).num_samples == rows


def test_no_reader_error_escapes(tmp_path: Path) -> None:
    """Whatever the bytes, load_dataset raises a DataError naming the file (never a pyarrow,
    Unicode or key error)."""
    rng = np.random.default_rng(0)
    blobs = [rng.bytes(n) for n in (1, 10, 1000, 100_000)]
    blobs += [b"PAR1" + rng.bytes(200) + b"PAR1", b"a,b\n\x00\x00,1\n", b"\xef\xbb\xbf", b",\n,"]
    for i, blob in enumerate(blobs):
        for suffix in (".csv", ".parquet"):
            path = tmp_path / f"blob{i}{suffix}"
            path.write_bytes(blob)
            try:
                load_dataset(_file(path))
            except DataError as err:
                assert path.name in str(err) and "\n" not in str(err), str(err)
            else:
                pytest.fail(f"{path.name} loaded")


# -- valid data: still accepted, numbered as before ---------------------------------------------


def test_decimal_targets_and_features_are_numbers(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    values = [Decimal(f"{i}.{(i * 37) % 100:02d}") for i in range(50)]
    for name, dtype in (("d128.parquet", pa.decimal128(12, 2)),
                        ("d256.parquet", pa.decimal256(60, 2))):
        pq.write_table(pa.table({"a": pa.array(values, dtype), "b": _feat(50),
                                 "y": pa.array(values[::-1], dtype)}), tmp_path / name)
        ds = load_dataset(_file(tmp_path / name))
        assert ds.kind is TaskKind.REGRESSION and ds.num_classes == 0
        assert ds.targets.tolist() == [np.float32(float(v)) for v in values[::-1]]
        assert ds.features[:, 0].tolist() == [np.float32(float(v)) for v in values]
        code, out, err = _validate(_config(tmp_path, {"source": "parquet", "path": name,
                                                      "target": "y"}), capsys)
        assert code == 0 and json.loads(out)["kind"] == "regression", err


def test_labels_keep_their_numbering(tmp_path: Path) -> None:
    (tmp_path / "l13.csv").write_text(_rows([1, 2, 3, 1, 2]))
    ds = load_dataset(_file(tmp_path / "l13.csv"))  # as before: labels are class indices
    assert ds.num_classes == 4 and ds.targets.tolist() == [1, 2, 3, 1, 2]
    (tmp_path / "k.csv").write_text(_rows([i % 12 for i in range(48)]))
    ds = load_dataset(_file(tmp_path / "k.csv"))
    assert ds.num_classes == 12 and ds.targets.tolist() == [i % 12 for i in range(48)]
    (tmp_path / "t.csv").write_text(_rows(["dog", "cat", "Bird", "émeu", "10", "2", "cat"]))
    ds = load_dataset(_file(tmp_path / "t.csv"))  # text labels: sorted distinct values
    assert ds.class_names == ("10", "2", "Bird", "cat", "dog", "émeu")
    assert ds.targets.tolist() == [4, 3, 2, 5, 0, 1, 3]
    pq.write_table(pa.table({"a": _feat(4), "y": pa.array(["b", "a", "b", "c"])
                             .dictionary_encode()}), tmp_path / "dict.parquet")
    ds = load_dataset(_file(tmp_path / "dict.parquet"))
    assert ds.class_names == ("a", "b", "c") and ds.targets.tolist() == [1, 0, 1, 2]
    pq.write_table(pa.table({"a": _feat(4), "y": [2.0, 0.0, 1.0, 2.0]}), tmp_path / "f.parquet")
    ds = load_dataset(_file(tmp_path / "f.parquet", kind=TaskKind.CLASSIFICATION))
    assert ds.class_names == ("0", "1", "2") and ds.targets.tolist() == [2, 0, 1, 2]


def test_explicit_kind_overrides_the_inference_limit(tmp_path: Path) -> None:
    (tmp_path / "mi.csv").write_text(_rows([i * 3 for i in range(300)]))
    reg = load_dataset(_file(tmp_path / "mi.csv", kind=TaskKind.REGRESSION))
    assert reg.kind is TaskKind.REGRESSION and reg.targets[-1] == 897.0
    cls = load_dataset(_file(tmp_path / "mi.csv", kind=TaskKind.CLASSIFICATION))
    assert cls.num_classes == 898
    (tmp_path / "max.csv").write_text(_rows([0, MAX_CLASSES - 1]))
    assert load_dataset(_file(tmp_path / "max.csv",
                              kind=TaskKind.CLASSIFICATION)).num_classes == MAX_CLASSES


def test_text_labels_spelled_like_numbers_or_words_are_classes(tmp_path: Path) -> None:
    # only the null spellings are missing; "None", "-", "0" stay labels
    (tmp_path / "w.csv").write_text(_rows(["None", "-", "0", "None"]))
    ds = load_dataset(_file(tmp_path / "w.csv"))
    assert ds.class_names == ("-", "0", "None")


def test_unused_columns_are_not_read(tmp_path: Path) -> None:
    (tmp_path / "u.csv").write_bytes(b"a,junk,y\n1,\xff,0\n2,[1],1\n3,x,0\n")
    ds = load_dataset(_file(tmp_path / "u.csv", features=["a"]))
    assert ds.feature_names == ("a",) and ds.num_samples == 3


def test_class_limit_matches_the_synthetic_bound() -> None:
    bound = next(m.le for m in SyntheticDataset.model_fields["n_classes"].metadata
                 if hasattr(m, "le"))
    assert bound == MAX_CLASSES


def test_available_memory_is_the_machines() -> None:
    have = available_memory()
    assert 0 < have < 2**50  # a real figure, not the no-check fallback
