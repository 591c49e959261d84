"""``python -m mjasync.simulator --help``: every option with its default, faults grouped."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from mjasync.cli import EXIT_OK, main
from mjasync.simulator import Faults
from mjasync.simulator.__main__ import build_parser, config_from_args, serve


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest != "help"]


def test_every_option_says_what_it_does_and_its_default() -> None:
    """No bare flag: each has a help text and a "(default: ...)" in the help."""
    parser = build_parser()
    help_text = parser.format_help()
    text = " ".join(help_text.split())
    packed = "".join(help_text.split())  # argparse wraps at hyphens too
    for action in _options(parser):
        assert action.help, action.option_strings
        formatter = parser._get_formatter()
        shown = formatter._get_help_string(action)  # type: ignore[attr-defined]
        assert shown is not None
        assert "(default: " in shown, action.option_strings
        # argparse prints a help string's "%%" as "%".
        assert "".join(shown.replace("%%", "%").split()) in packed
    assert "(default: 8080)" in text
    assert "for a new prompt (default: off)" in text
    assert text.count("(default:") == len(_options(parser))  # each once, never twice


def test_every_fault_has_a_flag_in_its_own_group() -> None:
    """One --fault-NAME per Faults field, all under "faults"."""
    parser = build_parser()
    (group,) = (g for g in parser._action_groups if g.title == "faults")
    flags = {a.option_strings[0] for a in group._group_actions}
    expected = {"--fault-" + f.name.replace("_", "-") for f in dataclasses.fields(Faults)}
    assert flags == expected
    options = parser.format_help().split("\noptions:", 1)[1]
    assert options.index("\nfaults:") < options.index("--fault-server-error")


def test_fault_flags_reach_the_simulator_config() -> None:
    """The flags build the same Faults a test would pass to Simulator(faults=...)."""
    args = build_parser().parse_args(
        ["--fault-server-error", "0.25", "--fault-routes", "imagine, fetch",
         "--fault-latency", "0.5,2", "--fault-retry-after", "3"]
    )  # fmt: skip
    faults = config_from_args(args).faults
    assert faults == Faults(
        server_error=0.25, routes=frozenset({"imagine", "fetch"}), latency=(0.5, 2.0), retry_after=3
    )
    assert config_from_args(build_parser().parse_args([])).faults == Faults()


def test_a_fault_probability_out_of_range_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Refused before anything is served, in one line."""
    assert serve(["--fault-drop", "1.5"]) == 2
    assert capsys.readouterr().err == "error: Faults.drop must be a probability in [0, 1]\n"


def test_mjasync_simulator_help_is_the_same_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``mjasync simulator --help`` shows the same options and defaults, under its name."""
    assert main(["simulator", "--help"]) == EXIT_OK
    ours = capsys.readouterr().out
    theirs = build_parser().format_help()
    assert ours.startswith("usage: mjasync simulator")
    assert ours.split("\nServe", 1)[1] == theirs.split("\nServe", 1)[1]


def test_serve_names_the_command_it_runs_under(capsys: pytest.CaptureFixture[str]) -> None:
    """``mjasync.simulator.serve(argv, prog=)``: usage errors and help say that name."""
    from mjasync.simulator import serve as public_serve

    with pytest.raises(SystemExit) as done:
        public_serve(["--no-such-flag"], prog="my-sim")
    assert done.value.code == 2
    assert capsys.readouterr().err.startswith("usage: my-sim")
