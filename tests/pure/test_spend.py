"""Prices, the spend guard's budgets and the totals: parsing, arithmetic, admit/settle/release."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flink_llm_udf._errors import FlinkLLMError, InvalidOptionError, InvalidOptionTypeError
from flink_llm_udf._spend import (
    NoBudget,
    PriceTable,
    SpendGuard,
    SpendTotals,
    spend_guard,
    validate_prices,
)

TABLE = "gpt-4o-mini=0.15/0.60;text-embedding-3-small=0.02;*=1/2"


# --- prices ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "model", "price"),
    [
        (TABLE, "gpt-4o-mini", (0.15, 0.60)),
        (TABLE, "text-embedding-3-small", (0.02, 0.02)),  # one number prices every token alike
        (TABLE, "llama-3", (1.0, 2.0)),  # '*' prices every model not named
        (TABLE, None, (1.0, 2.0)),  # a request without a model gets '*' too
        ("gpt-4o-mini=0.15/0.60", "gpt-4o", None),  # no '*': no price
        ("gpt-4o-mini=0.15/0.60", None, None),
        (" a = 1 / 2 ; b=3 ;", "a", (1.0, 2.0)),  # spaces and a trailing ';' are harmless
        ("meta-llama/Llama-3-8B=0.1/0.2", "meta-llama/Llama-3-8B", (0.1, 0.2)),  # '/' in a model name
        ("free=0", "free", (0.0, 0.0)),
        ("sci=1e-1/2.5e0", "sci", (0.1, 2.5)),
        ("", "any", None),
    ],
)
def test_prices_are_read_per_model_with_star_for_the_rest(text, model, price):
    assert PriceTable.parse(text).price(model) == price


def test_a_mapping_gives_the_same_table_as_its_text():
    mapping = {"gpt-4o-mini": (0.15, 0.60), "text-embedding-3-small": 0.02, "*": [1, 2]}
    assert PriceTable.parse(mapping) == PriceTable.parse(TABLE)
    assert hash(PriceTable.parse(mapping)) == hash(PriceTable.parse(TABLE))


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (TABLE, "gpt-4o-mini=0.15/0.6;text-embedding-3-small=0.02;*=1/2"),
        ("*=3;b=2/2;a=1e-7/5", "a=1e-07/5;b=2;*=3"),
        ("", ""),
    ],
)
def test_str_is_canonical_and_parses_back_to_the_same_table(text, canonical):
    table = PriceTable.parse(text)
    assert str(table) == canonical
    assert PriceTable.parse(str(table)) == table
    assert repr(table) == f"PriceTable({canonical!r})"


def test_an_empty_table_is_false_and_a_filled_one_true():
    assert not PriceTable.parse(None)
    assert not PriceTable.parse("")
    assert not PriceTable.parse(" ; ")
    assert not PriceTable.parse({})
    assert PriceTable.parse("*=0")


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("gpt-4o-mini", "has no '='"),
        ("a=1,b=2", "separate entries with ';'"),
        ("a=x", "'a=x'"),
        ("a=1/2/3", "'a=1/2/3'"),
        ("a=-1", "'a=-1'"),
        ("a=nan", "'a=nan'"),
        ("a=inf/1", "'a=inf/1'"),
        ("a=1/", "'a=1/'"),
        ("=1", "model name"),
        ("a=1;a=2", "priced twice"),
        ({"a": "1/2"}, "entry 'a'"),
        ({"a": (1, 2, 3)}, "entry 'a'"),
        ({"a": -0.5}, "entry 'a'"),
        ({"a": True}, "entry 'a'"),
        ({"": 1}, "model name"),
        ({"a;b": 1}, "must not contain"),
        ({7: 1}, "model name"),
    ],
)
def test_a_bad_entry_is_named_with_the_option(value, names):
    with pytest.raises(InvalidOptionError, match="prices") as caught:
        validate_prices(value)
    assert names in str(caught.value)


def test_a_value_of_another_type_is_a_type_error():
    with pytest.raises(InvalidOptionTypeError, match="prices"):
        PriceTable.parse(0.15)


def test_validate_prices_gives_the_table():
    assert validate_prices(TABLE) == PriceTable.parse(TABLE)
    table = PriceTable.parse(TABLE)
    assert PriceTable.parse(table) is table


@pytest.mark.parametrize(
    ("model", "prompt", "completion", "cost"),
    [
        ("gpt-4o-mini", 1_000_000, 0, 0.15),
        ("gpt-4o-mini", 0, 1_000_000, 0.60),
        ("gpt-4o-mini", 2_000, 500, (2_000 * 0.15 + 500 * 0.60) / 1e6),
        ("text-embedding-3-small", 50_000_000, 0, 1.0),
        ("other", 1_000, 1_000, 0.003),
        ("gpt-4o-mini", 0, 0, 0.0),
    ],
)
def test_cost_is_tokens_times_price_per_million(model, prompt, completion, cost):
    assert PriceTable.parse(TABLE).cost(model, prompt, completion) == pytest.approx(cost, rel=1e-12)


def test_cost_is_none_without_a_price():
    assert PriceTable.parse("a=1").cost("b", 10, 10) is None
    assert PriceTable.parse("").cost(None, 10, 10) is None


# --- the guard: construction ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("budget", "subtasks", "share"),
    [(20_000, 2, 10_000), (10, 3, 3), (7, 7, 1), (5, 8, 0), (1e6, 4, 250_000)],
)
def test_each_subtask_takes_the_budget_divided_rounded_down(budget, subtasks, share):
    guard = SpendGuard(budget, None, subtasks, None)
    assert guard.share_tokens == share
    assert guard.share_tokens * subtasks <= budget  # rounding never adds budget


def test_a_cost_budget_is_split_too():
    guard = SpendGuard(None, 10.0, 4, PriceTable.parse("*=1"))
    assert guard.share_cost == pytest.approx(2.5)
    assert guard.share_tokens is None


@pytest.mark.parametrize("prices", [None, PriceTable.parse("")])
def test_a_cost_budget_without_prices_is_refused(prices):
    with pytest.raises(InvalidOptionError, match=r"cost_budget.*needs prices"):
        SpendGuard(None, 5.0, 1, prices)


@pytest.mark.parametrize(
    ("token_budget", "cost_budget", "subtasks", "name"),
    [
        (0, None, 1, "token_budget"),
        (-5, None, 1, "token_budget"),
        (1.5, None, 1, "token_budget"),
        (True, None, 1, "token_budget"),
        ("100", None, 1, "token_budget"),
        (None, 0.0, 1, "cost_budget"),
        (None, float("inf"), 1, "cost_budget"),
        (None, float("nan"), 1, "cost_budget"),
        (None, "5", 1, "cost_budget"),
        (100, None, 0, "subtasks"),
    ],
)
def test_bad_budgets_are_refused_by_name(token_budget, cost_budget, subtasks, name):
    with pytest.raises(InvalidOptionError, match=name):
        SpendGuard(token_budget, cost_budget, subtasks, PriceTable.parse("*=1"))


def test_require_price_refuses_an_unpriced_model_under_a_cost_budget():
    guard = SpendGuard(None, 5.0, 1, PriceTable.parse("a=1"))
    guard.require_price("a")
    with pytest.raises(InvalidOptionError, match=r"cost_budget.*model 'b'"):
        guard.require_price("b")
    SpendGuard(100, None, 1, PriceTable.parse("a=1")).require_price("b")  # no cost budget: fine


# --- the guard: admit, settle, release -----------------------------------------------------------
def test_reservations_in_flight_never_exceed_the_share():
    guard = SpendGuard(20_000, None, 2, None)
    held = [guard.admit(3_000, "m") for _ in range(5)]
    assert [r is not None for r in held] == [True, True, True, False, False]
    assert guard.reserved_tokens == 9_000 <= guard.share_tokens
    assert guard.admit(1_000, "m") is not None  # exactly fills the share
    assert guard.admit(1, "m") is None
    assert guard.refused == 3


def test_settling_below_the_estimate_frees_budget_for_later_requests():
    guard = SpendGuard(10_000, None, 1, None)
    first = guard.admit(6_000, None)
    assert guard.admit(6_000, None) is None  # refused while the first holds its estimate
    guard.settle(first, 1_000, 1_000)
    assert (guard.spent_tokens, guard.reserved_tokens) == (2_000, 0)
    assert guard.admit(6_000, None) is not None  # refusal is per request, not once for all


def test_a_request_too_large_is_refused_while_a_smaller_one_still_goes():
    guard = SpendGuard(10_000, None, 1, None)
    guard.settle(guard.admit(9_000, None), 9_000, 0)
    assert guard.admit(2_000, None) is None
    assert not guard.exhausted
    assert guard.admit(1_000, None) is not None


def test_release_gives_the_reservation_back_and_keep_spends_it():
    guard = SpendGuard(10_000, None, 1, None)
    failed, lost = guard.admit(4_000, None), guard.admit(3_000, None)
    guard.release(failed)
    assert (guard.spent_tokens, guard.reserved_tokens) == (0, 3_000)
    guard.keep(lost)  # a timeout: the provider may bill it
    assert (guard.spent_tokens, guard.reserved_tokens) == (3_000, 0)


def test_a_reservation_closes_once():
    guard = SpendGuard(10_000, None, 1, None)
    reservation = guard.admit(4_000, None)
    guard.settle(reservation, 1_000, 500)
    guard.release(reservation)  # a `finally` after settle does nothing
    guard.settle(reservation, 1_000, 500)
    guard.keep(reservation)
    assert (guard.spent_tokens, guard.reserved_tokens) == (1_500, 0)
    assert not reservation.open


def test_an_overshoot_is_bounded_by_the_errors_of_requests_in_flight():
    guard = SpendGuard(10_000, None, 1, None)
    held = [guard.admit(2_500, None) for _ in range(4)]
    assert guard.admit(1, None) is None
    for reservation in held:  # each used 100 more than its estimate
        guard.settle(reservation, 2_000, 600)
    assert guard.spent_tokens == 10_400 == guard.share_tokens + 4 * 100
    assert guard.exhausted
    assert guard.admit(1, None) is None  # spent budget never comes back


def test_a_cost_budget_reserves_the_estimate_at_the_higher_price():
    guard = SpendGuard(None, 1.0, 1, PriceTable.parse("m=0.5/2"))
    reservation = guard.admit(250_000, "m")
    assert reservation is not None
    assert reservation.cost == pytest.approx(0.5)  # 250k tokens at 2 per million
    assert guard.reserved_cost == pytest.approx(0.5)
    assert guard.admit(250_001, "m") is None
    guard.settle(reservation, 200_000, 50_000)  # 0.1 + 0.1
    assert guard.spent_cost == pytest.approx(0.2)
    assert guard.reserved_cost == 0.0
    assert guard.admit(400_000, "m") is not None  # 0.8 fits in the 0.8 left
    assert guard.admit(1, "m") is None


def test_costs_that_add_up_to_the_share_exactly_fit_despite_float_rounding():
    guard = SpendGuard(None, 0.3, 1, PriceTable.parse("m=1"))
    for _ in range(3):  # 0.1 + 0.1 + 0.1 == 0.30000000000000004 in floats
        reservation = guard.admit(100_000, "m")  # $0.1 each
        assert reservation is not None
        guard.settle(reservation, 100_000, 0)
    assert guard.exhausted
    assert guard.admit(1, "m") is None


def test_an_unpriced_model_under_a_cost_budget_is_refused_and_told_why():
    guard = SpendGuard(None, 1.0, 1, PriceTable.parse("m=1"))
    assert guard.admit(10, "other") is None
    assert "no price for model 'other'" in guard.exhausted_message()
    assert guard.admit(10, "m") is not None


def test_settle_prices_by_the_replys_model_when_named_else_by_the_reserved_one():
    guard = SpendGuard(None, 100.0, 1, PriceTable.parse("m=1;m-2024=3;*=10"))
    a, b = guard.admit(1_000_000, "m"), guard.admit(1_000_000, "m")
    guard.settle(a, 1_000_000, 0, "m-2024")  # named in the table: its price
    assert guard.spent_cost == pytest.approx(3.0)
    guard.settle(b, 1_000_000, 0, "m-2025")  # only '*' would price it: the reserved model's price
    assert guard.spent_cost == pytest.approx(4.0)


def test_tokens_and_cost_budgets_both_hold():
    guard = SpendGuard(1_000, 1.0, 1, PriceTable.parse("*=1000"))  # $0.001 a token
    assert guard.admit(1_001, "m") is None  # over the tokens
    assert guard.admit(1_000, "m") is not None  # $1.0 and 1,000 tokens: both exactly full
    assert guard.admit(1, "m") is None
    message = guard.exhausted_message()
    assert "token budget spent" in message and "cost budget spent" in message


def test_spend_is_counted_without_a_budget_for_its_kind():
    guard = SpendGuard(10_000, None, 1, PriceTable.parse("*=1/2"))
    guard.settle(guard.admit(1_000, "m"), 1_000_000 // 1_000, 0)
    assert guard.spent_cost == pytest.approx(0.001)
    assert guard.share_cost is None and not guard.exhausted


@pytest.mark.parametrize("estimate", [-1, -100])
def test_a_negative_estimate_is_a_bug(estimate):
    with pytest.raises(ValueError, match="estimate_tokens"):
        SpendGuard(10, None, 1, None).admit(estimate, None)


# --- messages -------------------------------------------------------------------------------------
def test_the_exhausted_message_says_budget_spent_and_the_split():
    guard = SpendGuard(20_000, None, 2, None)
    guard.settle(guard.admit(10_000, None), 8_000, 2_000)
    assert guard.admit(1, None) is None
    assert guard.exhausted_message() == (
        "token budget spent: 10,000 of this subtask's 10,000 tokens "
        "(job budget 20,000 over 2 subtasks); no request sent"
    )


def test_a_refusal_with_budget_left_names_what_is_in_flight_and_the_request():
    guard = SpendGuard(10_000, None, 1, None)
    guard.settle(guard.admit(5_000, None), 5_000, 0)
    guard.admit(3_000, None)
    assert guard.admit(2_500, None) is None
    assert guard.exhausted_message() == (
        "token budget spent: 5,000 of this subtask's 10,000 tokens (job budget 10,000 over 1 subtask), "
        "3,000 reserved by requests in flight, this request needs about 2,500; no request sent"
    )


def test_a_cost_refusal_shows_money():
    guard = SpendGuard(None, 2.0, 2, PriceTable.parse("*=1"))
    guard.settle(guard.admit(1_000_000, None), 1_000_000, 0)
    assert guard.admit(1, None) is None
    assert guard.exhausted_message() == (
        "cost budget spent: $1.0000 of this subtask's $1.0000 (job budget $2.0000 over 2 subtasks); "
        "no request sent"
    )


# --- no budget ----------------------------------------------------------------------------------
@pytest.mark.parametrize("guard", [SpendGuard.unlimited(), NoBudget(), spend_guard(None, None, 4, None)])
def test_without_a_budget_every_request_goes_and_nothing_is_held(guard):
    assert isinstance(guard, NoBudget)
    for _ in range(1_000):
        reservation = guard.admit(10**9, "m")
        assert reservation is not None
        guard.settle(reservation, 10**9, 10**9)
    guard.release(reservation)
    guard.keep(reservation)
    assert (guard.spent_tokens, guard.reserved_tokens, guard.exhausted) == (0, 0, False)
    assert reservation.open  # the shared reservation is never closed


def test_spend_guard_makes_a_real_guard_when_a_budget_is_set():
    guard = spend_guard(100, None, 2, None)
    assert type(guard) is SpendGuard and guard.share_tokens == 50


# --- a property: many interleaved requests never spend past the share ------------------------------
ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["admit", "settle", "release", "keep"]),
        st.integers(min_value=0, max_value=3_000),  # an estimate
        st.floats(min_value=0.0, max_value=1.0),  # actual / estimate
        st.floats(min_value=0.0, max_value=1.0),  # the prompt's part of the actual
        st.integers(min_value=0, max_value=50),  # which reservation in flight
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(
    budget=st.integers(min_value=1, max_value=50_000),
    subtasks=st.integers(min_value=1, max_value=8),
    cost_budget=st.one_of(st.none(), st.floats(min_value=0.001, max_value=50.0)),
    actions=ACTIONS,
)
def test_with_actuals_within_estimates_spent_never_passes_the_share(budget, subtasks, cost_budget, actions):
    prices = PriceTable.parse("m=3/15;*=1/2")
    guard = SpendGuard(budget, cost_budget, subtasks, prices)
    in_flight = []
    for action, estimate, ratio, prompt_part, pick in actions:
        if action == "admit" or not in_flight:
            reservation = guard.admit(estimate, "m" if pick % 2 else None)
            if reservation is not None:
                in_flight.append(reservation)
        else:
            reservation = in_flight.pop(pick % len(in_flight))
            if action == "settle":
                actual = int(reservation.tokens * ratio)
                prompt = int(actual * prompt_part)
                guard.settle(reservation, prompt, actual - prompt)
            elif action == "release":
                guard.release(reservation)
            else:
                guard.keep(reservation)
        assert guard.reserved_tokens == sum(r.tokens for r in in_flight)
        assert guard.spent_tokens + guard.reserved_tokens <= guard.share_tokens
        if cost_budget is not None:
            assert guard.spent_cost + guard.reserved_cost <= guard.share_cost * (1 + 1e-6)
    for reservation in in_flight:
        guard.keep(reservation)
    assert guard.spent_tokens <= guard.share_tokens
    assert guard.reserved_tokens == 0


@settings(max_examples=300, deadline=None)
@given(
    budget=st.integers(min_value=1, max_value=20_000),
    steps=st.lists(
        st.tuples(st.booleans(), st.integers(0, 2_000), st.integers(0, 1_000), st.integers(0, 20)),
        max_size=150,
    ),
)
def test_an_overshoot_never_exceeds_the_underestimates_in_flight_at_the_last_admission(budget, steps):
    guard = SpendGuard(budget, None, 1, None)
    in_flight: list[tuple[object, int]] = []  # (reservation, actual tokens it will report)
    bound = 0  # the overshoot allowed: the underestimates in flight at the last admission
    for admit, estimate, extra, pick in steps:
        if admit or not in_flight:
            reservation = guard.admit(estimate, None)
            if reservation is not None:
                in_flight.append((reservation, estimate + extra))
                bound = sum(actual - r.tokens for r, actual in in_flight)
        else:
            reservation, actual = in_flight.pop(pick % len(in_flight))
            guard.settle(reservation, actual, 0)
        assert guard.spent_tokens <= guard.share_tokens + bound
    for reservation, actual in in_flight:
        guard.settle(reservation, actual, 0)
    assert guard.spent_tokens <= guard.share_tokens + bound


# --- totals ---------------------------------------------------------------------------------------
def test_totals_add_rows_and_format_them():
    totals = SpendTotals()
    totals.add(12_000, 6_000, 0.0120, cached=False)
    totals.add(345, 789, 0.0003, cached=False)
    for _ in range(40):
        totals.add(0, 0, 0.0, cached=True)
    assert totals.format_totals() == (
        "tokens: 12,345 prompt + 6,789 completion; cost: $0.0123; cache hits: 40 of 42 rows"
    )


def test_totals_say_when_rows_had_no_price_and_merge():
    first, second = SpendTotals(), SpendTotals()
    first.add(10, 5, 0.5, cached=False)
    second.add(10, 5, None, cached=False)
    second.add(0, 0, None, cached=True)  # a cache hit used no tokens: not unpriced
    first.merge(second)
    assert (first.rows, first.cached_rows, first.unpriced_rows) == (3, 1, 1)
    assert first.format_totals() == (
        "tokens: 20 prompt + 10 completion; cost: $0.5000 + unknown for 1 row without a price; "
        "cache hits: 1 of 3 rows"
    )


def test_every_error_here_is_in_the_package_tree():
    for bad in (lambda: PriceTable.parse("x"), lambda: SpendGuard(None, 1.0, 1, None)):
        with pytest.raises(FlinkLLMError):
            bad()


def test_before_any_refusal_the_message_tells_where_each_budget_stands():
    guard = SpendGuard(1_000, 2.0, 1, PriceTable.parse("*=1"))
    guard.settle(guard.admit(100, None), 100, 0)
    assert guard.exhausted_message() == (
        "token budget spent: 100 of this subtask's 1,000 tokens (job budget 1,000 over 1 subtask); "
        "cost budget spent: $0.0001 of this subtask's $2.0000 (job budget $2.0000 over 1 subtask); "
        "no request sent"
    )
