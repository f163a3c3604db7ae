#!/bin/bash
# On the device machine (README.md beside this file): install the carried wheels and ouvir, decode the Opus
# pack, train with the recipe's defaults for $MINUTES, copy the checkpoints and the log to $OUT.
# The shipped model's GPU phase ran this with two configurations side by side (models/train/recipe.py).
set -u
T0=$(date +%s)
DATA=${DATA:-.carry/data}; DEVICE=${DEVICE:-cuda}; MINUTES=${MINUTES:-8}; BACKSTOP=${BACKSTOP:-$((60 * ${MINUTES%.*} + 60))}
EXTRA=${EXTRA:-}; WORKERS=${WORKERS:-14}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
python3 - "$DATA" <<'PY' || exit 1
import sys, numpy as np, soundfile as sf
from pathlib import Path
from concurrent.futures import ProcessPoolExecutor
def dec(p):
    y, r = sf.read(p, dtype="int16"); assert r == 16000, (p, r)
    np.save(p.with_suffix(".npy"), y); return len(y)
files = sorted(Path(sys.argv[1]).glob("*.pack/*.ogg"))
with ProcessPoolExecutor(16) as ex:
    print("decoded samples", sum(ex.map(dec, files)))
PY
echo "setup done in $(( $(date +%s) - T0 )) s"
timeout -s INT $BACKSTOP python3 -m ouvir.models.train.train --data $DATA --out /tmp/run --device $DEVICE \
  --workers $WORKERS --threads 1 --batch-seconds 200 --warmup-steps 600 --max-minutes $MINUTES --val-every 800 \
  --save-every 1000000 --keep-best 2 --val-utterances 300 --log-every 20 $EXTRA > /tmp/run.log 2>&1
echo "train rc=$?"
mkdir -p $OUT/run && cp /tmp/run/*.ouvir /tmp/run/log.jsonl $OUT/run/
grep -E '"kind": "(val|stop)"' /tmp/run/log.jsonl | cut -c1-300
tail -c 20000 /tmp/run.log > $OUT/train.log
echo "total $(( $(date +%s) - T0 )) s"
