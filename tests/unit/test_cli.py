import pytest

from datasetjob.cli import build_parser, main


def test_operator_options_pass_through_to_the_operator():
    args, extra = build_parser().parse_known_args(["operator", "--liveness=http://0.0.0.0:8080/healthz", "-n", "a"])
    assert args.passthrough and extra == ["--liveness=http://0.0.0.0:8080/healthz", "-n", "a"]


def test_unknown_options_of_other_commands_are_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["validate", "x.yaml", "--bogus"])
    assert exc.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_cluster_commands_are_registered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"run", "validate", "worker", "combine", "operator", "status", "logs", "regenerate", "retry-failed"} <= set(
        sub.choices
    )
