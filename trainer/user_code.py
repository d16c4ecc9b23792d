"""A custom model's code: found, hashed, shipped to the workers and imported the same everywhere.

:func:`resolve` finds the module of ``model.factory`` (``MODULE:FUNCTION``) in
``model.code_dir`` (the config file's folder by default), then on the Python path, and reads
its source: the whole top-level package (every ``.py`` file under it) or the single module
file. Their sha256 (:attr:`UserCode.sha256`) is part of the task's cache key and checkpoint
fingerprint and is recorded in the result, so an edited model never matches an old result.

The files travel with the run (:class:`trainer.launch.WorkerLaunch` carries the
:class:`UserCode`), and :func:`install` writes them to a folder named by their hash
(``$MTP_CODE_CACHE``, default ``~/.cache/mtp/code``) and imports the factory from there: the
driver and every worker of every node run exactly the hashed bytes, whatever their own copy
of the folder holds (or whether they have one). Code found in an installed package
(site-packages) is hashed but not shipped: it must be installed on every node.

Reading files imports nothing; :func:`install` imports the user's module (and whatever it
imports, usually torch).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtp_core.spec import CustomModel
from trainer.errors import ConfigError

__all__ = ["CODE_CACHE_ENV", "MAX_CODE_BYTES", "UserCode", "factory_of", "find", "install",
           "resolve"]

CODE_CACHE_ENV = "MTP_CODE_CACHE"
#: Most bytes of source a custom model may ship (every ``.py`` file of its package).
MAX_CODE_BYTES = 16 * 1024 * 1024

_INSTALLED: dict[str, tuple[str, Callable[..., Any]]] = {}  # factory -> (sha256, function)


@dataclass(frozen=True)
class UserCode:
    """The source of a custom model's factory: its files (paths relative to the folder they
    were found in) and whether they are shipped to the workers."""

    factory: str  # MODULE:FUNCTION
    files: tuple[tuple[str, bytes], ...]
    shipped: bool
    field: str = "model.factory"  # the config field that names it, for messages

    @property
    def module(self) -> str:
        return self.factory.split(":")[0]

    @property
    def attr(self) -> str:
        return self.factory.split(":")[1]

    @property
    def top(self) -> str:
        return self.module.split(".")[0]

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for rel, data in self.files:
            h.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()


def _installed_dirs() -> set[Path]:
    paths = sysconfig.get_paths()
    return {Path(paths[k]).resolve() for k in ("purelib", "platlib", "stdlib", "platstdlib")
            if k in paths}


def _sources(folder: Path, top: str) -> list[Path] | None:
    package = folder / top
    if package.is_dir():
        return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    module = folder / f"{top}.py"
    return [module] if module.is_file() else None


def resolve(spec: CustomModel) -> UserCode:
    """Find and read a custom model's factory source; a ConfigError names it and why."""
    return find(spec.factory, spec.code_dir)


def find(target: str, code_dir: Path | None, field: str = "model.factory") -> UserCode:
    """Find and read the source of ``target`` (MODULE:FUNCTION) in ``code_dir``, then on the
    Python path; a ConfigError names ``field`` and why."""
    top = target.split(":")[0].split(".")[0]
    search = ([code_dir] if code_dir is not None else []) + [
        Path(p or os.getcwd()) for p in sys.path]
    installed = _installed_dirs()
    for folder in search:
        try:
            files = _sources(folder, top)
        except OSError:
            continue
        if not files:
            continue
        total = sum(f.stat().st_size for f in files)
        if total > MAX_CODE_BYTES:
            raise ConfigError(f"{field}={target!r}: the package {top!r} in {folder} "
                              f"holds {total:,} bytes of Python source, more than the "
                              f"{MAX_CODE_BYTES:,} a run ships; keep the model code in a "
                              "smaller package")
        read = tuple((f.relative_to(folder).as_posix(), f.read_bytes()) for f in files)
        return UserCode(target, read, shipped=folder.resolve() not in installed, field=field)
    where = f"{code_dir} or " if code_dir is not None else ""
    section = field.split(".")[0]
    raise ConfigError(f"{field}={target!r}: no module {top!r} in {where}on the Python path "
                      f"({section}.code_dir sets the folder it is looked for in)")


def _code_root() -> Path:
    raw = os.environ.get(CODE_CACHE_ENV, "").strip()
    return Path(raw).expanduser() if raw else Path.home() / ".cache" / "mtp" / "code"


def _holds(folder: Path, code: UserCode) -> bool:
    """Whether ``folder`` holds exactly ``code``'s files (a copy edited by hand does not)."""
    try:
        return all((folder / rel).read_bytes() == data for rel, data in code.files)
    except OSError:
        return False


def _materialize(code: UserCode) -> Path:
    """The folder holding exactly ``code.files``, written once per hash (atomically) and
    checked on every use."""
    import shutil

    folder = _code_root() / code.sha256[:32]
    if folder.is_dir():
        if _holds(folder, code):
            return folder
        shutil.rmtree(folder, ignore_errors=True)  # changed since: write it again
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        for rel, data in code.files:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    except OSError as err:
        raise ConfigError(f"{code.field}={code.factory!r}: cannot write its code to "
                          f"{folder.parent} ({err.strerror or err}); set {CODE_CACHE_ENV} to a "
                          "writable folder") from None
    try:
        tmp.rename(folder)
    except OSError:  # another process wrote it first: the same bytes
        shutil.rmtree(tmp, ignore_errors=True)
    if not _holds(folder, code):
        raise ConfigError(f"{code.field}={code.factory!r}: {folder} does not hold the code "
                          "written there (another process changing it?)")
    return folder


def install(code: UserCode) -> Callable[..., Any]:
    """Import the factory from exactly ``code``'s files; returns it. ConfigError if the
    module fails to import, lacks the attribute, or the attribute is not callable."""
    done = _INSTALLED.get(code.factory)
    if done is not None and done[0] == code.sha256:
        return done[1]
    if code.shipped:
        folder = str(_materialize(code))
        # another version of the same package imported before (an earlier run in this
        # process) must not be reused: drop it, and look in this run's folder first
        for name in [m for m in sys.modules if m == code.top or m.startswith(code.top + ".")]:
            del sys.modules[name]
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
        importlib.invalidate_caches()
    try:
        module = importlib.import_module(code.module)
    except Exception as err:  # noqa: BLE001 - the user's module may raise anything
        raise ConfigError(f"{code.field}={code.factory!r}: importing {code.module!r} failed: "
                          f"{type(err).__name__}: {err}") from None
    if not hasattr(module, code.attr):
        raise ConfigError(f"{code.field}={code.factory!r}: module {code.module!r} has no "
                          f"attribute {code.attr!r}")
    factory = getattr(module, code.attr)
    if not callable(factory):
        raise ConfigError(f"{code.field}={code.factory!r}: {code.attr!r} is a "
                          f"{type(factory).__name__}, not a function")
    _INSTALLED[code.factory] = (code.sha256, factory)
    return factory


def factory_of(spec: CustomModel) -> Callable[..., Any]:
    """The factory of ``spec`` that :func:`install` imported in this process. A worker never
    looks for the code itself: it runs what the driver hashed and shipped."""
    done = _INSTALLED.get(spec.factory)
    if done is None:
        raise ConfigError(f"model.factory={spec.factory!r}: its code was not installed in this "
                          "process (trainer.user_code.install) before the model was built")
    return done[1]
