"""Real DBN bytes built with databento_dbn, and a requests_mock stand-in for Databento's API.

The bytes are what Databento sends: DBN `Metadata` (dataset, schema, query range, symbols,
not_found and the symbol -> instrument_id mappings per date) followed by fixed-size records,
zstd-compressed (the client always asks for zstd). `DatabentoApi` registers the two endpoints
the adapter calls on a `requests_mock.Mocker` and records every request it receives.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import databento_dbn as dbn
import zstandard

GATEWAY = "https://hist.databento.com/v0"
GET_RANGE_URL = f"{GATEWAY}/timeseries.get_range"
GET_COST_URL = f"{GATEWAY}/metadata.get_cost"
PRICE = 1_000_000_000  # DBN fixed-point units per 1.0
OHLCV_RTYPES = {"ohlcv-1m": dbn.RType.OHLCV_1M, "ohlcv-1d": dbn.RType.OHLCV_1D}


@dataclass(frozen=True)
class MappingInterval:
    start_date: dt.date
    end_date: dt.date
    symbol: str  # the instrument_id, as text


@dataclass(frozen=True)
class SymbolMapping:
    raw_symbol: str
    intervals: list[MappingInterval]


def ns(moment: dt.datetime | dt.date) -> int:
    """Epoch nanoseconds of a UTC datetime (a date means its 00:00 UTC)."""
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.combine(moment, dt.time(0), tzinfo=dt.UTC)
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000


def px(value: float) -> int:
    """A price as DBN fixed-point int64."""
    return round(value * PRICE)


def dbn_bytes(
    dataset: str,
    schema: str,
    start: dt.datetime | dt.date,
    end: dt.datetime | dt.date,
    instruments: Mapping[str, int | Sequence[tuple[dt.date, dt.date, int]]],
    records: Iterable[object] = (),
    *,
    not_found: Sequence[str] = (),
    stype_in: dbn.SType = dbn.SType.RAW_SYMBOL,
    compress: bool = True,
) -> bytes:
    """A DBN stream: metadata (symbols, not_found, mappings) then `records`.

    `instruments` maps each requested symbol to its instrument_id for the whole range, or to
    (first date, end date exclusive, instrument_id) intervals (continuous contracts roll).
    """
    first = start if not isinstance(start, dt.datetime) else start.date()
    last = end if not isinstance(end, dt.datetime) else (end - dt.timedelta(microseconds=1)).date()
    last_excl = last + dt.timedelta(days=1) if isinstance(end, dt.datetime) else last
    mappings = []
    for symbol, mapped in instruments.items():
        spans = [(first, last_excl, mapped)] if isinstance(mapped, int) else list(mapped)
        mappings.append(SymbolMapping(symbol, [MappingInterval(a, b, str(i)) for a, b, i in spans]))
    metadata = dbn.Metadata(
        dataset=dataset,
        schema=dbn.Schema(schema),
        start=ns(start),
        end=ns(end),
        stype_in=stype_in,
        stype_out=dbn.SType.INSTRUMENT_ID,
        symbols=[*instruments, *not_found],
        not_found=list(not_found),
        mappings=mappings,
    )
    raw = metadata.encode() + b"".join(bytes(record) for record in records)
    return zstandard.ZstdCompressor().compress(raw) if compress else raw


def ohlcv(
    schema: str,
    instrument_id: int,
    ts: dt.datetime | dt.date,
    open_: float,
    high: float,
    low: float,
    close: float | None,
    volume: int,
) -> dbn.OHLCVMsg:
    """An OHLCV bar; `close=None` sends UNDEF_PRICE."""
    return dbn.OHLCVMsg(
        rtype=OHLCV_RTYPES[schema],
        publisher_id=2,
        instrument_id=instrument_id,
        ts_event=ns(ts),
        open=px(open_),
        high=px(high),
        low=px(low),
        close=dbn.UNDEF_PRICE if close is None else px(close),
        volume=volume,
    )


def trade(
    instrument_id: int,
    ts: dt.datetime,
    price: float | None,
    size: int,
    *,
    side: dbn.Side = dbn.Side.BID,
    sequence: int = 1,
) -> dbn.TradeMsg:
    """A trade received 10 us after it matched; `price=None` sends UNDEF_PRICE."""
    return dbn.TradeMsg(
        publisher_id=2,
        instrument_id=instrument_id,
        ts_event=ns(ts),
        price=dbn.UNDEF_PRICE if price is None else px(price),
        size=size,
        action=dbn.Action.TRADE,
        side=side,
        depth=0,
        ts_recv=ns(ts) + 10_000,
        sequence=sequence,
    )


def tbbo(
    instrument_id: int, ts: dt.datetime, price: float, size: int, bid: float, ask: float
) -> dbn.MBP1Msg:
    """A trade with the top of book just before it (100 shares bid, 200 offered)."""
    return dbn.MBP1Msg(
        publisher_id=2,
        instrument_id=instrument_id,
        ts_event=ns(ts),
        price=px(price),
        size=size,
        action=dbn.Action.TRADE,
        side=dbn.Side.ASK,
        depth=0,
        ts_recv=ns(ts) + 10_000,
        levels=dbn.BidAskPair(bid_px=px(bid), ask_px=px(ask), bid_sz=100, ask_sz=200),
    )


def statistic(
    instrument_id: int,
    ts: dt.datetime,
    stat_type: dbn.StatType,
    *,
    price: float | None = None,
    quantity: int | None = None,
) -> dbn.StatMsg:
    return dbn.StatMsg(
        publisher_id=1,
        instrument_id=instrument_id,
        ts_event=ns(ts),
        ts_recv=ns(ts) + 10_000,
        ts_ref=dbn.UNDEF_TIMESTAMP,
        price=dbn.UNDEF_PRICE if price is None else px(price),
        quantity=dbn.UNDEF_STAT_QUANTITY if quantity is None else quantity,
        stat_type=stat_type,
        update_action=dbn.StatUpdateAction.NEW,
    )


Responder = Callable[[dict[str, str]], bytes]


@dataclass
class DatabentoApi:
    """Databento's get_range and get_cost endpoints on a requests_mock Mocker.

    `respond(form)` returns the DBN bytes for one get_range request (its form fields:
    dataset, schema, symbols, stype_in, start, end). `statuses` lists the HTTP statuses of
    the next get_range calls in order (e.g. [429], [500, 500], or [200, 503]: data, then an
    error); once it is used up every call gets data.
    """

    mocker: object
    respond: Responder
    cost_usd: float = 0.0
    statuses: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    ranges: list[dict[str, str]] = field(default_factory=list)
    costs: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mocker.post(GET_RANGE_URL, content=self._range)
        self.mocker.post(GET_COST_URL, json=self._cost)

    def _range(self, request, context) -> bytes:  # noqa: ANN001 - requests_mock callback
        form = _form(request)
        self.ranges.append(form)
        status = self.statuses.pop(0) if self.statuses else 200
        if status != 200:
            context.status_code = status
            context.headers.update(self.headers)
            context.headers["Content-Type"] = "application/json"
            return b'{"detail": "simulated %d"}' % context.status_code
        return self.respond(form)

    def _cost(self, request, context) -> float:  # noqa: ANN001 - requests_mock callback
        self.costs.append(_form(request))
        return self.cost_usd


def _form(request) -> dict[str, str]:  # noqa: ANN001
    return {key: values[0] for key, values in parse_qs(request.text).items()}


def decompress(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
