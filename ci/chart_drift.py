#!/usr/bin/env python3
"""Checks that the rendered chart and the built binary agree (no drift).

    chart_drift.py BINARY RENDERED_DIR

RENDERED_DIR holds the manifests ci/chart_checks.py rendered, one directory per values
case. For every Deployment container that runs the binary:

- its first argument is a subcommand of the binary (`serve`, `sandbox`);
- every environment variable name it sets is one the binary reads: one of the
  `[env: NAME]` markers of `<subcommand> --help`, or an allow-listed standard name
  (RUST_LOG, OTEL_*) whose text the binary contains;
- every variable `serve --help` lists has a chart value (the chart exposes every setting);
- the `http` containerPort equals the binary's default PORT;
- started with the case's own environment (database, host, port and URLs pointed at
  this machine), the binary answers 200 on each probe path and, when the case has a
  ServiceMonitor, on its metrics path with Prometheus text; it stops on SIGTERM within
  terminationGracePeriodSeconds.

Prints one line per check, each failure with the exact names or paths, and exits 1 if
any failed. The processes it starts are killed on exit; their pids are also written to
$DRIFT_PIDFILE (if set) so a calling shell can kill them from a trap.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from report import Report

# Standard names the binary reads through libraries rather than clap, so they are not in
# --help: the tracing filter and OpenTelemetry's SDK variables.
ALLOWED_STANDARD = re.compile(r"^(RUST_LOG|OTEL_[A-Z0-9_]+)$")
# Variables of `serve --help` the chart deliberately has no value for.
NOT_IN_CHART: set[str] = set()
ENV_MARKER = re.compile(r"\[env: ([A-Za-z_][A-Za-z0-9_]*)(?:=[^\]]*)?\]")
METRIC_LINE = re.compile(
    r"^[A-Za-z_:][A-Za-z0-9_:]*(\{.*\})?\s+[-+]?([0-9.]+([eE][-+]?[0-9]+)?|NaN|[-+]?Inf)(\s+[-0-9]+)?$"
)
START_TIMEOUT_S = 30.0

children: list[subprocess.Popen[bytes]] = []


def kill_children() -> None:
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


def on_signal(signum: int, _frame: Any) -> None:
    kill_children()
    sys.exit(128 + signum)


class DriftReport(Report):
    """The pass/fail lines, plus the names and paths that drifted, for the summary."""

    def __init__(self) -> None:
        super().__init__()
        self.missing_names: set[str] = set()  # set by the chart, not read by the binary
        self.unset_names: set[str] = set()  # read by the binary, no chart value
        self.bad_paths: dict[str, set[str]] = {}  # path -> what it answered


class Binary:
    """What the built binary says about itself."""

    def __init__(self, path: str) -> None:
        self.path = path
        top = self.help([])
        self.subcommands = set(
            re.findall(r"^  ([a-z][a-z0-9-]*)\s", top.split("Commands:", 1)[1].split("Options:", 1)[0], re.M)
        ) if "Commands:" in top else set()
        self.bytes = Path(path).read_bytes()
        self._help: dict[str, str] = {}

    def help(self, args: list[str]) -> str:
        result = subprocess.run(
            [self.path, *args, "--help"], capture_output=True, text=True, check=False, timeout=30
        )
        if result.returncode != 0:
            raise SystemExit(f"{self.path} {' '.join(args)} --help failed: {result.stderr}")
        return result.stdout

    def sub_help(self, sub: str) -> str:
        if sub not in self._help:
            self._help[sub] = self.help([sub])
        return self._help[sub]

    def env_names(self, sub: str) -> set[str]:
        return set(ENV_MARKER.findall(self.sub_help(sub)))

    def default_port(self) -> int | None:
        match = re.search(r"--port <PORT>\s+.*?\[default: (\d+)\]", self.sub_help("serve"), re.S)
        return int(match.group(1)) if match else None

    def mentions(self, name: str) -> bool:
        return name.encode() in self.bytes


def free_port(count: int = 1) -> int:
    """A base port with `count` consecutive free ports on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


def get(url: str, timeout: float = 3.0) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - loopback only
            return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode(errors="replace")


def wait_until_up(process: subprocess.Popen[bytes], url: str) -> str | None:
    """None once `url` answers at all; else why not."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with {process.returncode} before answering"
        try:
            get(url, timeout=1.0)
            return None
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)
    return f"did not answer {url} within {START_TIMEOUT_S:.0f}s"


def start(binary: Binary, args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    process = subprocess.Popen(  # noqa: S603 - our own binary
        [binary.path, *args],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=log.parent,
        start_new_session=True,
    )
    children.append(process)
    if pidfile := os.environ.get("DRIFT_PIDFILE"):
        with open(pidfile, "a") as f:
            f.write(f"{process.pid}\n")
    return process


def stop(process: subprocess.Popen[bytes], grace: float) -> tuple[int | None, float]:
    began = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None, time.monotonic() - began
    return code, time.monotonic() - began


def tail(path: Path, lines: int = 8) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n        ".join(text[-lines:])


def deployments(rendered: Path) -> dict[str, dict[str, Any]]:
    """case -> {'deployments': [...], 'monitors': [...]}"""
    found: dict[str, dict[str, Any]] = {}
    for case_dir in sorted(p for p in rendered.iterdir() if p.is_dir()):
        docs = [d for f in sorted(case_dir.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
        found[case_dir.name] = {
            "deployments": [d for d in docs if d["kind"] == "Deployment"],
            "monitors": [d for d in docs if d["kind"] == "ServiceMonitor"],
        }
    return found


def check_names(report: DriftReport, binary: Binary, per_case: dict[str, dict[str, Any]]) -> None:
    print("environment variable names")
    set_by_chart: dict[str, dict[str, set[str]]] = {}  # subcommand -> name -> cases
    for case, found in per_case.items():
        for dep in found["deployments"]:
            for c in dep["spec"]["template"]["spec"]["containers"]:
                sub = (c.get("args") or ["serve"])[0]
                ok = sub in binary.subcommands
                report.check(
                    f"{case}: {dep['metadata']['name']}/{c['name']} runs `{sub}`",
                    ok,
                    "" if ok else f"the binary's subcommands are {sorted(binary.subcommands)}",
                )
                if not ok:
                    continue
                for e in c.get("env", []):
                    set_by_chart.setdefault(sub, {}).setdefault(e["name"], set()).add(case)

    for sub, names in sorted(set_by_chart.items()):
        declared = binary.env_names(sub)
        unknown: list[str] = []
        allowed: list[str] = []
        for name, in_cases in sorted(names.items()):
            if name in declared:
                continue
            if ALLOWED_STANDARD.match(name) and binary.mentions(name):
                allowed.append(name)
                continue
            why = "allow-listed standard name, but the binary never mentions it" if ALLOWED_STANDARD.match(name) else f"not in `{sub} --help`"
            unknown.append(f"{name} ({why}; set in: {', '.join(sorted(in_cases))})")
            report.missing_names.add(name)
        report.check(
            f"every variable the chart sets for `{sub}` is read by the binary",
            not unknown,
            ("missing from the binary: " + "; ".join(unknown))
            if unknown
            else f"{len(names)} names" + (f", standard: {', '.join(allowed)}" if allowed else ""),
        )

    serve_names = binary.env_names("serve")
    unset = sorted(serve_names - set(set_by_chart.get("serve", {})) - NOT_IN_CHART)
    report.unset_names.update(unset)
    report.check(
        "every variable of `serve --help` has a chart value",
        not unset,
        f"no chart value for: {', '.join(unset)}" if unset else f"{len(serve_names)} names",
    )


def check_port(report: DriftReport, binary: Binary, per_case: dict[str, dict[str, Any]]) -> None:
    print("container port")
    default = binary.default_port()
    for case, found in per_case.items():
        for dep in found["deployments"]:
            for c in dep["spec"]["template"]["spec"]["containers"]:
                if (c.get("args") or ["serve"])[0] != "serve":
                    continue
                ports = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == "http"]
                report.check(
                    f"{case}: http containerPort {ports} is the binary's default PORT {default}",
                    ports == [default],
                )


def container_env(c: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR", "LANG")}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
    env.update(overrides)
    return env


def probe_paths(c: dict[str, Any]) -> list[tuple[str, str, Any]]:
    found = []
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        http = c.get(kind, {}).get("httpGet")
        if http:
            found.append((kind, http["path"], http["port"]))
    return found


def port_number(c: dict[str, Any], port: Any) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in c["ports"] if p.get("name") == port)


def check_serve(report: DriftReport, binary: Binary, case: str, dep: dict[str, Any], c: dict[str, Any], monitors: list[dict[str, Any]], work: Path) -> None:
    run_dir = work / f"{case}-{c['name']}"
    run_dir.mkdir()
    port = free_port()
    closed = free_port()  # nothing listens there: downstream calls, if any, fail fast
    overrides = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": f"sqlite://{run_dir}/data/orders.db",
        "INVENTORY_URL": f"http://127.0.0.1:{closed}",
        "PAYMENT_URL": f"http://127.0.0.1:{closed}",
        "SHIPPING_URL": f"http://127.0.0.1:{closed}",
    }
    if "OTEL_EXPORTER_OTLP_ENDPOINT" in {e["name"] for e in c.get("env", [])}:
        overrides["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{closed}"
    log = run_dir / "serve.log"
    process = start(binary, ["serve"], container_env(c, overrides), log)
    base = f"http://127.0.0.1:{port}"
    why = wait_until_up(process, base + "/health")
    if not report.check(f"{case}: `serve` starts with the chart's environment", why is None, f"{why}\n        {tail(log)}" if why else ""):
        kill_children()
        return
    container_port = port_number(c, "http")
    for kind, path, probe_port in probe_paths(c):
        if port_number(c, probe_port) != container_port:
            report.check(f"{case}: {kind} port", False, f"{probe_port} is not the http port")
            continue
        status, _, body = get(base + path)
        if status != 200:
            report.bad_paths.setdefault(path, set()).add(str(status))
        report.check(f"{case}: {kind} GET {path} -> {status}", status == 200, "" if status == 200 else f"expected 200; body: {body[:200]}")
    for monitor in monitors:
        for endpoint in monitor["spec"].get("endpoints", []):
            path = endpoint.get("path", "/metrics")
            status, ctype, body = get(base + path)
            lines = [ln for ln in body.splitlines() if ln.strip() and not ln.startswith("#")]
            bad = [ln for ln in lines if not METRIC_LINE.match(ln)]
            ok = status == 200 and "text/plain" in ctype and bool(lines) and not bad
            detail = (
                f"expected 200 with Prometheus text; got {status} {ctype!r}: {body[:120]!r}"
                if status != 200 or "text/plain" not in ctype or not lines
                else f"not Prometheus text: {bad[:3]}"
                if bad
                else f"{len(lines)} samples"
            )
            if not ok:
                report.bad_paths.setdefault(path, set()).add(str(status) if status != 200 else "not Prometheus text")
            report.check(f"{case}: ServiceMonitor GET {path} -> {status}", ok, detail)
    grace = dep["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    code, took = stop(process, float(grace))
    report.check(
        f"{case}: SIGTERM stops `serve` within terminationGracePeriodSeconds ({grace}s)",
        code == 0,
        f"exit {code} after {took:.1f}s" if code == 0 else f"exit {code} after {took:.1f}s\n        {tail(log)}",
    )


def check_sandbox(report: DriftReport, binary: Binary, case: str, c: dict[str, Any], work: Path) -> None:
    args = list(c.get("args") or [])
    try:
        base_port = int(args[args.index("--port") + 1])
    except (ValueError, IndexError):
        report.check(f"{case}: sandbox args name --port", False, f"args {args}")
        return
    run_dir = work / f"{case}-{c['name']}"
    run_dir.mkdir()
    local_base = free_port(4)
    args[args.index("--port") + 1] = str(local_base)
    log = run_dir / "sandbox.log"
    process = start(binary, args, container_env(c, {"HOST": "127.0.0.1"}), log)
    shift = local_base - base_port
    first = f"http://127.0.0.1:{local_base + 1}/health"
    why = wait_until_up(process, first)
    if not report.check(f"{case}: `{' '.join(c.get('args', []))}` starts", why is None, f"{why}\n        {tail(log)}" if why else ""):
        kill_children()
        return
    for p in c.get("ports", []):
        status = None
        try:
            status, _, _ = get(f"http://127.0.0.1:{p['containerPort'] + shift}/health")
        except OSError as error:
            status = str(error)
        report.check(f"{case}: sandbox port {p['name']} {p['containerPort']} answers /health", status == 200, f"got {status}")
    for kind, path, probe_port in probe_paths(c):
        status, _, _ = get(f"http://127.0.0.1:{port_number(c, probe_port) + shift}{path}")
        report.check(f"{case}: sandbox {kind} GET {path} on {probe_port} -> {status}", status == 200)
    code, took = stop(process, 30.0)
    report.check(f"{case}: SIGTERM stops the sandbox", code == 0, f"exit {code} after {took:.1f}s")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    binary_path, rendered = sys.argv[1], Path(sys.argv[2])
    if not os.access(binary_path, os.X_OK):
        print(f"not an executable: {binary_path}", file=sys.stderr)
        return 2
    atexit.register(kill_children)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    report = DriftReport()
    binary = Binary(binary_path)
    per_case = deployments(rendered)
    check_names(report, binary, per_case)
    check_port(report, binary, per_case)
    print("the binary, started with each case's environment")
    with tempfile.TemporaryDirectory(prefix="order-service-drift-") as tmp:
        work = Path(tmp)
        for case, found in per_case.items():
            for dep in found["deployments"]:
                for c in dep["spec"]["template"]["spec"]["containers"]:
                    sub = (c.get("args") or ["serve"])[0]
                    if sub == "serve":
                        check_serve(report, binary, case, dep, c, found["monitors"], work)
                    elif sub == "sandbox":
                        check_sandbox(report, binary, case, c, work)
        kill_children()

    print(f"drift checks: {report.passed} ok, {len(report.failed)} failed")
    if report.missing_names:
        print(f"  set by the chart, not read by the binary: {', '.join(sorted(report.missing_names))}")
    if report.unset_names:
        print(f"  read by the binary, no chart value: {', '.join(sorted(report.unset_names))}")
    for path, answers in sorted(report.bad_paths.items()):
        print(f"  {path} answered {', '.join(sorted(answers))} where the chart expects 200")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
