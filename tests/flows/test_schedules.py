"""Schedules: each domain's cron becomes a deployment on a real `prefect server start`."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from inspect import getsource
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowFilter,
    FlowFilterName,
)
from prefect.settings import PREFECT_API_URL, temporary_settings

import cli
from flows import schedules
from flows.drift_check import CHECK_SECONDS, check_drift, deployed_retrains, drift_check_flow
from flows.schedules import ScheduleError, apply_deployments, build_deployments, next_run
from registry import DriftPoint, MonitoringReport, MonitoringSettings, PromptRegistry, upgrade
from registry.store import LocalStore

from ..registry.test_monitoring import LOOSE, version
from ..servers import free_port

BERLIN = ("15 4 * * 2", "Europe/Berlin")
NEW_YORK = ("30 22 1 * *", "America/New_York")
TOKYO = ("0 9 * * 1-5", "Asia/Tokyo")
REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_MODULE = "mpt_fake_retrain"
"""Served runs start `python -m prefect.engine`, which imports the deployment's entrypoint:
the stand-in flow goes into a small module of this name so that it imports fast."""
SERVE_PROGRAM = f"""\
import sys
from {FAKE_MODULE} import retrain_flow
from flows.schedules import serve_deployments

serve_deployments(sys.argv[1], retrain_flow.with_options(name=sys.argv[2]), query_seconds=1)
"""


@flow(name="retrain")
def retrain_flow(
    domains: list[str] | None = None,
    force: bool = False,
    ray_address: str | None = None,
    domains_dir: str | None = None,
    preflight: bool = True,
    trigger: dict | None = None,
) -> list[str]:
    """Stands in for flows.retrain.retrain_flow (same parameters); leaves a mark per domain."""
    for domain in domains or []:
        (Path(domains_dir or ".") / f"ran-{domain}").write_text(f"force={force}")
    return domains or []


def write_domain(
    domains_dir: Path, name: str, cron: str, timezone: str, monitoring: str = ""
) -> None:
    folder = domains_dir / name
    folder.mkdir(parents=True)
    (folder / "domain.yaml").write_text(
        f'task: retrieval\nschedule: {{cron: "{cron}", timezone: {timezone}}}\n'
        + (f"monitoring: {monitoring}\n" if monitoring else "")
    )


def write_broken(domains_dir: Path, name: str = "broken") -> None:
    (domains_dir / name).mkdir(parents=True)
    (domains_dir / name / "domain.yaml").write_text("task: segmentation\n")


@pytest.fixture
def test_flow() -> object:
    """The flow under a name of its own, so tests sharing the session's server never see
    each other's deployments."""
    return retrain_flow.with_options(name=f"retrain-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def server(prefect_server, monkeypatch, tmp_path):
    """Point this test's Prefect client at the session's server (undone after the test)."""
    for key, value in prefect_server.client_env(tmp_path / "prefect-home").items():
        monkeypatch.setenv(key, value)
    return prefect_server


def read_deployments(api_url: str, flow_name: str) -> dict:
    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        found = client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name]))
        )
    return {d.name: d for d in found}


def test_apply_creates_a_deployment_per_domain_with_its_cron_and_skips_broken_ones(
    server, tmp_path, test_flow
):
    domains_dir = tmp_path / "domains"
    write_domain(domains_dir, "alpha", *BERLIN)
    write_domain(domains_dir, "beta", *NEW_YORK)
    write_broken(domains_dir)

    result = apply_deployments(domains_dir, test_flow)

    assert result.api_url == server.api_url
    assert sorted(result.created) == ["retrain-alpha", "retrain-beta"] and not result.updated
    assert list(result.skipped) == ["broken"] and "segmentation" in result.skipped["broken"]
    found = read_deployments(server.api_url, test_flow.name)
    assert sorted(found) == ["retrain-alpha", "retrain-beta"]
    for name, (cron, timezone) in (("alpha", BERLIN), ("beta", NEW_YORK)):
        deployment = found[f"retrain-{name}"]
        [schedule] = deployment.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone) == (cron, timezone)
        assert schedule.active
        assert deployment.parameters == {"domains": [name], "domains_dir": str(domains_dir)}
        assert deployment.tags == ["mpt", "retrain", name]
        assert name in deployment.description and cron in deployment.description
        assert deployment.work_pool_name is None  # a served deployment: no pool, no image


def test_a_domain_added_later_is_created_on_the_next_apply_without_duplicates(
    server, tmp_path, test_flow
):
    domains_dir = tmp_path / "domains"
    write_domain(domains_dir, "alpha", *BERLIN)
    write_domain(domains_dir, "beta", *NEW_YORK)
    first = apply_deployments(domains_dir, test_flow)

    write_domain(domains_dir, "gamma", *TOKYO)
    (domains_dir / "beta" / "domain.yaml").write_text(
        'task: retrieval\nschedule: {cron: "45 5 * * 0", timezone: UTC}\n'
    )
    second = apply_deployments(domains_dir, test_flow)

    assert second.created == ["retrain-gamma"]
    assert sorted(second.updated) == ["retrain-alpha", "retrain-beta"]
    assert {k: second.ids[k] for k in first.ids} == first.ids  # same deployments, updated
    found = read_deployments(server.api_url, test_flow.name)
    assert sorted(found) == ["retrain-alpha", "retrain-beta", "retrain-gamma"]
    assert all(len(d.schedules) == 1 for d in found.values())
    assert found["retrain-beta"].schedules[0].schedule.cron == "45 5 * * 0"
    assert found["retrain-gamma"].schedules[0].schedule.timezone == "Asia/Tokyo"

    shutil.rmtree(domains_dir / "gamma")
    third = apply_deployments(domains_dir, test_flow)
    assert third.stale == ["retrain-gamma"] and not third.created


def test_cli_apply_reports_created_updated_and_skipped(
    server, tmp_path, test_flow, monkeypatch, capsys
):
    monkeypatch.setattr(schedules, "default_flow", lambda: test_flow)
    domains_dir = tmp_path / "domains"
    write_domain(domains_dir, "alpha", *BERLIN)
    write_broken(domains_dir)

    assert cli.main(["schedule", "apply", "--domains-dir", str(domains_dir)]) == 1
    captured = capsys.readouterr()
    assert server.api_url in captured.out
    lines = captured.out.splitlines()
    assert ["alpha", "retrain-alpha", "created"] in [line.split() for line in lines]
    assert ["broken", "-", "skipped:", "broken", "domain"] in [line.split() for line in lines]
    assert "skipped broken:" in captured.err and "segmentation" in captured.err

    assert cli.main(["schedule", "apply", "--domains-dir", str(domains_dir), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert {"domain": "alpha", "deployment": "retrain-alpha", "action": "updated"} in report[
        "deployments"
    ]
    assert list(report["skipped"]) == ["broken"]


def test_the_cli_help_lists_the_schedule_and_promote_await_commands(capsys):
    for argv, listed in (
        (["--help"], "schedule"),
        (["schedule", "--help"], "list"),
        (["promote", "--help"], "await"),
    ):
        with pytest.raises(SystemExit) as stopped:
            cli.main(argv)
        assert stopped.value.code == 0
        assert re.search(rf"\b{listed}\b", capsys.readouterr().out), argv


def test_schedule_list_prints_each_cron_and_its_next_run_in_the_domain_zone(
    tmp_path, monkeypatch, capsys
):
    domains_dir = tmp_path / "domains"
    write_domain(domains_dir, "alpha", *BERLIN)
    write_domain(domains_dir, "gamma", *TOKYO)

    assert cli.main(["schedule", "list", "--domains-dir", str(domains_dir)]) == 0
    out = capsys.readouterr().out
    assert "15 4 * * 2" in out and "Europe/Berlin" in out and "0 9 * * 1-5" in out

    assert cli.main(["schedule", "list", "--domains-dir", str(domains_dir), "--json"]) == 0
    rows = {r["domain"]: r for r in json.loads(capsys.readouterr().out)}
    berlin = dt.datetime.fromisoformat(rows["alpha"]["next_run"])
    assert (berlin.isoweekday(), berlin.hour, berlin.minute) == (2, 4, 15)
    assert berlin.utcoffset() in (dt.timedelta(hours=1), dt.timedelta(hours=2))
    assert rows["gamma"]["deployment"] == "retrain-gamma"


def test_schedule_list_reports_a_broken_domain(tmp_path, monkeypatch, capsys):
    write_domain(tmp_path / "domains", "alpha", *BERLIN)
    write_broken(tmp_path / "domains")
    assert cli.main(["schedule", "list", "--domains-dir", str(tmp_path / "domains")]) == 1
    captured = capsys.readouterr()
    assert "15 4 * * 2" in captured.out and "broken" in captured.out
    assert "segmentation" in captured.err


def test_next_run_follows_daylight_saving_time():
    # Berlin switches to summer time on 2026-03-29: Tuesday 04:15 is then UTC+2
    after = dt.datetime(2026, 3, 28, tzinfo=dt.UTC)
    assert next_run(*BERLIN, after=after).isoformat() == "2026-03-31T04:15:00+02:00"


def test_build_deployments_targets_each_domain(tmp_path, test_flow):
    write_domain(tmp_path / "domains", "alpha", *BERLIN)
    write_domain(tmp_path / "domains", "zeta", "61 4 * * *", "UTC")  # 5 fields, minute 61
    [deployment] = build_deployments(tmp_path / "domains", test_flow)
    assert deployment.name == "retrain-alpha"
    assert deployment.entrypoint == f"{__name__}.retrain_flow"
    plan = schedules.plan_deployments(tmp_path / "domains", test_flow)
    assert "zeta" in plan.skipped and "schedule" in plan.skipped["zeta"]


def test_apply_without_api_url_says_how_to_get_a_server(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))  # no profile sets one
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    write_domain(tmp_path / "domains", "alpha", *BERLIN)

    with pytest.raises(ScheduleError, match=r"PREFECT_API_URL is not set.*prefect server start"):
        apply_deployments(tmp_path / "domains", retrain_flow)
    assert cli.main(["schedule", "apply", "--domains-dir", str(tmp_path / "domains")]) == 2
    assert "mpt: error: PREFECT_API_URL is not set" in capsys.readouterr().err


def test_apply_to_an_unreachable_server_names_the_url(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/api"  # a port nobody listens on
    monkeypatch.setenv("PREFECT_API_URL", url)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    write_domain(tmp_path / "domains", "alpha", *BERLIN)
    with pytest.raises(
        ScheduleError, match=re.escape(f"server at PREFECT_API_URL={url} is not reachable")
    ):
        apply_deployments(tmp_path / "domains", retrain_flow)


def test_serve_runs_a_domains_retrain_from_its_deployment(server, tmp_path, test_flow):
    domains_dir = tmp_path / "domains"
    write_domain(domains_dir, "alpha", *BERLIN)
    source = (
        f"from pathlib import Path\n\nfrom prefect import flow\n\n\n{getsource(retrain_flow.fn)}"
    )
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / f"{FAKE_MODULE}.py").write_text(source)
    pythonpath = os.pathsep.join([str(tmp_path / "lib"), str(REPO_ROOT)])
    env = {**os.environ, "PYTHONPATH": pythonpath}  # a copy: os.environ is not changed
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE_PROGRAM, str(domains_dir), test_flow.name],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        run = wait_for_run(server.api_url, f"{test_flow.name}/retrain-alpha", proc, log)
        assert run.state.is_completed(), f"{run.state}; serve log:\n{log.read_text()}"
        assert run.parameters == {"domains": ["alpha"], "domains_dir": str(domains_dir)}
        assert (domains_dir / "ran-alpha").read_text() == "force=False"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the serve process we started, and its runs
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_run(api_url: str, deployment: str, proc: subprocess.Popen, log: Path, limit=90):
    """Start a run of `deployment` once `serve` registered it; wait until it is final."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + limit
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        while True:
            assert proc.poll() is None, f"serve exited with {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no final run in {limit}s:\n{log.read_text()}"
            try:
                run = run_deployment(deployment, timeout=0)
                break
            except ObjectNotFound:  # not registered yet
                time.sleep(0.5)
        with get_client(sync_client=True) as client:
            while not (run := client.read_flow_run(run.id)).state.is_final():
                assert time.monotonic() < deadline, f"run still {run.state}:\n{log.read_text()}"
                time.sleep(0.5)
    return run


DRIFTING = "{drift_threshold: 0.25, cooldown_hours: 6}"


def test_a_drift_threshold_adds_the_drift_check_next_to_the_crons(tmp_path, test_flow):
    domains_dir = tmp_path / "domains"
    write_domain(domains_dir, "alpha", *BERLIN)
    assert schedules.plan_deployments(domains_dir, test_flow).drift_check is None
    write_domain(domains_dir, "beta", *NEW_YORK, monitoring=DRIFTING)
    plan = schedules.plan_deployments(domains_dir, test_flow)
    check = plan.drift_check
    assert check.name == "drift-check" and check.entrypoint == "flows.drift_check.drift_check_flow"
    [schedule] = check.schedules
    assert schedule.schedule.interval == dt.timedelta(seconds=CHECK_SECONDS)
    assert "beta > 0.25" in check.description and "alpha" not in check.description
    assert check.parameters == {"deployments": {"beta": f"{test_flow.name}/retrain-beta"}}
    assert sorted(d.name for d in plan.deployments) == ["retrain-alpha", "retrain-beta"]


def test_apply_registers_the_drift_check_on_the_server(server, tmp_path, test_flow):
    domains_dir = tmp_path / "domains"
    write_domain(domains_dir, "beta", *NEW_YORK, monitoring=DRIFTING)
    drift_flow = drift_check_flow.with_options(name=f"drift-check-{uuid.uuid4().hex[:8]}")
    result = apply_deployments(domains_dir, test_flow, drift_flow)
    assert result.drift_check == f"{drift_flow.name}/drift-check"
    [found] = read_deployments(server.api_url, drift_flow.name).values()
    [schedule] = found.schedules
    assert schedule.active and schedule.schedule.interval == dt.timedelta(seconds=CHECK_SECONDS)
    assert found.parameters == {"deployments": {"beta": f"{test_flow.name}/retrain-beta"}}


def test_schedule_list_shows_the_drift_triggered_retrain(tmp_path, capsys):
    domains_dir = tmp_path / "domains"
    write_domain(domains_dir, "alpha", *BERLIN)
    write_domain(domains_dir, "beta", *NEW_YORK, monitoring=DRIFTING)
    assert cli.main(["schedule", "list", "--domains-dir", str(domains_dir), "--json"]) == 0
    rows = {r["domain"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["alpha"]["drift_retrain"] == "-"
    assert rows["beta"]["drift_retrain"] == (
        f"psi > 0.25, at most once per 6 h (drift-check, every {CHECK_SECONDS} s)"
    )


def test_crossing_the_drift_threshold_starts_one_retrain_of_that_domain(
    server, tmp_path, test_flow
):
    domains_dir = tmp_path / "domains"
    write_domain(domains_dir, "alpha", *BERLIN)
    write_domain(domains_dir, "beta", *NEW_YORK, monitoring=DRIFTING)
    drift_flow = drift_check_flow.with_options(name=f"drift-check-{uuid.uuid4().hex[:8]}")
    result = apply_deployments(domains_dir, test_flow, drift_flow)
    deployments = schedules.plan_deployments(domains_dir, test_flow, drift_flow).drift_check

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    upgrade(url)
    reg = PromptRegistry(url, LocalStore(tmp_path / "artifacts"))
    for domain in ("alpha", "beta"):
        version(reg, tmp_path, f"{domain}-one", domain)
        request = reg.request_promotion(domain, 1, requested_by="ana", policy=LOOSE)
        reg.approve(request.id, reviewer="ben")
        point = DriftPoint(domain, 1, dt.datetime.now(dt.UTC), 0.5, {"predictions": 0.5}, 1000)
        reg.record_monitoring(MonitoringReport(drift=[point]))  # both drift, alpha has no threshold
    settings = MonitoringSettings(drift_threshold=0.25, cooldown_hours=6)
    reg.set_monitoring("beta", settings, actor="retrain-flow")  # as `mpt run` stores it

    start = deployed_retrains(deployments.parameters["deployments"])
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        first = check_drift(reg, start)
        second = check_drift(reg, start)
        with get_client(sync_client=True) as client:
            runs = {  # the runs the drift check started: not the ones the server's
                # scheduler creates from the domains' cron schedules when its loop ticks
                name: [
                    run
                    for run in client.read_flow_runs(
                        deployment_filter=DeploymentFilter(
                            id=DeploymentFilterId(any_=[uuid.UUID(result.ids[name])])
                        )
                    )
                    if not run.auto_scheduled
                ]
                for name in ("retrain-alpha", "retrain-beta")
            }
    assert [r["status"] for r in first] == ["started"] and first[0]["domain"] == "beta"
    assert [r["status"] for r in second] == ["cooling down"]
    assert runs["retrain-alpha"] == [] and len(runs["retrain-beta"]) == 1
    [run] = runs["retrain-beta"]
    assert str(run.id) == first[0]["run"] and "drift" in run.tags
    assert run.parameters["domains"] == ["beta"] and run.parameters["trigger"]["drift"] == 0.5
