"""`mpt serve --ray` on a real Ray head (ray start --head on 127.0.0.1): two replicas
behind Ray Serve's HTTP proxy, the same app, alias moves picked up by every replica."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from . import factory
from .helpers import assert_scores, b64, local_model, local_scores
from .server import free_port
from .test_predict import as_json, mixed_items

pytestmark = pytest.mark.slow


def test_mpt_serve_ray_serves_mixed_batches_and_live_alias_moves(ray_head, tmp_path):
    home = tmp_path / "home"
    reg = factory.build(home, seeds=(0, 1))
    port = free_port()
    env = {
        **os.environ,
        **ray_head.env,
        "MPT_HOME": str(home),
        "MPT_SERVE_POLL_SECONDS": "0.3",
    }
    log = open(tmp_path / "serve.log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "serve",
            "--ray",
            "--address",
            ray_head.address,
            "--port",
            str(port),
            "--replicas",
            "2",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, (log.seek(0), log.read())[1]
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Ray Serve did not become ready"
            time.sleep(0.5)
        with httpx.Client(base_url=url, timeout=60) as c:
            items = mixed_items()
            response = c.post("/v1/predict", json={"items": [as_json(d, e) for d, e in items]})
            assert response.status_code == 200, response.text
            expected = {}
            for domain in dict.fromkeys(d for d, _ in items):
                mine = [e for d, e in items if d == domain]
                scores = local_scores(local_model(reg, domain, 1), mine)
                expected.update(zip(map(id, mine), scores, strict=True))
            for (_, example), result in zip(items, response.json()["results"], strict=True):
                assert_scores(result["scores"], expected[id(example)])

            retail = [
                {"domain": "retail", "image": b64(e.image)}
                for e in factory.sample("classification")
            ]
            statuses, moved = [], time.monotonic()
            factory.promote(reg, "retail", 2)
            switched = None
            while time.monotonic() - moved < 8:
                r = c.post("/v1/predict", json={"items": retail})
                statuses.append(r.status_code)
                versions = {x["version"] for x in r.json()["results"]}
                assert len(versions) == 1
                if versions == {2} and switched is None:
                    switched = time.monotonic() - moved
                if switched is not None and time.monotonic() - moved > 5:
                    assert versions == {2}, "a replica still served v1 five seconds after"
            assert switched is not None and switched < 5
            assert set(statuses) == {200}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
        log.seek(0)
        output = log.read()
        log.close()
    assert code == 0, output
    assert "2 replica(s) on CPUs" in output
