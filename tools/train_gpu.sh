#!/usr/bin/env bash
# Train the shipped models side by side on one lent GPU machine (no network) from a pack of crops, within a
# time budget, and leave what comes back small: per model its console log and its fp16 weights with metadata and
# training log (python -m train.ship RUN --compact). Ship them afterwards where the datasets are
# (python -m train.ship, streampose eval). A run still going at SECONDS + 70 s gets Ctrl-C and saves.
#
#   tools/train_gpu.sh PACK OUTDIR SECONDS [MODEL...]     (models: hg2-lite hg2 person-det; default all three)
#
# Each model starts from its shipped weights (--init) and fits its schedule into SECONDS (--time-budget).
# The detector trains on DETECTOR_PACK where set: a pack of whole frames (tools/pack_crops.py --frames), which it
# needs; composed from the person crops of PACK it learns that a person is the centre of a patch.
set -uo pipefail
pack=$1 out=$2 secs=$3
shift 3
models=("${@:-hg2-lite hg2 person-det}")
read -r -a models <<<"${models[*]}"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$out"
common=(--device "${DEVICE:-cuda}" --optimizer adam --time-budget "$secs" --cache-dir /tmp/sp-cache)
for m in "${models[@]}"; do
    case $m in
        person-det) args=(--input-size 192 --batch 64 --lr 5e-4 --epochs 600 --lr-drops 450,550 --val-every 40
                          --workers "${WORKERS:-10}") ;;
        *) args=(--batch 64 --lr 5e-4 --epochs 400 --lr-drops 300,370 --swap-after 10 --val-every 20) ;;
    esac
    data=$pack
    [ "$m" = person-det ] && data=${DETECTOR_PACK:-$pack}
    timeout -s INT $((secs + 70)) "$py" -m streampose train --config "$m" --init "streampose/models/$m.pt" --out "/tmp/sp-runs/$m" \
        --data "pack:$data" "${common[@]}" "${args[@]}" >"$out/$m.log" 2>&1 &
done
(sleep 90 && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv) &
wait
status=0
for m in "${models[@]}"; do
    tail -n 4 "$out/$m.log"
    if [ -f "/tmp/sp-runs/$m/last.pt" ]; then
        "$py" -m train.ship "/tmp/sp-runs/$m" --compact "$out/$m.pt" || status=1
    else
        status=1
    fi
done
exit $status
