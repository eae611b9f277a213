"""configs/fundamentals.yaml: canonical fields, the balance-sheet identity and check thresholds.

A concept is written `taxonomy:Concept` (us-gaap:Assets, ifrs-full:Revenue,
dei:EntityCommonStockSharesOutstanding). Each field lists its concepts in priority order and a
concept belongs to at most one field, so every stored fact maps to one field or none.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from market_assets.core.errors import ConfigError, reading_config

CONFIG_FILE = "fundamentals.yaml"
CONCEPT = re.compile(r"^[a-z][a-z0-9-]*:[A-Za-z][A-Za-z0-9_]*$")
TTM_SUFFIX = "_ttm"
CURRENCY_UNIT = r"^[A-Z]{3}$"
PER_SHARE_UNIT = r"^[A-Z]{3}/shares$"


def unit_fits(unit_kind: pl.Expr, unit: pl.Expr) -> pl.Expr:
    """Whether a fact's `unit` fits a field's unit kind: currency (an ISO code such as USD),
    shares, or per_share (USD/shares). False where either is null."""
    return (
        pl.when(unit_kind == "shares")
        .then(unit == "shares")
        .when(unit_kind == "currency")
        .then(unit.str.contains(CURRENCY_UNIT))
        .when(unit_kind == "per_share")
        .then(unit.str.contains(PER_SHARE_UNIT))
        .otherwise(False)
        .fill_null(False)
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_concepts(concepts: list[str]) -> list[str]:
    for concept in concepts:
        if not CONCEPT.fullmatch(concept):
            raise ValueError(f"{concept!r} is not `taxonomy:Concept` (e.g. us-gaap:Assets)")
    return concepts


class FieldSpec(_Strict):
    """One canonical field: instant or duration, its unit kind and its concepts by priority."""

    kind: Literal["instant", "duration"]
    unit: Literal["currency", "shares", "per_share"]
    concepts: list[str] = Field(min_length=1)

    _valid = field_validator("concepts")(_check_concepts)


class IdentitySpec(_Strict):
    tolerance: float = Field(default=0.01, gt=0, lt=1)
    assets: list[str] = Field(min_length=1)
    liabilities: list[str] = Field(min_length=1)
    total_equity: list[str] = Field(default_factory=list)
    parent_equity: list[str] = Field(default_factory=list)
    noncontrolling_interest: list[str] = Field(default_factory=list)
    temporary_equity: list[str] = Field(default_factory=list)

    _valid = field_validator(
        "assets",
        "liabilities",
        "total_equity",
        "parent_equity",
        "noncontrolling_interest",
        "temporary_equity",
    )(_check_concepts)


class CheckSpec(_Strict):
    filing_lag_days: dict[str, int] = Field(default_factory=lambda: {"10-K": 90, "10-Q": 90})
    jump_factor: float = Field(default=100.0, gt=1)


class FundamentalsConfig(_Strict):
    """The parsed configs/fundamentals.yaml."""

    fields: dict[str, FieldSpec] = Field(min_length=1)
    identity: IdentitySpec
    checks: CheckSpec = Field(default_factory=CheckSpec)

    @model_validator(mode="after")
    def _one_field_per_concept(self) -> FundamentalsConfig:
        owner: dict[str, str] = {}
        for name, spec in self.fields.items():
            if name.endswith(TTM_SUFFIX):
                raise ValueError(f"fields.{name}: names ending in {TTM_SUFFIX} are derived")
            for concept in spec.concepts:
                if concept in owner:
                    raise ValueError(
                        f"concept {concept} is listed under both fields.{owner[concept]} and "
                        f"fields.{name}; a concept belongs to one field"
                    )
                owner[concept] = name
        return self

    @cached_property
    def concept_table(self) -> pl.DataFrame:
        """(taxonomy, concept, field, priority, unit_kind): priority 0 is the field's first
        concept."""
        rows = [
            (*concept.split(":", 1), name, rank, spec.unit)
            for name, spec in self.fields.items()
            for rank, concept in enumerate(spec.concepts)
        ]
        return pl.DataFrame(
            rows,
            schema={
                "taxonomy": pl.String(),
                "concept": pl.String(),
                "field": pl.String(),
                "priority": pl.Int64(),
                "unit_kind": pl.String(),
            },
            orient="row",
        )

    def names(self) -> list[str]:
        """Every field a point-in-time query accepts: the configured ones and their `_ttm`."""
        return [*self.fields, *self.ttm_fields()]

    def ttm_fields(self) -> list[str]:
        """`<field>_ttm` for every duration field in a currency (EPS does not add up)."""
        return [
            f"{name}{TTM_SUFFIX}"
            for name, spec in self.fields.items()
            if spec.kind == "duration" and spec.unit == "currency"
        ]

    def check_names(self, names: list[str]) -> list[str]:
        """`names` de-duplicated; raises ValueError naming an unknown field and the known ones."""
        known = self.names()
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"unknown fundamentals field(s) {unknown}; known: {known}")
        return list(dict.fromkeys(names))


def load_fundamentals_config(config_dir: str | Path) -> FundamentalsConfig:
    """Load `config_dir`/fundamentals.yaml; ConfigError names the file, key and reason."""
    path = Path(config_dir) / CONFIG_FILE
    try:
        with reading_config(path):
            if not path.is_file():
                raise ConfigError(f"{path}: file not found (the fundamentals datasets need it)")
            raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return FundamentalsConfig.model_validate(raw or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
