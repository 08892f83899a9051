"""`mpt serve` as a user runs it (a real process, stopped by its PID) and `mpt predict`:
its input checks (before any Ray work) and, on a real Ray head, the predictions."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cli import main

from ..serving import factory
from ..serving.helpers import local_model, local_scores, png
from ..serving.server import mpt_serve

IMAGES = factory.sample("classification", 3)


@pytest.fixture
def home(tmp_path):
    """A platform home whose default registry (MPT_HOME) holds the factory domains."""
    factory.build(tmp_path / "home", specs=factory.DOMAINS[:3], seeds=(0, 1))
    return tmp_path / "home"


def test_mpt_serve_answers_the_readme_curl_and_follows_an_approval(home, tmp_path):
    env = {"MPT_HOME": str(home), "MPT_SERVE_POLL_SECONDS": "0.2"}
    with mpt_serve(env, tmp_path) as server:
        url = f"http://127.0.0.1:{server.port}"
        (tmp_path / "some.png").write_bytes(png(IMAGES[0].image))
        # curl -F domain=retail -F image=@some.png http://127.0.0.1:PORT/v1/predict
        with open(tmp_path / "some.png", "rb") as f:
            response = httpx.post(
                f"{url}/v1/predict", data={"domain": "retail"}, files={"image": f}, timeout=30
            )
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        assert (result["domain"], result["version"]) == ("retail", 1)
        reg = factory.new_registry(home)
        expected = local_scores(local_model(reg, "retail", 1), IMAGES[:1])[0]
        assert result["prediction"] == max(expected, key=expected.get)

        factory.promote(reg, "retail", 2)
        deadline = time.monotonic() + 5
        while True:
            body = httpx.post(
                f"{url}/v1/predict",
                data={"domain": "retail"},
                files={"image": ("some.png", png(IMAGES[0].image))},
                timeout=30,
            ).json()
            if body["results"][0]["version"] == 2:
                break
            assert time.monotonic() < deadline, "the approval was not picked up in 5 s"
            time.sleep(0.1)
    output = server.spec.log.read_text()
    # a clean stop on SIGTERM (uvicorn re-raises the signal it handled)
    assert server.proc.returncode in (0, -signal.SIGTERM), output
    assert "serving: retail production -> v2 (was v1)" in output
    assert "Application shutdown complete" in output


def test_mpt_serve_on_a_taken_port_says_so(home, monkeypatch, capsys):
    monkeypatch.setenv("MPT_HOME", str(home))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"mpt: error: cannot listen on 127.0.0.1:{port}" in err and "--port" in err
    assert main(["serve", "--max-batch-size", "0"]) == 2
    assert "max_batch_size" in capsys.readouterr().err


def _write_folder(root: Path, examples) -> Path:
    root.mkdir(parents=True)
    for i, e in enumerate(examples):
        (root / f"{i:02d}.png").write_bytes(png(e.image))
    return root


def _csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["nowhere", "{folder}"], "'nowhere' is not a registered domain"),
        (["retail", "{folder}", "--alias", "staging"], "no version under the alias 'staging'"),
        (["manufacturing", "{folder}"], "a folder gives only images"),
        (["manufacturing", "{no_question}"], "no column 'question'"),
        (["manufacturing", "{bad_question}"], "line 2: question 'how big?' has no declared"),
        (["retail", "{missing_image}"], "line 3 ('gone.png')"),
        (["retail", "{tmp}/nothing.txt"], "neither a folder of images nor a .csv"),
    ],
)
def test_mpt_predict_checks_its_inputs_before_any_work(
    home, tmp_path, monkeypatch, capsys, args, words
):
    monkeypatch.setenv("MPT_HOME", str(home))
    folder = _write_folder(tmp_path / "images", IMAGES)
    paths = {
        "folder": folder,
        "tmp": tmp_path,
        "no_question": _csv(tmp_path / "a.csv", [{"image": "images/00.png"}]),
        "bad_question": _csv(
            tmp_path / "b.csv", [{"image": "images/00.png", "question": "how big?"}]
        ),
        "missing_image": _csv(
            tmp_path / "c.csv", [{"image": "images/00.png"}, {"image": "gone.png"}]
        ),
    }
    argv = ["predict", *[a.format(**paths) for a in args], "--out", str(tmp_path / "p.csv")]
    assert main(argv) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def _mpt(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_mpt_serve_ray_on_a_local_ray_says_one_line_and_stops_cleanly(home, tmp_path):
    """`mpt serve --ray` with no cluster: a local Ray started for it and stopped with it,
    without Ray Serve's INFO lines or the raylet's report of a killed controller."""
    env = {"MPT_HOME": str(home)}
    with mpt_serve(env, tmp_path, "--ray", start_timeout_s=300, stop_wait_s=120) as server:
        url = f"http://127.0.0.1:{server.port}"
        with open(tmp_path / "some.png", "wb") as f:
            f.write(png(IMAGES[0].image))
        with open(tmp_path / "some.png", "rb") as f:
            response = httpx.post(
                f"{url}/v1/predict", data={"domain": "retail"}, files={"image": f}, timeout=60
            )
        assert response.status_code == 200, response.text
    output = server.spec.log.read_text()
    assert server.proc.returncode == 0, output
    assert "1 replica(s) on CPUs, on a local Ray" in output
    for noise in ("will not be applied", "(raylet)", "Started Serve", "Deleting app"):
        assert noise not in output, output


@pytest.mark.slow
def test_mpt_predict_over_ray_data_writes_every_row_in_order(home, tmp_path, ray_head):
    """As a user runs it: its own process, on a real Ray head."""
    env = {**os.environ, **ray_head.env, "MPT_HOME": str(home)}
    examples = factory.sample("classification", 3) + factory.sample("classification", 3, seed=4)
    folder = _write_folder(tmp_path / "images", examples)
    out = tmp_path / "preds.csv"
    run = _mpt(
        "predict",
        "retail",
        str(folder),
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--ray-address",
        ray_head.address,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "6 image(s) of retail predicted by v1 (production)" in run.stdout
    assert "retail v1: 100%" in run.stderr  # the progress bar
    for noise in ("deprecated", "core_worker", "Progress bars disabled", "Execution plan"):
        assert noise not in run.stderr, run.stderr[-3000:]  # Ray Data's, fixed or quieted
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == [f"{i:02d}.png" for i in range(6)]
    stored = list((ray_head.home / "cache" / "features").rglob("*.safetensors"))
    assert stored  # the node keeps the images' frozen features for the next run
    reg = factory.new_registry(home)
    expected = local_scores(local_model(reg, "retail", 1), examples)
    for row, scores in zip(rows, expected, strict=True):
        assert (row["domain"], row["alias"], row["version"]) == ("retail", "production", "1")
        assert row["prediction"] == max(scores, key=scores.get) and not row["error"]
        assert json.loads(row["scores"]) == pytest.approx(scores, abs=1e-5)

    (folder / "broken.png").write_bytes(b"not a png")
    table = _csv(
        tmp_path / "vqa.csv",
        [{"image": f"images/{n}", "question": "is it red?"} for n in ("00.png", "broken.png")],
    )
    run = _mpt(
        "predict",
        "manufacturing",
        str(table),
        "--out",
        str(out),
        "--ray-address",
        ray_head.address,
        env=env,
    )
    assert run.returncode == 1, run.stderr[-3000:]  # a row with an error: written, and said
    with open(out) as f:
        good, broken = csv.DictReader(f)
    assert good["prediction"] in ("yes", "no") and not good["error"]
    assert broken["prediction"] == "" and "not an image" in broken["error"]
