#!/usr/bin/env bash
# cli_mpi.sh — data-parallel training over MPI (docs/distributed.md): `mpirun -np 2 memfit train steg` matches one
# process with the whole batch (losses and parameters after 5 updates within 1e-5 relative), with gradient buckets
# all-reduced during backward; ZeRO-1 (--shard-optimizer) trains the same with half the optimizer arena; MoCo's queue
# takes the global batch's keys, v2's shuffled batch norm and v3's gathered keys match one process; plans that differ or do not fit stop all ranks naming the rank; a killed or hung
# rank ends the job in bounded time; the device path staged through host buffers is bit-identical (and on a GPU, when
# there is one: NCCL with one rank, 2 ranks sharing it); resuming with the same ranks continues exactly, with other ranks within 1e-5
# (the same global batches), and a ZeRO-1 checkpoint only with its own ranks. Skipped without mpirun or MPI.
# Usage: cli_mpi.sh path/to/memfit
set -u
MEMFIT=${1:?usage: cli_mpi.sh path/to/memfit}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "$0")/harness_cli.sh"
if ! command -v mpirun >/dev/null; then echo "SKIP: mpirun not found (apt-get install openmpi-bin libopenmpi-dev)"; exit 0; fi
if ! "$MEMFIT" --version | grep -q "data parallel: MPI"; then echo "SKIP: this memfit was built without MPI"; exit 0; fi
if ! command -v python3 >/dev/null; then echo "SKIP: python3 needed to compare the model files"; exit 0; fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
# Sanitizer builds: Open MPI's components are unloaded at MPI_Finalize, so LeakSanitizer sees their allocations from an
# "<unknown module>" that no suppression can name; leak checks stay on for everything that runs without MPI.
if [ "${MEMFIT_SANITIZED:-0}" = 1 ]; then export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"; fi
MPI=(mpirun --bind-to none -np 2)
A=(train steg --data generated --blocks 1 --growth 4 --size 16 --gen-count 16 --gen-size 32 --val-fraction 0 --threads 1
   --lr 1e-3 --schedule constant --log-every 0 --seed 3)

# Relative agreement of two --loss-log files (every number of every line) and of two model files (every tensor, norm-wise:
# ||a - b|| <= tol * ||a||; element-wise, Adam turns the rounding of a gradient element that nearly cancels into a
# visible step of that element), read with a small safetensors reader. Model files or checkpoints: parameters and states
# (EMA copies, queues); batch-norm statistics (each rank's are of its own samples) and optimizer state are left out.
compare() { # tol loss1 loss2 model1 model2
  python3 - "$@" <<'EOF'
import array, json, math, struct, sys
tol, l1, l2, m1, m2 = float(sys.argv[1]), *sys.argv[2:]
a = [list(map(float, l.split())) for l in open(l1)]; b = [list(map(float, l.split())) for l in open(l2)]
if len(a) != len(b) or not a: sys.exit(f"loss logs have {len(a)} and {len(b)} lines")
worst = 0.0
for x, y in zip(a, b):
  for u, v in zip(x[1:], y[1:]):
    worst = max(worst, abs(u - v) / max(abs(u), abs(v), 1e-30) if abs(u) + abs(v) > 1e-6 else 0.0)
def st(p):
  d = open(p, "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); base = 8 + n; out = {}
  for k, v in h.items():
    if k == "__metadata__" or v["dtype"] != "F32" or k.startswith(("buffer.", "opt.")): continue
    s, e = v["data_offsets"]; out[k] = array.array("f", d[base + s:base + e])  # little-endian x86-64
  return out
p, q = st(m1), st(m2)
if set(p) != set(q) or not p: sys.exit("the model files hold different tensors")
pw = max(math.sqrt(sum((u - v) ** 2 for u, v in zip(p[k], q[k]))) / max(math.sqrt(sum(u * u for u in p[k])), 1e-30) for k in p)
print(f"{len(a)} updates: largest relative loss difference {worst:.3g}, parameters {pw:.3g} ({len(p)} tensors)")
sys.exit(0 if worst <= tol and pw <= tol else 1)
EOF
}

# 1 rank x batch 4 against 2 ranks x 2 (each every other pair of the same global batches), in 4 buckets
"$MEMFIT" "${A[@]}" --batch 4 --steps 5 --out "$T/one" --loss-log "$T/one.txt" >"$T/one.out" 2>&1 || { cat "$T/one.out"; bad "1 rank: failed"; }
run "2 ranks x micro-batch 2 train" 0 "rank 1 of 2: plan" "${MPI[@]}" "$MEMFIT" "${A[@]}" --batch 4 --steps 5 --bucket 16KiB \
  --out "$T/two" --loss-log "$T/two.txt"
cp "$T/out.txt" "$T/two.out"
run "rank 0 prints the plan with the buckets, both ranks their plan line" 0 "all-reduced in [0-9]+ bucket.*started during backward" \
  cat "$T/two.out"
run "every rank prints its plan line" 0 "rank 0 of 2: plan" cat "$T/two.out"
run "progress is printed once (rank 0)" 0 "^1$" bash -c "grep -c '\\[100%\\] step 5/5' '$T/two.out'"
run "the buckets' all-reduce started during backward" 0 "gradient all-reduce: [1-9][0-9]* bucket\\(s\\) started during backward, 0 after" \
  cat "$T/two.out"
run "measured == planned on rank 0" 0 "optimizer state +planned +[0-9]+ B +measured +[0-9]+ B +exact" cat "$T/two.out"
out=$(compare 1e-5 "$T/one.txt" "$T/two.txt" "$T/one/model.safetensors" "$T/two/model.safetensors" 2>&1)
rc=$?; echo "  1 rank x 4 vs 2 ranks x 2: $out"
if [ $rc = 0 ]; then ok; else bad "2 ranks x 2 do not match 1 rank x 4: $out"; fi

# resume with the same ranks: stop after 3, resume to 5: the same losses and parameters as the run above
run "2 ranks: stop after update 3" 0 "stop-after" "${MPI[@]}" "$MEMFIT" "${A[@]}" --batch 4 --steps 5 --bucket 16KiB --out "$T/res" \
  --loss-log "$T/res.txt" --stop-after 3
cp "$T/res/checkpoint.safetensors" "$T/res3.safetensors"; head -n 3 "$T/res.txt" > "$T/r21.txt"
run "2 ranks: resume to update 5" 0 "resumed from" "${MPI[@]}" "$MEMFIT" "${A[@]}" --batch 4 --steps 5 --bucket 16KiB --out "$T/res" \
  --loss-log "$T/res.txt" --resume "$T/res/checkpoint.safetensors"
out=$(compare 0 "$T/two.txt" "$T/res.txt" "$T/two/model.safetensors" "$T/res/model.safetensors" 2>&1)
rc=$?; echo "  resumed vs uninterrupted (2 ranks): $out"
if [ $rc = 0 ]; then ok; else bad "a resumed 2-rank run differs from an uninterrupted one: $out"; fi

# resume with other ranks: the data order is one of global batches, so 2 ranks stopped at 3 go on as 1 rank x 4, and 1 rank
# stopped at 3 goes on as 2 ranks x 2; both end within 1e-5 of the uninterrupted 1-rank run (only rounding differs)
run "2 ranks stopped at update 3 resume as 1 rank" 0 "written by 2 ranks, this run has 1" "$MEMFIT" "${A[@]}" --batch 4 --steps 5 \
  --out "$T/r21" --loss-log "$T/r21.txt" --resume "$T/res3.safetensors"
out=$(compare 1e-5 "$T/one.txt" "$T/r21.txt" "$T/one/model.safetensors" "$T/r21/model.safetensors" 2>&1)
rc=$?; echo "  2 ranks to update 3, then 1 rank, vs 1 rank: $out"
if [ $rc = 0 ]; then ok; else bad "a 2-rank checkpoint resumed by 1 rank differs from the 1-rank run: $out"; fi
run "1 rank: stop after update 3" 0 "stop-after" "$MEMFIT" "${A[@]}" --batch 4 --steps 5 --out "$T/r12" --loss-log "$T/r12.txt" --stop-after 3
run "1 rank stopped at update 3 resumes as 2 ranks" 0 "written by 1 rank, this run has 2" "${MPI[@]}" "$MEMFIT" "${A[@]}" --batch 4 \
  --steps 5 --bucket 16KiB --out "$T/r12" --loss-log "$T/r12.txt" --resume "$T/r12/checkpoint.safetensors"
out=$(compare 1e-5 "$T/one.txt" "$T/r12.txt" "$T/one/model.safetensors" "$T/r12/model.safetensors" 2>&1)
rc=$?; echo "  1 rank to update 3, then 2 ranks, vs 1 rank: $out"
if [ $rc = 0 ]; then ok; else bad "a 1-rank checkpoint resumed by 2 ranks differs from the 1-rank run: $out"; fi

# ZeRO-1: each rank keeps the optimizer state of its half of the gradients; the same training as one process
run "ZeRO-1: 2 ranks with --shard-optimizer train" 0 "ZeRO-1" "${MPI[@]}" "$MEMFIT" "${A[@]}" --batch 4 --steps 5 --shard-optimizer \
  --out "$T/zero" --loss-log "$T/zero.txt"
cp "$T/out.txt" "$T/zero.out"
out=$(compare 1e-5 "$T/one.txt" "$T/zero.txt" "$T/one/model.safetensors" "$T/zero/model.safetensors" 2>&1)
rc=$?; echo "  1 rank x 4 vs 2 ranks x 2 with ZeRO-1: $out"
if [ $rc = 0 ]; then ok; else bad "ZeRO-1 on 2 ranks does not match 1 rank: $out"; fi
run "ZeRO-1: measured == planned on both ranks" 0 "2" bash -c "grep -c 'rank [01] of 2: memory measured == planned in every arena' '$T/zero.out'"
full=$(sed -n 's/.*optimizer state \([0-9]*\) B).*/\1/p' "$T/two.out" | head -1)
half=$(sed -n 's/.*optimizer state \([0-9]*\) B of its slice.*/\1/p' "$T/zero.out" | head -1)
nparam=$(grep -o "[0-9]* parameters)" "$T/zero.out" | head -1 | grep -o "^[0-9]*")
tensors=30 # the model's parameter tensors: each slice's state is aligned to 64 bytes, two per tensor at most
echo "  optimizer arena: ${full:-?} B unsharded, ${half:-?} B per rank with ZeRO-1 over 2 ranks ($nparam parameters)"
if [ -n "$full" ] && [ -n "$half" ] && [ $((2 * half)) -ge "$full" ] && [ $((2 * half)) -le $((full + 2 * 64 * 2 * tensors)) ]; then ok
else bad "the ZeRO-1 optimizer arena is not half: ${half:-?} of ${full:-?}"; fi
run "ZeRO-1: stop after update 3" 0 "stop-after" "${MPI[@]}" "$MEMFIT" "${A[@]}" --batch 4 --steps 5 --shard-optimizer --out "$T/zres" \
  --loss-log "$T/zres.txt" --stop-after 3
run "ZeRO-1: each rank saved its slice" 0 "checkpoint-rank1" ls "$T/zres"
run "ZeRO-1: resume to update 5" 0 "resumed from" "${MPI[@]}" "$MEMFIT" "${A[@]}" --batch 4 --steps 5 --shard-optimizer --out "$T/zres" \
  --loss-log "$T/zres.txt" --resume "$T/zres/checkpoint.safetensors"
out=$(compare 0 "$T/zero.txt" "$T/zres.txt" "$T/zero/model.safetensors" "$T/zres/model.safetensors" 2>&1)
rc=$?; echo "  ZeRO-1 resumed vs uninterrupted: $out"
if [ $rc = 0 ]; then ok; else bad "a resumed ZeRO-1 run differs from an uninterrupted one: $out"; fi
# --budget takes ZeRO-1 as one more knob: one byte under what the smallest 1-rank setting needs, 2 ranks fit only sharded
small=$("$MEMFIT" plan steg --blocks 1 --growth 4 --size 16 --batch 4 --budget 1KiB --json 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["smallest"]["device_bytes"])')
run "plan --ranks 2 --budget under the 1-rank minimum chooses ZeRO-1" 0 "sharded over 2 ranks \(ZeRO-1\)" "$MEMFIT" plan steg --blocks 1 \
  --growth 4 --size 16 --batch 4 --ranks 2 --budget $((small - 1))
run "1 rank does not fit that budget" 3 "NOTHING FITS" "$MEMFIT" plan steg --blocks 1 --growth 4 --size 16 --batch 4 --budget $((small - 1))
run "train on 2 ranks with that budget: ZeRO-1 chosen, measured == planned" 0 "rank 1 of 2: memory measured == planned in every arena" \
  "${MPI[@]}" "$MEMFIT" "${A[@]}" --batch 8 --steps 2 --budget $((small - 1)) --out "$T/zb"
grep -q "sharded over 2 ranks (ZeRO-1)" "$T/out.txt" && ok || bad "train --budget on 2 ranks did not choose ZeRO-1"
run "a ZeRO-1 checkpoint does not resume in 1 rank" 1 "written by 2 ranks with --shard-optimizer.*mpirun -np 2" "$MEMFIT" "${A[@]}" \
  --batch 4 --steps 5 --out "$T/zres1" --resume "$T/zres/checkpoint.safetensors"
run "an unsharded checkpoint does not resume sharded" 1 "resume it without --shard-optimizer" "${MPI[@]}" "$MEMFIT" "${A[@]}" --batch 4 \
  --steps 5 --shard-optimizer --out "$T/zres2" --resume "$T/res3.safetensors"
run "memfit plan --ranks 2 --shard-optimizer shows the bytes per rank" 0 "per rank with ZeRO-1 over 2 ranks: optimizer state" \
  "$MEMFIT" plan steg --preset small --ranks 2 --shard-optimizer

# MoCo v2: each rank's keys go into the queue as one process's global batch would put them (the queue identical on both
# ranks: the checkpoint's check of parameters and states passes). 1 rank with batch norm split in 2 (statistics over
# samples n % 2 == s) is 2 ranks with batch norm over their own samples (rank r holds n % 2 == r).
# (--shuffle-bn 0: without the shuffled batch norm, which 2 ranks of v2 do by default; it is checked below)
# Both MoCo v2 comparisons run with the direct convolutions (MEMFIT_WINOGRAD=0): Winograd F(4x4,3x3) rounds each
# weight gradient about 3x coarser, which the tiny model's batch norm over 4 samples and Adam carry to 1.5e-5 after
# 5 updates (5e-6 with the direct convolutions); what is checked here is the reduction, not the convolution's rounding.
export MEMFIT_WINOGRAD=0
B=(train moco --preset tiny --data generated --val-fraction 0 --threads 1 --log-every 0 --seed 3 --steps 5 --schedule constant --batch 8)
"$MEMFIT" "${B[@]}" --bn-splits 2 --out "$T/m1" --loss-log "$T/m1.txt" >"$T/m1.out" 2>&1 || { tail -5 "$T/m1.out"; bad "MoCo 1 rank: failed"; }
run "MoCo: 2 ranks train" 0 "rank 0 of 2: memory measured == planned" "${MPI[@]}" "$MEMFIT" "${B[@]}" --bn-splits 1 --shuffle-bn 0 \
  --out "$T/m2" --loss-log "$T/m2.txt"
out=$(compare 1e-5 "$T/m1.txt" "$T/m2.txt" "$T/m1/checkpoint.safetensors" "$T/m2/checkpoint.safetensors" 2>&1)
rc=$?; echo "  MoCo 1 rank x 8 (bn-splits 2) vs 2 ranks x 4: $out (with the key encoder and the queue)"
if [ $rc = 0 ]; then ok; else bad "MoCo on 2 ranks does not match 1 rank: $out"; fi

# MoCo v2 with shuffled batch norm (the reference's _batch_shuffle_ddp / _batch_unshuffle_ddp): the key views of the
# global micro-batch are all-gathered, permuted alike on every rank (drawn from the seed and the micro-step), each rank's
# key encoder runs on its slice, the keys are all-gathered and each rank keeps its own samples'. One process does the
# same within its batch (--shuffle-bn 1, split batch norm of 2 slices: slice s holds permuted positions s, s+2, ...), so
# 2 ranks (the default for v2 there) equal 1 rank: losses, parameters, key encoder and queue.
"$MEMFIT" "${B[@]}" --bn-splits 2 --shuffle-bn 1 --out "$T/s1" --loss-log "$T/s1.txt" >"$T/s1.out" 2>&1 ||
  { tail -5 "$T/s1.out"; bad "MoCo shuffled BN 1 rank: failed"; }
run "MoCo shuffled BN: 2 ranks train, measured == planned on rank 1" 0 "rank 1 of 2: memory measured == planned in every arena" \
  "${MPI[@]}" "$MEMFIT" "${B[@]}" --bn-splits 1 --out "$T/s2" --loss-log "$T/s2.txt"
cp "$T/out.txt" "$T/s2.out"
run "MoCo shuffled BN: on by default on 2 ranks, and said" 0 "shuffled BN, key views and keys gathered over 2 ranks" cat "$T/s2.out"
run "MoCo shuffled BN: measured == planned on both ranks" 0 "2" bash -c "grep -c 'rank [01] of 2: memory measured == planned in every arena' '$T/s2.out'"
out=$(compare 1e-5 "$T/s1.txt" "$T/s2.txt" "$T/s1/checkpoint.safetensors" "$T/s2/checkpoint.safetensors" 2>&1)
rc=$?; echo "  MoCo shuffled BN 1 rank x 8 (bn-splits 2) vs 2 ranks x 4: $out (with the key encoder and the queue)"
if [ $rc = 0 ]; then ok; else bad "MoCo with shuffled batch norm on 2 ranks does not match 1 rank: $out"; fi
if cmp -s "$T/m2.txt" "$T/s2.txt"; then bad "the shuffled batch norm changed no loss (is the permutation the identity?)"; else ok; fi
unset MEMFIT_WINOGRAD

# MoCo v3 over 2 ranks: the keys of both ranks are all-gathered, so each query meets the global batch's keys as
# negatives (logits [B, 2B], the positive of local row i at column rB + i), as one process with the whole batch. The tiny
# v3 is chaotic in f32 (its projector's and predictor's batch norm over slices of 4 samples amplify rounding: one process
# run with memfit's own convolutions instead of oneDNN's is 4% off by the fourth update), so the 1e-5 check is split: 5
# updates at lr 0 (the losses of 5 different batches: the gathered negatives, forward), and one update at the usual lr
# (the parameters: the gradients through them).
C=("${B[@]}" --version 3 --dim 8 --hidden 16 --weight-decay 0)
"$MEMFIT" "${C[@]}" --lr 0 --bn-splits 2 --out "$T/v31" --loss-log "$T/v31.txt" >"$T/v31.out" 2>&1 || { tail -5 "$T/v31.out"; bad "MoCo v3 1 rank: failed"; }
run "MoCo v3: 2 ranks train, measured == planned" 0 "rank 1 of 2: memory measured == planned in every arena" "${MPI[@]}" "$MEMFIT" \
  "${C[@]}" --lr 0 --bn-splits 1 --out "$T/v32" --loss-log "$T/v32.txt"
cp "$T/out.txt" "$T/v32.out"
run "MoCo v3: the keys gathered over 2 ranks, said" 0 "keys gathered over 2 ranks" cat "$T/v32.out"
out=$(compare 1e-5 "$T/v31.txt" "$T/v32.txt" "$T/v31/checkpoint.safetensors" "$T/v32/checkpoint.safetensors" 2>&1)
rc=$?; echo "  MoCo v3 1 rank x 8 (bn-splits 2) vs 2 ranks x 4 with gathered keys, lr 0: $out (with the key encoder)"
if [ $rc = 0 ]; then ok; else bad "MoCo v3 on 2 ranks does not match 1 rank (lr 0): $out"; fi
"$MEMFIT" "${C[@]}" --steps 1 --bn-splits 2 --out "$T/v33" --loss-log "$T/v33.txt" >"$T/v33.out" 2>&1 || { tail -5 "$T/v33.out"; bad "MoCo v3 1 rank: failed"; }
run "MoCo v3: 2 ranks, one update" 0 "rank 1 of 2: memory measured == planned" "${MPI[@]}" "$MEMFIT" "${C[@]}" --steps 1 --bn-splits 1 \
  --out "$T/v34" --loss-log "$T/v34.txt"
out=$(compare 1e-5 "$T/v33.txt" "$T/v34.txt" "$T/v33/checkpoint.safetensors" "$T/v34/checkpoint.safetensors" 2>&1)
rc=$?; echo "  MoCo v3 1 rank x 8 vs 2 ranks x 4, one update at lr 0.06: $out"
if [ $rc = 0 ]; then ok; else bad "MoCo v3's update on 2 ranks does not match 1 rank: $out"; fi
run "memfit plan moco --ranks 2 shows the gathered key views and keys" 0 "all-gathered over 2 rank.*'xk_gathered' \\[512,3,32,32\\].*'k_gathered' \\[512,128\\]" \
  "$MEMFIT" plan moco --preset small --ranks 2
run "memfit plan moco --version 3 --ranks 2 shows the gathered keys" 0 "all-gathered over 2 rank.*'k2_gathered' \\[512,256\\]" \
  "$MEMFIT" plan moco --preset small --version 3 --ranks 2

# VQGAN with an EMA codebook (no GAN yet: --disc-start past the run): 2 ranks x 2 images is 1 rank x 4. The codebook's
# counts and sums are all-reduced before each EMA update, and a dead code restarts at the same row of the global
# micro-batch (its owner contributes it), so the codebook, its counts and sums match 1 process, and every weight does.
# Biases are compared more loosely: most (a conv before GroupNorm, attention's k) have a gradient that cancels exactly,
# so Adam turns its rounding noise into steps of up to lr each; they may differ by 2 x lr x updates.
V=(train vqgan --preset tiny --gen-count 16 --steps 5 --batch 4 --val-fraction 0 --threads 1 --ema 1 --disc-start 100 --log-every 0 --seed 3)
"$MEMFIT" "${V[@]}" --micro-batch 4 --out "$T/v1" >"$T/v1.out" 2>&1 || { tail -5 "$T/v1.out"; bad "VQGAN 1 rank: failed"; }
run "VQGAN (EMA codebook): 2 ranks train, the checkpoints' check of parameters and states passing" 0 \
  "rank 0 of 2: memory measured == planned" "${MPI[@]}" "$MEMFIT" "${V[@]}" --out "$T/v2"
out=$(python3 - "$T/v1/checkpoint.safetensors" "$T/v2/checkpoint.safetensors" 3.6e-5 5 <<'EOF' 2>&1
import array, json, math, struct, sys
def st(p):
  d = open(p, "rb").read(); n = struct.unpack("<Q", d[:8])[0]; h = json.loads(d[8:8 + n]); base = 8 + n; out = {}
  for k, v in h.items():
    if k != "__metadata__" and v["dtype"] == "F32" and k.startswith(("param.", "state.quantize.")):
      s, e = v["data_offsets"]; out[k] = array.array("f", d[base + s:base + e])
  return out
p, q = st(sys.argv[1]), st(sys.argv[2]); lr, updates = float(sys.argv[3]), int(sys.argv[4])
if set(p) != set(q) or not any(k.startswith("state.quantize.") for k in p): sys.exit("the checkpoints hold different tensors")
worst = {"state": 0.0, "weight": 0.0, "bias": 0.0}
for k in p:
  if k.endswith(".bias"): worst["bias"] = max(worst["bias"], max(abs(u - v) for u, v in zip(p[k], q[k]))); continue
  rel = math.sqrt(sum((u - v) ** 2 for u, v in zip(p[k], q[k]))) / max(math.sqrt(sum(u * u for u in p[k])), 1e-30)
  kind = "state" if k.startswith("state.") else "weight"; worst[kind] = max(worst[kind], rel)
print(f"EMA codebook, counts, sums within {worst['state']:.3g} relative, weights {worst['weight']:.3g}, biases {worst['bias']:.3g} absolute ({len(p)} tensors)")
sys.exit(0 if worst["state"] <= 1e-5 and worst["weight"] <= 1e-5 and worst["bias"] <= 2 * lr * updates else 1)
EOF
)
rc=$?; echo "  VQGAN 1 rank x 4 vs 2 ranks x 2: $out"
if [ $rc = 0 ]; then ok; else bad "VQGAN on 2 ranks does not match 1 rank: $out"; fi

# The device path's host staging (ranks sharing a GPU, or no NCCL: src/dist/staged.c), checked here on the CPU with
# MEMFIT_DIST_DEVICE=host: the gradient buckets, ZeRO-1's reduce-scatter and all-gather, and MoCo's all-gather nodes go
# through a host copy of their bytes and the same MPI collectives, so every loss and parameter is bit-identical to the
# unstaged runs above. One process with it set runs its (one-rank) collectives that way too.
STAGED=(mpirun --bind-to none -x MEMFIT_DIST_DEVICE=host -np 2)
run "host staging: 2 ranks train, said" 0 "started during backward.*over host-staged" "${STAGED[@]}" "$MEMFIT" "${A[@]}" --batch 4 --steps 5 --bucket 16KiB \
  --out "$T/st2" --loss-log "$T/st2.txt"
out=$(compare 0 "$T/two.txt" "$T/st2.txt" "$T/two/model.safetensors" "$T/st2/model.safetensors" 2>&1)
rc=$?; echo "  2 ranks staged through host buffers vs not: $out"
if [ $rc = 0 ]; then ok; else bad "staged gradient buckets differ from MPI's in place: $out"; fi
run "host staging: ZeRO-1 on 2 ranks, said" 0 "ZeRO-1.*over host-staged" "${STAGED[@]}" "$MEMFIT" "${A[@]}" --batch 4 --steps 5 --shard-optimizer \
  --out "$T/stz" --loss-log "$T/stz.txt"
out=$(compare 0 "$T/zero.txt" "$T/stz.txt" "$T/zero/model.safetensors" "$T/stz/model.safetensors" 2>&1)
rc=$?; echo "  ZeRO-1 staged vs not: $out"
if [ $rc = 0 ]; then ok; else bad "staged ZeRO-1 differs: $out"; fi
run "host staging: MoCo shuffled BN on 2 ranks (all-gather nodes)" 0 "rank 1 of 2: memory measured == planned" env MEMFIT_WINOGRAD=0 "${STAGED[@]}" \
  "$MEMFIT" "${B[@]}" --bn-splits 1 --out "$T/sts" --loss-log "$T/sts.txt"
out=$(compare 0 "$T/s2.txt" "$T/sts.txt" "$T/s2/checkpoint.safetensors" "$T/sts/checkpoint.safetensors" 2>&1)
rc=$?; echo "  MoCo shuffled BN staged vs not: $out"
if [ $rc = 0 ]; then ok; else bad "staged all-gathers differ: $out"; fi
run "host staging: one process" 0 "step 5/5" env MEMFIT_DIST_DEVICE=host "$MEMFIT" "${A[@]}" --batch 4 --steps 5 --out "$T/st1" \
  --loss-log "$T/st1.txt"
out=$(compare 0 "$T/one.txt" "$T/st1.txt" "$T/one/model.safetensors" "$T/st1/model.safetensors" 2>&1)
rc=$?; echo "  1 process staged vs not: $out"
if [ $rc = 0 ]; then ok; else bad "a staged single process differs: $out"; fi
run "MEMFIT_DIST_DEVICE=nccl on the CPU is refused, named" 1 "MEMFIT_DIST_DEVICE=nccl needs a device backend" \
  env MEMFIT_DIST_DEVICE=nccl "$MEMFIT" "${A[@]}" --batch 4 --steps 1 --out "$T/stn"
run "a wrong MEMFIT_DIST_DEVICE is refused, named" 1 "MEMFIT_DIST_DEVICE=gpu: expected nccl or host" \
  env MEMFIT_DIST_DEVICE=gpu "$MEMFIT" "${A[@]}" --batch 4 --steps 1 --out "$T/stw"

# On a device (a CUDA build on a machine with a GPU; skipped otherwise): NCCL with one rank changes nothing (its
# all-reduce of one rank is a copy), and 2 ranks sharing the GPU (NCCL refuses them) reduce through the host over MPI
# and match 1 rank with the whole batch within the same 1e-5.
D=("${A[@]}" --backend cuda --batch 4 --steps 5)
"$MEMFIT" "${D[@]}" --out "$T/g1" --loss-log "$T/g1.txt" >"$T/g1.out" 2>&1; rc=$?
if [ $rc = 2 ] && grep -Eq -- "--backend( cuda)?: .*(not built in|no CUDA device|CUDA backend)" "$T/g1.out"; then
  echo "SKIP (device part): $(grep -Eo -- "--backend.*" "$T/g1.out" | head -1)"
elif [ $rc != 0 ]; then bad "1 process on the GPU: exit status $rc"; tail -5 "$T/g1.out" | sed 's/^/    /'
else
  ok
  if "$MEMFIT" --version | grep -q "NCCL in"; then
    run "NCCL: one rank on the GPU" 0 "step 5/5" env MEMFIT_DIST_DEVICE=nccl "$MEMFIT" "${D[@]}" --out "$T/gn" --loss-log "$T/gn.txt"
    out=$(compare 0 "$T/g1.txt" "$T/gn.txt" "$T/g1/model.safetensors" "$T/gn/model.safetensors" 2>&1)
    rc=$?; echo "  GPU: 1 process through a 1-rank NCCL communicator vs without: $out"
    if [ $rc = 0 ]; then ok; else bad "a 1-rank NCCL run differs: $out"; fi
  else echo "SKIP (NCCL part): this build has no NCCL"; fi
  run "GPU: 2 ranks sharing it reduce through the host" 0 "through host memory" "${MPI[@]}" "$MEMFIT" "${A[@]}" --backend cuda \
    --batch 4 --steps 5 --bucket 16KiB --out "$T/g2" --loss-log "$T/g2.txt"
  out=$(compare 1e-5 "$T/g1.txt" "$T/g2.txt" "$T/g1/model.safetensors" "$T/g2/model.safetensors" 2>&1)
  rc=$?; echo "  GPU: 1 rank x 4 vs 2 ranks x 2 sharing the device: $out"
  if [ $rc = 0 ]; then ok; else bad "2 ranks on one GPU do not match 1 rank: $out"; fi
fi

# agreement: a rank whose options give another plan stops every rank, named
run "ranks with different plans stop, naming the rank" 1 "rank 1's plan differs from rank 0's" \
  mpirun --bind-to none -np 1 "$MEMFIT" "${A[@]}" --batch 4 --steps 2 --out "$T/d" : -np 1 "$MEMFIT" "${A[@]}" --batch 4 --steps 2 \
  --growth 5 --out "$T/d"
run "a rank whose budget nothing fits stops all, named" 3 "rank 1 of 2 could not choose settings that fit" \
  mpirun --bind-to none -np 1 "$MEMFIT" "${A[@]}" --batch 4 --steps 2 --out "$T/f" : -np 1 "$MEMFIT" "${A[@]}" --batch 4 --steps 2 \
  --budget 64KiB --out "$T/f"
run "a global batch the ranks do not divide is refused" 2 "not a multiple of the 2 ranks" "${MPI[@]}" "$MEMFIT" "${A[@]}" --batch 3 \
  --steps 1 --out "$T/e"
run "a preset's batch the ranks do not divide is refused, named as the preset's" 2 "batch 1 \(the preset's\) is not a multiple of the 2 ranks" \
  "${MPI[@]}" "$MEMFIT" "${A[@]}" --preset bench --steps 1 --out "$T/e2"

# a rank killed mid-run (rank 1 is memfit itself: a shell that arms a kill of its own pid, then becomes memfit): the
# job ends within bounded time, naming the rank
start=$(date +%s)
mpirun --bind-to none -np 1 "$MEMFIT" "${A[@]}" --batch 4 --steps 100000 --out "$T/k" : -np 1 bash -c \
  "(sleep 3; kill -9 \$\$) & exec \"$MEMFIT\" ${A[*]} --batch 4 --steps 100000 --out $T/k" >"$T/kill.out" 2>&1
rc=$?; took=$(( $(date +%s) - start ))
echo "  killed rank 1 after 3 s: the job ended after ${took} s with status $rc"
if [ $rc != 0 ] && [ $took -lt 60 ] && grep -Eq "process rank 1 .*signal 9|rank 1 of 2 .*(died|failed)" "$T/kill.out"; then ok
else bad "killing rank 1: status $rc after ${took} s"; tail -5 "$T/kill.out" | sed 's/^/    /'; fi

# a rank that hangs (stopped): the others give up on their collective after MEMFIT_DIST_TIMEOUT seconds and end the job.
# Rank 1 is stopped 1 s after rank 0 logged the start of training (so MPI is up on both: a rank stopped inside MPI's
# start-up, which a loaded machine can stretch past a fixed delay, is mpirun's to time out, not memfit's collectives)
start=$(date +%s)
MEMFIT_DIST_TIMEOUT=3 timeout 120 mpirun --bind-to none -x MEMFIT_DIST_TIMEOUT -np 1 "$MEMFIT" "${A[@]}" --batch 4 --steps 100000 \
  --out "$T/h" : -np 1 bash -c "(for i in \$(seq 900); do [ -s $T/h/log.jsonl ] && break; sleep 0.1; done; sleep 1; kill -STOP \$\$) &
    exec \"$MEMFIT\" ${A[*]} --batch 4 --steps 100000 --out $T/h" >"$T/hang.out" 2>&1
rc=$?; took=$(( $(date +%s) - start ))
echo "  stopped rank 1 once training had started: the job ended after ${took} s with status $rc"
if [ $rc != 0 ] && [ $rc != 124 ] && grep -q "rank 0 of 2: .* did not finish within 3 s" "$T/hang.out"; then ok
else bad "a hung rank: status $rc after ${took} s"; tail -5 "$T/hang.out" | sed 's/^/    /'; fi

echo "cli_mpi: $pass passed, $fail failed"
[ $fail -eq 0 ]
