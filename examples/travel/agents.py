"""The travel example's agents: plain typed functions that never import Baton.

Every agent is deterministic and offline: results derive from the inputs alone (a SHA-256 of the
route stands in for a flight search API), so a goal replays to the same decisions anywhere.
"""

import hashlib

from pydantic import BaseModel, Field

__all__ = [
    "BookIn",
    "BookOut",
    "Flight",
    "NotifyIn",
    "NotifyOut",
    "Offer",
    "PriceIn",
    "PriceOut",
    "SearchIn",
    "SearchOut",
    "TripRequest",
    "Usage",
    "book_trip",
    "notify_traveller",
    "price_trip",
    "search_flights",
]

_CARRIERS = ("TP", "BA", "FR", "U2", "IB", "VY")
_TAX_RATE = 0.12  # taxes on the base fare
_BOOKING_FEE = 9.50  # per passenger
_USD_PER_TOKEN = 0.000002  # what the pretend pricing model costs


# --- contracts ---------------------------------------------------------------------------------


class TripRequest(BaseModel):
    """The goal input: where the travellers want to go, and the most a fare may cost."""

    origin: str
    destination: str
    passengers: int = Field(ge=1)
    max_price: float | None = None  # cap on the base fare per passenger, before taxes


class Flight(BaseModel):
    id: str
    carrier: str
    origin: str
    destination: str
    departs: str  # local time of day, "HH:MM"
    fare: float  # base fare per passenger
    seats_left: int


class SearchIn(BaseModel):
    origin: str
    destination: str
    passengers: int = Field(ge=1)
    max_price: float | None = None


class SearchOut(BaseModel):
    flights: list[Flight]


class Usage(BaseModel):
    """Tokens and cost an agent spent; an optional `usage` field on any output reports it."""

    tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)


class Offer(BaseModel):
    id: str
    flight: Flight
    price_per_passenger: float


class PriceIn(BaseModel):
    flights: list[Flight]
    passengers: int = Field(ge=1)


class PriceOut(BaseModel):
    total: float
    best_offer: Offer
    confidence: float = Field(ge=0, le=1)  # enables the plan's `min_confidence`
    usage: Usage | None = None


class BookIn(BaseModel):
    offer_id: str
    total: float
    passengers: int = Field(ge=1)


class BookOut(BaseModel):
    confirmation: str
    offer_id: str
    total: float


class NotifyIn(BaseModel):
    confirmation: str
    destination: str


class NotifyOut(BaseModel):
    message: str


# --- agents ------------------------------------------------------------------------------------


def _digest(*parts: object) -> bytes:
    """A stable hash of the parts (Python's `hash()` is salted per process, so not that)."""
    return hashlib.sha256("|".join(str(part) for part in parts).encode()).digest()


def search_flights(inp: SearchIn) -> SearchOut:
    """Find direct flights on the route with enough seats and a fare under `max_price`.

    The timetable is derived from a hash of the route: same route, same flights, every time.
    """
    origin, destination = inp.origin.strip().upper(), inp.destination.strip().title()
    seed = _digest(origin, destination.lower())
    flights = []
    for n in range(1 + seed[0] % 5):  # one to five flights a day
        h = _digest(origin, destination.lower(), n)
        carrier = _CARRIERS[h[0] % len(_CARRIERS)]
        flight = Flight(
            id=f"{carrier}{100 + int.from_bytes(h[1:3]) % 900}",
            carrier=carrier,
            origin=origin,
            destination=destination,
            departs=f"{6 + h[3] % 16:02d}:{h[4] % 12 * 5:02d}",
            fare=float(40 + int.from_bytes(h[5:7]) % 260),
            seats_left=h[7] % 10,
        )
        if flight.seats_left < inp.passengers:
            continue
        if inp.max_price is not None and flight.fare > inp.max_price:
            continue
        flights.append(flight)
    return SearchOut(flights=sorted(flights, key=lambda f: f.departs))


async def price_trip(inp: PriceIn) -> PriceOut:
    """Pick the cheapest flight and price it with taxes and fees for every passenger.

    Confidence grows with the number of fares compared: one fare alone is a weak signal.
    """
    if not inp.flights:
        raise ValueError("no flights to price")
    best = min(inp.flights, key=lambda f: (f.fare, f.id))
    per_passenger = round(best.fare * (1 + _TAX_RATE) + _BOOKING_FEE, 2)
    offer = Offer(
        id=f"OF-{best.id}-{_digest(best.id, best.departs, inp.passengers).hex()[:6].upper()}",
        flight=best,
        price_per_passenger=per_passenger,
    )
    tokens = 180 + 60 * len(inp.flights)  # what an LLM pricing call of this size would spend
    return PriceOut(
        total=round(per_passenger * inp.passengers, 2),
        best_offer=offer,
        confidence=min(0.95, round(0.55 + 0.08 * len(inp.flights), 2)),
        usage=Usage(tokens=tokens, cost_usd=round(tokens * _USD_PER_TOKEN, 6)),
    )


# Bookings made in this process, keyed by idempotency key: the stand-in for a supplier that
# deduplicates on the key, so a retry or crash-resume never books the same trip twice.
_BOOKINGS: dict[str, BookOut] = {}


def book_trip(inp: BookIn, *, idempotency_key: str) -> BookOut:
    """Book the offer (a side effect). The same idempotency key returns the same booking.

    The confirmation code derives from the key, so even a fresh process books identically.
    """
    existing = _BOOKINGS.get(idempotency_key)
    if existing is not None:
        return existing
    booking = BookOut(
        confirmation="BK-" + _digest(idempotency_key).hex()[:8].upper(),
        offer_id=inp.offer_id,
        total=inp.total,
    )
    _BOOKINGS[idempotency_key] = booking
    return booking


def notify_traveller(inp: NotifyIn) -> NotifyOut:
    """Compose the message that tells the traveller the trip is booked (no side effects)."""
    return NotifyOut(
        message=f"Your trip to {inp.destination} is booked: confirmation {inp.confirmation}."
    )
