#!/bin/bash
# Pack this machine's espeak-ng, flite and sox with the libraries they load (glibc aside) and the English
# espeak-ng data into OUT.tar.xz (~18 MB), for synth_train.sh on a machine without them.
set -eu
OUT=${1:-.carry/tts.tar.xz}
B=$(mktemp -d)/tts
mkdir -p "$B/bin" "$B/lib" "$B/data/espeak-ng-data/lang"
for b in espeak-ng flite sox; do
  cp "$(command -v $b)" "$B/bin/"
  ldd "$(command -v $b)" | awk '/=>/ {print $3}' | grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' \
    | xargs -I{} cp -L {} "$B/lib/"
done
E=/usr/lib/x86_64-linux-gnu/espeak-ng-data
cp -r "$E"/{phondata,phonindex,phontab,intonations,en_dict,voices} "$B/data/espeak-ng-data/"
cp -r "$E/lang/gmw" "$B/data/espeak-ng-data/lang/"
mkdir -p "$(dirname "$OUT")"
tar -C "$(dirname "$B")" -cJf "$OUT" tts
rm -rf "$(dirname "$B")"
ls -la "$OUT"
