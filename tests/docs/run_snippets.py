"""Runs every example in the READMEs against a stock `nerve`, as a reader would, so they cannot
rot. For each README it starts a hub (the binary under test, no configuration, on a free
loopback port), puts its connection string in NERVE_CONNECTION_STRING, and runs the fenced
blocks in order:

- ``sh``/``bash`` with bash, ``python`` with a venv's python (the README's own
  ``pip install ./clients/python`` puts the client in it), ``js`` as an ES module that can import
  ``@nerve/client`` and the official ``@azure/web-pubsub*`` packages, ``rust`` as a program built
  against ``clients/rust``; other languages (``text``, ``toml``) are not code to run.
- Each block must exit 0 within its time. The one change made to a block: the README's
  ``127.0.0.1:8080`` becomes the test hub's address.
- An HTML comment right before a block can say how to run it:
  ``<!-- doc-test: background -->`` runs it beside the blocks after it until the README is done
  (an agent), and it must still be running then; ``background until "TEXT"`` also waits for it
  to print TEXT. ``<!-- doc-test: hub ARGS -->``: the block starts the hub; the test starts the
  binary under test with ARGS instead (restarting the README's hub). ``<!-- doc-test: skip
  REASON -->``: not run, and the reason is printed.

Usage: run_snippets.py README... (paths relative to the repository root).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
WORK = TARGET / "doc-snippets"
BLOCK_TIMEOUT = 300
READY_TIMEOUT = 300
RUN = {"sh": "sh", "bash": "sh", "python": "python", "js": "js", "javascript": "js",
       "rust": "rust"}
FENCE = re.compile(r"^```(\w*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*doc-test:\s*(\w+)\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    """One fenced block of a README."""

    file: str
    line: int
    lang: str
    code: str
    kind: str = "run"
    arg: str = ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def blocks(readme: str) -> list[Block]:
    """The fenced blocks of ``readme``, with the directive before each, if any."""
    out, lines = [], (ROOT / readme).read_text().splitlines()
    i = 0
    directive = None
    while i < len(lines):
        m = DIRECTIVE.match(lines[i])
        if m:
            directive = (m.group(1), m.group(2))
            i += 1
            continue
        fence = FENCE.match(lines[i])
        if fence:
            start = i
            body = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            kind, arg = directive or ("run", "")
            out.append(Block(readme, start + 1, fence.group(1), "\n".join(body) + "\n", kind, arg))
        elif lines[i].strip():
            directive = None
        i += 1
    return out


class Hub:
    """The binary under test on a free loopback port."""

    def __init__(self, args: list[str]):
        binary = os.environ.get("NERVE_BIN", str(TARGET / "debug" / "nerve"))
        self.proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.connection_string = None
        deadline = time.monotonic() + 30
        while self.connection_string is None:
            line = self.proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise SystemExit(f"nerve did not print its connection string: {args}")
            if line.startswith("Endpoint="):
                self.connection_string = line.strip()
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)", self.connection_string).group(1))
        # Keep draining its output so it never blocks on a full pipe.
        self.drain = subprocess.Popen(["cat"], stdin=self.proc.stdout, stdout=subprocess.DEVNULL)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.drain.wait()


class Runner:
    """What the blocks run in: a venv, a node_modules, a Rust crate, `nerve` on PATH."""

    def __init__(self):
        WORK.mkdir(parents=True, exist_ok=True)
        self.venv = WORK / "venv"
        if not (self.venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        self.bin = WORK / "bin"
        self.bin.mkdir(exist_ok=True)
        nerve = Path(os.environ.get("NERVE_BIN", TARGET / "debug" / "nerve"))
        for name in ("nerve", "nerve-bus"):
            link = self.bin / name
            link.unlink(missing_ok=True)
            link.symlink_to(nerve.parent / name)
        self.js = WORK / "js"
        modules = self.js / "node_modules"
        (modules / "@azure").mkdir(parents=True, exist_ok=True)
        for pkg in ("web-pubsub", "web-pubsub-client"):
            link = modules / "@azure" / pkg
            if not link.exists():
                link.symlink_to(ROOT / "tests" / "js" / "node_modules" / "@azure" / pkg)
        (modules / "@nerve").mkdir(exist_ok=True)
        if not (modules / "@nerve" / "client").exists():
            (modules / "@nerve" / "client").symlink_to(ROOT / "clients" / "js")
        self.background: list[tuple[Block, subprocess.Popen, Path]] = []
        self.hub: Hub | None = None
        self.rust_built: dict[str, Path] = {}

    def env(self) -> dict:
        env = dict(os.environ)
        env["PATH"] = f"{self.bin}:{self.venv / 'bin'}:{env['PATH']}"
        env["VIRTUAL_ENV"] = str(self.venv)
        env["NERVE_CONNECTION_STRING"] = self.hub.connection_string
        env.pop("NERVE_ACCESS_KEY", None)
        return env

    def start_hub(self, args: str) -> None:
        self.stop_all()
        self.hub = Hub(shlex.split(args))
        print(f"  hub on 127.0.0.1:{self.hub.port} {args}".rstrip(), flush=True)

    def stop_all(self) -> None:
        for block, proc, log in self.background:
            if proc.poll() is not None:
                raise SystemExit(f"{block.where}: the background block exited with "
                                 f"{proc.returncode} before the README was done:\n"
                                 f"{log.read_text()}")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.background = []
        if self.hub:
            self.hub.stop()
            self.hub = None

    def command(self, block: Block, code: str) -> list[str]:
        kind = RUN[block.lang]
        if kind == "sh":
            return ["bash", "-euo", "pipefail", "-c", code]
        name = re.sub(r"\W", "_", block.where)
        if kind == "python":
            path = WORK / f"{name}.py"
            path.write_text(code)
            return [str(self.venv / "bin" / "python"), "-u", str(path)]
        if kind == "js":
            path = self.js / f"{name}.mjs"
            path.write_text(code)
            return ["node", str(path)]
        return [str(self.rust_binary(block, code))]

    def rust_binary(self, block: Block, code: str) -> Path:
        """Builds the block as a program of a crate that depends on clients/rust."""
        crate = WORK / "rust"
        (crate / "src" / "bin").mkdir(parents=True, exist_ok=True)
        (crate / "Cargo.toml").write_text(
            '[package]\nname = "readme-snippets"\nversion = "0.0.0"\nedition = "2024"\n'
            'publish = false\n\n[workspace]\n\n[dependencies]\n'
            f'nerve-client = {{ path = "{ROOT / "clients" / "rust"}" }}\n'
            'serde_json = "1"\ntokio = { version = "1", features = ["full"] }\n')
        if not (crate / "Cargo.lock").exists():
            shutil.copy(ROOT / "Cargo.lock", crate / "Cargo.lock")
        name = re.sub(r"\W", "_", block.where).lower()
        (crate / "src" / "bin" / f"{name}.rs").write_text(code)
        subprocess.run(["cargo", "build", "--quiet", "--offline", "--bin", name,
                        "--manifest-path", str(crate / "Cargo.toml")], check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
        return TARGET / "debug" / name

    def run(self, block: Block) -> None:
        if block.kind == "skip":
            print(f"  skip {block.where}: {block.arg}", flush=True)
            return
        if block.kind == "hub":
            self.start_hub(block.arg)
            return
        if block.lang not in RUN:
            return
        if self.hub is None:
            self.start_hub("")
        code = block.code.replace("127.0.0.1:8080", f"127.0.0.1:{self.hub.port}")
        cmd = self.command(block, code)
        if block.kind == "background":
            self.start_background(block, cmd)
            return
        print(f"  run {block.where} ({block.lang})", flush=True)
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=self.env(), timeout=BLOCK_TIMEOUT,
                                  start_new_session=True, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        except subprocess.TimeoutExpired as e:
            raise SystemExit(f"{block.where}: still running after {BLOCK_TIMEOUT} s\n"
                             f"{e.output or ''}") from None
        output = done.stdout.rstrip()
        if output:
            print("    " + output.replace("\n", "\n    "), flush=True)
        if done.returncode != 0:
            raise SystemExit(f"{block.where}: exited with {done.returncode}")

    def start_background(self, block: Block, cmd: list[str]) -> None:
        until = block.arg[len("until"):].strip().strip('"') if block.arg.startswith("until") else None
        print(f"  background {block.where} ({block.lang})", flush=True)
        log = tempfile.NamedTemporaryFile("w+", prefix="doc-snippet-", suffix=".log", delete=False)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.background.append((block, proc, Path(log.name)))
        if until is None:
            return
        deadline = time.monotonic() + READY_TIMEOUT
        while until not in Path(log.name).read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{block.where}: never printed {until!r}:\n"
                                 f"{Path(log.name).read_text()}")
            time.sleep(0.2)


def main() -> None:
    runner = Runner()
    try:
        for readme in sys.argv[1:]:
            print(f"{readme}", flush=True)
            for block in blocks(readme):
                runner.run(block)
            runner.stop_all()
    finally:
        for _, proc, _ in runner.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        if runner.hub:
            runner.hub.stop()
    print("every README example ran", flush=True)


if __name__ == "__main__":
    main()
