"""Audio backends of the live bridge: file, JACK and PortAudio.

Each one owns its audio callback and gives the bridge (channels, n) float32 views of
preallocated arrays; the callback does nothing else. JACK-Client and pyaudio wrap their
buffers in small Python objects per call (pyaudio also wants a bytes object back): those
wrappers are the libraries' own, no sample memory is allocated by us in the callback.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from samstream.models.separate import change_rate
from samstream.stream.engine import ConfigurationError

from .audio_files import read_audio, write_audio
from .bridge import LiveBridge


class FileBackend:
    """Streams a file through the bridge; writes output, target and residual, latency removed.

    ``realtime``: pace the callbacks at the stream's rate on a worker thread, as a sound
    card would; otherwise render as fast as the machine allows (no misses possible).
    """

    name = "file"

    def __init__(self, bridge: LiveBridge, input_path: Path, out_dir: Path, *, block: int = 128,
                 realtime: bool = False):
        self.bridge = bridge
        self.out_dir = Path(out_dir)
        self.block = block
        self.realtime = realtime
        signal, self.file_rate = read_audio(input_path)
        self.signal = change_rate(signal, self.file_rate, bridge.sample_rate)
        self.channels = self.signal.shape[0]
        self._stop = threading.Event()
        self.done = threading.Event()
        bridge.backend_name = self.name

    def prepare(self) -> None:
        self.bridge.configure(self.channels)
        self.bridge.start()

    def start(self) -> None:
        """Nothing to open: ``run`` streams the file."""

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> dict:
        """Stream the whole file (or until stopped); write the outputs; return a summary."""
        bridge, block, channels = self.bridge, self.block, self.channels
        latency = bridge.latency_samples
        length = self.signal.shape[1]
        total = -(-(length + latency) // block) * block
        source = np.zeros((channels, total), np.float32)
        source[:, :length] = self.signal
        output = np.zeros((channels, total), np.float32)
        taps = np.zeros((2 * channels, total), np.float32)
        bridge.settle()
        started = time.perf_counter()
        done = 0
        for start in range(0, total, block):
            if self._stop.is_set():
                break
            window = slice(start, start + block)
            bridge.process(source[:, window], output[:, window], taps[:, window])
            done = start + block
            if self.realtime:
                delay = started + done / bridge.sample_rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
        elapsed = time.perf_counter() - started
        bridge.stop()
        usable = max(0, min(length, done - latency))
        results = {"output": output, "target": taps[:channels], "residual": taps[channels:]}
        for name, stream in results.items():
            aligned = change_rate(stream[:, latency:latency + usable], bridge.sample_rate, self.file_rate)
            write_audio(self.out_dir / f"{name}.wav", aligned, self.file_rate)
        self.done.set()
        return {"seconds": usable / bridge.sample_rate, "elapsed": elapsed, "latency_samples": latency,
                "complete": usable == length}


class JackBackend:
    """JACK client: ports in_N/out_N, latency published through JACK's latency API, xruns counted."""

    name = "jack"

    def __init__(self, bridge: LiveBridge, *, client_name: str = "samstream", channels: int = 2,
                 connect: bool = False, server_name: str | None = None, native: bool = True):
        import jack
        self.bridge = bridge
        self.channels = channels
        self.connect = connect
        try:
            self.client = jack.Client(client_name, no_start_server=True, servername=server_name)
        except jack.JackOpenError:
            raise ConfigurationError("no JACK server is running (start one, e.g. `jackd -d dummy -r 48000 "
                                     "-p 128`)") from None
        # Read before anything can close the client: libjack answers 0 for a closed one.
        self.sample_rate, self.block = self.client.samplerate, self.client.blocksize
        if self.sample_rate <= 0 or self.block <= 0:
            self.client.close()
            raise ConfigurationError(f"the JACK server reports {self.sample_rate} Hz and {self.block}-frame periods: "
                                     f"it is not running a usable driver (restart it)")
        self.inports = [self.client.inports.register(f"in_{index + 1}") for index in range(channels)]
        self.outports = [self.client.outports.register(f"out_{index + 1}") for index in range(channels)]
        self._in = np.zeros((channels, self.block), np.float32)
        self._out = np.zeros((channels, self.block), np.float32)
        self.native = native
        self.native_callback = None
        self.client.set_xrun_callback(self._xrun)
        from .jack_latency import LatencyPublisher
        self.latency_publisher = LatencyPublisher(self.client, self.inports, self.outports,
                                                  lambda: self.bridge.latency_samples)
        self.client.set_blocksize_callback(self._blocksize)
        bridge.backend_name = self.name

    def prepare(self) -> None:
        # Another rate than the model's is converted inside the live path (stream.rate_convert).
        self.bridge.configure(self.channels, self.sample_rate)
        self.bridge.start()
        if self.native:
            from .jack_native import NativeJackCallback, jack_address
            processor = self.bridge.processor
            self.native_callback = NativeJackCallback(
                jack_address(self.client._ptr), [jack_address(port._ptr) for port in self.inports],
                [jack_address(port._ptr) for port in self.outports], processor.callback_state, processor.max_block,
                processor.wake_fd)
        else:
            self.client.set_process_callback(self._process)

    def start(self) -> None:
        self.client.activate()
        self.latency_publisher.recompute()
        if self.connect:
            capture = self.client.get_ports(is_physical=True, is_output=True, is_audio=True)
            playback = self.client.get_ports(is_physical=True, is_input=True, is_audio=True)
            for source, port in zip(capture, self.inports, strict=False):
                self.client.connect(source, port)
            for port, sink in zip(self.outports, playback, strict=False):
                self.client.connect(port, sink)

    def _process(self, frames: int) -> None:
        incoming, outgoing = self._in, self._out
        for channel, port in enumerate(self.inports):
            incoming[channel, :frames] = port.get_array()
        self.bridge.process(incoming[:, :frames], outgoing[:, :frames])
        for channel, port in enumerate(self.outports):
            port.get_array()[:] = outgoing[channel, :frames]

    def _xrun(self, delay: float) -> None:
        self.bridge.count_xrun(delay)

    def _blocksize(self, blocksize: int) -> None:
        if blocksize != self.block:
            self.bridge._note(f"JACK period changed to {blocksize}; restart samstream to keep the latency exact")

    def request_stop(self) -> None:
        pass

    def close(self) -> None:
        try:
            self.client.deactivate()
        finally:
            self.bridge.stop()
            self.client.close()


def find_portaudio_device(audio, device: str | int | None, channels: int) -> int:
    """A device index from a number, or a fragment of a device's name or of its host API's name
    ("system", "jack", "JACK Audio Connection Kit"); one with enough in and out channels."""
    count = audio.get_device_count()
    devices = [audio.get_device_info_by_index(index) for index in range(count)]
    host_apis = {info["hostApi"]: audio.get_host_api_info_by_index(info["hostApi"])["name"] for info in devices}
    usable = [info for info in devices
              if info["maxInputChannels"] >= channels and info["maxOutputChannels"] >= channels]
    if device is None:
        if not usable:
            raise ConfigurationError(f"no PortAudio device has {channels} input and output channels")
        return int(usable[0]["index"])
    if isinstance(device, int) or str(device).isdigit():
        index = int(device)
        if not 0 <= index < count:
            raise ConfigurationError(f"no PortAudio device {index} (there are {count})")
        return index
    wanted = str(device).lower()
    by_name = [info for info in usable if wanted in info["name"].lower()]
    by_host_api = [info for info in usable if wanted in host_apis[info["hostApi"]].lower()]
    if by_name or by_host_api:
        return int((by_name or by_host_api)[0]["index"])
    names = ", ".join(f"{info['name']!r} on {host_apis[info['hostApi']]!r} ({info['maxInputChannels']} in, "
                      f"{info['maxOutputChannels']} out)" for info in devices) or "none"
    raise ConfigurationError(f"no PortAudio device with {channels} input and output channels matches {device!r} "
                             f"(devices: {names})")


class PortAudioBackend:
    """pyaudio full-duplex float32 stream; on a JACK host it runs on JACK's host API."""

    name = "portaudio"

    def __init__(self, bridge: LiveBridge, *, device: str | int | None = None, channels: int = 2,
                 block: int = 128):
        import pyaudio
        self.bridge = bridge
        self.channels = channels
        self.block = block
        self._pyaudio = pyaudio
        self.audio = pyaudio.PyAudio()
        try:
            self.device = find_portaudio_device(self.audio, device, channels)
        except ConfigurationError:
            self.audio.terminate()
            raise
        self._out = np.zeros((block * 4, channels), np.float32)
        bridge.backend_name = self.name
        self.stream = None

    def prepare(self) -> None:
        self.bridge.configure(self.channels)
        self.bridge.start()

    def start(self) -> None:
        pyaudio = self._pyaudio
        self.stream = self.audio.open(format=pyaudio.paFloat32, channels=self.channels,
                                      rate=self.bridge.sample_rate, input=True, output=True,
                                      input_device_index=self.device, output_device_index=self.device,
                                      frames_per_buffer=self.block, stream_callback=self._callback)
        # PortAudio's own buffering (and the device's, as PortAudio knows it) lies between the
        # bridge and the outside world: it belongs in the latency the bridge reports.
        device_seconds = self.stream.get_input_latency() + self.stream.get_output_latency()
        self.bridge.device_latency_samples = round(device_seconds * self.bridge.sample_rate)
        self.stream.start_stream()

    def _callback(self, in_data, frame_count, time_info, status):
        if status:
            self.bridge.count_xrun(0.0)
        incoming = np.frombuffer(in_data, dtype=np.float32).reshape(frame_count, self.channels)
        outgoing = self._out[:frame_count]
        self.bridge.process(incoming.T, outgoing.T)
        return outgoing.tobytes(), self._pyaudio.paContinue

    def request_stop(self) -> None:
        pass

    def close(self) -> None:
        try:
            if self.stream is not None:
                self.stream.stop_stream()
                self.stream.close()
        finally:
            self.bridge.stop()
            self.audio.terminate()
