#!/bin/bash
# One session on a GPU machine, within a fixed time: the `gpu` profile's training time
# (one run alone), then a grid (default: the headline grid, baseline, SE, CBAM) in the
# `gpu` profile, several runs at a time on the one GPU, for as long as the time allows.
# The grid file, OUT/ablation-GRID-PROFILE[-EPOCHSep].jsonl, is resumable: running this
# again continues it.
#
#   bash benchmarks/gpu_session.sh ARCHIVE OUT [SECONDS]
#
# ARCHIVE: the offline CIFAR-10 copy (cifar10-jpeg.tar.gz); OUT: the folder for the
# results; SECONDS: the whole session's budget (default 500). PROFILE, SEEDS, WORKERS,
# GRID override the defaults (gpu, 10, 4, headline), e.g. PROFILE=tiny SEEDS=1 to try it
# on a CPU; EPOCHS overrides the profile's epochs; ALONE=0 skips the run alone;
# GIT_COMMIT names the code's commit where the copy has no .git. To finish the book's
# reference grid (results/README.md): ALONE=0 GRID=all WORKERS=6 with OUT=results.
#
# CEILING_EPOCHS="13 20 30 40" adds, after the grid and in the time left, the fast
# recipe's ceiling: the `cpu` profile (CEILING_PROFILE) with CBAM (CEILING_ONLY: names
# of the headline grid's configurations, separated by commas) given each number of
# epochs, CEILING_SEEDS seeds (default 3), into OUT/epochs-ceiling-PROFILE.jsonl;
# benchmarks/epochs_ceiling.py reads it.
set -uo pipefail
archive=$1 out=$2 budget=${3:-500}
profile=${PROFILE:-gpu} seeds=${SEEDS:-10} workers=${WORKERS:-4} grid=${GRID:-headline}
epochs=${EPOCHS:-} alone=${ALONE:-1}
ceiling_epochs=${CEILING_EPOCHS:-} ceiling_profile=${CEILING_PROFILE:-cpu} ceiling_seeds=${CEILING_SEEDS:-3}
ceiling_only=${CEILING_ONLY:-cbam avg+max k=7}
start=$(date +%s)
export CBAM_TUTORIAL_DATA=${CBAM_TUTORIAL_DATA:-/tmp/cbam-tutorial-data}
export CBAM_TUTORIAL_CIFAR10_ARCHIVE=$archive CBAM_TUTORIAL_PROGRESS=0 PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
mkdir -p "$out"

{ date -u +%FT%TZ; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  $python -c "import sys, torch; print(sys.version.split()[0], torch.__version__,
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
  echo "commit ${GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}"; } > "$out/environment.txt"
cat "$out/environment.txt"

# decode the archive once, before any worker needs it
$python -c "from cbam_tutorial.data import load_cifar10; print(load_cifar10().copy)" || exit 1

# the profile's time: one CBAM run alone on the machine
if [ "$alone" != 0 ]; then
  run=$(mktemp -d)
  $python -m cbam_tutorial train --model fastnet --attention cbam --profile "$profile" --seed 0 \
      --test-curve --out "$run/cbam" && cp "$run/cbam/metrics.json" "$out/$profile-fastnet-cbam-seed0-alone.json"
fi

left=$(( budget - ($(date +%s) - start) - 15 ))
echo "grid: ${left}s left"
if [ "$left" -gt 30 ]; then
  # the runner appends each finished run atomically; a run cut off by the timeout is not kept
  timeout --signal=INT "$left" $python -m cbam_tutorial ablate --grid "$grid" --seeds "$seeds" \
      --profile "$profile" --workers "$workers" ${epochs:+--epochs "$epochs"} \
      --out "$out/ablation-$grid-$profile${epochs:+-${epochs}ep}.jsonl"
  echo "grid exit status $?"
fi

if [ -n "$ceiling_epochs" ]; then
  IFS=',' read -ra only <<< "${ceiling_only//, /,}"
  ceiling="$out/epochs-ceiling-$ceiling_profile.jsonl"
  for e in $ceiling_epochs; do
    left=$(( budget - ($(date +%s) - start) - 15 ))
    if [ "$left" -le 30 ]; then echo "ceiling: no time left for $e epochs"; break; fi
    echo "ceiling: $e epochs, ${left}s left"
    timeout --signal=INT "$left" $python -m cbam_tutorial ablate --grid headline --only "${only[@]}" \
        --seeds "$ceiling_seeds" --profile "$ceiling_profile" --epochs "$e" --workers "$workers" --out "$ceiling"
    echo "ceiling $e epochs exit status $?"
  done
  [ -f "$ceiling" ] && PYTHONPATH=. $python benchmarks/epochs_ceiling.py "$ceiling"
fi
echo "session took $(( $(date +%s) - start ))s"
