"""Every kind of bad config file or value ends in one clear line, never a traceback or a hang.

The bulk runs ``mtp.cli.main`` in this process (a config error stops every command before
torch or Ray is loaded): exit code 2, exactly one ``mtp: error:`` line on stderr naming the file
or field, and every file that existed before the command byte-identical after it. A few cases
run the real ``python -m mtp.cli`` to prove a process ends by itself, quickly.
"""

from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtp.cli import main
from mtp_core.config_file import (
    MAX_CONFIG_BYTES,
    MAX_CONFIG_DEPTH,
    MAX_CONFIG_NODES,
    parse_override_value,
    parse_yaml,
    read_config_file,
)
from mtp_core.errors import ConfigError
from mtp_core.spec import load_raw_config, load_task, parse_task
from tests.conftest import REPO
from tests.support.files import snapshot

# a "billion laughs": 342 bytes of YAML that expand to 9**9 (387 million) strings
BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
# the same on one line, for --set: 10**7 values
INLINE_BOMB = "[&a [x,x,x,x,x,x,x,x,x,x]" + "".join(
    f", &{c} [" + ",".join([f"*{p}"] * 10) + "]"
    for p, c in zip("abcdef", "bcdefg", strict=True)) + "]"


def _task(**training: Any) -> dict[str, Any]:
    return {"name": "cfg-test", "model": {"type": "linear"},
            "dataset": {"source": "sklearn", "name": "iris"},
            "training": {"epochs": 1, "batch_size": 16, **training},
            "resources": {"num_workers": 1, "cpus_per_worker": 1},
            "consistency": {"cache": {"enabled": False}, "sharing": {"enabled": False}}}


def _yaml_task(**training: Any) -> str:
    return yaml.safe_dump(_task(**training), sort_keys=False)


def _file(d: Path, name: str, content: str | bytes) -> Path:
    p = d / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


# ---------------------------------------------------------------------------------------------
# Builders: each makes the config under tmp and returns the path (and extra --set arguments)

Made = tuple[Path, list[str]]
Build = Callable[[Path], Made]


def text(name: str, content: str | bytes, *sets: str) -> Build:
    return lambda d: (_file(d, name, content), list(sets))


def _missing(d: Path) -> Made:
    return d / "nope.yaml", []


def _broken_link(d: Path) -> Made:
    (d / "link.yaml").symlink_to(d / "gone.yaml")
    return d / "link.yaml", []


def _directory(d: Path) -> Made:
    (d / "dir.yaml").mkdir()
    return d / "dir.yaml", []


def _fifo(d: Path) -> Made:
    os.mkfifo(d / "pipe.yaml")
    return d / "pipe.yaml", []


def _device(d: Path) -> Made:
    (d / "dev.yaml").symlink_to("/dev/zero")
    return d / "dev.yaml", []


def _io_error(d: Path) -> Made:
    # a regular file (to stat) whose read fails with EIO, also for root: /proc/self/mem
    (d / "mem.yaml").symlink_to("/proc/self/mem")
    return d / "mem.yaml", []


def _under_a_file(d: Path) -> Made:
    _file(d, "plain.yaml", "a: 1\n")
    return d / "plain.yaml" / "task.yaml", []


def _no_permission(d: Path) -> Made:
    p = _file(d, "secret.yaml", _yaml_task())
    p.chmod(0)
    return p, []


def _huge(d: Path) -> Made:
    p = d / "huge.yaml"
    with p.open("wb") as f:  # sparse: no disk used
        f.truncate(MAX_CONFIG_BYTES + 1)
    return p, []


def _deep_yaml(levels: int) -> str:
    return "a: " + "[" * levels + "]" * levels + "\n"


def _deep_json(levels: int) -> str:
    return '{"a": ' + "[" * levels + "]" * levels + "}"


def _wide_yaml() -> str:
    return "items:\n" + "".join(f"- {i}\n" for i in range(MAX_CONFIG_NODES + 1))


def _merge_yaml(epochs: int) -> str:
    return ("defaults: &defaults {epochs: 5, batch_size: 16}\n"
            "name: merged\nmodel: {type: linear}\ndataset: {source: sklearn, name: iris}\n"
            f"training:\n  <<: *defaults\n  epochs: {epochs}\n")


ON_LINUX = Path("/proc/self/mem").exists()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# (id, build, words the error line must hold); {path} stands for the config file's path
FILE_CASES: list[Any] = [
    # the file itself: missing, unreadable, not a regular file, too large
    ("missing", _missing, ["{path}", "does not exist"]),
    ("broken-symlink", _broken_link, ["{path}", "does not exist", "broken symbolic link"]),
    ("directory", _directory, ["{path}", "is a directory", "allowed: a .yaml"]),
    ("fifo", _fifo, ["{path}", "not a regular file", "FIFO"]),
    ("device", _device, ["{path}", "not a regular file", "character device"]),
    pytest.param("io-error", _io_error, ["{path}", "cannot be read", "Input/output error"],
                 marks=pytest.mark.skipif(not ON_LINUX, reason="needs /proc/self/mem")),
    pytest.param("permission", _no_permission, ["{path}", "cannot be read", "denied"],
                 marks=pytest.mark.skipif(IS_ROOT, reason="root reads a chmod 000 file")),
    ("under-a-file", _under_a_file, ["{path}", "cannot be read", "Not a directory"]),
    ("too-large", _huge, ["{path}", "too large", f"{MAX_CONFIG_BYTES + 1:,} bytes",
                          "limit is 10,485,760 bytes (10 MiB)"]),
    ("unknown-extension", text("task.toml", "name = 'x'\n"),
     ["{path}", "unknown extension '.toml'", "allowed: .yaml, .yml, .json"]),
    # encoding
    ("latin-1", text("latin.yaml", "name: t\ndescription: caf\xe9\n".encode("latin-1")),
     ["{path}", "not utf-8", "byte 0xe9 at offset 24 (line 2, column 17)"]),
    ("utf-16", text("wide.yaml", _yaml_task().encode("utf-16")),
     ["{path}", "not utf-8", "UTF-16 byte-order mark", "offset 0"]),
    ("json-not-utf8", text("bad.json", b'{"name": "\xff"}'),
     ["{path}", "not utf-8", "byte 0xff at offset 10 (line 1, column 11)"]),
    ("nul-character", text("nul.yaml", "name: t\nmodel: \x00\n"),
     ["{path}", "not valid YAML", "unacceptable character #x0000 at line 2, column 8"]),
    # syntax
    ("yaml-unclosed", text("open.yaml", "name: [unclosed\nmodel: 1\n"),
     ["{path}", "not valid YAML", "line 1, column 7", "line 2"]),
    ("yaml-tab", text("tab.yaml", "training:\n\tepochs: 1\n"),
     ["{path}", "not valid YAML", "line 2, column 1"]),
    ("yaml-two-documents", text("two.yaml", "name: a\n---\nname: b\n"),
     ["{path}", "not valid YAML", "single document", "line 2"]),
    ("yaml-undefined-alias", text("alias.yaml", "name: *nowhere\n"),
     ["{path}", "not valid YAML", "undefined alias 'nowhere'", "line 1, column 7"]),
    ("json-syntax", text("bad.json", '{"name": "t",\n "model": }'),
     ["{path}", "not valid JSON", "line 2 column 11"]),
    ("json-single-quotes", text("q.json", "{'name': 't'}"),
     ["{path}", "not valid JSON", "double quotes"]),
    ("json-trailing-comma", text("c.json", '{"name": "t",}'), ["{path}", "not valid JSON"]),
    ("empty", text("empty.yaml", ""), ["{path}", "is empty"]),
    ("only-comments", text("comments.yaml", "# nothing here\n\n"), ["{path}", "is empty"]),
    ("whitespace-json", text("blank.json", " \n\t\n"), ["{path}", "is empty"]),
    ("json-null", text("null.json", "null"), ["{path}", "is empty"]),
    # anchors and aliases: recursion, expansion, depth
    ("self-anchor-list", text("self.yaml", "a: &x [*x]\n"),
     ["{path}", "alias *x at line 1, column 8", "inside the anchor &x", "recursive"]),
    ("self-anchor-map", text("selfmap.yaml", "name: &n {inner: *n}\n"),
     ["{path}", "alias *n", "recursive"]),
    ("indirect-anchor", text("ind.yaml", "a: &x\n  b:\n    - c: [1, *x]\n"),
     ["{path}", "alias *x at line 3", "recursive"]),
    ("billion-laughs", text("lol.yaml", BILLION_LAUGHS),
     ["{path}", "too large", f"more than {MAX_CONFIG_NODES:,} nodes",
      f"the limit is {MAX_CONFIG_NODES:,} nodes"]),
    ("wide-list", text("wide.yaml", _wide_yaml()),
     ["{path}", "too large", f"the limit is {MAX_CONFIG_NODES:,} nodes"]),
    ("wide-json", text("wide.json", json.dumps({"x": list(range(MAX_CONFIG_NODES + 1))})),
     ["{path}", "too large", f"the limit is {MAX_CONFIG_NODES:,} nodes"]),
    ("deep-yaml", text("deep.yaml", _deep_yaml(200)),
     ["{path}", f"nested more than {MAX_CONFIG_DEPTH} levels", "line 1"]),
    # libyaml's scanner reads ahead and may meet its own nesting limit (1000) first
    ("deeper-than-libyaml", text("deeper.yaml", _deep_yaml(5000)), ["{path}", "nest"]),
    ("deep-json", text("deep.json", _deep_json(200)),
     ["{path}", f"nested more than {MAX_CONFIG_DEPTH} levels"]),
    ("deepest-json", text("deepest.json", _deep_json(100_000)),
     ["{path}", "nested too deeply", f"limit is {MAX_CONFIG_DEPTH} levels"]),
    # duplicate keys (a merge is not one)
    ("dup-top", text("dup.yaml", "name: a\nmodel: {type: linear}\nname: b\n"),
     ["{path}", "name is given twice (lines 1 and 3)", "only once"]),
    ("dup-nested", text("dupn.yaml", "name: t\ntraining:\n  epochs: 1\n  batch_size: 4\n"
                        "  epochs: 2\n"),
     ["{path}", "training.epochs is given twice (lines 3 and 5)", "only once"]),
    ("dup-flow", text("dupf.yaml", "model: {type: linear, type: mlp}\n"),
     ["{path}", "model.type is given twice (line 1, columns 9 and 23)"]),
    ("dup-in-list", text("dupl.yaml", "a:\n  - x: 1\n    x: 2\n"),
     ["{path}", "a[0].x is given twice (lines 2 and 3)"]),
    ("dup-json", text("dup.json", '{"training": {"epochs": 1, "epochs": 2}, "name": "t"}'),
     ["{path}", "training.epochs is given twice", "only once in an object"]),
    ("dup-json-top", text("dupt.json", '{"name": "a", "name": "b"}'),
     ["{path}", "name is given twice"]),
    ("dup-merge-key", text("m2.yaml", "a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: *a\n  <<: *b\n"),
     ["{path}", "c.<<", "merge key '<<' is given twice (lines 4 and 5)", "<<: [*a, *b]"]),
    # tags and values that are not plain data
    ("python-object-apply", lambda d: (_file(d, "evil.yaml", "name: !!python/object/apply:os."
                                             f"mkdir ['{d / 'pwned'}']\n"), []),
     ["{path}", "name: the tag !!python/object/apply:os.mkdir at line 1", "not allowed",
      "plain data"]),
    ("python-name", text("pyname.yaml", "model: !!python/name:os.system ''\n"),
     ["{path}", "model: the tag !!python/name:os.system", "not allowed"]),
    ("python-object-map", text("pyobj.yaml", "model: !!python/object:os.Foo {a: 1}\n"),
     ["{path}", "!!python/object:os.Foo", "not allowed"]),
    ("custom-tag", text("tag.yaml", "name: !secret abc\n"), ["{path}", "!secret", "not allowed"]),
    ("binary", text("bin.yaml", "name: !!binary aGVsbG8=\n"), ["{path}", "!!binary"]),
    ("set", text("set.yaml", "name: !!set {a, b}\n"), ["{path}", "!!set", "not allowed"]),
    ("timestamp", text("date.yaml", "name: t\ndescription: 2024-01-31\n"),
     ["{path}", "description: '2024-01-31' at line 2, column 14", "timestamp", "quote it"]),
    ("int-key", text("ikey.yaml", "training:\n  1: x\n"),
     ["{path}", "training: the key '1' at line 2", "keys must be strings"]),
    ("bool-key", text("bkey.yaml", "on: 3\nname: t\n"),
     ["{path}", "the key 'on' at line 1", "YAML bool", "keys must be strings"]),
    ("list-key", text("lkey.yaml", "? [a, b]\n: 1\n"), ["{path}", "a key", "is a list"]),
    ("bad-explicit-int", text("bint.yaml", "training:\n  epochs: !!int many\n"),
     ["{path}", "training.epochs: 'many' at line 2", "not a valid !!int"]),
    ("bad-explicit-bool", text("bbool.yaml", "dataset: {standardize: !!bool maybe}\n"),
     ["{path}", "dataset.standardize: 'maybe'", "not a valid !!bool"]),
    ("long-integer", text("bigint.yaml", "training:\n  epochs: " + "9" * 5000 + "\n"),
     ["{path}", "training.epochs: an integer of 5,000 characters", "limit is 100"]),
    ("long-integer-json", text("bigint.json", '{"training": {"epochs": ' + "9" * 5000 + "}}"),
     ["{path}", "an integer of 5,000 digits", "limit is 100"]),
    # the top level must be a mapping
    ("top-list", text("list.yaml", "- 1\n- 2\n"), ["{path}", "expected a mapping", "list"]),
    ("top-string", text("str.yaml", "just words\n"), ["{path}", "expected a mapping", "str"]),
    ("top-number", text("num.json", "42"), ["{path}", "expected a mapping", "int"]),
    ("top-json-list", text("list.json", "[1, 2]"), ["{path}", "expected a mapping", "list"]),
]

# JSON's NaN and Infinity literals and YAML's .nan/.inf are read, then refused by the field
VALUE_CASES: list[Any] = [
    ("json-nan", text("nan.json", '{"name": "t", "model": {"type": "linear"}, "dataset": '
                      '{"source": "sklearn", "name": "iris"}, "training": {"learning_rate": '
                      "NaN}}"),
     ["{path}", "training.learning_rate: got nan", "NaN and infinity are not allowed",
      "allowed: a finite number > 0 and <= 10"]),
    ("json-infinity", text("inf.json", json.dumps({**_task(), "training": {
        "checkpoint": {"every_minutes": float("inf")}}})),
     ["{path}", "training.checkpoint.every_minutes: got inf", "a finite number >= 0"]),
    ("json-minus-infinity", text("minf.json", json.dumps({**_task(), "model": {
        "type": "mlp", "dropout": float("-inf")}})),
     ["{path}", "model.dropout: got -inf", "a finite number >= 0 and < 1"]),
    ("huge-float", text("big.yaml", _yaml_task(learning_rate=1e300)),
     ["{path}", "training.learning_rate: got 1e+300", "less than or equal to 10"]),
    ("bom-yaml", text("bom.yaml", codecs.BOM_UTF8 + _yaml_task(epochs=0).encode()),
     ["{path}", "training.epochs: got 0"]),
    ("bom-json", text("bom.json", codecs.BOM_UTF8 + json.dumps(_task(epochs=0)).encode()),
     ["{path}", "training.epochs: got 0"]),
    # cross-field checks of the spec
    ("image-shape-negative", text("img.yaml", _yaml_task(), "dataset.image_shape=[1,-8,8]"),
     ["{path}", "dataset.image_shape[1]: got -8", "greater than 0"]),
    ("image-shape-two-dims", text("img.yaml", _yaml_task(), "dataset.image_shape=[8,8]"),
     ["{path}", "dataset.image_shape", "expected 3 dimensions [channels, height, width], got 2"]),
    ("image-shape-huge", text("img.yaml", _yaml_task(), "dataset.image_shape=[3,65536,65536]"),
     ["{path}", "dataset.image_shape", "12,884,901,888 values per sample",
      "limit is 100,000,000"]),
    ("monitor-never-reported", text("m.yaml", _yaml_task(monitor={"metric": "val_r2"})),
     ["{path}", "training.monitor.metric=val_r2 is never reported by a classification task",
      "sklearn dataset iris", "allowed: auto, val_loss, val_accuracy"]),
    ("monitor-mode-contradicts", text("m.yaml", _yaml_task(
        monitor={"metric": "val_loss", "mode": "max"})),
     ["{path}", "training.monitor", "mode=max contradicts metric=val_loss", "auto or min"]),
    ("monitor-auto-mode", text("m.yaml", _yaml_task(monitor={"mode": "min"})),
     ["{path}", "training.monitor.mode=min", "val_accuracy for a classification task",
      "auto or max"]),
    ("loss-for-other-kind", text("l.yaml", _yaml_task(loss="mse")),
     ["{path}", "training.loss=mse does not fit a classification task", "cross_entropy"]),
    ("epochs-bool", text("b.yaml", _yaml_task(epochs=True)),
     ["{path}", "training.epochs: got true", "a boolean is not a number",
      "allowed: an integer >= 1 and <= 100000"]),
    ("epochs-huge", text("h.yaml", _yaml_task(epochs=2**70)),
     ["{path}", f"training.epochs: got {2**70}", "less than or equal to 100000"]),
    ("epochs-1e300", text("h.yaml", _yaml_task(epochs=1e300)),
     ["{path}", "training.epochs: got 1e+300: too large", "a whole number >= 1 and <= 100000"]),
    ("csv-empty-path", text("csv.yaml", json.dumps({**_task(), "dataset": {
        "source": "csv", "path": "", "target": "y"}})),
     ["{path}", "dataset.path", "the path is empty"]),
    ("csv-features-target", text("csv.yaml", json.dumps({**_task(), "dataset": {
        "source": "csv", "path": "t.csv", "target": "y", "features": ["a", "y"]}})),
     ["{path}", "features includes the target column 'y'"]),
    ("csv-features-twice", text("csv.yaml", json.dumps({**_task(), "dataset": {
        "source": "csv", "path": "t.csv", "target": "y", "features": ["a", "b", "a"]}})),
     ["{path}", "features lists ['a'] more than once"]),
    # --set values are bounded like files
    ("set-alias-bomb", text("ok.yaml", _yaml_task(), f"description={INLINE_BOMB}"),
     ["--set 'description=", "too large", f"limit is {MAX_CONFIG_NODES:,} nodes"]),
    ("set-self-anchor", text("ok.yaml", _yaml_task(), "model=&m {type: linear, x: *m}"),
     ["--set 'model=&m", "alias *m", "recursive"]),
    ("set-duplicate", text("ok.yaml", _yaml_task(), "model={type: linear, type: mlp}"),
     ["--set 'model=", "type is given twice"]),
    ("set-deep-key", text("ok.yaml", _yaml_task(), "a" + ".a" * 100 + "=1"),
     ["--set 'a.a.a", "101 parts", f"limit is {MAX_CONFIG_DEPTH}"]),
    ("set-deep-value", text("ok.yaml", _yaml_task(), "description=" + "[" * 100 + "]" * 100),
     ["--set 'description=[[[", f"nested more than {MAX_CONFIG_DEPTH} levels"]),
    ("set-nan", text("ok.yaml", _yaml_task(), "training.learning_rate=.nan"),
     ["{path}", "training.learning_rate: got nan", "a finite number > 0 and <= 10"]),
    ("set-timestamp-is-a-string", text("ok.yaml", _yaml_task(), "training.epochs=2024-01-31"),
     ["{path}", 'training.epochs: got "2024-01-31"', "valid integer"]),
    ("set-python-tag-is-a-string", text("ok.yaml", _yaml_task(),
                                        "training.epochs=!!python/object:os.system {}"),
     ["{path}", 'training.epochs: got "!!python/object:os.system {}"', "valid integer"]),
]



def _unpack(case: Any) -> tuple[str, Build, list[str], Any]:
    """(id, build, words, marks) of a plain tuple or a pytest.param."""
    if isinstance(case, tuple) and not hasattr(case, "marks"):
        return (*case, ())
    return (*case.values, case.marks)


# ids are unique, so a failure names its case
assert len({_unpack(c)[0] for c in FILE_CASES + VALUE_CASES}) == len(FILE_CASES + VALUE_CASES)


def _argv(command: str, config: Path, sets: list[str], store: Path) -> list[str]:
    argv = [command, str(config), *(a for s in sets for a in ("--set", s))]
    if command != "validate":
        argv += ["--storage-path", str(store)]
    return argv


def _case_params(cases: list[Any], commands: tuple[str, ...]) -> list[Any]:
    out = []
    for case in cases:
        cid, build, words, marks = _unpack(case)
        out += [pytest.param(command, build, words, id=f"{command}-{cid}", marks=marks)
                for command in commands]
    return out


def _run_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str], command: str, build: Build,
                    words: list[str]) -> None:
    monkeypatch.chdir(tmp_path)  # a default ./mtp_results would show up in the snapshot
    store = tmp_path / "store"
    (store / "earlier-run").mkdir(parents=True)
    (store / "earlier-run" / "result.json").write_text('{"kept": true}\n')
    config, sets = build(tmp_path)
    capsys.readouterr()
    before = snapshot(tmp_path)
    try:
        code = main(_argv(command, config, sets, store))
    except SystemExit as exit_:  # argparse's way out
        code = exit_.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    assert "Traceback" not in out + err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("mtp: error: "), line
    for word in words:
        word = word.replace("{path}", str(config))
        assert word in line, (word, line)
    assert snapshot(tmp_path) == before, "a file changed, appeared or vanished"
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(("command", "build", "words"),
                         _case_params(FILE_CASES, ("validate", "run", "verify", "tune")))
def test_bad_config_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], command: str,
                                     build: Build, words: list[str]) -> None:
    _run_in_process(tmp_path, monkeypatch, capsys, command, build, words)


@pytest.mark.parametrize(("command", "build", "words"),
                         _case_params(VALUE_CASES, ("validate", "run", "verify")))
def test_bad_config_value_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], command: str,
                                      build: Build, words: list[str]) -> None:
    _run_in_process(tmp_path, monkeypatch, capsys, command, build, words)


# ---------------------------------------------------------------------------------------------
# Real processes: the expansion that would exhaust memory and the structure that contains
# itself end in one line, at once


def _mtp(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "mtp.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(("name", "content", "sets", "words"), [
    ("lol.yaml", BILLION_LAUGHS, [], ["lol.yaml", "too large", "100,000 nodes"]),
    ("self.yaml", "a: &x [*x]\n", [], ["self.yaml", "alias *x", "recursive"]),
    ("ok.yaml", _yaml_task(), ["--set", f"description={INLINE_BOMB}"],
     ["--set 'description=", "too large"]),
], ids=["billion-laughs", "self-anchor", "set-alias-bomb"])
def test_real_process_ends_with_one_line(tmp_path: Path, name: str, content: str,
                                         sets: list[str], words: list[str]) -> None:
    assert len(BILLION_LAUGHS.encode()) < 1000
    cfg = _file(tmp_path, name, content)
    t0 = time.monotonic()
    proc = _mtp(["validate", str(cfg), *sets], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mtp: error: "), proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert time.monotonic() - t0 < 30


# ---------------------------------------------------------------------------------------------
# What is accepted, and the reader's functions directly


def test_merge_keys_and_explicit_keys_next_to_them(tmp_path: Path) -> None:
    raw = load_raw_config(_file(tmp_path, "merge.yaml", _merge_yaml(3)))
    assert raw["training"] == {"epochs": 3, "batch_size": 16}  # the explicit key wins
    del raw["defaults"]
    task = parse_task(raw)
    assert task.training.epochs == 3 and task.training.batch_size == 16
    raw = parse_yaml("base: &b {x: 1, y: 2}\nmore: &m {z: 3}\nc:\n  <<: [*b, *m]\n  y: 9\n",
                     "t.yaml")
    assert raw["c"] == {"x": 1, "y": 9, "z": 3}


def test_aliases_within_bounds_are_plain_unshared_data(tmp_path: Path) -> None:
    cfg = _file(tmp_path, "a.yaml", "x: &l [1, 2]\ny: *l\nname: t\n")
    raw = load_raw_config(cfg, ["name=u"])
    assert raw == {"x": [1, 2], "y": [1, 2], "name": "u"}
    assert raw["x"] is not raw["y"]  # overrides of one place do not change the other


@pytest.mark.parametrize("bom", [b"", codecs.BOM_UTF8])
@pytest.mark.parametrize("name", ["t.yaml", "t.yml", "t.json", "T.JSON"])
def test_yaml_and_json_with_or_without_bom_load_the_same_task(tmp_path: Path, bom: bytes,
                                                               name: str) -> None:
    body = json.dumps(_task()) if name.lower().endswith(".json") else _yaml_task()
    task = load_task(_file(tmp_path, name, bom + body.encode()))
    assert task.name == "cfg-test" and task.training.epochs == 1


def test_read_is_bounded_by_what_is_read_not_the_reported_size(tmp_path: Path) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc")
    (tmp_path / "status.yaml").symlink_to("/proc/self/status")  # reports size 0
    with pytest.raises(ConfigError, match=r"too large: more than 100 bytes; the limit is 100"):
        read_config_file(tmp_path / "status.yaml", max_bytes=100)


def test_names_what_is_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^study config 'nope.json' does not exist$"):
        read_config_file("nope.json", what="study config")


@pytest.mark.parametrize(("value", "expected"), [
    ("3", 3), ("[8, 4]", [8, 4]), ("{a: 1}", {"a": 1}), ("", None), ("yes", True),
    (".nan", "nan"),
    # not plain YAML data: the literal text, as a shell user means it
    ("2024-01-31", "2024-01-31"), ("[unclosed", "[unclosed"), ("!!python/object:x {}",
                                                               "!!python/object:x {}"),
    ("{1: a}", "{1: a}"),
])
def test_override_values(value: str, expected: Any) -> None:
    got = parse_override_value(value, "--set 'x'")
    assert str(got) == str(expected) if expected == "nan" else got == expected


@pytest.mark.parametrize(("value", "match"), [
    ("&a [*a]", "recursive"), (INLINE_BOMB, "too large"), ("{a: 1, a: 2}", "given twice"),
    ("[" * 70 + "]" * 70, "nested more than"), ("9" * 200, "too long"),
    ("\udcff", "not valid utf-8"),
])
def test_unbounded_override_values_are_refused(value: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_override_value(value, "--set 'x'")
