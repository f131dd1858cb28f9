#!/usr/bin/env bash
# Checks the deployment files without Docker or a cluster:
#   - the Helm chart: lint --strict, renders (defaults, helm_chart/ci/*-values.yaml),
#     refusals (SQLite with several replicas, ci/chart-must-fail/*), policy, and
#     kubernetes-validate --strict (ci/chart_checks.py);
#   - the Dockerfile: hadolint --failure-threshold warning;
#   - deploy.sh and ci/*.sh: shellcheck;
#   - .github/workflows/*.yml and docker-compose.yml: their JSON schemas;
#   - drift between the chart and the built binary (ci/chart_drift.py).
#
# Usage: ci/deploy_checks.sh PATH/TO/order-service
#
# The tools come from PyPI, pinned in ci/deploy-requirements.txt, into a venv kept under
# ${XDG_CACHE_HOME:-$HOME/.cache}/order-service-ci-venv (rebuilt when that file changes).
# Every check runs even when an earlier one fails; the exit status is 1 if any failed.
set -euo pipefail

if [[ $# -ne 1 || "$1" == -h || "$1" == --help ]]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
binary=$1
if [[ ! -x "$binary" ]]; then
  echo "deploy_checks: $binary is not an executable (build it: cargo build --bin order-service)" >&2
  exit 2
fi
binary=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")

cd "$(dirname "$0")/.."
started=$SECONDS

# --- tools -------------------------------------------------------------------------
venv="${XDG_CACHE_HOME:-$HOME/.cache}/order-service-ci-venv"
requirements=ci/deploy-requirements.txt
wanted=$(python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest(), sys.version.split()[0])' "$requirements")
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.installed" 2>/dev/null)" != "$wanted" ]]; then
  echo "==> installing the tools into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input --no-deps -r "$requirements"
  "$venv/bin/pip" check
  echo "$wanted" > "$venv/.installed"
fi
py="$venv/bin/python"

# --- scratch space; every process a check starts is killed on the way out ------------
work=$(mktemp -d "${TMPDIR:-/tmp}/order-service-deploy-checks.XXXXXX")
export DRIFT_PIDFILE="$work/pids"
: > "$DRIFT_PIDFILE"
cleanup() {
  local pid
  while read -r pid; do
    # Only a process that is still ours: the pid of one that ended may be reused.
    if [[ -n "$pid" ]] && grep -qa order-service "/proc/$pid/cmdline" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  done < "$DRIFT_PIDFILE"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=()
failed=()
check() {
  local name=$1
  shift
  printf '\n==> %s\n' "$name"
  if "$@"; then
    passed+=("$name")
  else
    failed+=("$name")
    printf '  FAILED: %s\n' "$name"
  fi
}

lint_dockerfile() {
  "$venv/bin/hadolint" --failure-threshold warning Dockerfile && echo "  ok    Dockerfile"
}

lint_shell() {
  "$venv/bin/shellcheck" --severity=style deploy.sh ci/*.sh && echo "  ok    deploy.sh ci/*.sh"
}

validate_workflows() {
  "$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml
}

validate_compose() {
  "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
}

check "helm chart (lint, render, refuse, policy, kubernetes-validate)" \
  "$py" ci/chart_checks.py --chart helm_chart --out "$work/rendered"
check "Dockerfile (hadolint)" lint_dockerfile
check "shell scripts (shellcheck)" lint_shell
check "GitHub workflows (schema)" validate_workflows
check "docker-compose.yml (compose spec)" validate_compose
if [[ -d "$work/rendered/default" ]]; then
  check "drift between the chart and $binary" "$py" ci/chart_drift.py "$binary" "$work/rendered"
else
  failed+=("drift (nothing rendered)")
fi

printf '\n==> deploy checks took %ds\n' $((SECONDS - started))
for name in "${failed[@]}"; do printf '  failed: %s\n' "$name"; done
echo "deploy-checks: ${#passed[@]} passed, ${#failed[@]} failed"
[[ ${#failed[@]} -eq 0 ]]
