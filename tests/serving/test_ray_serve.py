"""`mpt serve --ray` on a real Ray head (ray start --head on 127.0.0.1): two replicas
behind Ray Serve's HTTP proxy, the same app, alias moves picked up by every replica."""

from __future__ import annotations

import time

import httpx
import pytest

from . import factory
from .helpers import assert_scores, b64, local_model, local_scores
from .server import mpt_serve
from .test_predict import as_json, mixed_items

pytestmark = pytest.mark.slow


def test_mpt_serve_ray_serves_mixed_batches_and_live_alias_moves(ray_head, tmp_path):
    home = tmp_path / "home"
    reg = factory.build(home, seeds=(0, 1))
    env = {**ray_head.env, "MPT_HOME": str(home), "MPT_SERVE_POLL_SECONDS": "0.3"}
    args = ("--ray", "--address", ray_head.address, "--replicas", "2")
    with mpt_serve(env, tmp_path, *args, start_timeout_s=300, stop_wait_s=120) as server:
        url = f"http://127.0.0.1:{server.port}"
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
    output = server.spec.log.read_text()
    assert server.proc.returncode == 0, output  # SIGTERM removed the app and returned
    assert "2 replica(s) on CPUs" in output
    assert "will not be applied" not in output and "(raylet)" not in output  # no Serve noise
