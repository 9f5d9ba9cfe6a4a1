#!/usr/bin/env bash
# The GPU check of issues 10 and 11, on a lent GPU box from the repository root, in two parts
# that fit one call each (the device tool allows 10 minutes a call):
#
#   PART=a bash benchmarks/gpu_check.sh    # ~7 min: the default search of a 60k set with
#                                          # --jobs 8 (SHARING=1 first: how k workers share the
#                                          # GPU, 2 min more), digits, the CUDA-only tests
#   PART=b bash benchmarks/gpu_check.sh    # ~6 min: the 60k set's budget with --jobs 1 (no
#                                          # search: the first baseline alone)
#   PART=p bash benchmarks/gpu_check.sh    # ~6 min: where a short command's time goes (timelines
#                                          # of digits), the CUDA tests, a too-short 60k budget
#   PART=q bash benchmarks/gpu_check.sh    # ~5 min: digits' timeline; the 60k set at 120 s,
#                                          # --jobs 8 against --jobs 1
#   PART=r1 bash benchmarks/gpu_check.sh   # ~8 min: imports with and without bytecode, digits'
#                                          # timeline both ways, the 60k set at 120 s, seed 1,
#                                          # --jobs 8 against --jobs 1
#   PART=r2 bash benchmarks/gpu_check.sh   # ~4.5 min: the same 60k pair with seed 2
#   PART=s bash benchmarks/gpu_check.sh    # ~9.5 min: digits' timeline (--trials 100), then:
#                                          # does the search itself earn its time where a
#                                          # budget buys one? clutter:6000 at 90 s, seeds 0, 1:
#                                          # the command with --jobs 8 (it searches), the same
#                                          # with the search turned off (the first baseline and
#                                          # its seed twins, averaged), and that with --jobs 1
#                                          # (the first baseline alone: the person's recipe)
#   CPU_SMOKE=1 OUT=/tmp/gc PART=a bash benchmarks/gpu_check.sh   # here: tiny, CPU, no wheels
#
# Every step runs under its own `timeout` (capped by what is left of BUDGET seconds) and writes
# its figures to $RES/<step>.json|txt (packed into $OUT/results.tgz) as soon as it has them.
# The box has torch and lightning but not optuna & co.: the wheels carried in .whl/ go to
# /tmp/site. The package maps runners/, dashboards/ and search_spaces/ into automl_cnn
# (setuptools package-dir), so it is put together in /tmp/automl_pkg with links: no build step,
# no setuptools needed. MLflow is not installed there: every search runs with --no-mlflow.
set -u
OUT=${OUT:-/tmp/gpu_check_out}
SMOKE=${CPU_SMOKE:-0}
# A smoke run on a small, shared CPU is slow: its limits stretch by SCALE (default 5).
SCALE=${SCALE:-$([ "$SMOKE" = 1 ] && echo 5 || echo 1)}
BUDGET=${BUDGET:-$(( 560 * SCALE ))}
PART=${PART:-a}
PY=${PY:-python3}
REPO=$PWD
START=$(date +%s)
# Figures go to $RES; after every step they are packed into ONE file, $OUT/results.tgz, because
# the device tool brings back only a few files from $OUT (a run that wrote 13 lost most of them).
RES=${RES:-/tmp/gpu_check_res_$PART}
mkdir -p "$OUT" "$RES"
pack() { tar czf "$OUT/results.tgz" -C "$RES" . 2>/dev/null; }

log() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$RES/log.txt"; }

step() {  # step NAME SECONDS COMMAND...: stdout+stderr to $RES/NAME.txt
  local name=$1 limit=$(( $2 * SCALE )) left rc
  shift 2
  left=$(( BUDGET - ($(date +%s) - START) ))
  (( left < limit )) && limit=$left
  if (( limit < 10 )); then log "skip $name: budget spent"; return; fi
  log "start $name (limit ${limit}s)"
  timeout --signal=INT --kill-after=20 "$limit" "$@" > "$RES/$name.txt" 2>&1
  rc=$?
  log "end $name rc=$rc"
  pack
}

# -- environment ----------------------------------------------------------------------------
if [ "$SMOKE" != 1 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl 2>&1 | tail -3 | tee -a "$RES/log.txt"
fi
PKG=/tmp/automl_pkg
rm -rf "$PKG" && mkdir -p "$PKG/bin"
cp -r "$REPO/automl_cnn" "$PKG/automl_cnn"
for d in runners dashboards search_spaces; do ln -s "$REPO/$d" "$PKG/automl_cnn/$d"; done
printf '#!/bin/sh\nexec %s -m automl_cnn "$@"\n' "$PY" > "$PKG/bin/automl-cnn"
chmod +x "$PKG/bin/automl-cnn"
export PYTHONPATH=/tmp/site:$PKG
export PATH=$PKG/bin:$PATH
export PYTHONDONTWRITEBYTECODE=1
cd /tmp || exit 1   # run directories and scratch files stay out of the repository
B=$REPO/benchmarks

$PY - > "$RES/env.txt" 2>&1 <<'EOF'
import os, sys, torch, lightning, optuna
import automl_cnn
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "lightning", lightning.__version__, "optuna", optuna.__version__, "cores",
      len(os.sched_getaffinity(0)), "automl_cnn from", automl_cnn.__file__)
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        print(f"cuda:{i}", torch.cuda.get_device_name(i), f"free {free/2**30:.1f} of "
              f"{total/2**30:.1f} GiB", "bf16", torch.cuda.is_bf16_supported())
from automl_cnn.device import resolve_device
from automl_cnn.runners.parallel import auto_jobs, plan_workers
from automl_cnn.config import SearchConfig
device = resolve_device("auto")
plan = plan_workers(SearchConfig(), device)
print("device", device, "--jobs auto ->", auto_jobs(device), plan, "speedup", plan.speedup)
EOF
log "env: $(tail -n +1 "$RES/env.txt" | tr '\n' ' ' | cut -c1-400)"

if [ "$SMOKE" = 1 ]; then
  DIGITS=(--trials 4 --space tiny --device cpu); JOBS_MANY=2
  IDX=(--n 2000 --test 500); SET60=(--seconds 40 --space tiny --device cpu --as-user)
  SHARE=(--device cpu --workers 1 2 --seconds 1 --rounds 1)
else
  nvidia-smi > "$RES/nvidia_smi.txt" 2>&1
  nvidia-smi --query-gpu=name,memory.total,memory.used,utilization.gpu,driver_version \
      --format=csv >> "$RES/nvidia_smi.txt" 2>&1
  DIGITS=(--trials 100); JOBS_MANY=8
  IDX=(--n 60000 --test 10000); SET60=(--seconds 300 --as-user)
  SHARE=(--device cuda --workers 1 2 4 8 --seconds 5 --rounds 2)
fi

# -- a 60,000-image 28x28 grey set in IDX format (the clutter generator, 10 classes), here ----
[ "$PART" = p ] || [ "$PART" = q ] || [ "$PART" = r1 ] || [ "$PART" = r2 ] || [ "$PART" = s ] || \
  [ -s /tmp/idx60k/train-images-idx3-ubyte.gz ] || \
  step idx60k 40 $PY "$B/make_idx_set.py" --idx /tmp/idx60k "${IDX[@]}" --size 28 --classes 10

if [ "$PART" = a ]; then
  if [ "${SHARING:-0}" = 1 ]; then
    # -- 1. k workers sharing the device: images/s as a multiple of one (GPU_SHARING) --------
    step sharing 120 $PY "$B/bench_concurrency.py" --dataset mnist:/tmp/idx60k "${SHARE[@]}" \
        --json "$RES/sharing.json"
    # The searches below plan with the table just measured (what parallel.py then holds).
    TABLE=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['sharing_env'])" \
        "$RES/sharing.json" 2>/dev/null)
    [ -n "$TABLE" ] && export AUTOML_CNN_GPU_SHARING=$TABLE
  fi
  log "AUTOML_CNN_GPU_SHARING=${AUTOML_CNN_GPU_SHARING:-unset}"
  # -- 2. the default search of the 60k set, --timeout 300 (the whole command), --jobs 8: the
  #       search's workers, then the final fit's networks trained at once ------------------
  step set60k_jobs_many 330 $PY "$B/bench_throughput.py" --dataset mnist:/tmp/idx60k \
      "${SET60[@]}" --jobs "$JOBS_MANY" --json "$RES/set60k_jobs_many.json"
  # -- 3. digits, `search --trials 100 --no-mlflow`, --jobs auto (the default) ---------------
  step digits_jobs_auto 75 $PY "$B/bench_throughput.py" --dataset digits "${DIGITS[@]}" \
      --jobs auto --json "$RES/digits_jobs_auto.json"
  # -- 4. the tests that skip without CUDA (training memory against its estimate, latency by
  #       CUDA events; -s keeps their prints), and where a step's memory goes on CUDA --------
  step cuda_tests 40 $PY -m pytest -q -s -p no:cacheprovider -k cuda \
      "$REPO/tests/test_constraints_units.py"
  step memory_probe 30 $PY "$B/probe_train_memory.py"
  step memory_probe_no_cublas_ws 30 env CUBLAS_WORKSPACE_CONFIG=:0:0 \
      $PY "$B/probe_train_memory.py"
elif [ "$PART" = p ]; then
  # -- P. where a short command's time goes (issue 11's digits <= 15 s): the imports and CUDA's
  #       start in fresh processes, then digits' `--trials 100` with --jobs auto and --jobs 1,
  #       each process's marks (automl_cnn/timeline.py); the CUDA-only tests; the final team
  #       of a budget too short to search (the 60k set at 120 s, --jobs 8) -------------------
  step timeline_digits_auto 90 $PY "$B/bench_timeline.py" --imports --json \
      "$RES/timeline_digits_auto.json" -- "${DIGITS[@]}" --no-mlflow
  step timeline_digits_jobs1 75 $PY "$B/bench_timeline.py" --json \
      "$RES/timeline_digits_jobs1.json" -- "${DIGITS[@]}" --no-mlflow --jobs 1
  $PY -c "import pynvml; print('pynvml', pynvml.__file__)" > "$RES/pynvml.txt" 2>&1
  step cuda_tests 40 $PY -m pytest -q -s -p no:cacheprovider -k cuda \
      "$REPO/tests/test_constraints_units.py"
  [ -s /tmp/idx60k/train-images-idx3-ubyte.gz ] || \
    step idx60k 40 $PY "$B/make_idx_set.py" --idx /tmp/idx60k "${IDX[@]}" --size 28 --classes 10
  step set60k_short_team 150 $PY "$B/bench_throughput.py" --dataset mnist:/tmp/idx60k \
      $([ "$SMOKE" = 1 ] && echo "--seconds 30 --space tiny --device cpu" || \
        echo "--seconds 120") --as-user --jobs "$JOBS_MANY" --json "$RES/set60k_short_team.json"
elif [ "$PART" = q ]; then
  # -- Q. the processes started warm: digits' timeline again, then the 60k set at 120 s (too
  #       short to search) with --jobs 8 (the one trial beside its team) and --jobs 1 (the
  #       person's recipe alone), side by side -------------------------------------------
  step timeline_digits_auto 90 $PY "$B/bench_timeline.py" --json \
      "$RES/timeline_digits_auto.json" -- "${DIGITS[@]}" --no-mlflow
  [ -s /tmp/idx60k/train-images-idx3-ubyte.gz ] || \
    step idx60k 40 $PY "$B/make_idx_set.py" --idx /tmp/idx60k "${IDX[@]}" --size 28 --classes 10
  for J in "$JOBS_MANY" 1; do
    step "set60k_short_jobs$J" 140 $PY "$B/bench_throughput.py" --dataset mnist:/tmp/idx60k \
        $([ "$SMOKE" = 1 ] && echo "--seconds 30 --space tiny --device cpu" || \
          echo "--seconds 120") --as-user --jobs "$J" --json "$RES/set60k_short_jobs$J.json"
  done
elif [ "$PART" = r1 ] || [ "$PART" = r2 ]; then
  # -- R. bytecode, and more seeds of the 60k set at 120 s. Until r1 this script ran every
  #       process with PYTHONDONTWRITEBYTECODE=1 and the wheels installed --no-compile, so every
  #       process (the command and each worker) compiled optuna, sqlalchemy, plotly and this
  #       package from source, and whatever the image holds no bytecode for; a user's
  #       `pip install` compiles once. R1 times the imports that way, runs one small search to
  #       write the bytecode (PYTHONPYCACHEPREFIX: a folder surely writable), then digits'
  #       timeline, the 60k set at 120 s with seed 1 (--jobs 8 against --jobs 1) and digits'
  #       timeline the old way, side by side. R2: the same 60k pair with seed 2.
  IMPORT_TIMES='import sys, time; t = time.perf_counter(); import lightning.pytorch; a = time.perf_counter(); import automl_cnn.runners.search; print(f"lightning.pytorch {a - t:.3f} s, then automl_cnn.runners.search {time.perf_counter() - a:.3f} s")'
  if [ "$PART" = r1 ]; then
    $PY - > "$RES/pyc.txt" 2>&1 <<'EOF2'
import importlib.util, os, pathlib
for name in ("torch", "lightning", "torchmetrics", "scipy", "optuna", "sqlalchemy", "automl_cnn"):
    root = pathlib.Path(importlib.util.find_spec(name).origin).parent
    py = sum(1 for _ in root.rglob("*.py"))
    pyc = sum(1 for _ in root.rglob("*.pyc"))
    print(name, root, "py", py, "pyc", pyc, "writable", os.access(root, os.W_OK))
EOF2
    for i in 1 2; do step "imports_nopyc_$i" 40 $PY -c "$IMPORT_TIMES"; done
  fi
  unset PYTHONDONTWRITEBYTECODE
  export PYTHONPYCACHEPREFIX=/tmp/pycache
  rm -rf /tmp/warmup_run   # r2 on a machine kept warm after r1 found r1's run there
  step bytecode_warmup 60 automl-cnn search "${DIGITS[@]}" --trials 4 --no-mlflow --no-progress \
      --out /tmp/warmup_run
  if [ "$PART" = r1 ]; then
    for i in 1 2; do step "imports_pyc_$i" 40 $PY -c "$IMPORT_TIMES"; done
    step timeline_digits_pyc 90 $PY "$B/bench_timeline.py" --json \
        "$RES/timeline_digits_pyc.json" -- "${DIGITS[@]}" --no-mlflow
  fi
  SEED=$([ "$PART" = r1 ] && echo 1 || echo 2)
  [ -s /tmp/idx60k/train-images-idx3-ubyte.gz ] || \
    step idx60k 40 $PY "$B/make_idx_set.py" --idx /tmp/idx60k "${IDX[@]}" --size 28 --classes 10
  for J in "$JOBS_MANY" 1; do
    step "set60k_short_seed${SEED}_jobs$J" 140 $PY "$B/bench_throughput.py" \
        --dataset mnist:/tmp/idx60k --seed-from "$SEED" \
        $([ "$SMOKE" = 1 ] && echo "--seconds 30 --space tiny --device cpu" || \
          echo "--seconds 120") --as-user --jobs "$J" \
        --json "$RES/set60k_short_seed${SEED}_jobs$J.json"
  done
  if [ "$PART" = r1 ]; then  # the old way, side by side with timeline_digits_pyc
    unset PYTHONPYCACHEPREFIX
    export PYTHONDONTWRITEBYTECODE=1
    step timeline_digits_nopyc 90 $PY "$B/bench_timeline.py" --json \
        "$RES/timeline_digits_nopyc.json" -- "${DIGITS[@]}" --no-mlflow
  fi
elif [ "$PART" = s ]; then
  # -- S. the searched regime on a GPU (issue 10): on clutter:6000 (5,100 training images, 20
  #       classes, where the architecture matters) 90 s with 8 workers buys ~50 full
  #       trainings, so the command searches (flat, pruned). The other arms turn the search
  #       off (a benchmark-only sitecustomize raises the trainings a search needs): with 8
  #       workers the first baseline and two seed twins train at once and are averaged, as a
  #       budget too short to search gets; with --jobs 1 the first baseline trains alone for
  #       the whole budget (the person's recipe at equal wall time). Search against no search
  #       at 8 workers tells what the search itself adds on top of filling the card.
  unset PYTHONDONTWRITEBYTECODE
  export PYTHONPYCACHEPREFIX=/tmp/pycache
  rm -rf /tmp/warmup_run
  step bytecode_warmup 60 automl-cnn search "${DIGITS[@]}" --trials 4 --no-mlflow --no-progress \
      --out /tmp/warmup_run
  # digits' --trials 100 (issue 11's <= 15 s) with the quick exits (automl_cnn/ending.py)
  step timeline_digits 60 $PY "$B/bench_timeline.py" --json "$RES/timeline_digits.json" -- \
      "${DIGITS[@]}" --no-mlflow
  mkdir -p /tmp/nosearch
  echo 'import automl_cnn.ladder as L; L.MIN_SEARCH_TRAININGS = L.MIN_SMALL_SEARCH_TRAININGS = 10**6' \
      > /tmp/nosearch/sitecustomize.py
  if [ "$SMOKE" = 1 ]; then
    SET_S=(--dataset clutter:3000 --seconds 45 --space tiny --device cpu); MANY_S=2
  else
    SET_S=(--dataset clutter:6000 --seconds 90); MANY_S=8
  fi
  for SEED in 0 1; do
    step "clutter_search_seed${SEED}_jobs$MANY_S" 120 $PY "$B/bench_throughput.py" \
        "${SET_S[@]}" --seed-from "$SEED" --as-user --jobs "$MANY_S" \
        --json "$RES/clutter_search_seed${SEED}_jobs$MANY_S.json"
    step "clutter_nosearch_seed${SEED}_jobs$MANY_S" 120 env PYTHONPATH=/tmp/nosearch:$PYTHONPATH \
        $PY "$B/bench_throughput.py" "${SET_S[@]}" --seed-from "$SEED" --as-user \
        --jobs "$MANY_S" --json "$RES/clutter_nosearch_seed${SEED}_jobs$MANY_S.json"
    [ "$SEED" = 0 ] && step "clutter_nosearch_seed${SEED}_jobs1" 120 \
        env PYTHONPATH=/tmp/nosearch:$PYTHONPATH $PY "$B/bench_throughput.py" \
        "${SET_S[@]}" --seed-from "$SEED" --as-user --jobs 1 \
        --json "$RES/clutter_nosearch_seed${SEED}_jobs1.json"
  done
else
  # -- 5. the same budget with --jobs 1: too short to search, the first baseline trains alone -
  step set60k_jobs1 330 $PY "$B/bench_throughput.py" --dataset mnist:/tmp/idx60k \
      "${SET60[@]}" --jobs 1 --json "$RES/set60k_jobs1.json"
fi

[ "$SMOKE" = 1 ] || nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv \
    >> "$RES/nvidia_smi.txt" 2>&1
log "done in $(( $(date +%s) - START ))s; files: $(ls "$RES" | tr '\n' ' ')"
pack
