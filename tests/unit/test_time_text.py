"""The text of a time, in the SQLite ledger and in replies (``support.times``): cached,
and always the text the uncached formatting gives, whichever times came before (equal
instants in other zones, naive times, the same second again)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from nodecert.http import contract
from nodecert.store.sqlite import store
from nodecert.support.times import utc_isoformat

_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]
)
_NAIVE = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 1, 1))
# A few instants, each seen in several zones and with and without microseconds.
_TIMES = st.lists(
    st.tuples(_NAIVE, _ZONES, st.booleans()).map(
        lambda t: t[0].replace(tzinfo=t[1]) if t[2] else t[0]
    ),
    min_size=1,
    max_size=12,
).flatmap(
    lambda times: st.lists(
        st.sampled_from(times).flatmap(
            lambda at: st.sampled_from(
                [at]
                if at.tzinfo is None
                else [at, at.astimezone(UTC), at.astimezone(timezone(timedelta(hours=3)))]
            )
        ),
        min_size=1,
        max_size=30,
    )
)


@given(_TIMES)
def test_the_reply_text_of_a_time_is_its_isoformat_with_z(times: list[datetime]) -> None:
    for at in times:
        assert contract._time(at) == at.isoformat().replace("+00:00", "Z")


@given(_TIMES)
def test_the_ledger_text_of_a_time_is_its_utc_isoformat(times: list[datetime]) -> None:
    for at in times:
        if at.tzinfo is not None:  # A naive time is read as local time, as before.
            assert utc_isoformat(at) == at.astimezone(UTC).isoformat()
    assert store._SQLITE.to_time is utc_isoformat  # What the ledger writes a time with.
