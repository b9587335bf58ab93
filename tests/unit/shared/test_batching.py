"""The pure parts of atomic batch publishing: which stream a subject is stored in, batch ids,
and the sequences a committed batch was stored at."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from shared import subjects as s
from shared.batching import MAX_BATCH_ID, atomic_batch_id, batch_sequences, by_stream
from shared.bus import Outgoing


def test_every_subject_the_services_publish_has_its_stream() -> None:
    assert s.stream_of(s.CAPTURED) == s.STREAM_EVENTS
    assert s.stream_of(s.expected(3)) == s.STREAM_EVENTS
    assert s.stream_of(s.rejected("dsp-mapping")) == s.STREAM_EVENTS
    assert s.stream_of(s.DELIVER) == s.STREAM_EVENTS
    assert s.stream_of(s.RECORD) == s.STREAM_OUT
    assert s.stream_of(s.delivered(0)) == s.STREAM_OUT
    assert s.stream_of(s.index_subject("r-1")) == s.STREAM_INDEX
    assert s.stream_of(s.IN_CSP_NORTH) == s.STREAM_IN
    assert s.stream_of("ast.nowhere") == ""
    assert s.stream_of("ast.expected") == ""  # '*' needs its token


def test_subject_matching_follows_nats_wildcards() -> None:
    assert s.subject_matches("a.>", "a.b.c")
    assert not s.subject_matches("a.>", "a")
    assert s.subject_matches("a.*.c", "a.b.c")
    assert not s.subject_matches("a.*", "a.b.c")
    assert not s.subject_matches("a.b", "a.b.c")


def test_outputs_are_grouped_by_stream_in_their_order() -> None:
    out = [Outgoing(subj, b"{}", str(i)) for i, subj in enumerate([s.DELIVER, s.RECORD, s.expected(0), s.RECORD])]
    assert by_stream(out) == {s.STREAM_EVENTS: [0, 2], s.STREAM_OUT: [1, 3]}


@given(st.text(min_size=1, max_size=200), st.sampled_from(list(s.STREAM_SUBJECTS)), st.integers(0, 1000))
def test_a_batch_id_is_deterministic_and_within_the_servers_limit(key: str, stream: str, part: int) -> None:
    bid = atomic_batch_id(key, stream, part)
    assert bid == atomic_batch_id(key, stream, part)
    assert 0 < len(bid) <= MAX_BATCH_ID
    assert bid != atomic_batch_id(key, stream, part + 1)


@given(st.integers(1, 10**12), st.integers(1, 1000))
def test_a_committed_batch_sits_at_consecutive_sequences_ending_at_its_ack(last: int, count: int) -> None:
    seqs = batch_sequences(last + count, count)
    assert len(seqs) == count
    assert seqs[-1] == last + count
    assert all(b == a + 1 for a, b in itertools.pairwise(seqs))
