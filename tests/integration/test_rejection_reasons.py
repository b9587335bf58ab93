"""Golden rejections through the running services: each input of ``tests.harness.rejections``
published on its ``ast.in.*`` subject comes out on ``ast.rejected.<stage>`` whole, with the
reason and message the table gives.

On a server and services of its own: the table's inputs (empty messages, lines that are not
JSON) would otherwise be in the log other tests of the session read as JSON."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator

import msgspec
import nats
import pytest
import pytest_asyncio

from alert_timing.nats_server import EmbeddedNats
from alert_timing.supervisor import Supervisor, run_bootstrap
from shared import subjects as s
from shared.settings import load
from tests.harness.jetstream import collect
from tests.harness.rejections import CASES

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path_factory.mktemp("rejections-jetstream"))
    server.start()
    data_dir = tmp_path_factory.mktemp("rejections-data")
    settings = load(nats_url=server.url, data_dir=str(data_dir))
    run_bootstrap(settings)
    sup = Supervisor(settings, data_dir, server.url)
    sup.start_services()
    try:
        yield server
    finally:
        dead = sup.check()
        sup.stop()
        server.stop()
    assert not dead, f"services died during the tests: {dead}"


@pytest_asyncio.fixture
async def js(own_server: EmbeddedNats) -> AsyncIterator:
    nc = await nats.connect(own_server.url)
    yield nc.jetstream(timeout=10)
    await nc.close()

PUBLISHED = [c for c in CASES if c.subject in s.IN_CSP or c.subject in (s.IN_DSP_DELIVERY, s.IN_DSP_CLOCK)]


def _key(body: dict) -> tuple[str, str, bytes, str]:
    return body["stage"], body["subject"], base64.b64decode(body["raw"]), msgspec.json.encode(body["headers"]).decode()


async def test_every_rejection_reason_comes_out_whole(js):
    seqs = []
    for case in PUBLISHED:
        ack = await js.publish(case.subject, case.data, headers=dict(case.headers) or None)
        seqs.append(ack.seq)
    wanted = {(c.stage, c.subject, c.data, msgspec.json.encode(c.headers).decode()): c for c in PUBLISHED}

    def found(msgs) -> dict:
        bodies = [(m.subject, msgspec.json.decode(m.data)) for m in msgs]
        return {_key(b): (subject, b) for subject, b in bodies if b.get("source_seq") in seqs}

    msgs = await collect(js, s.STREAM_EVENTS, [f"{s.REJECTED}.*"], lambda got: wanted.keys() <= found(got).keys(),
                         timeout=60.0)
    got = found(msgs)
    assert wanted.keys() <= got.keys(), [wanted[k].message for k in wanted.keys() - got.keys()]
    for key, case in wanted.items():
        subject, body = got[key]
        assert subject == s.rejected(case.stage)
        assert (body["reason"], body["message"]) == (case.reason, case.message)


