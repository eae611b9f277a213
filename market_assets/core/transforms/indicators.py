"""Technical indicators on adjusted daily bars with TA-Lib, configured in configs/indicators.yaml.

The value of an indicator for session s is TA-Lib's function applied to the adjusted bars of
the `lookback_sessions` sessions ending at s (inputs adj_open, adj_high, adj_low, adj_close,
adj_volume), last element. Defining it on a fixed trailing window makes every value depend
only on its own window: recursive indicators (EMA, MACD, RSI, ATR, whose TA-Lib output
depends on where the series starts) come out the same whether a run covered one session or a
year, and equal TA-Lib called directly on that window. Until a window holds the function's
own lookback (TA-Lib's leading NaNs), the value is null, never zero.

Rows are long: (ts, symbol, indicator, value). A multi-output function (MACD, BBANDS) gives
one indicator per output, named `<name>_<output>` (outputs renamed in config).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import talib
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from talib import abstract

from market_assets.core.errors import ConfigError, reading_config
from market_assets.core.schemas import INDICATOR_SCHEMA

CONFIG_FILE = "indicators.yaml"
TA_INPUTS = {
    "open": "adj_open",
    "high": "adj_high",
    "low": "adj_low",
    "close": "adj_close",
    "volume": "adj_volume",
}


class IndicatorSpec(BaseModel):
    """One TA-Lib function with its parameters, e.g. SMA with timeperiod 20 named sma_20."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    function: str
    params: dict[str, float] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)  # TA-Lib output -> name suffix

    @model_validator(mode="after")
    def _known_to_talib(self) -> IndicatorSpec:
        if self.function not in talib.get_functions():
            raise ValueError(f"{self.function!r} is not a TA-Lib function (e.g. SMA, EMA, MACD)")
        info = abstract.Function(self.function)
        unknown = set(self.params) - set(info.parameters)
        if unknown:
            raise ValueError(
                f"{self.function} has no parameter(s) {sorted(unknown)}; "
                f"it takes {sorted(info.parameters)}"
            )
        strange = set(self.outputs) - set(info.output_names)
        if strange:
            raise ValueError(
                f"{self.function} has no output(s) {sorted(strange)}; outputs: "
                f"{list(info.output_names)}"
            )
        return self

    def talib_params(self) -> dict[str, float | int]:
        """Parameters typed like TA-Lib's defaults (periods and MA types int, deviations float)."""
        defaults = abstract.Function(self.function).parameters
        return {k: type(defaults[k])(v) for k, v in self.params.items()}

    def function_lookback(self) -> int:
        """Leading sessions TA-Lib needs before its first value."""
        return int(abstract.Function(self.function, **self.talib_params()).lookback)

    def input_columns(self) -> list[str]:
        """Adjusted bar columns TA-Lib reads, in the function's argument order."""
        names: list[str] = []
        for value in abstract.Function(self.function).input_names.values():
            names.extend([value] if isinstance(value, str) else value)
        return [TA_INPUTS[name] for name in names]

    def output_names(self) -> list[str]:
        """Indicator names this spec produces (one per TA-Lib output)."""
        outputs = list(abstract.Function(self.function).output_names)
        if len(outputs) == 1:
            return [self.name]
        return [f"{self.name}_{self.outputs.get(out, out)}" for out in outputs]


class IndicatorsConfig(BaseModel):
    """The indicators to compute and the trailing window each value is computed on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback_sessions: int = Field(ge=2, le=2000)
    indicators: list[IndicatorSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _window_fits(self) -> IndicatorsConfig:
        names = [n for spec in self.indicators for n in spec.output_names()]
        if len(set(names)) != len(names):
            raise ValueError(f"indicator names repeat: {sorted(names)}")
        for spec in self.indicators:
            if spec.function_lookback() >= self.lookback_sessions:
                raise ValueError(
                    f"{spec.name} needs {spec.function_lookback() + 1} sessions but "
                    f"lookback_sessions is {self.lookback_sessions}; raise lookback_sessions"
                )
        return self

    def names(self) -> list[str]:
        return [n for spec in self.indicators for n in spec.output_names()]


def load_indicators_config(config_dir: str | Path | None = None) -> IndicatorsConfig:
    """Read indicators.yaml from `config_dir` (default $MARKET_ASSETS_CONFIG_DIR or ./configs).

    Raises ConfigError naming the file, the key and the reason.
    """
    directory = Path(config_dir or os.environ.get("MARKET_ASSETS_CONFIG_DIR", "configs"))
    path = directory / CONFIG_FILE
    try:
        with reading_config(path):
            if not path.is_file():
                raise ConfigError(f"{path}: file not found (set MARKET_ASSETS_CONFIG_DIR?)")
            raw = yaml.safe_load(path.read_text()) or {}
        return IndicatorsConfig.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


@dataclass(frozen=True)
class _Prepared:
    """What `indicator_values` needs of a spec, looked up once per run, not per symbol."""

    function: Callable[..., Any]
    params: dict[str, float | int]
    names: list[str]
    columns: list[str]
    lookback: int


def _prepare(spec: IndicatorSpec) -> _Prepared:
    # TA-Lib's compiled function (`__wrapped__`), not talib.<NAME> itself: the package wraps
    # each function in a Python layer that inspects every argument for pandas/polars series,
    # which cost more than the computation on 300-value windows (the scale benchmark's
    # profile). The arrays passed here are already contiguous float64.
    wrapped = getattr(talib, spec.function)
    return _Prepared(
        function=getattr(wrapped, "__wrapped__", wrapped),
        params=spec.talib_params(),
        names=spec.output_names(),
        columns=spec.input_columns(),
        lookback=spec.function_lookback(),
    )


def indicator_values(
    adjusted: pl.DataFrame,
    spec: IndicatorSpec,
    window: int,
    rows: np.ndarray | None = None,
    prepared: _Prepared | None = None,
) -> dict[str, np.ndarray]:
    """Each output of `spec` for the `rows` (default: all) of ONE symbol's adjusted bars.

    Row i's value is TA-Lib over rows [i - window + 1, i]; NaN until the function's lookback
    and for rows not asked for. Runs only compute the rows they output: a daily run's frame
    holds `window` earlier sessions per symbol to output one, a year's run about as many as
    it outputs.
    """
    plan = prepared or _prepare(spec)
    inputs = [
        np.ascontiguousarray(adjusted.get_column(c).cast(pl.Float64).to_numpy())
        for c in plan.columns
    ]
    values = {name: np.full(adjusted.height, np.nan) for name in plan.names}
    wanted = range(adjusted.height) if rows is None else rows
    for row in wanted:
        if row < plan.lookback:
            continue
        first = max(0, row - window + 1)
        result = plan.function(*(a[first : row + 1] for a in inputs), **plan.params)
        outputs = result if isinstance(result, tuple) else (result,)
        for name, output in zip(plan.names, outputs, strict=True):
            values[name][row] = output[-1]
    return values


def compute_indicators(
    adjusted: pl.DataFrame,
    config: IndicatorsConfig,
    sessions: Iterable[dt.date] | None = None,
) -> pl.DataFrame:
    """Long rows (ts, symbol, indicator, value) for the bars of `sessions` (default: all).

    `adjusted` holds bars_1d_adjusted rows of one or more symbols, including the earlier
    sessions the windows reach back to; only rows whose session is in `sessions` are output.
    """
    wanted = None if sessions is None else set(sessions)
    plans = [(spec, _prepare(spec)) for spec in config.indicators]
    frames: list[pl.DataFrame] = []
    for (symbol,), bars in (
        adjusted.sort("symbol", "ts").partition_by("symbol", as_dict=True).items()
    ):
        keep = np.ones(bars.height, dtype=bool)
        if wanted is not None:
            keep = bars.get_column("ts").dt.date().is_in(list(wanted)).to_numpy()
        if not keep.any():
            continue
        columns: dict[str, np.ndarray] = {}
        rows = np.flatnonzero(keep)
        for spec, plan in plans:
            columns.update(indicator_values(bars, spec, config.lookback_sessions, rows, plan))
        ts = bars.get_column("ts").filter(pl.Series(keep))
        for name, values in columns.items():
            frames.append(
                pl.DataFrame(
                    {
                        "ts": ts,
                        "symbol": pl.Series([symbol] * len(ts), dtype=pl.String()),
                        "indicator": pl.Series([name] * len(ts), dtype=pl.String()),
                        "value": pl.Series(values[keep], dtype=pl.Float64(), nan_to_null=True),
                    }
                )
            )
    if not frames:
        return pl.DataFrame(schema=INDICATOR_SCHEMA)
    return (
        pl.concat(frames)
        .select(pl.col(n).cast(t) for n, t in INDICATOR_SCHEMA.items())
        .sort("symbol", "ts", "indicator")
    )


def indicators_wide(long: pl.DataFrame, names: Iterable[str] | None = None) -> pl.DataFrame:
    """Long indicator rows as one column per indicator: (symbol, ts, name...)."""
    chosen = list(names) if names is not None else sorted(long["indicator"].unique().to_list())
    rows = long.filter(pl.col("indicator").is_in(chosen))
    if rows.is_empty():
        return pl.DataFrame(
            schema={"symbol": pl.String(), "ts": INDICATOR_SCHEMA["ts"]}
            | dict.fromkeys(chosen, pl.Float64())
        )
    wide = rows.pivot(on="indicator", index=["symbol", "ts"], values="value")
    for name in chosen:
        if name not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.Float64).alias(name))
    return wide.select("symbol", "ts", *chosen).sort("symbol", "ts")
