"""GET /raw-data filters and paging over real HTTP: signed tokens, Link headers, exactly-once walks."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest

from devtools.processes import ServerProcess
from ingestor.v1 import ingestor_pb2 as pb
from ingestor.v1 import ingestor_pb2_grpc as pb_grpc
from tests.support.clients import api_http, http_client
from tests.support.factories import MakeProcess, MakeStack

T0 = 1_705_744_800  # 2024-01-20T10:00:00Z
_LINK = re.compile(r'^<([^>]+)>; rel="next"$')


@pytest.fixture
def small_ingestor(make_ingestor_process: MakeProcess) -> ServerProcess:
    return make_ingestor_process(capacity=3000, rate_hz=4000)


@pytest.fixture
def small_api(small_ingestor: ServerProcess, make_api_process: MakeProcess) -> ServerProcess:
    return make_api_process(small_ingestor.address, PAGE_TOKEN_SECRET="test-secret")


def write(address: str, count: int) -> list[dict[str, object]]:
    """Reading i: 10:00:00 + i s, value i, category 'ABC'[i % 3]; returned as the API shows them."""
    readings = [pb.Reading(timestamp={"seconds": T0 + i}, value=float(i), category="ABC"[i % 3]) for i in range(count)]
    with grpc.insecure_channel(address) as channel:
        pb_grpc.IngestorServiceStub(channel).WriteReadings(pb.WriteReadingsRequest(readings=readings), timeout=10)
    return [
        {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(T0 + i)),
            "value": float(i),
            "category": "ABC"[i % 3],
        }
        for i in range(count)
    ]


def walk(
    http: httpx.Client, params: dict[str, object], between_pages: Callable[[int], object] = lambda pages: None
) -> tuple[list[list[dict[str, object]]], list[str]]:
    """Every page of a walk, following the Link headers; and the links followed. ``between_pages``
    is called with the number of pages read so far before each next page is asked for."""
    pages = []
    links = []
    response = http.get("/api/v1/raw-data", params=params)
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        link = response.headers.get("link")
        if link is None:
            return pages, links
        target = _LINK.fullmatch(link)
        assert target is not None, link
        links.append(target.group(1))
        between_pages(len(pages))
        response = http.get(target.group(1))


def test_plain_request_is_unchanged_and_announces_the_older_page(
    api_process: ServerProcess, ingestor_process: ServerProcess
) -> None:
    written = write(ingestor_process.address, 25)
    with http_client(f"http://{api_process.address}", timeout=10) as http:
        response = http.get("/api/v1/raw-data")
        assert response.json() == written
        assert "link" not in response.headers
        pages, links = walk(http, {"limit": 10})
    assert pages == [written[15:], written[5:15], written[:5]]
    assert all(link.startswith("/api/v1/raw-data?limit=10&page_token=") for link in links)


def test_category_and_time_filters_browse_back_from_now(
    api_process: ServerProcess, ingestor_process: ServerProcess
) -> None:
    written = write(ingestor_process.address, 300)
    expected = [
        r
        for r in written
        if r["category"] in ("A", "C") and "2024-01-20T10:00:10" <= r["timestamp"] < "2024-01-20T10:04:00"
    ]
    with http_client(f"http://{api_process.address}", timeout=10) as http:
        params = {"category": ["C", "A"], "until": "2024-01-20T10:04:00", "limit": 50}
        # No since: browsing back from now. Without an offset a time is UTC.
        pages, _ = walk(http, params)
        within = [r for r in expected]
        assert [r for page in reversed(pages) for r in page] == [
            r for r in written if r["category"] in ("A", "C") and r["timestamp"] < "2024-01-20T10:04:00"
        ]
        assert [len(page) for page in pages] == [50, 50, 50, 10]
        offset, _ = walk(http, {**params, "until": "2024-01-20T11:04:00+01:00", "since": "2024-01-20T10:00:10Z"})
        assert [r for page in offset for r in page] == within


def test_with_since_pages_tail_forward(api_process: ServerProcess, ingestor_process: ServerProcess) -> None:
    written = write(ingestor_process.address, 100)
    with http_client(f"http://{api_process.address}", timeout=10) as http:
        pages, _ = walk(http, {"since": "2024-01-20T10:00:30", "category": "B", "limit": 7})
    matches = [r for r in written[30:] if r["category"] == "B"]
    assert pages[0] == matches[:7]  # the oldest matches at or after since come first
    assert [r for page in pages for r in page] == matches


def test_tokens_are_bound_to_their_filters_and_cannot_be_altered(
    api_process: ServerProcess, ingestor_process: ServerProcess
) -> None:
    write(ingestor_process.address, 50)
    with api_http(api_process) as http:
        first = http.get("/raw-data", params={"category": "A", "limit": 5})
        token = parse_qs(urlsplit(_LINK.fullmatch(first.headers["link"]).group(1)).query)["page_token"][0]  # type: ignore[union-attr]
        assert http.get("/raw-data", params={"category": "A", "limit": 3, "page_token": token}).status_code == 200
        for other in ({"category": "B"}, {}, {"category": "A", "since": "2024-01-20T10:00:00"}):
            response = http.get("/raw-data", params={**other, "page_token": token})
            assert response.status_code == 400
            assert response.json()["detail"].startswith("page_token was issued for other filters")
        flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
        for bad in (flipped, "garbage", token + "AA"):
            response = http.get("/raw-data", params={"category": "A", "page_token": bad})
            assert response.status_code == 400
            assert response.json() == {"detail": "page_token is invalid: it was altered or not issued by this service"}


def test_filter_validation(api_process: ServerProcess) -> None:
    with api_http(api_process) as http:
        response = http.get("/raw-data", params={"since": "2024-01-20T10:00:01", "until": "2024-01-20T10:00:00"})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "since"]
        assert response.json()["detail"][0]["msg"] == "since must not be after until"
        response = http.get("/raw-data", params={"category": ["A", "not valid"]})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["query", "category", 1]
        assert http.get("/raw-data", params={"since": "yesterday"}).status_code == 422
        # since == until is an empty range, not an error.
        assert (
            http.get("/raw-data", params={"since": "2024-01-20T10:00:00", "until": "2024-01-20T10:00:00"}).json() == []
        )


def total_ingested(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return pb_grpc.IngestorServiceStub(channel).GetStatus(pb.GetStatusRequest(), timeout=10).total_ingested


def microseconds(timestamp: object) -> int:
    moment = datetime.fromisoformat(str(timestamp))
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_walking_back_while_ingesting_and_evicting_never_repeats(
    small_ingestor: ServerProcess, small_api: ServerProcess
) -> None:
    with http_client(f"http://{small_api.address}", timeout=10) as http:
        http.post("/api/v1/start-ingestion")
        time.sleep(1.0)  # 4000 readings a second into a buffer of 3000: it evicts all the time
        before = total_ingested(small_ingestor.address)
        pages, _ = walk(http, {"limit": 400})
        after = total_ingested(small_ingestor.address)
        http.post("/api/v1/stop-ingestion")
        newest = http.get("/api/v1/raw-data", params={"limit": 1}).json()[0]
        last = total_ingested(small_ingestor.address)
    stamps = [r["timestamp"] for page in reversed(pages) for r in page]
    assert len(pages) >= 2
    assert len(stamps) == len(set(stamps)), "a reading was repeated"
    assert stamps == sorted(stamps)  # pages newest first, each oldest first: readings never out of place
    assert all(len(page) <= 400 for page in pages)
    # Reading i of the run carries start + i/rate exactly: 250 µs apart at 4000 Hz, and the newest
    # is number last - 1. Every reading already there at the first page and not yet evicted at the
    # last one (the buffer keeps the newest 3000) must be in the walk.
    returned = {last - 1 - (microseconds(newest["timestamp"]) - microseconds(stamp)) // 250 for stamp in stamps}
    held_throughout = set(range(after - 3000, before))
    assert after > before, "nothing was evicted during the walk"
    assert len(held_throughout) > 400
    assert held_throughout <= returned, f"missing: {sorted(held_throughout - returned)[:10]}"
    assert min(returned) >= before - 3000  # nothing from outside the buffer
    assert max(returned) < after


def pushed(sequence: int) -> dict[str, object]:
    """The reading pushed as number ``sequence``, as the API shows it: 1 ms apart, value = sequence."""
    moment = datetime(2024, 1, 20, 10, tzinfo=UTC) + timedelta(milliseconds=sequence)
    return {
        "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "value": float(sequence),
        "category": "ABC"[sequence % 3],
    }


class Pusher:
    """Pushes readings 0, 1, 2, ... through WriteReadings, one batch at a time, so that reading s is
    the s-th the ingestor stores: its sequence number."""

    def __init__(self, address: str) -> None:
        self._address = address
        self.count = 0

    def push(self, count: int) -> None:
        start, self.count = self.count, self.count + count
        readings = [
            pb.Reading(
                timestamp={"seconds": T0 + s // 1000, "nanos": s % 1000 * 1_000_000}, value=s, category="ABC"[s % 3]
            )
            for s in range(start, self.count)
        ]
        with grpc.insecure_channel(self._address) as channel:
            written = pb_grpc.IngestorServiceStub(channel).WriteReadings(
                pb.WriteReadingsRequest(readings=readings), timeout=10
            )
        assert written.accepted == count


@pytest.mark.parametrize("direction", ["back from now", "forward from since"])
def test_a_walk_under_eviction_returns_every_reading_held_throughout_once(
    small_ingestor: ServerProcess, small_api: ServerProcess, direction: str
) -> None:
    """Readings in the buffer from the first page to the last that match the filter all come back,
    exactly once; computed from what was pushed, not from what the ingestor says it holds."""
    pusher = Pusher(small_ingestor.address)
    pusher.push(4500)  # the buffer holds 3000: it has evicted already
    # An odd page size, so that page edges fall on either category.
    params: dict[str, object] = {"category": ["A", "C"], "limit": 299}
    if direction == "forward from since":
        params["since"] = pushed(0)["timestamp"]

    def push_more(pages_read: int) -> None:
        if pages_read <= 4:
            pusher.push(250)  # between pages: 250 more readings, 250 of the oldest evicted

    with http_client(f"http://{small_api.address}", timeout=10) as http:
        before = total_ingested(small_ingestor.address)
        pages, _ = walk(http, params, push_more)
        after = total_ingested(small_ingestor.address)
    assert after - before == 1000
    returned = [r for page in pages for r in page]
    sequences = [int(r["value"]) for r in returned]
    assert returned == [pushed(s) for s in sequences]  # each one exactly as pushed
    assert all(s % 3 != 1 for s in sequences)  # categories A and C only
    assert len(sequences) == len(set(sequences)), "a reading was repeated"
    held_throughout = {s for s in range(after - 3000, before) if s % 3 != 1}  # of 2500 to 4499
    assert len(held_throughout) == 1333
    missing = held_throughout - set(sequences)
    assert not missing, f"{len(missing)} readings held throughout were not returned: {sorted(missing)[:10]}"
    # Within each page oldest first, pages newest first (back) or oldest first (forward).
    ordered = [s for page in (reversed(pages) if direction == "back from now" else pages) for s in page]
    assert [int(r["value"]) for r in ordered] == sorted(sequences)


@pytest.fixture
def roomy_api(make_stack: MakeStack) -> ServerProcess:
    _, api = make_stack(capacity=1_000_000, rate_hz=2000)
    return api


def test_tailing_forward_while_ingesting_returns_every_reading_once(roomy_api: ServerProcess) -> None:
    with api_http(roomy_api) as http:
        http.post("/start-ingestion")
        time.sleep(0.2)
        since = http.get("/raw-data", params={"limit": 1}).json()[0]["timestamp"]
        seen = []
        time.sleep(0.1)  # 200 more readings meanwhile: there is a next page, each time
        response = http.get("/raw-data", params={"since": since, "limit": 50})
        for _ in range(3):  # a few pages while the generator runs
            seen.extend(response.json())
            time.sleep(0.1)
            response = http.get(_LINK.fullmatch(response.headers["link"]).group(1).removeprefix("/api/v1"))  # type: ignore[union-attr]
        http.post("/stop-ingestion")
        while True:
            seen.extend(response.json())
            link = response.headers.get("link")
            if link is None:
                break
            response = http.get(_LINK.fullmatch(link).group(1).removeprefix("/api/v1"))  # type: ignore[union-attr]
        everything = http.get("/raw-data", params={"limit": 10_000}).json()
    assert everything[0]["timestamp"] < since, "the walk took over 5 s: raise the limit above"
    assert seen == [r for r in everything if r["timestamp"] >= since]


def test_bounds_beyond_what_a_timestamp_holds_select_everything(
    api_process: ServerProcess, ingestor_process: ServerProcess
) -> None:
    """Year 1 or 9999 are valid ISO 8601, beyond int64 nanoseconds: they bound nothing, never a 500."""
    expected = write(ingestor_process.address, 5)
    with http_client(f"http://{api_process.address}", timeout=10) as http:
        for params in (
            {"since": "0001-01-01T00:00:00+00:01"},
            {"until": "9999-12-31T23:59:59Z"},
            {"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59Z"},
        ):
            response = http.get("/api/v1/raw-data", params=params)
            assert (response.status_code, response.json()) == (200, expected), params
            processed = http.get("/api/v1/processed-data", params=params)
            assert processed.status_code == 200, params
            assert sum(row["count"] for row in processed.json()) == 5
