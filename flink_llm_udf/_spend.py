"""Cost accounting and a spend guard: prices per model, a job's token and cost budgets.

``PriceTable`` prices a request from its usage: per **million** tokens, one price for the prompt
and one for the completion, per model. As a job parameter (``ai.prices``) or
``EngineSettings(prices=...)`` it reads::

    gpt-4o-mini=0.15/0.60;text-embedding-3-small=0.02;*=1/2

``model=prompt/completion``; a single number is the price of every token, prompt and completion
alike (an embeddings model has no completion tokens, and a chat model priced with one number
is never under-counted); ``*`` prices every model not named. Entries are separated by ``;``
because Flink's job-parameter map splits at ``,`` and ``:``.

``SpendGuard`` keeps one engine (one Flink subtask) within its share of the job's budgets: a
budget of tokens and/or of cost is job-wide, and each of ``subtasks`` engines takes
``1 / subtasks`` of it, as with the quota's per-minute budgets (``_quota.py``). Before a
request is sent, ``admit`` reserves its estimate (``TokenEstimator``); the reply's usage then
replaces the reservation with what was actually spent (``settle``), or a failure that cost
nothing gives it back (``release``). A request goes only while spent + reserved + its estimate
fits in the share, so concurrent requests (rows interleaving on one event loop) never commit
more than the share between them. Only an estimate that was too low can take the spend past the
share, and only by that error: see ``SpendGuard``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._errors import InvalidOptionError
from ._options import option_type_error, option_value_error

__all__ = [
    "NoBudget",
    "PriceTable",
    "Reservation",
    "SpendGuard",
    "SpendTotals",
    "spend_guard",
    "validate_prices",
]

#: The key of the price for every model the table does not name.
ANY_MODEL = "*"
#: Prices are per this many tokens.
PER_TOKENS = 1_000_000
#: Costs are sums of floats: a request whose cost fits but for rounding (1e-9 of the share) goes.
_COST_SLACK = 1e-9

_PRICES_FORMAT = "'model=prompt/completion' entries separated by ';' (per million tokens), '*' for any model"


# --- prices ---------------------------------------------------------------------------------------
def _price_number(text: str) -> float | None:
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _show_number(number: float) -> str:
    text = repr(float(number))
    return text[:-2] if text.endswith(".0") else text


def _check_model_name(name: object, value: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise option_value_error("prices", f"model name {name!r} must be a non-empty string", value)
    model = name.strip()
    if any(mark in model for mark in ";="):
        raise option_value_error("prices", f"model name {model!r} must not contain ';' or '='", value)
    return model


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices per million prompt and completion tokens, per model (see the module docstring).

    Build one with ``PriceTable.parse`` from the option's text or a mapping
    ``{model: (prompt, completion) | price}``. Equal tables compare equal and hash alike;
    ``str`` gives the canonical text (models sorted, ``*`` last), which parses back to the same
    table. An empty table is false.
    """

    #: ``(model, prompt price, completion price)``, sorted by model with ``*`` last.
    entries: tuple[tuple[str, float, float], ...] = ()
    _by_model: dict[str, tuple[float, float]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.entries, key=lambda entry: (entry[0] == ANY_MODEL, entry[0])))
        object.__setattr__(self, "entries", ordered)
        object.__setattr__(self, "_by_model", {model: (p, c) for model, p, c in ordered})

    @classmethod
    def parse(cls, value: object) -> PriceTable:
        """A table from ``"gpt-4o-mini=0.15/0.60;*=1/2"``, a mapping, a table, or None/"" (empty).

        Raises ``InvalidOptionError`` naming the option ``prices`` and the bad entry (a price that
        is not a number >= 0, a model given twice, ``,`` used between entries), and
        ``InvalidOptionTypeError`` for a value of another type.
        """
        if value is None:
            return cls()
        if isinstance(value, PriceTable):
            return value
        if isinstance(value, str):
            return cls._from_text(value)
        if isinstance(value, Mapping):
            return cls._from_mapping(value)
        raise option_type_error("prices", f"a string of {_PRICES_FORMAT}, or a mapping", value)

    @classmethod
    def _from_text(cls, value: str) -> PriceTable:
        prices: dict[str, tuple[float, float]] = {}
        for raw in value.split(";"):
            entry = raw.strip()
            if not entry:
                continue  # a trailing ';' is harmless
            name, equals, price = entry.rpartition("=")
            if not equals:
                raise option_value_error("prices", f"entry {entry!r} has no '=': use {_PRICES_FORMAT}", value)
            if "," in entry:
                raise option_value_error(
                    "prices", f"entry {entry!r} has a ',': separate entries with ';'", value
                )
            model = _check_model_name(name, value)
            parts = price.split("/")
            numbers = [_price_number(part) for part in parts]
            if len(parts) > 2 or any(number is None for number in numbers):
                raise option_value_error(
                    "prices",
                    f"entry {entry!r}: {price.strip()!r} must be 'prompt/completion' or one price, "
                    "each a number >= 0 (per million tokens)",
                    value,
                )
            prompt = numbers[0]
            completion = numbers[-1]
            assert prompt is not None and completion is not None
            cls._add(prices, model, prompt, completion, entry, value)
        return cls(tuple((model, p, c) for model, (p, c) in prices.items()))

    @classmethod
    def _from_mapping(cls, value: Mapping[object, object]) -> PriceTable:
        prices: dict[str, tuple[float, float]] = {}
        for name, price in value.items():
            model = _check_model_name(name, value)
            pair = price if isinstance(price, (tuple, list)) else (price, price)
            ok = len(pair) == 2 and all(
                not isinstance(number, bool)
                and isinstance(number, (int, float))
                and math.isfinite(number)
                and number >= 0
                for number in pair
            )
            if not ok:
                raise option_value_error(
                    "prices",
                    f"entry {model!r}: {price!r} must be (prompt, completion) or one price, "
                    "each a number >= 0 (per million tokens)",
                    value,
                )
            cls._add(prices, model, float(pair[0]), float(pair[1]), model, value)
        return cls(tuple((model, p, c) for model, (p, c) in prices.items()))

    @staticmethod
    def _add(
        prices: dict[str, tuple[float, float]],
        model: str,
        prompt: float,
        completion: float,
        entry: str,
        value: object,
    ) -> None:
        if model in prices:
            raise option_value_error("prices", f"entry {entry!r}: model {model!r} is priced twice", value)
        prices[model] = (prompt, completion)

    def price(self, model: str | None) -> tuple[float, float] | None:
        """``(prompt, completion)`` per million tokens for ``model`` (exact name, else ``*``), or None."""
        by_model = self._by_model
        found = by_model.get(model) if model is not None else None
        return found if found is not None else by_model.get(ANY_MODEL)

    def names(self, model: str | None) -> bool:
        """Whether the table prices ``model`` by its own name (not through ``*``)."""
        return model is not None and model in self._by_model

    def cost(self, model: str | None, prompt_tokens: int, completion_tokens: int) -> float | None:
        """What the tokens cost under ``model``'s price, or None when no price applies."""
        price = self.price(model)
        if price is None:
            return None
        return (prompt_tokens * price[0] + completion_tokens * price[1]) / PER_TOKENS

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __str__(self) -> str:
        return ";".join(
            f"{model}={_show_number(p)}" if p == c else f"{model}={_show_number(p)}/{_show_number(c)}"
            for model, p, c in self.entries
        )

    def __repr__(self) -> str:
        return f"PriceTable({str(self)!r})"


def validate_prices(value: object) -> PriceTable:
    """Check a ``prices`` option's value (settings validation); the table it gives.

    Raises as ``PriceTable.parse`` does.
    """
    return PriceTable.parse(value)


# --- the guard -----------------------------------------------------------------------------------
class Reservation:
    """What ``SpendGuard.admit`` set aside for one request: its estimated tokens and cost.

    It is closed by the first ``settle``, ``release`` or ``keep``; closing it again does nothing,
    so ``release`` in a ``finally`` after a ``settle`` is safe.
    """

    __slots__ = ("cost", "model", "open", "tokens")

    def __init__(self, tokens: int, cost: float, model: str | None) -> None:
        self.tokens = tokens
        self.cost = cost
        self.model = model
        self.open = True

    def __repr__(self) -> str:
        state = "open" if self.open else "closed"
        return f"Reservation(tokens={self.tokens}, cost={self.cost!r}, model={self.model!r}, {state})"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _money(amount: float) -> str:
    return f"${amount:,.4f}"


class SpendGuard:
    """Keeps one engine (one Flink subtask) within its share of the job's token and cost budgets.

    ``token_budget`` (tokens, prompt plus completion) and ``cost_budget`` (in the prices'
    currency) are job-wide; None means no such budget. Each subtask's share is
    ``token_budget // subtasks`` tokens (rounded down, so the shares never add up to more than
    the budget; the remainder, fewer than ``subtasks`` tokens, is left unspent) and
    ``cost_budget / subtasks``. A cost budget needs ``prices``.

    - ``admit(estimate, model)`` before each request (each attempt: a retry is a request): a
      ``Reservation`` of the estimate and its cost, or None when spent + reserved + the
      estimate would pass a share. The request is then not sent; ``exhausted_message()`` says
      why. Refusal is decided per request, not once for all: a request too large for what is
      left is refused while a smaller one may still go, and a request refused while others
      held reservations may go once they settled below their estimates or failed. Spent
      budget never comes back. Under a cost budget, a model ``prices`` has no price for (by
      name or ``*``) is always refused (``require_price`` checks that at open).
    - ``settle(reservation, prompt_tokens, completion_tokens, model=None)`` after a reply with
      usage (a failed one too): the actual tokens and their cost replace the reservation.
    - ``release(reservation)`` after a failure without usage that cost nothing (an HTTP error
      status); ``keep(reservation)`` after one the provider may still bill (a timeout, a
      connection lost after the request went out): the estimate counts as spent.

    The estimated cost is the estimate's tokens at the higher of the model's two prices, so it
    is never below the actual cost of as many tokens. When every reply uses at most its
    estimate, spent never passes the share. When a reply uses more, spent may end above the
    share, by at most the sum of (actual - estimate) over the requests in flight when the last
    request was admitted: at that moment spent + reserved fitted in the share, and from then on
    only those requests add to it. The quota's ``TokenEstimator`` counts the prompt exactly and
    takes ``max_tokens`` for the completion, so the error is the chat framing at most unless
    ``max_tokens`` is unset (then ``completion_tokens_estimate`` is a guess).

    One engine's rows run on one event loop, so there are no locks: each method runs to the end
    without an ``await``.
    """

    __slots__ = (
        "_last_refusal",
        "_open",
        "_reserved_cost",
        "cost_budget",
        "prices",
        "refused",
        "reserved_tokens",
        "share_cost",
        "share_tokens",
        "spent_cost",
        "spent_tokens",
        "subtasks",
        "token_budget",
    )

    def __init__(
        self,
        token_budget: int | None,
        cost_budget: float | None,
        subtasks: int,
        prices: PriceTable | None,
    ) -> None:
        if isinstance(subtasks, bool) or not isinstance(subtasks, int) or subtasks < 1:
            raise option_value_error("subtasks", "must be an int >= 1", subtasks)
        if token_budget is not None:
            whole = isinstance(token_budget, int) or (
                isinstance(token_budget, float) and token_budget.is_integer()
            )
            if isinstance(token_budget, bool) or not whole or token_budget < 1:
                raise option_value_error(
                    "token_budget", "must be a whole number of tokens >= 1", token_budget
                )
            token_budget = int(token_budget)
        if cost_budget is not None and (
            isinstance(cost_budget, bool)
            or not isinstance(cost_budget, (int, float))
            or not (math.isfinite(cost_budget) and cost_budget > 0)
        ):
            raise option_value_error("cost_budget", "must be a number > 0 (prices' currency)", cost_budget)
        if cost_budget is not None and not prices:
            raise InvalidOptionError(
                f"cost_budget={cost_budget!r} needs prices: set prices ({_PRICES_FORMAT}) "
                "for the models the job calls"
            )
        #: Job-wide budgets, as configured.
        self.token_budget: int | None = token_budget
        self.cost_budget: float | None = None if cost_budget is None else float(cost_budget)
        self.subtasks = subtasks
        self.prices: PriceTable | None = prices or None
        #: This subtask's shares.
        self.share_tokens: int | None = None if token_budget is None else token_budget // subtasks
        self.share_cost: float | None = None if cost_budget is None else cost_budget / subtasks
        #: Settled spend: tokens of every reply, and the cost of those that had a price.
        self.spent_tokens = 0
        self.spent_cost = 0.0
        #: Held by requests in flight.
        self.reserved_tokens = 0
        self._reserved_cost = 0.0
        self._open = 0
        #: Requests refused so far.
        self.refused = 0
        self._last_refusal: tuple[int, str | None, bool, bool, bool] | None = None

    @classmethod
    def unlimited(cls) -> SpendGuard:
        """A guard without budgets whose methods do nothing (``NoBudget``)."""
        return NoBudget()

    @property
    def reserved_cost(self) -> float:
        """The estimated cost held by requests in flight."""
        return self._reserved_cost

    @property
    def exhausted(self) -> bool:
        """Whether the settled spend has used up a share: from now on every request is refused."""
        share_tokens, share_cost = self.share_tokens, self.share_cost
        return (share_tokens is not None and self.spent_tokens >= share_tokens) or (
            share_cost is not None and self.spent_cost >= share_cost * (1 - _COST_SLACK)
        )

    def require_price(self, model: str | None) -> None:
        """Raise ``InvalidOptionError`` when a cost budget is set and ``model`` has no price."""
        if self.cost_budget is not None and self._price(model) is None:
            raise InvalidOptionError(
                f"cost_budget={self.cost_budget!r} needs a price for {_model_words(model)}: "
                f"prices={str(self.prices)!r} names none and has no '*'"
            )

    def admit(self, estimate_tokens: int, model: str | None) -> Reservation | None:
        """Reserve a request's estimate, or None when it does not fit (see the class docstring)."""
        if estimate_tokens < 0:
            raise ValueError(f"estimate_tokens={estimate_tokens!r} must be >= 0")
        cost = 0.0
        price = self._price(model)
        if price is not None:
            cost = estimate_tokens * max(price) / PER_TOKENS
        share_tokens, share_cost = self.share_tokens, self.share_cost
        over_tokens = (
            share_tokens is not None
            and self.spent_tokens + self.reserved_tokens + estimate_tokens > share_tokens
        )
        unpriced = share_cost is not None and price is None
        over_cost = (
            share_cost is not None
            and not unpriced
            and self.spent_cost + self._reserved_cost + cost > share_cost * (1 + _COST_SLACK)
        )
        if over_tokens or over_cost or unpriced:
            self.refused += 1
            self._last_refusal = (estimate_tokens, model, over_tokens, over_cost, unpriced)
            return None
        self.reserved_tokens += estimate_tokens
        self._reserved_cost += cost
        self._open += 1
        return Reservation(estimate_tokens, cost, model)

    def settle(
        self,
        reservation: Reservation,
        prompt_tokens: int,
        completion_tokens: int,
        model: str | None = None,
    ) -> None:
        """Replace a reservation with the reply's usage.

        The cost is priced by ``model`` (the reply's) when the table names it, else by the
        model the reservation was made for (which a cost budget made sure has a price).
        """
        if not self._close(reservation):
            return
        self.spent_tokens += prompt_tokens + completion_tokens
        prices = self.prices
        if prices is not None:
            priced_as = model if prices.names(model) else reservation.model
            cost = prices.cost(priced_as, prompt_tokens, completion_tokens)
            if cost is not None:
                self.spent_cost += cost

    def release(self, reservation: Reservation) -> None:
        """Give a reservation back: the request failed without usage and cost nothing."""
        self._close(reservation)

    def keep(self, reservation: Reservation) -> None:
        """Count a reservation as spent: the request failed without usage but may be billed."""
        if self._close(reservation):
            self.spent_tokens += reservation.tokens
            self.spent_cost += reservation.cost

    def exhausted_message(self) -> str:
        """Why the latest ``admit`` returned None (call it right after: nothing can change it).

        Names the budget, what is spent of this subtask's share and the job's budget, e.g.
        ``token budget spent: 10,000 of this subtask's 10,000 tokens (job budget 20,000 over
        2 subtasks); no request sent``.
        """
        refusal = self._last_refusal
        if refusal is None:  # nothing refused yet: where each budget stands
            estimate, model, unpriced = 0, None, False
            over_tokens, over_cost = self.share_tokens is not None, self.share_cost is not None
        else:
            estimate, model, over_tokens, over_cost, unpriced = refusal
        parts: list[str] = []
        if unpriced:
            parts.append(
                f"cost budget: no price for {_model_words(model)} in prices={str(self.prices)!r} "
                "(name it, or give '*')"
            )
        if over_tokens and self.token_budget is not None and self.share_tokens is not None:
            text = (
                f"token budget spent: {self.spent_tokens:,} of this subtask's "
                f"{_plural(self.share_tokens, 'token')} (job budget {self.token_budget:,} over "
                f"{_plural(self.subtasks, 'subtask')})"
            )
            if self.reserved_tokens:
                text += f", {self.reserved_tokens:,} reserved by requests in flight"
            if refusal is not None and self.spent_tokens < self.share_tokens:
                text += f", this request needs about {estimate:,}"
            parts.append(text)
        if over_cost and self.cost_budget is not None and self.share_cost is not None:
            text = (
                f"cost budget spent: {_money(self.spent_cost)} of this subtask's "
                f"{_money(self.share_cost)} (job budget {_money(self.cost_budget)} over "
                f"{_plural(self.subtasks, 'subtask')})"
            )
            if self._open:
                text += f", {_money(self._reserved_cost)} reserved by requests in flight"
            price = self._price(model)
            if refusal is not None and price is not None and not self.exhausted:
                text += f", this request needs up to {_money(estimate * max(price) / PER_TOKENS)}"
            parts.append(text)
        if not parts:
            return "no budget refused a request"
        return "; ".join(parts) + "; no request sent"

    def _price(self, model: str | None) -> tuple[float, float] | None:
        prices = self.prices
        return None if prices is None else prices.price(model)

    def _close(self, reservation: Reservation) -> bool:
        if not reservation.open:
            return False
        reservation.open = False
        self.reserved_tokens -= reservation.tokens
        self._open -= 1
        # a float sum that went up and down drifts: nothing open holds exactly nothing
        self._reserved_cost = 0.0 if self._open == 0 else max(0.0, self._reserved_cost - reservation.cost)
        return True


def _model_words(model: str | None) -> str:
    return "requests without a model" if model is None else f"model {model!r}"


#: The one reservation ``NoBudget`` hands out: nothing is counted on it.
_FREE = Reservation(0, 0.0, None)


class NoBudget(SpendGuard):
    """A guard without budgets: ``admit`` always lets the request go and nothing is counted.

    For the engine's hot path when neither ``token_budget`` nor ``cost_budget`` is set; the
    spend for metrics is ``SpendTotals``'s job.
    """

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(None, None, 1, None)

    def admit(self, estimate_tokens: int, model: str | None) -> Reservation | None:
        return _FREE

    def settle(
        self,
        reservation: Reservation,
        prompt_tokens: int,
        completion_tokens: int,
        model: str | None = None,
    ) -> None:
        pass

    def release(self, reservation: Reservation) -> None:
        pass

    def keep(self, reservation: Reservation) -> None:
        pass


def spend_guard(
    token_budget: int | None,
    cost_budget: float | None,
    subtasks: int,
    prices: PriceTable | None,
) -> SpendGuard:
    """A ``SpendGuard`` for these budgets, or a ``NoBudget`` when neither is set."""
    if token_budget is None and cost_budget is None:
        return NoBudget()
    return SpendGuard(token_budget, cost_budget, subtasks, prices)


# --- totals ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class SpendTotals:
    """What rows used, summed for a report (``flink-llm demo`` prints ``format_totals()``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    rows: int = 0
    cached_rows: int = 0
    #: Rows that used tokens no price applied to (their cost is not in ``cost``).
    unpriced_rows: int = 0

    def add(self, prompt: int, completion: int, cost: float | None, cached: bool) -> None:
        """One row: the tokens and cost it was billed (0 and 0.0 for a cache hit), None if unpriced."""
        self.rows += 1
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        if cached:
            self.cached_rows += 1
        if cost is not None:
            self.cost += cost
        elif prompt or completion:
            self.unpriced_rows += 1

    def merge(self, other: SpendTotals) -> None:
        """Add another's totals (another subtask's, another batch's)."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost += other.cost
        self.rows += other.rows
        self.cached_rows += other.cached_rows
        self.unpriced_rows += other.unpriced_rows

    def format_totals(self) -> str:
        """``tokens: 12,345 prompt + 6,789 completion; cost: $0.0123; cache hits: 40 of 100 rows``."""
        cost = _money(self.cost)
        if self.unpriced_rows:
            cost += f" + unknown for {_plural(self.unpriced_rows, 'row')} without a price"
        return (
            f"tokens: {self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion; "
            f"cost: {cost}; cache hits: {self.cached_rows:,} of {_plural(self.rows, 'row')}"
        )
