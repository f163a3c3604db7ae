#!/bin/bash
# On the device machine (README.md beside this file): synthesize a fresh training set there from the carried
# synthesizers and corpus, then train from the shipped model until DEADLINE seconds after the start, and copy the
# checkpoints and the logs to $OUT. Carried: .carry/tts.tar.xz (espeak-ng, flite, sox and their libraries, made by
# bundle_tts.sh), .carry/corpus.json.gz (python -m ouvir.models.train.data --save-corpus), .whl/ (soundfile, cffi,
# pycparser, soxr for cp312). Nothing here needs a GPU: DEVICE=cpu with small numbers is its dry run.
set -u
T0=$(date +%s)
CARRY=${CARRY:-.carry}; DEVICE=${DEVICE:-cuda}; TRAIN_UTTS=${TRAIN_UTTS:-30000}; TEST_UTTS=${TEST_UTTS:-300}
SEED=${SEED:-2}; JOBS=${JOBS:-$(nproc)}; WORKERS=${WORKERS:-$(( $(nproc) - 2 ))}; DEADLINE=${DEADLINE:-540}
INIT=${INIT:-pkg/default_model/model.ouvir}; RESULTS=${OUT:-/tmp/device-out}; TMP=${TMP_ROOT:-/tmp/ouvir-device}
EXTRA=${EXTRA:-}; WHEELS=${WHEELS:-.whl}
elapsed() { echo $(( $(date +%s) - T0 )); }
mkdir -p "$RESULTS" "$TMP"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$TMP/site" "$WHEELS"/*.whl || exit 1
python3 -c "import ouvir" 2>/dev/null \
  || python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$TMP/site" . || exit 1
export PYTHONPATH=$TMP/site PYTHONUNBUFFERED=1
tar -C "$TMP" -xJf "$CARRY/tts.tar.xz" || exit 1
# Wrappers: the bundle's libraries for the synthesizers alone, never for Python (its own zlib, lzma, ...).
mkdir -p "$TMP/wrap"
for b in espeak-ng flite sox; do
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/tts/lib ESPEAK_DATA_PATH=%s/tts/data exec %s/tts/bin/%s "$@"\n' \
    "$TMP" "$TMP" "$TMP" "$b" > "$TMP/wrap/$b"
  chmod +x "$TMP/wrap/$b"
  if LD_LIBRARY_PATH=$TMP/tts/lib ldd "$TMP/tts/bin/$b" | grep "not found"; then echo "$b: libraries missing"; exit 1; fi
done
export PATH=$TMP/wrap:$PATH
espeak-ng -v en-us+m7 -w "$TMP/e.wav" "hello there" && flite -voice rms -t "hello there" -o "$TMP/f.wav" \
  && sox "$TMP/f.wav" "$TMP/s.wav" pitch -300 || { echo "a synthesizer does not run"; exit 1; }
echo "setup done at $(elapsed) s"
python3 -m ouvir.models.train.data --out "$TMP/data" --train "$TRAIN_UTTS" --test "$TEST_UTTS" --seed "$SEED" \
  --workers "$JOBS" --engines espeak-ng flite --corpus "$CARRY/corpus.json.gz" > "$TMP/synth.log" 2>&1 \
  || { tail -c 3000 "$TMP/synth.log"; exit 1; }
cp "$TMP/data/stats.json" "$RESULTS/synth_stats.json"
echo "synthesized at $(elapsed) s: $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['splits'])" \
  "$TMP/data/stats.json")"
# Train until DEADLINE less a margin for the last validation, the save and the copy.
MINUTES=$(python3 -c "print(max(0.5, ($DEADLINE - $(elapsed) - 45) / 60))")
echo "training for $MINUTES min"
timeout -s INT $(( DEADLINE - $(elapsed) )) python3 -m ouvir.models.train.train --data "$TMP/data" --out "$TMP/run" \
  --device "$DEVICE" --workers "$WORKERS" --threads 1 --init-from "$INIT" --max-minutes "$MINUTES" \
  --save-every 1000000 --keep-best 2 --val-utterances "$TEST_UTTS" --log-every 20 $EXTRA > "$TMP/run.log" 2>&1
echo "train rc=$? at $(elapsed) s"
mkdir -p "$RESULTS/run" && cp "$TMP"/run/*.ouvir "$TMP/run/log.jsonl" "$RESULTS/run/"
grep -E '"kind": "(val|stop)"' "$TMP/run/log.jsonl" | cut -c1-200
grep -E '"kind": "train"' "$TMP/run/log.jsonl" | tail -3 | cut -c1-300
tail -c 20000 "$TMP/run.log" > "$RESULTS/train.log"
echo "total $(elapsed) s"
