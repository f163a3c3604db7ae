"""The real capture backends, PortAudio through sounddevice or PyAudio. Imported only when a mic is used.

Each callback copies the block into the CaptureQueue and returns at once; a stream that finishes on its
own, or whose callback fails, is reported through ``CaptureQueue.fail``.
"""

from __future__ import annotations

import contextlib

import numpy as np

from .mic import CaptureQueue, InputDevice


class SoundDeviceBackend:
    name = "sounddevice"

    def __init__(self) -> None:
        import sounddevice

        self._sd = sounddevice

    def devices(self) -> list[InputDevice]:
        return [
            InputDevice(self.name, i, d["name"], int(d["max_input_channels"]), float(d["default_samplerate"]))
            for i, d in enumerate(self._sd.query_devices())
            if d["max_input_channels"] > 0
        ]

    def default_index(self) -> int | None:
        try:
            return int(self._sd.query_devices(kind="input")["index"])
        except self._sd.PortAudioError:
            return None

    def supports(self, device: InputDevice, rate: int, channels: int) -> bool:
        try:
            self._sd.check_input_settings(device=device.index, channels=channels, dtype="int16", samplerate=rate)
        except (self._sd.PortAudioError, ValueError):
            return False
        return True

    def open(self, device: InputDevice, rate: int, channels: int, block_frames: int, sink: CaptureQueue):
        sd = self._sd

        def callback(indata: np.ndarray, frames: int, time_info: object, status: sd.CallbackFlags) -> None:
            if status.input_overflow:
                sink.overflow()
            sink.put(indata.copy())  # (frames, channels) int16; PortAudio reuses indata

        def finished() -> None:
            sink.fail("the capture stream ended")

        stream = sd.InputStream(
            device=device.index,
            samplerate=rate,
            channels=channels,
            dtype="int16",
            blocksize=block_frames,
            callback=callback,
            finished_callback=finished,
        )
        stream.start()
        return _SoundDeviceStream(stream)

    def close(self) -> None:
        """Nothing to release: sounddevice keeps PortAudio initialised for the process."""


class _SoundDeviceStream:
    def __init__(self, stream) -> None:
        self._stream = stream

    @property
    def active(self) -> bool:
        return bool(self._stream.active)

    def close(self) -> None:
        self._stream.close(ignore_errors=True)


class PyAudioBackend:
    name = "pyaudio"

    def __init__(self) -> None:
        import pyaudio

        self._pyaudio = pyaudio
        self._pa = pyaudio.PyAudio()

    def devices(self) -> list[InputDevice]:
        out = []
        for i in range(self._pa.get_device_count()):
            d = self._pa.get_device_info_by_index(i)
            if d["maxInputChannels"] > 0:
                out.append(
                    InputDevice(self.name, i, d["name"], int(d["maxInputChannels"]), float(d["defaultSampleRate"]))
                )
        return out

    def default_index(self) -> int | None:
        try:
            return int(self._pa.get_default_input_device_info()["index"])
        except OSError:
            return None

    def supports(self, device: InputDevice, rate: int, channels: int) -> bool:
        try:
            return bool(
                self._pa.is_format_supported(
                    rate, input_device=device.index, input_channels=channels, input_format=self._pyaudio.paInt16
                )
            )
        except ValueError:
            return False

    def open(self, device: InputDevice, rate: int, channels: int, block_frames: int, sink: CaptureQueue):
        pa = self._pyaudio

        def callback(in_data: bytes, frame_count: int, time_info: dict, status: int) -> tuple[None, int]:
            if status & pa.paInputOverflow:
                sink.overflow()
            sink.put(np.frombuffer(in_data, dtype="<i2").reshape(-1, channels))  # (frames, channels)
            return None, pa.paContinue

        stream = self._pa.open(
            format=pa.paInt16,
            channels=channels,
            rate=rate,
            input=True,
            input_device_index=device.index,
            frames_per_buffer=block_frames,
            stream_callback=callback,
        )
        stream.start_stream()
        return _PyAudioStream(stream)

    def close(self) -> None:
        self._pa.terminate()


class _PyAudioStream:
    def __init__(self, stream) -> None:
        self._stream = stream

    @property
    def active(self) -> bool:
        return bool(self._stream.is_active())

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a vanished device may refuse to stop
            self._stream.stop_stream()
        self._stream.close()


BACKENDS = {"sounddevice": SoundDeviceBackend, "pyaudio": PyAudioBackend}
