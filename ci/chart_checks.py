#!/usr/bin/env python3
"""Lints, renders and validates the Helm chart, without a cluster or the helm binary.

Uses Helm's own Go SDK (helm-python-sdk, import `helm_python`) and kubernetes-validate:

1. `helm lint --strict` with the default values and with each `helm_chart/ci/*-values.yaml`:
   no error and no warning.
2. Renders those same cases (release `order-service`, as an install) and writes every
   manifest to OUT/<case>/<template>.yaml for kubernetes-validate and the drift check.
3. Values that must be refused: the SQLite + several replicas cases (the message must say
   PostgreSQL is required) and each `ci/chart-must-fail/*.yaml` (its `# expect:` line).
4. Policy checks on the rendered objects: the old chart's keys and defaults, recommended
   labels, the security context, probes, resources, grace period, HPA ownership.
5. `kubernetes-validate --strict` on every manifest, for the oldest and newest Kubernetes
   the chart supports; a WARN is a failure, except the missing schema of the
   ServiceMonitor CRD.

Prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import glob
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import yaml

from report import Report

RELEASE = "order-service"
NAMESPACE = "order-service-ci"
# Oldest (Chart.yaml kubeVersion) and newest Kubernetes the manifests are validated for.
KUBE_VERSIONS = ("1.30.0", "1.37.0")
# kubernetes-validate ships no schema for CRDs; this one WARN is expected.
ALLOWED_WARN = re.compile(
    r"Couldn't find schema for kind ServiceMonitor with api version monitoring\.coreos\.com/v1\b"
)
POSTGRES_REQUIRED = "PostgreSQL is required"

# Refused values that the issue demands, kept in code so a deleted file cannot drop them.
MUST_FAIL_BUILTIN: dict[str, tuple[dict[str, Any], str]] = {
    "sqlite-with-3-replicas": (
        {"replicaCount": 3, "hpa": {"enabled": False}, "database": {"url": "sqlite://./data/orders.db"}},
        POSTGRES_REQUIRED,
    ),
    "sqlite-with-hpa": (
        {"database": {"url": "sqlite:///app/data/orders.db"}},  # hpa.enabled, maxReplicas 10
        POSTGRES_REQUIRED,
    ),
}

# The old chart's values keys and defaults, which the new chart must keep.
OLD_CHART_DEFAULTS = {
    "replicaCount": 1,
    "image.tag": "latest",
    "image.pullPolicy": "Always",
    "service.type": "NodePort",
    "service.port": 8080,
    "service.nodePort": 30001,
    "containerPort": 8004,
    "hpa.enabled": True,
    "hpa.minReplicas": 1,
    "hpa.maxReplicas": 10,
    "hpa.targetCPUUtilizationPercentage": 70,
}
OLD_CHART_KEYS = ["image.repository", *OLD_CHART_DEFAULTS]

RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def dig(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def cases(chart_dir: Path) -> dict[str, dict[str, Any]]:
    """The value sets that must render: defaults plus the chart's ci/*-values.yaml."""
    found: dict[str, dict[str, Any]] = {"default": {}}
    for path in sorted(glob.glob(str(chart_dir / "ci" / "*-values.yaml"))):
        name = Path(path).name.removesuffix("-values.yaml")
        found[name] = helm.values_from_yaml(Path(path).read_text())
    return found


def must_fail_cases(repo: Path) -> dict[str, tuple[dict[str, Any], str]]:
    found = dict(MUST_FAIL_BUILTIN)
    for path in sorted(glob.glob(str(repo / "ci" / "chart-must-fail" / "*.yaml"))):
        text = Path(path).read_text()
        match = re.search(r"^# expect: (.+)$", text, re.MULTILINE)
        if not match:
            raise SystemExit(f"{path}: needs a '# expect: <text of the error>' line")
        found[Path(path).stem] = (helm.values_from_yaml(text), match.group(1).strip())
    return found


def lint(report: Report, chart_dir: Path, all_cases: dict[str, dict[str, Any]]) -> None:
    print("helm lint --strict")
    for name, values in all_cases.items():
        result = helm.lint(str(chart_dir), values or None, strict=True, namespace=NAMESPACE)
        problems = [m for m in result.get("messages", []) if m.get("severity", 0) >= 2]
        problems_text = "; ".join(f"{m['path']}: {m['error']}" for m in problems)
        errors = result.get("errors") or []
        infos = [m["error"] for m in result.get("messages", []) if m.get("severity", 0) < 2]
        report.check(
            f"lint {name}",
            not problems and not errors,
            problems_text + "; ".join(errors) if problems or errors else "info: " + "; ".join(infos) if infos else "",
        )


def render_all(
    report: Report, chart: helm.Chart, all_cases: dict[str, dict[str, Any]], out: Path
) -> dict[str, dict[str, str]]:
    print("render")
    rendered: dict[str, dict[str, str]] = {}
    for name, values in all_cases.items():
        try:
            manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        except Exception as error:  # noqa: BLE001 - reported with its text
            report.check(f"render {name}", False, str(error))
            continue
        case_dir = out / name
        case_dir.mkdir(parents=True, exist_ok=True)
        kept: dict[str, str] = {}
        for template, text in manifests.items():
            if template.endswith("NOTES.txt"):
                kept[template] = text
                continue
            if not text.strip() or not any(d for d in yaml.safe_load_all(text)):
                continue
            kept[template] = text
            (case_dir / Path(template).name).write_text(text)
        rendered[name] = kept
        kinds = sorted(
            doc["kind"]
            for template, text in kept.items()
            if not template.endswith("NOTES.txt")
            for doc in yaml.safe_load_all(text)
            if doc
        )
        report.check(f"render {name}", True, ", ".join(kinds))
    return rendered


def refuse(report: Report, chart: helm.Chart, repo: Path) -> None:
    print("values that must be refused")
    for name, (values, expected) in must_fail_cases(repo).items():
        try:
            chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        except Exception as error:  # noqa: BLE001 - any refusal counts, its text is checked
            message = " ".join(str(error).split())
            report.check(
                f"refused {name}",
                expected in message,
                f"says: {message[:200]}" if expected in message else f"expected '{expected}' in: {message}",
            )
            continue
        report.check(f"refused {name}", False, "rendered without error")


def objects(manifests: dict[str, str]) -> list[dict[str, Any]]:
    return [
        doc
        for template, text in manifests.items()
        if not template.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def policy(report: Report, chart: helm.Chart, rendered: dict[str, dict[str, str]]) -> None:
    print("chart policy")
    defaults = chart.values
    kept = []
    for key in OLD_CHART_KEYS:
        try:
            value = dig(defaults, key)
        except KeyError:
            report.check(f"old key {key}", False, "missing from values.yaml")
            continue
        if key in OLD_CHART_DEFAULTS and value != OLD_CHART_DEFAULTS[key]:
            report.check(f"old key {key}", False, f"default {value!r}, the old chart's is {OLD_CHART_DEFAULTS[key]!r}")
            continue
        kept.append(key)
    report.check("old chart's values keys and defaults kept", len(kept) == len(OLD_CHART_KEYS), f"{len(kept)} keys")

    for case, manifests in rendered.items():
        objs = objects(manifests)
        problems: list[str] = []
        for obj in objs:
            labels = obj.get("metadata", {}).get("labels", {})
            missing = [label for label in RECOMMENDED_LABELS if label not in labels]
            if missing:
                problems.append(f"{obj['kind']}/{obj['metadata']['name']} lacks labels {missing}")
        deployments = [o for o in objs if o["kind"] == "Deployment"]
        hpas = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
        for dep in deployments:
            problems += pod_problems(dep, hpas)
        if not any(t.endswith("NOTES.txt") and "curl" in text for t, text in manifests.items()):
            problems.append("NOTES.txt does not say how to reach the service")
        report.check(f"policy {case}", not problems, "; ".join(problems) if problems else f"{len(objs)} objects")


def pod_problems(dep: dict[str, Any], hpas: list[dict[str, Any]]) -> list[str]:
    name = f"Deployment/{dep['metadata']['name']}"
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    problems: list[str] = []
    owned = any(h["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"] for h in hpas)
    if owned and "replicas" in spec:
        problems.append(f"{name}: has replicas although an HPA scales it")
    pod_sc = pod.get("securityContext", {})
    if pod_sc.get("runAsNonRoot") is not True:
        problems.append(f"{name}: pod runAsNonRoot is not true")
    if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{name}: pod seccompProfile is not RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: mounts a service account token")
    writable = {v["name"] for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        where = f"{name}/{c['name']}"
        sc = c.get("securityContext", {})
        wanted: dict[str, Callable[[Any], bool]] = {
            "runAsNonRoot": lambda v: v is True,
            "readOnlyRootFilesystem": lambda v: v is True,
            "allowPrivilegeEscalation": lambda v: v is False,
            "privileged": lambda v: v is not True,
            "capabilities": lambda v: isinstance(v, dict) and v.get("drop") == ["ALL"] and not v.get("add"),
        }
        for key, ok in wanted.items():
            if not ok(sc.get(key)):
                problems.append(f"{where}: securityContext.{key} is {sc.get(key)!r}")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in c:
                problems.append(f"{where}: no {probe}")
        if not c.get("resources", {}).get("requests"):
            problems.append(f"{where}: no resource requests")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        if not mounts <= {"/tmp", "/app/data"}:
            problems.append(f"{where}: writable mounts beyond /tmp and /app/data: {sorted(mounts)}")
        if {m["name"] for m in c.get("volumeMounts", [])} - writable:
            problems.append(f"{where}: mounts an undeclared volume")
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if "SHUTDOWN_GRACE_SECS" in env and not grace > int(env["SHUTDOWN_GRACE_SECS"]):
            problems.append(f"{where}: terminationGracePeriodSeconds {grace} <= SHUTDOWN_GRACE_SECS")
        if c["name"] == "order-service":
            ports = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == "http"]
            if env.get("PORT") != str(ports[0] if ports else None):
                problems.append(f"{where}: PORT {env.get('PORT')} differs from the http containerPort {ports}")
    return problems


def validate(report: Report, venv_bin: Path, out: Path) -> None:
    files = sorted(str(p) for p in out.rglob("*.yaml"))
    for version in KUBE_VERSIONS:
        print(f"kubernetes-validate --strict -k {version} ({len(files)} files)")
        result = subprocess.run(
            [str(venv_bin / "kubernetes-validate"), "--strict", "-k", version, *files],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = (result.stdout + result.stderr).splitlines()
        bad = [
            line
            for line in lines
            if line.startswith(("ERROR", "CRITICAL")) or (line.startswith("WARN") and not ALLOWED_WARN.search(line))
        ]
        passed = [line for line in lines if line.startswith("INFO")]
        allowed = [line for line in lines if line.startswith("WARN") and ALLOWED_WARN.search(line)]
        ok = not bad and (result.returncode == 0 or (allowed and not bad))
        detail = (
            "\n        ".join(bad or lines[-5:])
            if not ok
            else f"{len(passed)} resources passed"
            + (f", {len(allowed)} ServiceMonitor without a schema (CRD)" if allowed else "")
        )
        report.check(f"kubernetes {version}", ok, detail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chart", default="helm_chart")
    parser.add_argument("--out", required=True, help="directory for the rendered manifests")
    args = parser.parse_args()
    repo = Path(__file__).resolve().parent.parent
    chart_dir = (repo / args.chart).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    venv_bin = Path(sys.executable).parent

    report = Report()
    all_cases = cases(chart_dir)
    lint(report, chart_dir, all_cases)
    with helm.Chart.load(str(chart_dir)) as chart:
        rendered = render_all(report, chart, all_cases, out)
        refuse(report, chart, repo)
        policy(report, chart, rendered)
    validate(report, venv_bin, out)

    print(f"chart checks: {report.passed} ok, {len(report.failed)} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
