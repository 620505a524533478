"""``@connections`` posts through boto3 (botocore Stubber, no network): 410 is gone, throttling is retried."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from iii_stream.adapters.connections_api import ConnectionsApiPoster
from iii_stream.core.errors import ConnectionGoneError, PostError

ENDPOINT = "https://abc.execute-api.us-east-1.amazonaws.com/prod"
CONNECTION_ID = "R1kmxc2VNjMCFIA="
DATA = b'{"type":"stream","timestamp":1,"streamName":"s","groupId":"g","id":null,"event":{"type":"sync","data":[]}}'
EXPECTED = {"ConnectionId": CONNECTION_ID, "Data": DATA}


class Stubbed:
    def __init__(self) -> None:
        client = boto3.client("apigatewaymanagementapi", endpoint_url=ENDPOINT, region_name="us-east-1")
        self.stubber = Stubber(client)
        self.sleeps: list[float] = []
        self.calls = 0
        client.meta.events.register("before-parameter-build.apigatewaymanagementapi.PostToConnection", self._count)
        self.poster = ConnectionsApiPoster(client, sleep=self.sleeps.append)

    def ok(self) -> None:
        self.stubber.add_response("post_to_connection", {}, EXPECTED)

    def error(self, code: str, status: int) -> None:
        self.stubber.add_client_error(
            "post_to_connection", service_error_code=code, http_status_code=status, expected_params=EXPECTED
        )

    def _count(self, **kwargs: Any) -> None:
        self.calls += 1


@pytest.fixture
def stubbed() -> Iterator[Stubbed]:
    stubbed = Stubbed()
    with stubbed.stubber:
        yield stubbed


def test_a_post_sends_the_connection_id_and_the_bytes(stubbed: Stubbed) -> None:
    stubbed.ok()

    stubbed.poster.post(CONNECTION_ID, DATA)

    stubbed.stubber.assert_no_pending_responses()
    assert stubbed.calls == 1
    assert stubbed.sleeps == []


@pytest.mark.parametrize(("code", "status"), [("GoneException", 410), ("410", 410)])
def test_a_410_is_connection_gone_with_the_id(stubbed: Stubbed, code: str, status: int) -> None:
    stubbed.error(code, status)
    stubbed.ok()  # never used: a gone connection is not retried

    with pytest.raises(ConnectionGoneError) as raised:
        stubbed.poster.post(CONNECTION_ID, DATA)

    assert raised.value.connection_id == CONNECTION_ID
    assert CONNECTION_ID in str(raised.value)
    assert stubbed.calls == 1
    assert stubbed.sleeps == []


def test_throttling_twice_then_success_is_posted(stubbed: Stubbed) -> None:
    stubbed.error("LimitExceededException", 429)
    stubbed.error("LimitExceededException", 429)
    stubbed.ok()

    stubbed.poster.post(CONNECTION_ID, DATA)

    stubbed.stubber.assert_no_pending_responses()
    assert stubbed.calls == 3
    assert len(stubbed.sleeps) == 2
    assert stubbed.sleeps[0] > 0
    assert stubbed.sleeps[1] > stubbed.sleeps[0]


def test_throttling_three_times_is_a_post_error(stubbed: Stubbed) -> None:
    for _ in range(3):
        stubbed.error("LimitExceededException", 429)
    stubbed.ok()  # a fourth attempt would take it

    with pytest.raises(PostError, match="LimitExceededException"):
        stubbed.poster.post(CONNECTION_ID, DATA)

    assert stubbed.calls == 3
    assert len(stubbed.sleeps) == 2


@pytest.mark.parametrize(
    ("code", "status"), [("TooManyRequestsException", 429), ("InternalServerErrorException", 500), ("503", 503)]
)
def test_other_passing_failures_are_retried(stubbed: Stubbed, code: str, status: int) -> None:
    stubbed.error(code, status)
    stubbed.ok()

    stubbed.poster.post(CONNECTION_ID, DATA)

    stubbed.stubber.assert_no_pending_responses()
    assert stubbed.calls == 2


@pytest.mark.parametrize(
    ("code", "status"),
    [("ForbiddenException", 403), ("PayloadTooLargeException", 413), ("BadRequestException", 400)],
)
def test_a_lasting_failure_is_a_post_error_without_retry(stubbed: Stubbed, code: str, status: int) -> None:
    stubbed.error(code, status)
    stubbed.ok()  # never used

    with pytest.raises(PostError, match=code) as raised:
        stubbed.poster.post(CONNECTION_ID, DATA)

    assert not isinstance(raised.value, ConnectionGoneError)
    assert stubbed.calls == 1
    assert stubbed.sleeps == []


def test_the_post_error_names_the_connection(stubbed: Stubbed) -> None:
    stubbed.error("ForbiddenException", 403)

    with pytest.raises(PostError) as raised:
        stubbed.poster.post(CONNECTION_ID, DATA)

    assert CONNECTION_ID in str(raised.value)


def test_the_bytes_pass_through_unchanged(stubbed: Stubbed) -> None:
    payload = "ü ☃".encode()
    stubbed.stubber.add_response("post_to_connection", {}, {"ConnectionId": "c", "Data": payload})

    stubbed.poster.post("c", payload)

    stubbed.stubber.assert_no_pending_responses()
