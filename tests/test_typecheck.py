"""baton.domain.typecheck: walking reference paths through output models, comparing annotations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal, NewType, Optional
from uuid import UUID

import pytest
from pydantic import BaseModel, ConfigDict, Field, RootModel, computed_field

from baton.domain.typecheck import PathError, annotation_at, can_satisfy, describe


class Flight(BaseModel):
    code: str
    price: float
    seats: int = 0


class Offer(BaseModel):
    id: str
    flight: Flight
    total: Decimal


class PriceOut(BaseModel):
    flights: list[Flight]
    best_offer: Offer | None = None
    total: float
    currency: Literal["EUR", "USD"] = "EUR"
    tags: dict[str, int] = {}
    legs: tuple[Flight, Flight] | None = None
    notes: Annotated[str, Field(max_length=100)] = ""
    meta: Any = None
    booking_ref: str = Field(alias="bookingRef")


class Cabin(StrEnum):
    ECONOMY = "economy"
    BUSINESS = "business"


class Level(IntEnum):
    LOW = 1
    HIGH = 2


class FlightLike(BaseModel):  # same shape as Flight, unrelated class
    code: str
    price: float
    airline: str = "?"


class FlightIntPrice(BaseModel):
    code: str
    price: int


class BookIn(BaseModel):
    offer_id: str
    flights: list[FlightIntPrice]


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Tree(BaseModel):
    name: str
    children: list[Tree] = []


class StrictFlight(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    price: float


# ---- annotation_at --------------------------------------------------------------------------


def test_empty_path_returns_root() -> None:
    assert annotation_at(PriceOut, []) is PriceOut


def test_field_by_name() -> None:
    assert annotation_at(PriceOut, ["flights"]) == list[Flight]
    assert annotation_at(PriceOut, ["total"]) is float


def test_field_by_alias_and_by_name() -> None:
    assert annotation_at(PriceOut, ["bookingRef"]) is str
    assert annotation_at(PriceOut, ["booking_ref"]) is str


def test_walks_through_optional_into_nested_model() -> None:
    assert annotation_at(PriceOut, ["best_offer", "id"]) is str
    assert annotation_at(PriceOut, ["best_offer", "flight", "price"]) is float


def test_numeric_segment_indexes_a_list() -> None:
    assert annotation_at(PriceOut, ["flights", "0"]) is Flight
    assert annotation_at(PriceOut, ["flights", "0", "price"]) is float
    assert annotation_at(PriceOut, ["flights", "12", "code"]) is str


def test_fixed_tuple_index_and_out_of_range() -> None:
    assert annotation_at(PriceOut, ["legs", "1", "seats"]) is int
    with pytest.raises(PathError) as caught:
        annotation_at(PriceOut, ["legs", "2"])
    assert caught.value.segment == "2"


def test_sequence_and_variable_tuple_index() -> None:
    assert annotation_at(Sequence[Flight], ["3", "code"]) is str
    assert annotation_at(tuple[int, ...], ["5"]) is int


def test_mapping_any_segment_gives_value_type() -> None:
    assert annotation_at(PriceOut, ["tags", "anything"]) is int
    assert annotation_at(Mapping[str, Flight], ["x", "price"]) is float


def test_any_and_unknown_give_any_for_the_rest() -> None:
    assert annotation_at(PriceOut, ["meta", "a", "b", "c"]) is Any
    assert annotation_at(list, ["0", "whatever"]) is Any

    class Opaque:
        pass

    assert annotation_at(Opaque, ["x", "y"]) is Any


def test_annotated_field_is_walked() -> None:
    assert annotation_at(Annotated[PriceOut, "meta"], ["notes"]) is str
    assert annotation_at(Annotated[list[Flight], "m"], ["0", "code"]) is str


def test_unknown_field_names_the_segment() -> None:
    with pytest.raises(PathError) as caught:
        annotation_at(PriceOut, ["best_offer", "totl"])
    error = caught.value
    assert error.segment == "totl"
    assert error.path == "best_offer.totl"
    assert "Offer" in str(error) and "'totl'" in str(error)


def test_first_missing_segment_is_named() -> None:
    with pytest.raises(PathError) as caught:
        annotation_at(PriceOut, ["nope", "deeper"])
    assert caught.value.segment == "nope"


def test_non_numeric_segment_on_a_list() -> None:
    with pytest.raises(PathError) as caught:
        annotation_at(PriceOut, ["flights", "first"])
    assert caught.value.segment == "first"
    assert "list[Flight]" in str(caught.value)


def test_field_on_a_scalar_is_an_error() -> None:
    with pytest.raises(PathError) as caught:
        annotation_at(PriceOut, ["total", "cents"])
    assert caught.value.segment == "cents"
    with pytest.raises(PathError):
        annotation_at(PriceOut, ["currency", "x"])


def test_union_of_models_walks_each_member() -> None:
    assert annotation_at(Flight | Offer, ["id"]) is str
    assert annotation_at(Flight | FlightIntPrice, ["price"]) == float | int
    with pytest.raises(PathError) as caught:
        annotation_at(Flight | Offer, ["missing"])
    assert caught.value.segment == "missing"


def test_extra_allow_model_gives_any_for_unknown_field() -> None:
    class Loose(BaseModel):
        model_config = ConfigDict(extra="allow")
        a: int

    assert annotation_at(Loose, ["a"]) is int
    assert annotation_at(Loose, ["b", "c"]) is Any


def test_root_model_and_computed_field() -> None:
    class Flights(RootModel[list[Flight]]):
        pass

    class WithTotal(BaseModel):
        price: float

        @computed_field  # type: ignore[prop-decorator]
        @property
        def doubled(self) -> float:
            return self.price * 2

    assert annotation_at(Flights, ["0", "code"]) is str
    assert annotation_at(WithTotal, ["doubled"]) is float


# ---- can_satisfy: basics ---------------------------------------------------------------------


def test_any_either_side_and_identical() -> None:
    assert can_satisfy(Any, int) is True
    assert can_satisfy(list[Flight], Any) is True
    assert can_satisfy(Flight, Flight) is True
    assert can_satisfy(list[Flight], list[Flight]) is True


def test_numeric_rules() -> None:
    assert can_satisfy(int, float) is True
    assert can_satisfy(bool, int) is True
    assert can_satisfy(float, int) is False
    assert can_satisfy(str, int) is False
    assert can_satisfy(str, float) is False
    assert can_satisfy(int, str) is False
    assert can_satisfy(str, str) is True
    assert can_satisfy(int, bool) is False


def test_optional_source_is_not_flagged_but_none_needs_a_none_target() -> None:
    assert can_satisfy(Optional[int], int) is True  # noqa: UP045 - the spelling under test
    assert can_satisfy(int | None, float) is True
    assert can_satisfy(type(None), int) is False
    assert can_satisfy(None, int | None) is True
    assert can_satisfy(str | None, int) is False


def test_union_on_either_side() -> None:
    assert can_satisfy(int | str, float) is True  # the int member can
    assert can_satisfy(str | bytes, int) is False
    assert can_satisfy(int, str | float) is True
    assert can_satisfy(str, int | float) is False


def test_literal_values_against_base_types() -> None:
    assert can_satisfy(Literal["EUR", "USD"], str) is True
    assert can_satisfy(Literal["EUR"], int) is False
    assert can_satisfy(Literal[1, 2], float) is True
    assert can_satisfy(str, Literal["EUR", "USD"]) is True
    assert can_satisfy(int, Literal["EUR", "USD"]) is False


def test_literal_subset_and_disjoint() -> None:
    assert can_satisfy(Literal["EUR"], Literal["EUR", "USD"]) is True
    assert can_satisfy(Literal["GBP"], Literal["EUR", "USD"]) is False
    assert can_satisfy(Literal[True], Literal[1]) is False  # True is not the literal 1


def test_enums() -> None:
    assert can_satisfy(Cabin, str) is True
    assert can_satisfy(Cabin, int) is False
    assert can_satisfy(Level, int) is True
    assert can_satisfy(Level, str) is False
    assert can_satisfy(str, Cabin) is True
    assert can_satisfy(int, Cabin) is False
    assert can_satisfy(Literal["economy"], Cabin) is True
    assert can_satisfy(Literal["first"], Cabin) is False
    assert can_satisfy(Cabin, Literal["business"]) is True


def test_annotated_and_newtype_unwrap() -> None:
    FlightCode = NewType("FlightCode", str)
    assert can_satisfy(Annotated[int, "x"], float) is True
    assert can_satisfy(Annotated[str, "x"], Annotated[int, Field(gt=0)]) is False
    assert can_satisfy(FlightCode, str) is True
    assert can_satisfy(FlightCode, int) is False


# ---- can_satisfy: containers -----------------------------------------------------------------


def test_sequences_compare_elements() -> None:
    assert can_satisfy(list[int], list[float]) is True
    assert can_satisfy(list[float], list[int]) is False
    assert can_satisfy(tuple[int, ...], list[int]) is True
    assert can_satisfy(set[str], list[str]) is True
    assert can_satisfy(Sequence[str], list[int]) is False
    assert can_satisfy(list[str], Sequence[str]) is True
    assert can_satisfy(list, list[int]) is True  # unparameterised: unsure


def test_fixed_tuples() -> None:
    assert can_satisfy(tuple[int, str], tuple[float, str]) is True
    assert can_satisfy(tuple[int, str], tuple[int, str, str]) is False
    assert can_satisfy(tuple[int, str], list[int]) is False  # the str element never fits
    assert can_satisfy(list[int], tuple[float, float]) is True


def test_scalar_and_sequence_never_mix() -> None:
    assert can_satisfy(str, list[str]) is False
    assert can_satisfy(Flight, list[Flight]) is False
    assert can_satisfy(list[str], str) is False
    assert can_satisfy(list[Flight], Flight) is False
    assert can_satisfy(dict[str, int], list[int]) is False


def test_mappings_recursively() -> None:
    assert can_satisfy(dict[str, int], dict[str, float]) is True
    assert can_satisfy(dict[str, str], dict[str, int]) is False
    assert can_satisfy(Mapping[str, list[int]], dict[str, list[float]]) is True
    assert can_satisfy(dict[str, int], dict[int, int]) is False
    assert can_satisfy(dict[int, int], dict[str, int]) is True  # JSON keys are strings
    assert can_satisfy(dict[str, int], str) is False


def test_nested_models_inside_lists() -> None:
    assert can_satisfy(list[Flight], list[FlightLike]) is True
    assert can_satisfy(list[Flight], list[FlightIntPrice]) is False  # price: float -> int
    assert can_satisfy(annotation_at(PriceOut, ["flights"]), list[Flight]) is True
    assert can_satisfy(annotation_at(PriceOut, ["flights", "0"]), Flight) is True


# ---- can_satisfy: models ---------------------------------------------------------------------


def test_model_same_or_subclass() -> None:
    class DiscountFlight(Flight):
        discount: float

    assert can_satisfy(DiscountFlight, Flight) is True
    assert can_satisfy(Flight, DiscountFlight) is False  # the required discount is missing


def test_structural_model_match() -> None:
    assert can_satisfy(Flight, FlightLike) is True  # airline has a default
    assert can_satisfy(FlightLike, Flight) is True  # seats has a default


def test_structural_model_mismatch() -> None:
    assert can_satisfy(Flight, FlightIntPrice) is False  # float cannot become int
    assert can_satisfy(Flight, Offer) is False  # Offer's required fields are missing

    class Priced(BaseModel):
        price: float
        seats: str = ""  # present in Flight as int, which never validates as str

    assert can_satisfy(Flight, Priced) is False


def test_structural_model_nested_match_and_mismatch() -> None:
    class OfferLike(BaseModel):
        id: str
        flight: FlightLike

    class OfferBad(BaseModel):
        id: str
        flight: FlightIntPrice

    assert can_satisfy(Offer, OfferLike) is True
    assert can_satisfy(Offer, OfferBad) is False


def test_structural_match_uses_aliases() -> None:
    class Ref(BaseModel):
        booking_ref: str = Field(alias="bookingRef")

    class Plain(BaseModel):
        bookingRef: str  # mirrors a camelCase API

    assert can_satisfy(Plain, Ref) is True
    assert can_satisfy(Ref, Plain) is True


def test_extra_forbid_target_rejects_unknown_source_fields() -> None:
    class Bare(BaseModel):
        code: str
        price: float

    assert can_satisfy(Bare, StrictFlight) is True
    assert can_satisfy(Flight, StrictFlight) is False  # seats would be an extra key


def test_recursive_models_do_not_loop() -> None:
    assert can_satisfy(Node, Tree) is True
    assert can_satisfy(Tree, Node) is True

    class BadTree(BaseModel):
        name: int
        children: list[BadTree] = []

    BadTree.model_rebuild()
    assert can_satisfy(Node, BadTree) is False


def test_model_and_dict() -> None:
    assert can_satisfy(Flight, dict[str, Any]) is True
    assert can_satisfy(Flight, dict) is True
    assert can_satisfy(FlightIntPrice, dict[str, str | int]) is True
    assert can_satisfy(FlightIntPrice, dict[str, int]) is False  # code: str never fits
    assert can_satisfy(dict[str, Any], Flight) is True
    assert can_satisfy(str, Flight) is False
    assert can_satisfy(Flight, int) is False


def test_root_model_compares_its_root() -> None:
    class Flights(RootModel[list[Flight]]):
        pass

    assert can_satisfy(Flights, list[FlightLike]) is True
    assert can_satisfy(list[Flight], Flights) is True
    assert can_satisfy(Flights, list[int]) is False


def test_book_input_from_price_output() -> None:
    offer_id = annotation_at(PriceOut, ["best_offer", "id"])
    total = annotation_at(PriceOut, ["best_offer", "total"])
    assert can_satisfy(offer_id, BookIn.model_fields["offer_id"].annotation) is True
    assert can_satisfy(total, float) is True  # Decimal -> float
    assert can_satisfy(total, int) is False
    assert can_satisfy(annotation_at(PriceOut, ["flights"]), list[FlightIntPrice]) is False


# ---- can_satisfy: dates, ids, decimals, unknown classes --------------------------------------


def test_parsed_scalars() -> None:
    assert can_satisfy(datetime, datetime) is True
    assert can_satisfy(str, datetime) is True
    assert can_satisfy(str, date) is True
    assert can_satisfy(str, UUID) is True
    assert can_satisfy(str, Decimal) is True
    assert can_satisfy(int, Decimal) is True
    assert can_satisfy(UUID, str) is True  # outputs travel as JSON strings
    assert can_satisfy(UUID, int) is False
    assert can_satisfy(bool, date) is False
    assert can_satisfy(list[str], UUID) is False
    assert can_satisfy(Decimal, int) is False


def test_unknown_classes_are_given_the_benefit_of_the_doubt() -> None:
    class Money:
        pass

    assert can_satisfy(str, Money) is True
    assert can_satisfy(Money, int) is True
    assert can_satisfy(list[Money], list[int]) is True


# ---- describe --------------------------------------------------------------------------------


def test_describe() -> None:
    assert describe(list[Flight]) == "list[Flight]"
    assert describe(int | None) == "int | None"
    assert describe(Optional[int]) == "int | None"  # noqa: UP045 - the spelling under test
    assert describe(PriceOut) == "PriceOut"
    assert describe(dict[str, list[int]]) == "dict[str, list[int]]"
    assert describe(tuple[int, ...]) == "tuple[int, ...]"
    assert describe(Literal["EUR", "USD"]) == "Literal['EUR', 'USD']"
    assert describe(Annotated[int, "x"]) == "int"
    assert describe(Sequence[Flight]) == "Sequence[Flight]"
    assert describe(Any) == "Any"
    assert describe(None) == "None"
