"""Search spaces over any config key: parsed from ``KEY=KIND:ARGS`` strings or a YAML file,
checked against the base config before any trial starts, turned into Ray Tune domains.

Kinds (one grammar for the command line and the YAML file)::

    optim.lr=loguniform:1e-4:1e-2        float in [LOW, HIGH), log scale (0 < LOW < HIGH)
    optim.weight_decay=uniform:0:1e-3    float in [LOW, HIGH)
    model.width=randint:8:33             integer in [LOW, HIGH) (HIGH excluded, as tune.randint)
    ordinal.head=choice:ce,niu,coral     one value drawn per sample
    ordinal.head=grid:ce,niu,coral,corn  every value, crossed with the other grid keys

Values of ``choice`` / ``grid`` are read like ``--set`` values (``1e-3`` a float, ``true``
a bool, ``null`` None, other text a string). ``grid`` and ``choice`` differ as in Ray Tune:
with the default search every grid value runs once per sample (``--num-samples``) and the
sampled kinds are drawn ``--num-samples`` times, each draw held constant across the grid
(and across seeds, so repeats of a configuration share every value); with Optuna the
search decides and ``grid`` is refused (use ``choice``).

A YAML search-space file maps dotted keys (or nested sections) to a spec string, a list
(a grid) or a one-key mapping ``{KIND: [ARGS...]}``::

    optim.lr: loguniform:1e-4:1e-2
    ordinal: {head: [ce, niu, coral, corn]}
    model.width: {randint: [8, 33]}

:func:`check_space` builds the config of every grid / choice value and of both ends of
every range from the base config, so an unknown key, a value of the wrong type or outside
its choices is a one-line :class:`~facecore.train.sections.ConfigError` naming the key
before any trial starts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facecore.train.config import apply_overrides, config_from_dict
from facecore.train.sections import ConfigError

__all__ = [
    "KINDS",
    "Dimension",
    "check_space",
    "load_space",
    "parse_dimension",
    "parse_space",
    "space_to_tune",
]

#: Every dimension kind: the ranges (two numbers) and the lists (one or more values).
RANGES = ("loguniform", "uniform", "randint")
LISTS = ("choice", "grid")
KINDS = RANGES + LISTS


def _value(text: str) -> Any:
    """A ``choice`` / ``grid`` value: int, float (``1e-3`` included), else YAML."""
    s = text.strip()
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    import yaml

    try:
        return yaml.safe_load(s) if s else ""
    except yaml.YAMLError:
        return s


@dataclass(frozen=True)
class Dimension:
    """One searched config key: ``kind`` in :data:`KINDS`; ``values`` for ``choice`` /
    ``grid``, ``(low, high)`` for the ranges."""

    key: str
    kind: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        where = f"--space {self.key}"
        if not self.key or not all(part.strip() for part in self.key.split(".")):
            raise ConfigError(f"--space needs a dotted config key, got {self.key!r}")
        if self.kind not in KINDS:
            raise ConfigError(f"{where}: kind must be one of {' | '.join(KINDS)}, got {self.kind!r}")
        if self.kind in LISTS:
            if not self.values:
                raise ConfigError(f"{where}: {self.kind} needs at least one value")
            if len({repr(v) for v in self.values}) != len(self.values):
                raise ConfigError(f"{where}: {self.kind} lists a value twice: {list(self.values)}")
            return
        if len(self.values) != 2:
            raise ConfigError(f"{where}: {self.kind} needs LOW:HIGH, got {list(self.values)}")
        low, high = self.values
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if not numeric or not all(math.isfinite(v) for v in (low, high)):
            raise ConfigError(f"{where}: {self.kind} needs two numbers LOW:HIGH, got {low!r}:{high!r}")
        if self.kind == "randint" and not all(float(v).is_integer() for v in (low, high)):
            raise ConfigError(f"{where}: randint needs two integers LOW:HIGH, got {low}:{high}")
        if not low < high:
            raise ConfigError(f"{where}: {self.kind} needs LOW < HIGH, got {low}:{high}")
        if self.kind == "loguniform" and low <= 0:
            raise ConfigError(f"{where}: loguniform needs 0 < LOW, got {low}")
        if self.kind == "randint":
            object.__setattr__(self, "values", (int(low), int(high)))
        else:
            object.__setattr__(self, "values", (float(low), float(high)))

    @property
    def probes(self) -> tuple[Any, ...]:
        """The values :func:`check_space` builds configs with (every listed value; both
        ends of a range: ``HIGH - 1`` for ``randint``)."""
        if self.kind in LISTS:
            return self.values
        low, high = self.values
        return (low, high - 1) if self.kind == "randint" else (low, high)

    def spec(self) -> str:
        """The ``KEY=KIND:ARGS`` text of this dimension (parses back to an equal one)."""
        if self.kind in LISTS:
            import yaml

            def text(v: Any) -> str:
                if isinstance(v, str) and _value(v) == v and "," not in v:
                    return v
                return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("\n...")

            return f"{self.key}={self.kind}:{','.join(text(v) for v in self.values)}"
        return f"{self.key}={self.kind}:{self.values[0]:g}:{self.values[1]:g}"

    def to_tune(self, search: str = "grid") -> Any:
        """The Ray Tune domain (``search="optuna"`` refuses ``grid``)."""
        from ray import tune

        if self.kind == "grid":
            if search == "optuna":
                raise ConfigError(
                    f"--space {self.key}: grid is not searchable by Optuna; use choice:"
                    + ",".join(str(v) for v in self.values)
                )
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        low, high = self.values
        return {"loguniform": tune.loguniform, "uniform": tune.uniform, "randint": tune.randint}[
            self.kind
        ](low, high)


def parse_dimension(text: str) -> Dimension:
    """``KEY=KIND:ARGS`` (see the module doc) -> :class:`Dimension`; one-line
    :class:`ConfigError` naming the key otherwise."""
    key, sep, rest = str(text).partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--space must look like KEY=KIND:ARGS (e.g. optim.lr=loguniform:1e-4:1e-2), got {text!r}")
    kind, sep, args = rest.partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise ConfigError(
            f"--space {key}: kind must be one of {' | '.join(KINDS)} (KEY=KIND:ARGS; a fixed "
            f"value is --set {key}=VALUE), got {rest!r}"
        )
    if not sep or not args.strip():
        raise ConfigError(f"--space {key}: {kind} needs arguments, e.g. {_EXAMPLES[kind]}")
    if kind in LISTS:
        values = tuple(_value(v) for v in args.split(","))
    else:
        parts = args.split(":")
        if len(parts) != 2:
            raise ConfigError(f"--space {key}: {kind} needs LOW:HIGH, e.g. {_EXAMPLES[kind]}, got {rest!r}")
        values = tuple(_value(p) for p in parts)
    return Dimension(key, kind, values)


_EXAMPLES = {
    "loguniform": "optim.lr=loguniform:1e-4:1e-2",
    "uniform": "optim.weight_decay=uniform:0:1e-3",
    "randint": "model.width=randint:8:33",
    "choice": "ordinal.head=choice:coral,corn",
    "grid": "ordinal.head=grid:ce,niu,coral,corn",
}


def _unique(dims: Iterable[Dimension]) -> list[Dimension]:
    out: list[Dimension] = []
    for d in dims:
        if any(o.key == d.key for o in out):
            raise ConfigError(f"--space {d.key} is given twice")
        out.append(d)
    return out


def parse_space(items: Sequence[str] | None = None, file: str | Path | None = None) -> list[Dimension]:
    """The dimensions of a YAML search-space ``file`` (if any) and then of ``items``
    (``KEY=KIND:ARGS`` strings); a key given twice is an error."""
    dims = load_space(file) if file is not None else []
    dims += [parse_dimension(t) for t in items or ()]
    return _unique(dims)


def _from_yaml_value(key: str, value: Any) -> Dimension:
    if isinstance(value, str):
        return parse_dimension(f"{key}={value}")
    if isinstance(value, list):
        return Dimension(key, "grid", tuple(value))
    if isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in KINDS:
        kind, args = next(iter(value.items()))
        args = tuple(args) if isinstance(args, (list, tuple)) else (args,)
        return Dimension(key, kind, args)
    raise ConfigError(
        f"search space {key}: expected 'KIND:ARGS', a list (grid) or {{KIND: [ARGS]}}, got {value!r}"
    )


def load_space(path: str | Path) -> list[Dimension]:
    """The dimensions of a YAML search-space file (module doc); errors name the file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"search-space file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"search-space file {path} is not valid YAML: {first}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"search-space file {path} must hold a mapping of config keys, got {type(data).__name__}")

    def walk(node: Mapping, prefix: str) -> Iterable[Dimension]:
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            is_kind = isinstance(v, Mapping) and len(v) == 1 and next(iter(v)) in KINDS
            if isinstance(v, Mapping) and not is_kind:
                yield from walk(v, key)
            else:
                try:
                    yield _from_yaml_value(key, v)
                except ConfigError as exc:
                    raise ConfigError(f"{path}: {exc}") from None

    return _unique(walk(data, ""))


def check_space(
    dims: Sequence[Dimension], base: Mapping[str, Any], *, fixed: Mapping[str, Any] | None = None
) -> None:
    """Build the base config (a config dict) with every probe value of every dimension
    (:attr:`Dimension.probes`) and with ``fixed`` (e.g. the seed keys); the first problem
    is a one-line :class:`ConfigError` naming the key. Nothing runs."""
    fixed = dict(fixed or {})
    for d in dims:
        if d.key in fixed:
            raise ConfigError(f"--space {d.key}: the key is set by the sweep itself (seeds); search another key")
    try:
        config_from_dict(apply_overrides(dict(base), fixed))
    except ConfigError as exc:
        raise ConfigError(f"sweep base config: {exc}") from None
    for d in dims:
        for v in d.probes:
            try:
                config_from_dict(apply_overrides(dict(base), {**fixed, d.key: v}))
            except ConfigError as exc:
                raise ConfigError(f"--space {d.key}={v!r}: {exc}") from None


def space_to_tune(dims: Sequence[Dimension], search: str = "grid") -> dict[str, Any]:
    """``{dotted key: Ray Tune domain}`` (see :meth:`Dimension.to_tune`)."""
    return {d.key: d.to_tune(search) for d in dims}
