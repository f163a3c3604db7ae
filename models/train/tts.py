"""Speech synthesis with the Debian `main` engines: espeak-ng, flite, festival (text2wave).

Every waveform comes back as 16 kHz mono float32 (soxr resampling from the engine's native rate:
espeak-ng 22.05 kHz, flite 8/16 kHz, festival 16/32 kHz). A synthesis is a pure function of
(text, voice, prosody): the engines are deterministic, which `tests/models/test_train_data.py` checks.

mbrola and svox-pico are not available: they live in Debian contrib/non-free, which these machines
do not enable (`apt-cache policy mbrola libttspico-utils` shows no candidate). The espeak-ng
``mb-*`` voices need mbrola, so they are not listed here.

Voices are split: the `TEST_VOICES` are never used for training.
"""

from __future__ import annotations

import io
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000

ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
    "en-us-nyc",
)  # fmt: skip
ESPEAK_TRAIN_VARIANTS = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m8", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3",
    "klatt5", "klatt6", "Alex", "Andy", "Annie", "adam", "anika", "aunty", "belinda", "benjamin", "boris",
    "caleb", "david", "ed", "edward", "Gene", "grandma", "grandpa", "iven", "iven2", "john", "Lee",
    "linda", "max", "Michael", "michel", "Mike", "norbert", "paul", "pedro", "quincy", "rob", "robert",
    "shelby", "steph", "steph2", "travis", "victor", "zac", "whisperf", "croak",
)  # fmt: skip
ESPEAK_TEST_VARIANTS = ("m7", "f5", "klatt4", "steph3", "edward2")

# Mean F0 (Hz) of each voice, measured on its default output: the pitch offset is applied around it.
FLITE_F0 = {"kal": 100.0, "kal16": 87.0, "awb": 131.0, "slt": 170.0, "rms": 102.0}
FLITE_TRAIN, FLITE_TEST = ("kal", "kal16", "awb", "slt"), ("rms",)
FESTIVAL_DIPHONES = ("kal_diphone", "ked_diphone")  # festvox-kallpc16k, festvox-kdlpc16k (US English males)
FESTIVAL_SLT = "cmu_us_slt_arctic_hts"
FESTIVAL_TRAIN = (*FESTIVAL_DIPHONES, FESTIVAL_SLT)

ENGINE_BINARIES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak-ng" | "flite" | "festival"
    name: str  # espeak-ng "accent+variant", a flite voice, a festival voice

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class Prosody:
    rate: float  # speaking-rate factor, 1.0 = the voice's default tempo
    pitch: float  # semitones from the default F0 (ignored by festival cmu_us_slt_arctic_hts and flite rms)


def _espeak(variants: tuple[str, ...]) -> tuple[Voice, ...]:
    return tuple(Voice("espeak-ng", a + (f"+{v}" if v else "")) for a in ESPEAK_ACCENTS for v in variants)


TRAIN_VOICES = {
    "espeak-ng": _espeak(ESPEAK_TRAIN_VARIANTS),
    "flite": tuple(Voice("flite", v) for v in FLITE_TRAIN),
    "festival": tuple(Voice("festival", v) for v in FESTIVAL_TRAIN),
}
TEST_VOICES = {
    "espeak-ng": _espeak(ESPEAK_TEST_VARIANTS),
    "flite": tuple(Voice("flite", v) for v in FLITE_TEST),
}


def check_engines(engines: tuple[str, ...] = tuple(ENGINE_BINARIES)) -> None:
    missing = [ENGINE_BINARIES[e] for e in engines if shutil.which(ENGINE_BINARIES[e]) is None]
    if missing:
        raise RuntimeError(f"speech synthesizers not installed: {', '.join(missing)} (apt-get install "
                           "espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)")


def _command(text: str, voice: Voice, prosody: Prosody, wav: Path, workdir: Path) -> list[str]:
    if voice.engine == "espeak-ng":
        wpm = round(175 * prosody.rate)
        pitch = int(np.clip(round(50 + 5 * prosody.pitch), 0, 99))  # espeak -p 0-99: pitch +-4 -> 30-70
        return ["espeak-ng", "-v", voice.name, "-s", str(wpm), "-p", str(pitch), "-w", str(wav), text]
    if voice.engine == "flite":
        f0 = FLITE_F0[voice.name] * 2 ** (prosody.pitch / 12)
        return [
            "flite", "-voice", voice.name, "--setf", f"duration_stretch={1 / prosody.rate:.4f}",
            "--setf", f"int_f0_target_mean={f0:.1f}", "-t", text, "-o", str(wav),
        ]  # fmt: skip
    if voice.engine == "festival":
        text_file = workdir / "text.txt"
        text_file.write_text(text + "\n")
        if voice.name in FESTIVAL_DIPHONES:
            f0 = 105 * 2 ** (prosody.pitch / 12)
            setup = (
                f"(voice_{voice.name}) (Parameter.set 'Duration_Stretch {1.1 / prosody.rate:.4f}) "
                f"(set! int_lr_params '((target_f0_mean {f0:.1f}) (target_f0_std 14) "
                "(model_f0_mean 170) (model_f0_std 34)))"
            )
        elif voice.name == FESTIVAL_SLT:
            setup = f"(voice_{FESTIVAL_SLT}) (set! hts_engine_params (append hts_engine_params "
            setup += f"'((\"-r\" {prosody.rate:.4f}))))"
        else:
            raise ValueError(f"unknown festival voice {voice.name!r}")
        return ["text2wave", "-eval", f"(begin {setup})", str(text_file), "-o", str(wav)]
    raise ValueError(f"unknown engine {voice.engine!r}")


def synthesize(text: str, voice: Voice, prosody: Prosody) -> np.ndarray:
    """Speak `text` -> (N,) float32 at 16 kHz, mono."""
    with tempfile.TemporaryDirectory(prefix="ouvir-tts-") as tmp:
        wav = Path(tmp) / "out.wav"
        subprocess.run(_command(text, voice, prosody, wav, Path(tmp)), check=True, capture_output=True)
        audio, rate = sf.read(io.BytesIO(wav.read_bytes()), dtype="float32", always_2d=True)  # (N, C)
    audio = audio.mean(axis=1)  # (N,)
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(audio, dtype=np.float32)


def cpu_seconds() -> float:
    """CPU time of this process plus its finished children (the synthesizer subprocesses)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed_synthesize(text: str, voice: Voice, prosody: Prosody) -> tuple[np.ndarray, float]:
    """`synthesize` plus the CPU seconds it took (this process and the engine's subprocess)."""
    start = cpu_seconds()
    audio = synthesize(text, voice, prosody)
    return audio, cpu_seconds() - start
