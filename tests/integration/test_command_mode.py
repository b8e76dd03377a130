"""Command mode (the original script's interface, any language) against its SDK twin."""

import shutil

from tests.integration.runs import REPO, dsj, published, sample_doc, sha256, write_doc

SCRIPT = REPO / "generator-image" / "examples" / "smart_money_js" / "generate-dataset.js"


def test_command_generator_produces_the_same_dataset_as_its_sdk_twin(tmp_path):
    assert shutil.which("node"), "Node.js is needed for the command-mode sample"
    sdk = sample_doc(symbols=8, dates=9, shards=3)
    cmd = sample_doc(symbols=8, dates=9, shards=3)
    # Exactly the original interface: --items "$ITEM_LIST" --name "$DATASET_NAME".
    cmd["spec"]["generator"] = {
        "image": "node:20",
        "command": ["node", str(SCRIPT), "--items", "{items}", "--name", "{shard}"],
        "outputFile": "data/training/smart-money-flow/{shard}.csv",
    }
    outs = {}
    for name, doc in (("sdk", sdk), ("cmd", cmd)):
        out = tmp_path / f"out-{name}"
        proc = dsj(
            "run",
            str(write_doc(doc, tmp_path / f"{name}.yaml")),
            "--output",
            f"file://{out}",
            "--workdir",
            str(tmp_path / name),
            cwd=tmp_path,
            env={"DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / name)},
        )
        assert proc.returncode == 0, proc.stderr
        outs[name] = published(out)
    assert sha256(outs["sdk"][0]) == sha256(outs["cmd"][0])
    assert outs["cmd"][1]["items"]["done"] == 72
    log = (tmp_path / "cmd" / "logs" / outs["cmd"][1]["runId"] / "shard-00000.log").read_text()
    assert "✓ Example generated" in log


def test_a_failing_command_is_retried_then_reported(tmp_path):
    doc = sample_doc(symbols=2, dates=2, shards=2)
    doc["spec"]["retries"] = {"perShard": 1, "maxFailedShards": 0}
    doc["spec"]["generator"] = {"command": ["sh", "-c", "exit 3"], "outputFile": "x-{shard}.csv"}
    out = tmp_path / "out"
    proc = dsj(
        "run",
        str(write_doc(doc, tmp_path / "fail.yaml")),
        "--output",
        f"file://{out}",
        "--workdir",
        str(tmp_path / "w"),
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "shard-00000 failed (exit codes [1, 1])" in proc.stderr
    assert "ShardsFailed" in proc.stderr
    log = next((tmp_path / "w" / "logs").glob("*/shard-00000.log")).read_text()
    assert "generator command exited with code 3" in log and "attempt 2" in log


def test_a_missing_command_is_not_retried(tmp_path):
    doc = sample_doc(symbols=2, dates=2, shards=1)
    doc["spec"]["generator"] = {"command": ["no-such-binary-xyz"], "outputFile": "x.csv"}
    proc = dsj(
        "run",
        str(write_doc(doc, tmp_path / "f.yaml")),
        "--output",
        f"file://{tmp_path}/out",
        "--workdir",
        str(tmp_path / "w"),
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "exit codes [78]" in proc.stderr
