#!/usr/bin/env bash
# The prepared GPU check for a lent device machine (see bench/README.md, "GPU check on a lent device").
#
#   bench/gpu_check.sh prepare        # here, with network: wheels for the device's Python 3.12, chunked
#                                     #   under 55 MiB into _build/gpu_wheels/ (git-ignored)
#   bench/gpu_check.sh install        # on the device, last carry done: join, check SHA-256, pip install
#                                     #   --no-deps into _build/gpu_site/
#   bench/gpu_check.sh run [SECONDS]  # on the device: GPU tests, Warp sampler rows, 20 MAML-TRPO
#                                     #   meta-iterations of HalfCheetahDir (40 x 20 x 200, exact curvature);
#                                     #   everything into $OUT/gpu_check.txt (default budget 420 s)
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=_build/gpu_wheels
SITE=_build/gpu_site
PY=${PYTHON:-python3}
OUT=${OUT:-_build/gpu_check_out}

case "${1:-}" in
prepare)
    rm -rf "$WHEELS" _build/gpu_dl && mkdir -p "$WHEELS" _build/gpu_dl
    # the device image: Python 3.12, torch with CUDA; no MuJoCo, gymnasium or Warp, no network
    .venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform any -d _build/gpu_dl mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 \
        mujoco-warp==4.0.0 warp-lang==1.19.0 gymnasium==1.4.0 absl-py etils farama-notifications \
        cloudpickle typing-extensions
    for f in _build/gpu_dl/*.whl; do
        .venv/bin/python bench/wheel_chunks.py split "$f" "$WHEELS" --mib 55 > /dev/null
    done
    # carry plan: one run() call per line, each under 60 MiB (paths relative to the repository)
    .venv/bin/python - "$WHEELS" <<'PY'
import sys
from pathlib import Path
d = Path(sys.argv[1]); limit = 58 << 20; batch, size, calls = [], 0, []
for p in sorted(d.iterdir()):
    s = p.stat().st_size
    if batch and size + s > limit:
        calls.append(batch); batch, size = [], 0
    batch.append(str(p)); size += s
calls.append(batch)
(d / "CARRY_PLAN.txt").write_text("\n".join(" ".join(c) for c in calls) + "\n")
print(f"{len(calls)} carry calls (at most 8 paths each; see {d}/CARRY_PLAN.txt)")
PY
    ;;
install)
    mkdir -p _build/gpu_join "$SITE"
    for s in "$WHEELS"/*.sha256; do
        name=$(basename "$s" .sha256)
        "$PY" bench/wheel_chunks.py join "$WHEELS" "$name" _build/gpu_join > /dev/null
    done
    "$PY" -m pip install --quiet --no-deps --no-index --target "$SITE" _build/gpu_join/*.whl
    # the package itself from the working tree, on the same path
    PYTHONPATH="$SITE:$PWD" "$PY" -c "import mujoco_warp, warp, gymnasium, meta_rl_lessons.envs; print('installed')"
    ;;
run)
    budget=${2:-420}
    mkdir -p "$OUT"
    export PYTHONPATH="$SITE:$PWD" META_RL_BUDGET=smoke
    log="$OUT/gpu_check.txt"
    {
        echo "# gpu_check $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
        "$PY" -c "import torch, warp; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| warp', warp.__version__)"
        echo "## GPU tests"
        timeout $((budget / 5)) "$PY" -m pytest -q -p no:cacheprovider tests/test_envs_warp.py \
            tests/test_maml_curvature.py -k "gpu or cuda" 2>&1 | tail -5 || true
        echo "## sampler (Warp rows)"
        timeout $((budget / 4)) "$PY" bench/sampler.py --warp-only 2>&1 | grep -v "^Warp CUDA warning" || true
        echo "## MAML-TRPO 2D navigation on the GPU, exact curvature, the meta-step taken apart"
        timeout $((budget / 8)) "$PY" bench/maml_profile.py --task nav --iterations 2 --device cuda 2>&1 || true
        echo "## MAML-TRPO HalfCheetahDir, paper configuration (40 tasks x 20 episodes x 200 steps), 20 iterations"
        timeout $((budget / 3)) "$PY" - <<'PY' 2>&1 || true
import time
from meta_rl_lessons.maml.rl import MAMLTRPO, MAMLTRPOConfig
c = MAMLTRPOConfig(family="HalfCheetahDir", family_kwargs={"physics": "warp", "horizon": 200},
                   meta_batch_size=40, num_episodes=20, iterations=20, hidden_sizes=(64, 64), device="cuda",
                   seed=0)
t = MAMLTRPO(c)
for i in range(c.iterations):
    s = time.perf_counter()
    row = t.iteration()
    print(f"iteration {i + 1}: {time.perf_counter() - s:.2f} s, return_post {row['return_post']:.2f}", flush=True)
PY
    } 2>&1 | tee "$log"
    ;;
*)
    echo "usage: bench/gpu_check.sh prepare | install | run [SECONDS]" >&2
    exit 2
    ;;
esac
