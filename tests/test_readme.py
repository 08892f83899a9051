"""The README's registry, promotion and serving walk-throughs, run as a newcomer runs them
after `make demo`: the command blocks are read from README.md itself, so a changed README
changes what runs here.

The home they run against is what `make demo` leaves, made small: the three demo domains'
own domain.yaml (labels, questions, captions, policies), on the tiny shipped backbone with
a few synthetic images per class, trained by a real `mpt run` (Prefect, Ray, DVC, GX), then
the two demo users. Every command runs in bash in the demo's repository folder, with the
tokens pasted where the README says to paste them; a command whose comment starts with
"refused" must fail with one `mpt: error:` line, every other one must succeed, and what the comments
and the example outputs claim (request numbers, versions, the served answer, the 404) is
checked. One line is replaced: the quickstart, which tunes for minutes on the real
backbone, becomes a prompt artifact of the same preset and classes on the tiny one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEMO_DOMAINS = ("manufacturing", "medical", "retail")


# ---------------------------------------------------------------------- reading the README
def section(heading: str, text: str | None = None) -> str:
    """The README text under `heading` (a whole heading line), up to the next heading of the
    same or a higher level."""
    text = README.read_text(encoding="utf-8") if text is None else text
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    stop = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, start)
    return text[start : stop.start() if stop else len(text)]


def blocks(text: str, language: str = "bash") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@dataclass(frozen=True)
class Command:
    line: str
    """The command as bash runs it (continuation lines joined)."""
    comment: str
    output: str = ""
    """The output the README shows for it (blocks of `$ command` and what it prints)."""

    @property
    def refused(self) -> bool:
        """The README says the command is refused (its comment starts so)."""
        return self.comment.startswith("refused")


def split_comment(line: str) -> tuple[str, str]:
    """(command, comment): the first `#` outside quotes that starts a word."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def commands(block: str) -> list[Command]:
    """The block's commands; a block of `$ command` lines pairs each with its output."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out: list[Command] = []
    prompted = any(line.startswith("$ ") for line in joined.splitlines())
    for line in joined.splitlines():
        if prompted and not line.startswith("$ "):
            if out:
                out[-1] = Command(out[-1].line, out[-1].comment, out[-1].output + line + "\n")
            continue
        command, comment = split_comment(line.removeprefix("$ "))
        if command:
            out.append(Command(command, comment))
    return out


def registry_walk_through() -> list[Command]:
    block = blocks(section("## Registry: versions, lineage, reviewed promotions"))[0]
    return commands(block)


def users_walk_through() -> list[Command]:
    return [c for b in blocks(section("### Users, roles and tokens")) for c in commands(b)]


def serving_walk_through() -> tuple[list[Command], dict, list[Command]]:
    """The first serving block, the answer the README shows for it, the 404 example."""
    text = section("## Serving production prompts")
    first, answer = blocks(text)[0], json.loads(blocks(text, "json")[0])
    shown = next(b for b in blocks(text) if b.startswith("$ curl"))
    return commands(first), answer, commands(shown)


QUICKSTART = re.compile(r"python examples/quickstart\.py --out (\S+) --preset (\S+) --classes all")


def test_the_walk_throughs_are_where_the_test_reads_them():
    """Fast: the blocks parse, name the demo's tokens and numbers, and hold the one line
    the slow test replaces (if the README changes shape, this says so in seconds)."""
    registry = [c.line for c in registry_walk_through()]
    assert registry[:2] == ["REQUESTER=mpt_...", "REVIEWER=mpt_..."]
    assert any(QUICKSTART.fullmatch(line) for line in registry)
    assert 'MPT_TOKEN=$REVIEWER mpt promote approve 3 --comment "first production"' in registry
    assert [c.line for c in registry_walk_through() if c.refused] == [
        "MPT_TOKEN=$REQUESTER mpt promote approve 3"
    ]
    first, answer, shown = serving_walk_through()
    assert first[0].line == "mpt serve" and "$REVIEWER" in first[-1].line
    assert answer["results"][0]["version"] == 1 and shown[0].output.startswith('{"error"')
    assert any(c.refused for c in users_walk_through())


def test_make_results_takes_the_time_the_readme_says_with_its_command():
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile[makefile.index("\nresults:") :].split("\n\n")[0]
    comment = makefile[: makefile.index("\nresults:")].rsplit("\n\n", 1)[-1]
    figures = section("## Figures and where they come from")
    readme = re.search(
        r"`make results` \(`python (bench/results\.py[^`]*)`, about (\d+) min\)", figures
    )
    assert readme, "the README names make results' command and time"
    assert f"$(PY) {readme[1]}" in recipe  # the same command
    assert f"about {readme[2]} min" in comment.replace("\n# ", " ")  # the same time
    notes = (ROOT / "docs" / "results-notes.md").read_text()
    assert f"{readme[2]} minutes" in notes and readme[1].split(" ", 1)[1] in notes


# ---------------------------------------------------------------------- the demo, made small
def _synthetic_rows(config: dict) -> Iterator[tuple[int, dict[str, str]]]:
    """(image seed, row fields) for a few rows per value of the domain's task, per split."""
    task = config["task"]
    per_split = {"train": 2, "val": 1, "test": 2}
    seed = 0
    for split, n in per_split.items():
        if task == "classification":
            groups = [[{"label": label}] for label in config["labels"]]
        elif task == "vqa":
            questions = list(config["answers"].items())
            kinds = len(questions[-1][1])  # the image's kind answers every question
            groups = [
                [{"question": q, "answer": answers[k % len(answers)]} for q, answers in questions]
                for k in range(kinds)
            ]
        else:  # retrieval: a few captions of the kind the real data has
            groups = [
                [{"caption": c}]
                for c in (
                    "colour fundus photograph of the retina",
                    "computed tomography (CT) slice",
                    "magnetic resonance (MR) slice",
                )
            ]
        for group in groups:
            for _ in range(n):
                seed += 1
                for fields in group:
                    yield seed, {"split": split, **fields}


def make_demo_repo(root: Path) -> Path:
    """A git repository with the demo domains' domain.yaml on the tiny backbone and small
    synthetic data (what `mpt domain prepare` writes, in miniature)."""
    from .flows.domain_factory import write_csv, write_png

    subprocess.run(["git", "init", "-q", str(root)], check=True)
    for name in DEMO_DOMAINS:
        config = yaml.safe_load((ROOT / "domains" / name / "domain.yaml").read_text())
        config["backbone"] = {"family": "shipped", "name": "tiny"}
        config["tuning"] = {"epochs": 2, "batch_size": 8}
        config["validation"] = {
            **config.get("validation", {}),
            "min_per_class": {"train": 1, "val": 1, "test": 1},
        }
        folder = root / "domains" / name
        folder.mkdir(parents=True)
        (folder / "domain.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        rows = []
        for seed, fields in _synthetic_rows(config):
            image = f"images/{seed:04d}.png"
            if not (folder / "data" / image).exists():
                write_png(folder / "data" / image, seed=seed + 1000 * len(rows))
            rows.append({"image": image, **fields})
        write_csv(folder / "data" / "metadata.csv", rows, list(rows[0]))
    return root


def shell_env(home: Path) -> dict[str, str]:
    """What a newcomer's shell has: the venv's `mpt` on PATH, this checkout's code, the
    demo's MPT_HOME; none of the test session's Prefect or Ray settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "RAY_", "MPT_")) and k != "PYTEST_CURRENT_TEST"
    }
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["MPT_HOME"] = str(home)
    return env


@dataclass
class Demo:
    repo: Path
    home: Path
    env: dict[str, str]
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    """`make demo`'s state, small: `mpt run` on the demo domains, then the demo users."""
    root = tmp_path_factory.mktemp("demo")
    repo, home = make_demo_repo(root / "repo"), root / "home"
    env = shell_env(home)
    run = subprocess.run(
        ["mpt", "run"], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    tokens = {}
    for user, role in (("demo-requester", "requester"), ("demo-reviewer", "reviewer")):
        added = subprocess.run(
            ["mpt", "user", "add", user, "--role", role, "--json"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        tokens[user] = json.loads(added.stdout)["token"]
    return Demo(repo, home, env, tokens)


# ---------------------------------------------------------------------- running as a newcomer
@dataclass
class Shell:
    """Runs commands in bash one by one, keeping the variables a reader sets and exports."""

    demo: Demo
    variables: dict[str, str]
    last_token: str | None = None

    def run(self, command: Command) -> subprocess.CompletedProcess[str]:
        line = command.line
        assigned = re.fullmatch(r"(export )?([A-Z_]+)=(\S+)", line)
        if assigned:  # a variable to paste (a token) or to set
            value = assigned[3]
            if value == "mpt_...":
                value = self.pasted(assigned[2])
            self.variables[assigned[2]] = self.expand(value)
            return subprocess.CompletedProcess(line, 0, "", "")
        if line.startswith("unset "):
            for name in line.split()[1:]:
                self.variables.pop(name, None)
            return subprocess.CompletedProcess(line, 0, "", "")
        if QUICKSTART.fullmatch(line):
            return self.quickstart(*QUICKSTART.fullmatch(line).groups())
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=self.demo.repo,
            env={**self.demo.env, **self.variables},
            capture_output=True,
            text=True,
            timeout=600,
        )
        found = re.findall(r"^token: (mpt_\S+)$", done.stdout, flags=re.M)
        self.last_token = found[-1] if found else self.last_token
        return done

    def expand(self, value: str) -> str:
        return re.sub(r"\$([A-Z_]+)", lambda m: self.variables.get(m[1], ""), value)

    def pasted(self, name: str) -> str:
        """The token a reader pastes: the demo's, as `make demo` printed them, or the one
        the command before printed."""
        known = {"REQUESTER": "demo-requester", "REVIEWER": "demo-reviewer"}
        if name in known:
            return self.demo.tokens[known[name]]
        assert self.last_token, f"{name}=mpt_...: no token was printed before"
        return self.last_token

    def quickstart(self, out: str, preset: str) -> subprocess.CompletedProcess[str]:
        """The quickstart's artifact (that preset, retail's classes in retail's order), on
        the backbone the small demo's retail runs on."""
        from mpt_core import ClassificationTask, build_prompts, save_prompts, tiny_backbone

        config = yaml.safe_load((self.demo.repo / "domains/retail/domain.yaml").read_text())
        task = ClassificationTask(config["labels"], config.get("template", "a photo of a {}."))
        save_prompts(build_prompts(tiny_backbone("shipped"), preset, task), self.demo.repo / out)
        return subprocess.CompletedProcess(out, 0, "", "")

    def check(self, command: Command) -> subprocess.CompletedProcess[str]:
        done = self.run(command)
        said = f"{command.line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        if command.refused:
            assert done.returncode != 0 and "mpt: error:" in done.stderr, said
            assert "Traceback" not in done.stderr, said
        else:
            assert done.returncode == 0, said
        return done


def claims(command: Command, done: subprocess.CompletedProcess[str]) -> None:
    """What the command's comment says, checked on its output."""
    request = re.search(r"request #(\d+)", command.comment)
    if request and " promote request " in command.line:
        assert re.search(rf"^{request[1]}\s", done.stdout, flags=re.M), done.stdout
    registered = re.search(r"(\w+) (v\d+), evaluated", command.comment)
    if registered:
        assert f"registered {registered[1]} {registered[2]}" in done.stdout, done.stdout
        assert "evaluated" in done.stdout
    moved = re.search(r"(\w+) (v\d+) -> production", command.comment)
    if moved:
        assert f"{moved[1]}:production -> {moved[2]}" in done.stdout, done.stdout
    pending = re.findall(r"#(\d+) (\w+)", command.comment)
    if pending and " promote list" in command.line:
        for number, domain in pending:
            assert re.search(rf"^{number}\s+{domain}\s+v1\s", done.stdout, flags=re.M), done.stdout


@pytest.mark.slow
def test_the_registry_users_and_serving_walk_throughs_run_as_written(demo, tmp_path):
    from .serving.server import mpt_serve

    shell = Shell(demo, {})
    listing = subprocess.run(
        ["mpt", "promote", "list", "--status", "pending", "--json"],
        cwd=demo.repo,
        env=demo.env,
        capture_output=True,
        text=True,
        check=True,
    )
    opened = [(r["id"], r["domain"], r["version"]) for r in json.loads(listing.stdout)]
    assert opened == [(1, "manufacturing", 1), (2, "medical", 1), (3, "retail", 1)]

    for command in registry_walk_through():
        claims(command, shell.check(command))
    for command in users_walk_through():
        shell.check(command)
    audit = json.loads(shell.run(Command("mpt audit --domain retail --json", "")).stdout)
    assert {"register", "evaluate", "request", "approve", "rollback"} <= {
        e["action"] for e in audit
    }

    first, answer, shown = serving_walk_through()
    assert first[0].line == "mpt serve"
    serve_args = shlex.split(first[0].line)[2:]
    with mpt_serve(demo.env, demo.repo, *serve_args) as server:
        url = f"http://127.0.0.1:{server.port}"
        results = []
        for command in [*first[1:], *shown]:
            command = Command(
                command.line.replace("http://127.0.0.1:8000", url), command.comment, command.output
            )
            results.append((command, shell.check(command)))
    (_, done), (missing, refused) = results[-2], results[-1]
    got, expected = json.loads(done.stdout)["results"][0], answer["results"][0]
    assert set(got) == set(expected)
    for key in ("index", "domain", "alias", "version", "task"):
        assert got[key] == expected[key], key
    labels = yaml.safe_load((demo.repo / "domains/retail/domain.yaml").read_text())["labels"]
    assert got["prediction"] in labels and set(got["scores"]) == set(labels)
    shown_error = json.loads(" ".join(missing.output.split("\n")))["error"]  # wrapped to fit
    error = json.loads(refused.stdout)["error"]
    assert (error["status"], error["message"]) == (shown_error["status"], shown_error["message"])
