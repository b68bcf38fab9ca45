"""`eventrouter worker --batch-within-ms`: how long a batch gathers; refused outside 0..60,000 ms."""

import pytest

from eventrouter.cli import build_parser


def test_a_batch_gathers_30_ms_unless_told_otherwise() -> None:
    assert build_parser().parse_args(["worker"]).batch_within_ms == 30
    assert build_parser().parse_args(["worker", "--batch-within-ms", "10"]).batch_within_ms == 10


@pytest.mark.parametrize("value", ["-5", "60001", "soon"])
def test_a_gathering_time_out_of_range_is_refused_by_name(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--batch-within-ms", value])
    assert "--batch-within-ms" in capsys.readouterr().err


def test_the_dedup_state_keeps_100k_messageids_in_memory_unless_told_otherwise(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["worker"]).dedup_memory_keys == 100_000
    assert build_parser().parse_args(["worker", "--dedup-memory-keys", "5000"]).dedup_memory_keys == 5000
    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--dedup-memory-keys", "10"])
    assert "--dedup-memory-keys" in capsys.readouterr().err
