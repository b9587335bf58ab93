"""Doubles for testing window delivery: local window file sets, and an in-memory stand-in for
the two subjects the deliverer writes (de-duplicated by ``Nats-Msg-Id`` like JetStream)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from shared import subjects as s
from shared.bus import Outgoing
from shared.events import DeliveryBacklog, WindowDelivered

DAY = "2023-06-01"


def write_set(data_dir: Path, stem: str, date: str = DAY, complete: bool = True) -> list[Path]:
    folder = data_dir / "ast" / f"date={date}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".csv", ".parquet", ".json") if complete else (".csv", ".parquet"):
        path = folder / f"{stem}{suffix}"
        path.write_bytes(f"{stem}{suffix} content\n".encode())
        paths.append(path)
    return paths


class MemoryLog:
    """The two subjects the deliverer writes, kept like JetStream would (de-duplicated by id)."""

    def __init__(self) -> None:
        self.messages: list[Outgoing] = []
        self.ids: set[str] = set()
        self.fail_next = 0

    async def publish(self, messages: list[Outgoing]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise TimeoutError("no ack")
        for m in messages:
            if m.msg_id not in self.ids:
                self.ids.add(m.msg_id)
                self.messages.append(m)

    async def read_delivered(self, partition: int) -> set[str]:
        return {msgspec.json.decode(m.payload, type=WindowDelivered).file_set
                for m in self.messages if m.subject == s.delivered(partition)}

    def receipts(self) -> list[WindowDelivered]:
        return [msgspec.json.decode(m.payload, type=WindowDelivered)
                for m in self.messages if m.subject.startswith(s.DELIVERED + ".")]

    def backlogs(self) -> list[DeliveryBacklog]:
        return [msgspec.json.decode(m.payload, type=DeliveryBacklog)
                for m in self.messages if m.subject.startswith(s.DELIVERY_BACKLOG + ".")]
