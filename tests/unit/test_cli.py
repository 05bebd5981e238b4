"""The `suanli` command line: flags that were removed are refused with a message saying what to use."""

from __future__ import annotations

import pytest

from suanli import cli


def _refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    assert exit_info.value.code == 2, "argparse's usage error status"
    return capsys.readouterr().err


@pytest.mark.parametrize("argv", [["run", "--peering", "x"], ["run", "--peering=x"], ["run", "--peering"]])
def test_run_refuses_the_removed_peering_flag(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    """kopf peering paused only kopf's handlers while the scheduler kept binding: the flag is gone, and
    an old command line fails at once instead of starting a second binder."""
    err = _refused(capsys, *argv)
    assert "--peering was removed" in err
    assert "--leader-election lease" in err, "the error says what to use instead"


def test_run_refuses_kopf_peering_as_a_leader_election_mode(capsys: pytest.CaptureFixture[str]) -> None:
    err = _refused(capsys, "run", "--leader-election", "kopfPeering")
    assert "--leader-election" in err and "invalid choice: 'kopfPeering'" in err


def test_run_refuses_kopf_peering_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old chart's SUANLI_LEADER_ELECTION=kopfPeering: argparse does not check a default against
    `choices`, so the CLI does, rather than run without a Lease."""
    monkeypatch.setenv("SUANLI_LEADER_ELECTION", "kopfPeering")
    err = _refused(capsys, "run")
    assert "$SUANLI_LEADER_ELECTION='kopfPeering'" in err and "use lease or none" in err


def test_run_help_offers_lease_and_none_only(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "{lease,none}" in text
    assert "peering" not in text.lower()
    assert cli.LEADER_ELECTION_MODES == ("lease", "none")


def test_run_parses_without_a_peering_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUANLI_LEADER_ELECTION", raising=False)
    args = cli.build_parser().parse_args(["run", "--leader-election", "lease"])
    assert args.leader_election == "lease"
    assert not hasattr(args, "peering")
