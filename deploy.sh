#!/usr/bin/env bash
# Builds the order-service image, pushes it to Docker Hub and deploys it with Helm:
#
#   DOCKER_HUB_USERNAME=me ./deploy.sh              # build, push, helm upgrade --install
#   DOCKER_HUB_USERNAME=me ./deploy.sh --dry-run    # print the commands, render the chart
#
# Options:
#   --dry-run          change nothing: print each command, lint and render the chart
#   --skip-build       deploy an image already pushed (with --tag)
#   --tag TAG          image tag (default: the git commit, -dirty-<time> if uncommitted)
#   --namespace NS     Kubernetes namespace (default: $NAMESPACE or order-service)
#   --release NAME     Helm release (default: $RELEASE or order-service)
#   -f, --values FILE  values file, repeatable (default: helm_chart/values.yaml)
#   --set KEY=VALUE    extra Helm value, repeatable
#   -h, --help         this text
#
# Environment:
#   DOCKER_HUB_USERNAME  required: the image is $DOCKER_HUB_USERNAME/$IMAGE_NAME
#   DOCKER_HUB_PASSWORD  optional: logs in to Docker Hub with it (else the current login)
#   IMAGE_NAME           default order-service
#   PLATFORMS            default linux/amd64,linux/arm64 (docker buildx; QEMU for the
#                        platform that is not the host's)
#   DATABASE_SECRET      name of an existing Secret holding DATABASE_URL (PostgreSQL)
#   DATABASE_URL         or the URL itself: passed in a temporary values file, stored by
#                        the chart in a Secret
#   KUBE_CONTEXT         kubectl context (default: the current one)
#   HELM_TIMEOUT         default 10m
#
# The image is pushed as :<tag> and :latest, and the release is deployed with the
# immutable :<tag> so every deploy rolls the pods (a re-pushed :latest would not).
set -euo pipefail

cd "$(dirname "$0")"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "deploy.sh: $*" >&2; exit 1; }

dry_run=false
skip_build=false
tag=""
namespace="${NAMESPACE:-order-service}"
release="${RELEASE:-order-service}"
values_files=()
set_args=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=true ;;
    --skip-build) skip_build=true ;;
    --tag) [[ $# -ge 2 ]] || die "--tag needs a value"; tag=$2; shift ;;
    --namespace|-n) [[ $# -ge 2 ]] || die "$1 needs a value"; namespace=$2; shift ;;
    --release) [[ $# -ge 2 ]] || die "--release needs a value"; release=$2; shift ;;
    -f|--values) [[ $# -ge 2 ]] || die "$1 needs a value"; values_files+=("$2"); shift ;;
    --set) [[ $# -ge 2 ]] || die "--set needs a value"; set_args+=(--set "$2"); shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done
[[ ${#values_files[@]} -gt 0 ]] || values_files=(helm_chart/values.yaml)

# --- variables and tools ---------------------------------------------------------------
[[ -n "${DOCKER_HUB_USERNAME:-}" ]] || die "set DOCKER_HUB_USERNAME (the Docker Hub account the image goes to)"
[[ "$DOCKER_HUB_USERNAME" =~ ^[a-z0-9]+([._-][a-z0-9]+)*$ ]] || die "DOCKER_HUB_USERNAME '$DOCKER_HUB_USERNAME' is not a valid Docker Hub namespace"
image="docker.io/${DOCKER_HUB_USERNAME}/${IMAGE_NAME:-order-service}"
platforms="${PLATFORMS:-linux/amd64,linux/arm64}"
for file in "${values_files[@]}"; do
  [[ -f "$file" ]] || die "no values file $file"
done
if [[ -n "${DATABASE_SECRET:-}" && -n "${DATABASE_URL:-}" ]]; then
  die "set DATABASE_SECRET or DATABASE_URL, not both"
fi

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"
}
need helm "https://helm.sh/docs/intro/install/"
if ! $skip_build; then
  need docker "https://docs.docker.com/engine/install/"
  docker buildx version >/dev/null 2>&1 || die "docker buildx is required (the Docker buildx plugin)"
fi

if [[ -z "$tag" ]]; then
  $skip_build && die "--skip-build needs --tag (the image tag already pushed)"
  need git "for the default tag, the commit"
  tag=$(git rev-parse --short=12 HEAD)
  if [[ -n "$(git status --porcelain --untracked-files=no)" ]]; then
    tag="${tag}-dirty-$(date -u +%Y%m%d%H%M%S)"
  fi
fi
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "'$tag' is not a valid image tag"

helm_major=$(helm version --template '{{.Version}}' 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/')
case "$helm_major" in
  3) rollback=(--atomic) ;;
  4) rollback=(--rollback-on-failure) ;;
  *) die "Helm 3 or 4 is required (found: $(helm version --short 2>&1 || true))" ;;
esac

kube_args=()
if [[ -n "${KUBE_CONTEXT:-}" ]]; then
  kube_args=(--kube-context "$KUBE_CONTEXT")
fi

# --- values: image, database ------------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
helm_values=()
for file in "${values_files[@]}"; do helm_values+=(-f "$file"); done
helm_values+=(--set-string "image.repository=$image" --set-string "image.tag=$tag")
if [[ -n "${DATABASE_SECRET:-}" ]]; then
  helm_values+=(--set-string "database.existingSecret=$DATABASE_SECRET")
elif [[ -n "${DATABASE_URL:-}" ]]; then
  # A file, not --set: the URL holds a password and must not show in `ps` or in logs.
  [[ "$DATABASE_URL" != *$'\n'* ]] || die "DATABASE_URL has a line break"
  escaped=${DATABASE_URL//\\/\\\\}
  escaped=${escaped//\"/\\\"}
  (umask 077 && printf 'database:\n  url: "%s"\n' "$escaped" > "$tmp/database.yaml")
  helm_values+=(-f "$tmp/database.yaml")
fi
helm_values+=(${set_args[@]+"${set_args[@]}"})

run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if ! $dry_run; then "$@"; fi
}

echo "==> image $image:$tag ($platforms), release $release in namespace $namespace"

# --- build and push -----------------------------------------------------------------------
if ! $skip_build; then
  if [[ -n "${DOCKER_HUB_PASSWORD:-}" ]]; then
    printf '+ docker login docker.io -u %q --password-stdin\n' "$DOCKER_HUB_USERNAME"
    if ! $dry_run; then
      printf '%s' "$DOCKER_HUB_PASSWORD" | docker login docker.io -u "$DOCKER_HUB_USERNAME" --password-stdin
    fi
  fi
  if ! $dry_run && [[ "$platforms" == *,* ]]; then
    # A multi-platform build needs a builder that has every platform (QEMU for the
    # foreign ones) and can push a manifest list: the docker-container driver.
    builder_platforms=$(docker buildx inspect --bootstrap 2>/dev/null | sed -n 's/^Platforms: *//p')
    for platform in ${platforms//,/ }; do
      if [[ ", $builder_platforms," != *", $platform,"* && ", $builder_platforms," != *", $platform*,"* ]]; then
        die "the current buildx builder cannot build $platform (it has: ${builder_platforms:-none}). Try:
  docker run --privileged --rm tonistiigi/binfmt --install all
  docker buildx create --name order-service --driver docker-container --use
or set PLATFORMS=linux/amd64"
      fi
    done
  fi
  run docker buildx build \
    --platform "$platforms" \
    --tag "$image:$tag" \
    --tag "$image:latest" \
    --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --label "org.opencontainers.image.version=$tag" \
    --provenance=mode=max \
    --push \
    .
fi

# --- deploy -------------------------------------------------------------------------------
if $dry_run; then
  # Offline: lint and render with the same values; nothing reaches the cluster.
  printf '+ helm lint --strict helm_chart'; printf ' %q' "${helm_values[@]}"; printf '\n'
  helm lint --strict helm_chart "${helm_values[@]}"
  printf '+ helm template %q helm_chart --namespace %q ... (rendered below)\n' "$release" "$namespace"
  helm template "$release" helm_chart --namespace "$namespace" "${helm_values[@]}" \
    | sed -E 's/^(  DATABASE_URL: ).*/\1"<redacted>"/'
  echo "+ helm upgrade --install $release helm_chart --namespace $namespace --create-namespace" \
    "${rollback[*]} --wait --timeout ${HELM_TIMEOUT:-10m} ${kube_args[*]:-}(values as above)"
  echo "==> dry run: nothing was built, pushed or deployed"
  exit 0
fi

run helm upgrade --install "$release" helm_chart \
  --namespace "$namespace" --create-namespace \
  ${kube_args[@]+"${kube_args[@]}"} \
  "${helm_values[@]}" \
  "${rollback[@]}" --wait --timeout "${HELM_TIMEOUT:-10m}"

echo "==> deployed $image:$tag as release $release in namespace $namespace"
