import json

import pytest
from typer.testing import CliRunner

from edgeswarm.node.cli import app
from edgeswarm.node.control import client as control_client

runner = CliRunner()


def test_sim_run_writes_report_plot_and_summary(tmp_path, repo):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["sim", "run", str(repo / "configs/sim/smoke.toml"), "--out", str(out), "--nodes", "20", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["nodes"] == 20 and report["seed"] == 3 and report["virtual_seconds"] == 600
    assert "overlay coverage" in result.stdout and "20 nodes" in result.stderr
    assert (out / "membership.png").exists()


def test_a_replay_that_ends_early_ends_its_progress_bar_full_and_prints_its_scores(tmp_path, repo):
    text = (
        (repo / "configs/sim/replay.toml")
        .read_text()
        .replace('"data/clicks-small.csv"', repr(str(repo / "configs/sim/data/clicks-small.csv")))
        .replace("holdout = 0.2", "holdout = 0.2\nusers = 10")
    )
    scenario = tmp_path / "replay.toml"
    scenario.write_text(f"devices_dir = '{repo / 'configs/devices'}'\n" + text)
    result = runner.invoke(app, ["sim", "run", str(scenario), "--out", str(tmp_path / "run"), "--nodes", "5"])
    assert result.exit_code == 0, result.output
    ended = json.loads((tmp_path / "run/report.json").read_text())["virtual_seconds"]
    assert ended < 3600 and f"{ended:.0f}/{ended:.0f}" in result.stderr  # not "2130/3600"
    assert "RR@10: grank / popularity / random / local" in result.stdout
    assert (tmp_path / "run/replay.png").exists()


def test_existing_output_is_not_overwritten(tmp_path, repo):
    (tmp_path / "report.json").write_text("{}")
    result = runner.invoke(app, ["sim", "run", str(repo / "configs/sim/smoke.toml"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "already holds a run" in result.stderr
    assert (tmp_path / "report.json").read_text() == "{}"


def test_bad_scenario_is_one_line_and_exit_3(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "x"\nnodes = "many"\nduration = 1.0\n')
    result = runner.invoke(app, ["sim", "run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 3
    assert result.stderr.strip().splitlines() == [f"edgeswarm: error: {path}: key 'nodes': expected int, got str"]


def test_missing_scenario_and_bad_options(tmp_path):
    missing = runner.invoke(app, ["sim", "run", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 3 and "no such file" in missing.stderr
    bad = runner.invoke(app, ["sim", "run", "x.toml", "--out", "o", "--nodes", "0"])
    assert bad.exit_code == 2
    both = runner.invoke(app, ["-v", "-q", "id", "show", "--data-dir", str(tmp_path)])
    assert both.exit_code == 2


def test_log_json_emits_json_lines(tmp_path, repo):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["--log-json", "-v", "sim", "run", str(repo / "configs/sim/smoke.toml"), "--out", str(out), "--nodes", "5"]
    )
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines and all(json.loads(line)["level"] for line in lines)


def test_catalog_files_are_validated(tmp_path):
    import pytest

    from edgeswarm.node.config import ConfigError
    from edgeswarm.node.ranking.catalog_file import read_catalog

    good = tmp_path / "c.json"
    good.write_text('[{"item": "a", "title": "A", "tags": ["x", "y"]}]')
    assert read_catalog(good) == [{"item": "a", "title": "A", "tags": ["x", "y"]}]
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("item,title,tags\na,A,x; y\n")
    assert read_catalog(csv_file) == [{"item": "a", "title": "A", "tags": ["x", "y"]}]
    for name, text, message in [
        ("bad.json", "{", "not valid JSON"),
        ("obj.json", '{"item": "a"}', "expected a JSON list"),
        ("missing.json", '[{"item": "a"}]', "item 1 needs"),
        ("long.json", '[{"item": "a", "title": "' + "t" * 300 + '", "tags": []}]', "too long"),
        ("head.csv", "name,title\na,A\n", "header must name"),
    ]:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            read_catalog(path)


def test_fl_status_and_lora_list_render_what_the_daemon_returns(monkeypatch, tmp_path):
    from edgeswarm.node import cli

    status = {
        "offers": ["subgraph"],
        "announced": [{"run_id": "r-2", "host": "12D3KooWx", "task": "subgraph", "strategy": "fedpub", "rounds": 5}],
        "runs": [
            {
                "run_id": "r-1",
                "role": "host",
                "task": "subgraph",
                "strategy": "fedavg",
                "rounds": 1,
                "host": "12D3KooWme",
                "state": "done",
                "detail": "",
                "participants": ["a", "b"],
                "history": [
                    {
                        "round": 1,
                        "status": "ok",
                        "replies": 2,
                        "failures": 0,
                        "train": {},
                        "evaluate": {},
                        "clients": {"a": {"test-acc": 0.5}, "b": {"test-acc": 0.7}},
                        "seconds": 1.0,
                        "clients_train": {},
                        "central": {},
                        "rejected": {"12D3KooWevil": "non-finite values in arrays/w"},
                    }
                ],
            }
        ],
    }
    adapters = {
        "active": "ab" * 32,
        "adapters": [
            {
                "digest": "ab" * 32,
                "origin": "own",
                "signer": "12D3KooWme",
                "task": "digits",
                "rank": 8,
                "size": 4816,
                "metric": 0.9,
                "samples": 60,
                "note": "",
                "added_at": 1.0,
                "stored": True,
            }
        ],
    }
    replies = {"fl_status": status, "lora_list": adapters}
    monkeypatch.setattr(
        control_client, "call", lambda data_dir, request, **kw: replies[type(request).__struct_config__.tag]
    )
    result = runner.invoke(cli.app, ["fl", "status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "0.6000" in result.output and "r-2" in result.output and "participants: 2" in result.output
    assert "round 1: rejected 12D3KooWevil: non-finite values in arrays/w" in result.output
    result = runner.invoke(cli.app, ["lora", "list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "abababababababab *" in result.output and "4816" in result.output


def test_fl_status_watch_redraws_until_every_run_has_ended(monkeypatch, tmp_path):

    def status(state, rounds_done):
        history = [
            {"round": r, "status": "ok", "replies": 2, "failures": 0, "clients": {"a": {"test-acc": 0.5}}}
            | {"train": {}, "evaluate": {}}
            for r in range(1, rounds_done + 1)
        ]
        run = {
            "run_id": "r-1",
            "role": "client",
            "task": "subgraph",
            "strategy": "fedavg",
            "rounds": 2,
            "host": "12D3KooWhost",
            "state": state,
            "detail": "",
            "participants": [],
            "history": history,
        }
        return {"offers": ["subgraph"], "announced": [], "runs": [run]}

    answers = iter([status("joined", 0), status("training", 1), status("done", 2)])
    calls = []
    monkeypatch.setattr(control_client, "call", lambda data_dir, request, **kw: calls.append(request) or next(answers))
    result = runner.invoke(app, ["fl", "status", "--watch", "--interval", "0.2", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert len(calls) == 3  # it stopped once the run was done, not before
    assert "rounds 2/2" in result.stdout and "done" in result.stdout


def test_lora_merge_says_when_a_worse_merge_was_kept_but_not_activated(monkeypatch, tmp_path):

    sent = []
    answer = {
        "digest": "m" * 64,
        "peers": ["p" * 64],
        "considered": 1,
        "val_acc": 0.27,
        "test_acc": 0.26,
        "own_test_acc": 0.77,
        "activated": False,
        "active": "a" * 64,
        "active_val_acc": 0.77,
    }
    monkeypatch.setattr(control_client, "call", lambda data_dir, request, **kw: sent.append(request) or answer)
    result = runner.invoke(app, ["lora", "merge", "--method", "fedavg", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and not sent[0].force
    assert "not activated: validation accuracy 0.270 is below the active aaaaaaaaaaaaaaaa's 0.770" in result.stdout
    assert "lora use mmmmmmmmmmmmmmmm" in result.stdout
    runner.invoke(app, ["lora", "merge", "--force", "--data-dir", str(tmp_path)])
    assert sent[1].force
    row = {"digest": "a" * 64, "origin": "own", "signer": "me", "task": "digits", "rank": 8, "size": 1}
    row |= {"metric": 0.77, "samples": 60, "note": "", "added_at": 1.0}
    monkeypatch.setattr(control_client, "call", lambda data_dir, request, **kw: sent.append(request) or row)
    used = runner.invoke(app, ["lora", "use", "aaaaaa", "--data-dir", str(tmp_path)])
    assert used.exit_code == 0 and sent[2].digest == "aaaaaa" and "active: aaaaaaaaaaaaaaaa" in used.stdout


def test_flower_log_lines_come_once_without_colour_codes_under_log_json(capsys):
    import logging

    pytest.importorskip("flwr")
    from flwr.common.logger import log

    from edgeswarm.node import logs

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure(json_lines=True)
        logs.adopt_flower()
        log(logging.INFO, "configure_train: Sampled 2 nodes (out of 2)")
        err = capsys.readouterr().err
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = [line for line in err.splitlines() if "configure_train" in line]
    assert len(lines) == 1 and "\x1b[" not in err  # once, and no raw ANSI escapes
    assert json.loads(lines[0]) | {"ts": 0} == {
        "ts": 0,
        "level": "info",
        "logger": "flwr",
        "msg": "configure_train: Sampled 2 nodes (out of 2)",
    }


@pytest.mark.parametrize(
    ("workload", "metrics", "rows"),
    [
        (
            "lora",
            {"personal_accuracy": {"local": 0.8, "policy": 0.906}, "peers_merged_by_policy": 7.6},
            ["personal accuracy local", "0.9060", "peers merged by policy"],
        ),
        (
            "semspace",
            {"psnr_final": {"semspacefl": 21.5, "flat": None}, "energy_j_per_round": {"semspacefl": 12.0}},
            ["PSNR semspacefl (dB)", "21.50", "energy per round semspacefl (J)"],
        ),
    ],
)
def test_every_workloads_summary_prints_its_headline_metrics(workload, metrics, rows):
    from rich.console import Console

    from edgeswarm.sim.commands import summary_table

    report = {
        "scenario": workload,
        "seed": 1,
        "nodes": 3,
        "virtual_seconds": 10.0,
        "wall_seconds": 1.0,
        "wall_virtual_per_wall_second": 10.0,
        f"{workload}_series": {},
        "metrics": {"counters": {}, "membership": {}, "network": {}, "churn": {"crashes": 0, "sessions": 3}, **metrics},
    }
    console = Console(record=True, width=200)
    console.print(summary_table(report))
    text = console.export_text()
    assert all(row in text for row in rows), text
