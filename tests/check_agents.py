"""Agents with richer contracts for the static plan check tests."""

from __future__ import annotations

from pydantic import BaseModel


class Flight(BaseModel):
    id: str
    price: float


class SearchIn(BaseModel):
    destination: str
    passengers: int = 1


class SearchOut(BaseModel):
    flights: list[Flight]
    cheapest: Flight
    count: int


class PriceIn(BaseModel):
    flights: list[Flight]
    passengers: int


class PriceOut(BaseModel):
    total: float
    confidence: float


class LabelIn(BaseModel):
    label: str


class Trip(BaseModel):
    destination: str
    passengers: int


def search(inp: SearchIn) -> SearchOut:
    flights = [Flight(id="F1", price=10.0)]
    return SearchOut(flights=flights, cheapest=flights[0], count=1)


def price(inp: PriceIn) -> PriceOut:
    return PriceOut(total=sum(f.price for f in inp.flights) * inp.passengers, confidence=0.9)


def label(inp: LabelIn) -> PriceOut:
    return PriceOut(total=0.0, confidence=1.0)


def untyped(inp):  # type: ignore[no-untyped-def]
    return inp


not_callable = 42
