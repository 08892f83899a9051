"""Serving: throughput of single- vs mixed-domain traffic, latency under concurrency,
memory with 1 vs 10 domains, production's latency and throughput with a shadow version
on (off, 0.1 and 1.0 of its items, and a shadow that fails to load), and the time an
alias move takes to reach responses.

    python bench/serving.py [--threads 1] [--duration 15] [--quick]

Everything runs side by side in one run. The server is `mpt serve` itself, a separate
process on a free loopback port, over a registry built here: 10 domains with `mpt`
prompts on the real `shipped` backbone (3 classification-like tasks: retail with the
10 Fashion-MNIST classes, manufacturing VQA with 2 questions, medical retrieval with 8
candidate captions per image, and 7 more classification domains), plus a second
version of retail for the alias moves and the shadow (as the `staging` alias), and a
third whose artifact is deleted (a shadow that cannot load). The load generator
(asyncio + httpx, this process) sends one-image requests from C concurrent clients, so
batches form on the server. Prompts are freshly initialised, not tuned: the cost of
serving them is the same. `--quick` uses the tiny backbone and short runs (a smoke
test, not figures).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from mpt_core import (
    ClassificationTask,
    Example,
    RetrievalTask,
    VQATask,
    build_prompts,
    save_prompts,
)
from mpt_core.inference import predict_batch
from mpt_core.samples import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, fashion_mnist
from registry import MonitoringSettings, Policy, PromptRegistry, upgrade
from registry.store import LocalStore

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = {
    "Is there a defect on this fabric?": ["yes", "no"],
    "What kind of defect is visible?": ["none", "local defect", "global defect"],
}
CAPTIONS = [
    f"{kind} of {what}"
    for kind in ("an immunohistochemistry tile", "a retina photograph")
    for what in ("healthy tissue", "a lesion", "cells", "vessels")
]
EXTRA = [f"shop-{i}" for i in range(1, 8)]
POLICY = Policy("accuracy", min_improvement=-1.0, max_class_regression=1.0)
SHADOW, BROKEN = 2, 3
"""retail's version that shadows production, and one whose artifact is gone."""
SHADOW_CASES = ("off", "0.1", "1.0", "1.0, cannot load")


# ---------------------------------------------------------------------- the registry
def tasks() -> dict[str, object]:
    out = {
        "retail": ClassificationTask(FASHION_MNIST_CLASSES),
        "manufacturing": VQATask(QUESTIONS),
        "medical": RetrievalTask(),
    }
    for i, name in enumerate(EXTRA):
        out[name] = ClassificationTask([f"product {i}-{k}" for k in range(5 + i)])
    return out


def build_registry(root: Path, backbone, domains: list[str]) -> PromptRegistry:
    url = f"sqlite:///{root / 'registry.db'}"
    upgrade(url)
    reg = PromptRegistry(url, LocalStore(root / "artifacts"))
    for domain in domains:
        task = tasks()[domain]
        seeds = (0, 1, 2) if domain == "retail" else (0,)
        for seed in seeds:
            model = build_prompts(backbone, "mpt", task, seed=seed)
            art = save_prompts(model, root / f"art-{domain}-{seed}")
            reg.record_data_version(domain, "d" * 32, rows=1, row_counts={}, validation_passed=True)
            v = reg.register_version(
                domain,
                art,
                method="mpt",
                config=model.config.to_dict(),
                data_version="d" * 32,
                backbone=backbone.identity.to_dict(),
                metrics={"test": {"accuracy": 0.5}},
                created_by="bench",
            )
            if v.number == 1:
                promote(reg, domain, 1)
            if v.number == BROKEN:
                reg.store.delete(v.artifact_sha256)
    return reg


def promote(reg: PromptRegistry, domain: str, number: int) -> None:
    request = reg.request_promotion(domain, number, requested_by="bench", policy=POLICY)
    reg.approve(request.id, reviewer="bench-reviewer")


# ---------------------------------------------------------------------- images and items
def images(n: int) -> list:
    if FASHION_MNIST_DIR.exists():
        return [e.image for e in fashion_mnist("test", -(-n // 10))][:n]
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)) for _ in range(n)]


def encode(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def item(domain: str, image_b64: str) -> dict:
    out = {"domain": domain, "image": image_b64}
    if domain == "manufacturing":
        out["question"] = "What kind of defect is visible?"
    if domain == "medical":
        out["candidates"] = CAPTIONS
    return out


def example(domain: str, image) -> Example:
    if domain == "manufacturing":
        return Example(image, question="What kind of defect is visible?")
    if domain == "medical":
        return Example(image, candidates=tuple(CAPTIONS))
    return Example(image)


# ---------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mpt serve` in its own process over the registry under `home`."""

    def __init__(self, home: Path, threads: int, poll: float = 1.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "MPT_HOME": str(home),
            "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": str(threads),
            "MPT_SERVE_POLL_SECONDS": str(poll),
        }
        self.log = open(home / "serve.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "serve",
                "--port",
                str(self.port),
                "--threads",
                str(threads),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mpt serve exited: {(home / 'serve.log').read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("mpt serve did not become ready in 300 s")
            time.sleep(0.3)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        self.log.close()


async def load(url: str, payloads: list[dict], clients: int, seconds: float) -> list[float]:
    """`clients` concurrent one-item requests for `seconds`; the latency of each."""
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker(offset: int) -> None:
            i = offset
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                r = await client.post("/v1/predict", json={"items": [payloads[i % len(payloads)]]})
                if r.status_code != 200:
                    raise RuntimeError(f"request failed: {r.status_code} {r.text[:300]}")
                latencies.append(time.perf_counter() - started)
                i += clients

        await asyncio.gather(*(worker(k) for k in range(clients)))
    return latencies


def run_load(url, payloads, clients, seconds) -> tuple[float, float, float]:
    """(images/s, p50 ms, p99 ms)."""
    asyncio.run(load(url, payloads, clients, min(1.0, seconds / 4)))  # warm-up
    started = time.perf_counter()
    latencies = asyncio.run(load(url, payloads, clients, seconds))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return len(latencies) / elapsed, q[49] * 1000, q[98] * 1000


def memory(server: Server, payloads: list[dict]) -> tuple[float, float]:
    """RSS after loading, and after `payloads` sent one after the other (batches of one:
    the same activations on every server, so the difference is what the domains hold)."""
    loaded = server.rss_mb()
    with httpx.Client(base_url=server.url, timeout=120) as c:
        for payload in payloads:
            c.post("/v1/predict", json={"items": [payload]}).raise_for_status()
    return loaded, server.rss_mb()


def alias_move_seconds(
    server: Server, reg: PromptRegistry, payload: dict, repeats: int
) -> list[float]:
    """Move retail's production back and forth; time until a response shows the move."""
    out = []
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for k in range(repeats):
            current = c.post("/v1/predict", json={"items": [payload]}).json()["results"][0][
                "version"
            ]
            target = 2 if current == 1 else 1
            moved = time.perf_counter()
            if target == 2 and k == 0:
                promote(reg, "retail", 2)
            else:
                reg.rollback("retail", target, actor="bench", reason="bench alias move")
            while True:
                r = c.post("/v1/predict", json={"items": [payload]}).json()
                if r["results"][0]["version"] == target:
                    out.append(time.perf_counter() - moved)
                    break
    return out


def set_shadow(server: Server, reg: PromptRegistry, case: str) -> None:
    """Point retail's shadow (the staging alias) as `case` says; wait until the server
    shows it (a poll, and the shadow loaded or failed)."""
    fraction = 0.0 if case == "off" else float(case.split(",")[0])
    version = BROKEN if "cannot load" in case else SHADOW
    reg.set_alias("retail", "staging", version, actor="bench", reason="bench shadow")
    settings = MonitoringSettings(shadow_fraction=fraction, shadow_alias="staging")
    reg.set_monitoring("retail", settings, actor="bench")
    wanted = {"off": "none", "0.1": "shadowing", "1.0": "shadowing"}.get(case, "failed")
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=server.url, timeout=60) as c:
        while True:
            rows = c.get("/v1/domains").json()["domains"]
            shadow = next(r for r in rows if r["domain"] == "retail")["shadow"]
            shown = shadow["fraction"] == fraction and shadow["state"] == wanted
            if shown and (wanted == "none" or shadow["version"] == version):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not show the shadow {case!r}: {shadow}")
            time.sleep(0.2)


def shadow_counts(server: Server) -> dict:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        rows = c.get("/v1/domains").json()["domains"]
    return next(r for r in rows if r["domain"] == "retail")["shadow"]["since_start"]


# ---------------------------------------------------------------------- the library part
def library_calls(backbone, threads: int, n: int = 32, repeats: int = 5) -> dict[str, float]:
    """ms per 32-image predict_batch call: single vs mixed domains, text cache on vs off."""
    torch.set_num_threads(threads)
    models = {
        d: build_prompts(backbone, "mpt", tasks()[d], seed=0).eval()
        for d in ("retail", "manufacturing", "medical")
    }
    ims = images(n)
    single = [(models["retail"], example("retail", im)) for im in ims]
    names = list(models)
    mixed = [(models[names[i % 3]], example(names[i % 3], im)) for i, im in enumerate(ims)]

    configs = {
        "single": (single, False),
        "mixed": (mixed, False),
        "single_uncached": (single, True),
        "mixed_uncached": (mixed, True),
    }
    best = dict.fromkeys(configs, float("inf"))
    predict_batch(mixed)  # warm-up: allocator, caches
    for _ in range(repeats):  # rounds over every configuration: the machine's load drifts
        for name, (items, clear) in configs.items():
            if clear:
                for m in models.values():  # what every call paid before the cache
                    m._inference_cache.clear()
                    m._text_cache.clear()
            started = time.perf_counter()
            predict_batch(items)
            best[name] = min(best[name], (time.perf_counter() - started) * 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per load run")
    parser.add_argument("--quick", action="store_true", help="tiny backbone, short runs")
    parser.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds")
    args = parser.parse_args()
    duration = 1.0 if args.quick else args.duration

    from mpt_core import load_backbone

    started = time.perf_counter()
    backbone = load_backbone("shipped", "tiny" if args.quick else None)
    print(f"backbone {backbone.identity} loaded in {time.perf_counter() - started:.1f}s")
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}; "
        f"torch threads = {args.threads} (server and library part)"
    )
    lib = library_calls(backbone, args.threads, repeats=2 if args.quick else 5)

    with tempfile.TemporaryDirectory(prefix="mpt-bench-serving-") as tmp:
        tmp = Path(tmp)
        all_domains = ["retail", "manufacturing", "medical", *EXTRA]
        reg10 = build_registry(tmp / "ten", backbone, all_domains)
        build_registry(tmp / "one", backbone, ["retail"])
        prompt_mb = sum(f.stat().st_size for f in (tmp / "ten").glob("art-*-0/prompts.safetensors"))
        prompt_mb /= 2**20
        pictures = [encode(im) for im in images(64)]
        single = [item("retail", p) for p in pictures]
        mixed = [
            item(d, p)
            for p, d in zip(pictures, ["retail", "manufacturing", "medical"] * 22, strict=False)
        ]
        everyone = [item(d, p) for p, d in zip(pictures, all_domains * 7, strict=False)]

        # memory first, on fresh servers given the same traffic (the allocator keeps its
        # high-water mark, so both must have run batches of the same sizes)
        server = Server(tmp / "one", args.threads)
        try:
            rss1 = memory(server, single[:30])
        finally:
            server.stop()
        server = Server(tmp / "ten", args.threads)
        try:
            rss10 = memory(server, everyone[:30])  # every domain used
            # single and mixed in alternating rounds: the machine's load drifts
            rounds = {"single": [], "mixed": []}
            for _ in range(args.rounds):
                for name, payloads in (("single", single), ("mixed", mixed)):
                    rounds[name].append(run_load(server.url, payloads, 32, duration / args.rounds))
            thr_single = statistics.median(r[0] for r in rounds["single"])
            thr_mixed = statistics.median(r[0] for r in rounds["mixed"])
            latency = {c: run_load(server.url, mixed, c, duration) for c in (1, 8, 32)}
            # production (retail) with its shadow off, on for 0.1 and 1.0 of its items, and
            # a shadow that cannot load: alternating rounds, the same load each time
            shadowed = {case: [] for case in SHADOW_CASES}
            for _ in range(args.rounds):
                for case in SHADOW_CASES:
                    set_shadow(server, reg10, case)
                    shadowed[case].append(run_load(server.url, single, 32, duration / args.rounds))
            counts = shadow_counts(server)
            set_shadow(server, reg10, "off")
            moves = alias_move_seconds(server, reg10, single[0], 2 if args.quick else 4)
        finally:
            server.stop()

    print()
    print("| measure | single-domain (retail) | mixed (retail, manufacturing, medical) | ratio |")
    print("|---|---:|---:|---:|")
    print(
        f"| images/s over HTTP, 32 clients (median of {args.rounds} alternating rounds) "
        f"| {thr_single:.1f} | {thr_mixed:.1f} | {thr_mixed / thr_single:.2f} |"
    )
    print(
        f"| ms per 32-image predict_batch (library) | {lib['single']:.1f} | {lib['mixed']:.1f} "
        f"| {lib['single'] / lib['mixed']:.2f} (speed) |"
    )
    saved = 1 - lib["mixed"] / lib["mixed_uncached"]
    print(
        f"| same, text cache off (re-encoding every call) | {lib['single_uncached']:.1f} "
        f"| {lib['mixed_uncached']:.1f} | the cache saves {saved:.0%} of a mixed call |"
    )
    print()
    print("| concurrency (mixed traffic, 1-image requests) | images/s | p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|")
    for c, (rate, p50, p99) in latency.items():
        print(f"| {c} | {rate:.1f} | {p50:.1f} | {p99:.1f} |")
    print()
    off = [statistics.median(r[k] for r in shadowed["off"]) for k in range(3)]
    print(
        f"| retail's shadow (32 clients, median of {args.rounds} alternating rounds) "
        "| images/s | p50 ms | p99 ms | throughput / off | p50 / off | p99 / off |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for case, runs in shadowed.items():
        rate, p50, p99 = (statistics.median(r[k] for r in runs) for k in range(3))
        print(
            f"| {case} | {rate:.1f} | {p50:.1f} | {p99:.1f} | {rate / off[0]:.2f} "
            f"| {p50 / off[1]:.2f} | {p99 / off[2]:.2f} |"
        )
    print(f"shadow items on this server since it started: {counts}")
    print()
    print("| resident memory of the server (MB) | after loading | after 30 requests |")
    print("|---|---:|---:|")
    print(f"| 1 domain (retail) | {rss1[0]:.0f} | {rss1[1]:.0f} |")
    print(f"| 10 domains (requests spread over all 10) | {rss10[0]:.0f} | {rss10[1]:.0f} |")
    print(f"| ratio | {rss10[0] / rss1[0]:.3f} | {rss10[1] / rss1[1]:.3f} |")
    print(f"(prompt tensors of the 10 domains: {prompt_mb:.1f} MB in all)")
    print()
    print(
        "alias move -> first response from the new version (poll interval 1 s): "
        + ", ".join(f"{s:.2f}s" for s in moves)
        + f"; median {statistics.median(moves):.2f}s, max {max(moves):.2f}s"
    )


if __name__ == "__main__":
    main()
