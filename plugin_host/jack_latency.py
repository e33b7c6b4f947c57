"""JACK's port latency API, which JACK-Client 0.5 does not wrap, reached through cffi.

A client that delays its audio must answer JACK's latency callback: for capture latency
its output ports report the inputs' range plus its own delay, for playback latency its
input ports report the outputs' range plus its delay. Then `jack_lsp -l` shows the delay
and a DAW downstream compensates for it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import cffi

_DECLARATIONS = """
typedef struct _jack_port jack_port_t;
typedef struct _jack_client jack_client_t;
typedef uint32_t jack_nframes_t;
typedef enum { JackCaptureLatency, JackPlaybackLatency } jack_latency_callback_mode_t;
typedef struct { jack_nframes_t min; jack_nframes_t max; } jack_latency_range_t;
typedef void (*JackLatencyCallback)(jack_latency_callback_mode_t mode, void *arg);
int jack_set_latency_callback(jack_client_t *client, JackLatencyCallback callback, void *arg);
void jack_port_get_latency_range(jack_port_t *port, jack_latency_callback_mode_t mode, jack_latency_range_t *range);
void jack_port_set_latency_range(jack_port_t *port, jack_latency_callback_mode_t mode, jack_latency_range_t *range);
int jack_recompute_total_latencies(jack_client_t *client);
"""

_ffi = cffi.FFI()
_ffi.cdef(_DECLARATIONS)
_lib = None


def _library():
    global _lib
    if _lib is None:
        _lib = _ffi.dlopen("libjack.so.0")
    return _lib


def _pointer(kind: str, foreign_pointer, foreign_ffi):
    return _ffi.cast(kind, int(foreign_ffi.cast("uintptr_t", foreign_pointer)))


class LatencyPublisher:
    """Registers the latency callback on an inactive JACK-Client ``client``; keep it alive."""

    def __init__(self, client, inports: Sequence, outports: Sequence, latency: Callable[[], int]):
        import jack
        lib = _library()
        self._client = _pointer("jack_client_t *", client._ptr, jack._ffi)
        self._inputs = [_pointer("jack_port_t *", port._ptr, jack._ffi) for port in inports]
        self._outputs = [_pointer("jack_port_t *", port._ptr, jack._ffi) for port in outports]
        self._latency = latency
        self._range = _ffi.new("jack_latency_range_t *")
        self._callback = _ffi.callback("JackLatencyCallback", self._answer)
        if lib.jack_set_latency_callback(self._client, self._callback, _ffi.NULL) != 0:
            raise RuntimeError("JACK refused the latency callback")

    def _extremes(self, ports, mode) -> tuple[int, int]:
        lib = _library()
        low, high = None, 0
        for port in ports:
            lib.jack_port_get_latency_range(port, mode, self._range)
            low = self._range.min if low is None else min(low, self._range.min)
            high = max(high, self._range.max)
        return low or 0, high

    def _answer(self, mode, argument) -> None:
        lib = _library()
        delay = self._latency()
        if mode == lib.JackCaptureLatency:
            low, high = self._extremes(self._inputs, mode)
            targets = self._outputs
        else:
            low, high = self._extremes(self._outputs, mode)
            targets = self._inputs
        self._range.min, self._range.max = low + delay, high + delay
        for port in targets:
            lib.jack_port_set_latency_range(port, mode, self._range)

    def recompute(self) -> None:
        _library().jack_recompute_total_latencies(self._client)
