#!/usr/bin/env bash
# The GPU check: lit's carried `mnist` binary on an NVIDIA GPU, against the CPU and against
# PyTorch's plain loop and PyTorch Lightning on the same GPU. Needs bash, python3 with torch
# (Lightning optional), and the binary from `cargo xtask dist --features cuda`; no Rust.
#
#   scripts/gpu_check.sh [BINARY]      (default: target/dist/mnist, or target/dist/mnist.xz)
#
# Steps: print the device; --fast-dev-run on cuda; check-device (forward and backward against
# the CPU on the same weights and batch, f32 within 1e-4 relative, and bf16-mixed); ExampleNet
# 3 epochs on MNIST (test accuracy, samples/s); then lit, PyTorch and Lightning at batch 64 and
# 512, in 32 and bf16-mixed, with the ratios. Results also go to $OUT/gpu_check.txt when OUT is
# set (run directories stay in /tmp). The whole check keeps to GPU_CHECK_BUDGET seconds (default
# 450): a step that would start past it is skipped and reported.
set -uo pipefail
cd "$(dirname "$0")/.."
deadline=$((SECONDS + ${GPU_CHECK_BUDGET:-450}))
out_dir="${OUT:-/tmp/gpu_check}"
mkdir -p "$out_dir"
report="$out_dir/gpu_check.txt"
: > "$report"
say() { echo "$@" | tee -a "$report"; }
fail=0

bin="${1:-}"
if [ -z "$bin" ]; then
  if [ -x target/dist/mnist ]; then
    bin=target/dist/mnist
  elif [ -f target/dist/mnist.xz ]; then
    bin=/tmp/lit-mnist-gpu
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
      target/dist/mnist.xz "$bin" && chmod +x "$bin"
  else
    echo "no binary: build one with 'cargo xtask dist --features cuda'"; exit 2
  fi
fi

# PyTorch's CUDA libraries (cuBLAS, cuRAND, NVRTC, the runtime) for the binary.
nvlibs=$(python3 - <<'EOF'
import glob, os, site
dirs = []
for base in site.getsitepackages() + [site.getusersitepackages()]:
    for d in glob.glob(os.path.join(base, "nvidia", "**", "lib"), recursive=True):
        if glob.glob(os.path.join(d, "*.so*")):
            dirs.append(d)
print(":".join(sorted(set(dirs))))
EOF
)
export LD_LIBRARY_PATH="${nvlibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
data_args=()
[ -d data/mnist ] && data_args=(--data-dir data)

say "== gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$report"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" 2>&1 | tee -a "$report"
missing=$(ldd "$bin" | grep "not found")
[ -n "$missing" ] && { say "missing libraries:"; say "$missing"; }

logname() { echo "$out_dir/$(echo "$1" | tr ' /' '__').log"; }

run() { # label, timeout seconds, command...
  local label=$1 secs=$2; shift 2
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 20 ]; then
    say "SKIPPED ($label): the time budget is spent"; fail=1; return 1
  fi
  [ "$secs" -gt "$left" ] && secs=$left
  say "== $label"
  local log
  log=$(logname "$label")
  timeout "$secs" "$@" > "$log" 2>&1
  local rc=$?
  tail -n 12 "$log"
  [ $rc -ne 0 ] && { say "FAIL ($label): exit $rc, log in $log"; fail=1; }
  return $rc
}

accelerator="${GPU_CHECK_ACCELERATOR:-cuda}"  # cpu only to try the script itself
lit=("$bin" fit --accelerator "$accelerator" "${data_args[@]}" --log-dir /tmp/gpu_check_runs)
rate() { grep -oE '[0-9]+ samples/s\)' "$1" | tail -1 | grep -oE '^[0-9]+'; }
ratio() { # a b: a / b, or n/a
  if [ -n "$1" ] && [ -n "$2" ]; then python3 -c "print(f'{$1 / $2:.2f}')"; else echo n/a; fi
}
acc() { grep -E '^\| test_acc' "$1" | awk -F'|' '{gsub(/ /, "", $3); print $3}'; }

run "fast-dev-run on $accelerator" 90 "${lit[@]}" --fast-dev-run 5
run "check-device f32" 90 "$bin" check-device --accelerator "$accelerator" "${data_args[@]}"
run "check-device bf16-mixed" 90 "$bin" check-device --accelerator "$accelerator" --precision bf16-mixed "${data_args[@]}"
if run "lit 3 epochs batch 64" 150 "${lit[@]}" --max-epochs 3; then
  log=$(logname "lit 3 epochs batch 64")
  say "lit 3 epochs: test_acc $(acc "$log"), last epoch $(rate "$log") samples/s"
fi

say "== throughput (samples/s of the last of 2 epochs; ratio = lit / other)"
for precision in 32 bf16-mixed; do
  for batch in 64 512; do
    label="lit $precision batch $batch"
    run "$label" 90 "${lit[@]}" --max-epochs 2 --batch-size "$batch" --precision "$precision" \
      --no-test --num-sanity-val-steps 0 || continue
    l=$(rate "$(logname "$label")")
    tlabel="torch $precision batch $batch"
    run "$tlabel" 120 python3 scripts/torch_baseline.py --device "$accelerator" --batch-size "$batch" \
      --precision "$precision" --epochs 2
    tlog=$(logname "$tlabel")
    p=$(grep torch-plain "$tlog" | grep -oE '[0-9]+ samples/s' | grep -oE '^[0-9]+')
    g=$(grep torch-lightning "$tlog" | grep -oE '[0-9]+ samples/s' | grep -oE '^[0-9]+')
    say "RESULT $precision batch $batch: lit ${l:-?} samples/s; torch ${p:-n/a} (lit/torch $(ratio "$l" "$p")); lightning ${g:-n/a} (lit/lightning $(ratio "$l" "$g"))"
  done
done
grep RESULT "$report" > /dev/null || fail=1
say "== gpu_check done: $([ $fail -eq 0 ] && echo ok || echo FAILURES)"
exit $fail
