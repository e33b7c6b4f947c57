"""A JACK process callback compiled by numba: the audio thread never touches Python.

A Python process callback has to take the interpreter lock every period, so a worker
thread or a control server holding it makes JACK wait: a lock on the audio path. Here the
callback is a numba ``cfunc`` registered with libjack directly. It copies the port buffers
into preallocated staging arrays, runs the same ``callback_push``/``callback_pull`` kernels
as every other backend, copies the result out and wakes the worker with one byte on a
pipe: no lock, no allocation, no Python object.

The arrays it works on are reached by address, baked into the compiled function as
constants when the stream is configured; the Python objects that own them stay alive
for as long as the callback is registered.
"""
from __future__ import annotations

import ctypes

import numpy as np
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

from samstream.kernels.live import CallbackState, callback_pull, callback_push
from samstream.kernels.ring import RingState

_libjack = ctypes.CDLL("libjack.so.0")
_libc = ctypes.CDLL(None)
_port_get_buffer = _libjack.jack_port_get_buffer
_port_get_buffer.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
_port_get_buffer.restype = ctypes.c_void_p
_write = _libc.write
_write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_write.restype = ctypes.c_ssize_t
_set_process_callback = _libjack.jack_set_process_callback
_set_process_callback.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_set_process_callback.restype = ctypes.c_int
_last_frame_time = _libjack.jack_last_frame_time
_last_frame_time.argtypes = (ctypes.c_void_p,)
_last_frame_time.restype = ctypes.c_uint32

PROCESS_SIGNATURE = types.int32(types.uint32, types.voidptr)


def _address_as(pointer_type):
    """An intrinsic that reinterprets an int64 address as ``pointer_type``."""
    @intrinsic
    def cast(typingctx, address):
        def codegen(context, builder, signature, arguments):
            return builder.inttoptr(arguments[0], context.get_value_type(pointer_type))
        return pointer_type(types.int64), codegen
    return cast


float_pointer = _address_as(types.CPointer(types.float32))
int_pointer = _address_as(types.CPointer(types.int64))
double_pointer = _address_as(types.CPointer(types.float64))
void_pointer = _address_as(types.voidptr)


@njit
def port_buffer(port, frames):
    """The float32 samples of a JACK port (its address) for this period."""
    return carray(float_pointer(np.int64(_port_get_buffer(void_pointer(port), frames))), (frames,))


@njit
def last_frame_time(client):
    return _last_frame_time(void_pointer(client))


def register_process(client_pointer: int, function) -> None:
    """Make a compiled ``cfunc`` the JACK client's process callback (before activation)."""
    if _set_process_callback(client_pointer, function.address, None) != 0:
        raise RuntimeError("JACK refused the process callback")


def jack_address(pointer) -> int:
    """The address behind a JACK-Client (cffi) client or port pointer."""
    import jack
    return int(jack._ffi.cast("uintptr_t", pointer))


def array_address(array: np.ndarray) -> int:
    assert array.flags.c_contiguous, "the native callback needs C-ordered arrays"
    return array.ctypes.data


class NativeJackCallback:
    """Compiles and registers the process callback of one configured stream."""

    def __init__(self, client_pointer: int, in_ports: list[int], out_ports: list[int], state: CallbackState,
                 max_block: int, wake_fd: int):
        channels = len(in_ports)
        self._keep = [state]
        self.staging_in = np.zeros((channels, max_block), np.float32)
        self.staging_out = np.zeros((channels, max_block), np.float32)
        self.no_taps = np.zeros((0, max_block), np.float32)
        self.wake_byte = np.zeros(1, np.uint8)
        self.calls = np.zeros(1, np.int64)
        self.function = self._compile(in_ports, out_ports, state, max_block, wake_fd, channels)
        register_process(client_pointer, self.function)

    def _compile(self, in_ports, out_ports, state, max_block, wake_fd, channels):
        ports_in = np.array(in_ports, np.int64)
        ports_out = np.array(out_ports, np.int64)
        input_ring, output_ring = state.input_ring, state.output_ring
        # Every array the kernels touch, by address and shape, as compile-time constants.
        a_in_buffer, in_shape = array_address(input_ring.buffer), input_ring.buffer.shape
        a_in_counters = array_address(input_ring.counters)
        a_out_buffer, out_shape = array_address(output_ring.buffer), output_ring.buffer.shape
        a_out_counters = array_address(output_ring.counters)
        a_dry_line, dry_line_shape = array_address(state.dry_line), state.dry_line.shape
        a_dry_block, a_wet_block = array_address(state.dry_block), array_address(state.wet_block)
        dry_block_shape, wet_block_shape = state.dry_block.shape, state.wet_block.shape
        a_last, a_counters = array_address(state.last_output), array_address(state.counters)
        a_tallies, a_settings = array_address(state.tallies), array_address(state.settings)
        latency = state.latency
        a_stage_in, a_stage_out = array_address(self.staging_in), array_address(self.staging_out)
        a_taps, a_wake, a_calls = array_address(self.no_taps), array_address(self.wake_byte), array_address(self.calls)
        write = _write

        @njit
        def rebuild():
            return CallbackState(
                RingState(carray(float_pointer(a_in_buffer), in_shape),
                          carray(int_pointer(a_in_counters), (2,))),
                RingState(carray(float_pointer(a_out_buffer), out_shape),
                          carray(int_pointer(a_out_counters), (2,))),
                carray(float_pointer(a_dry_line), dry_line_shape),
                carray(float_pointer(a_dry_block), dry_block_shape),
                carray(float_pointer(a_wet_block), wet_block_shape),
                carray(float_pointer(a_last), (channels,)),
                carray(int_pointer(a_counters), (8,)),
                carray(int_pointer(a_tallies), (4,)),
                carray(double_pointer(a_settings), (2,)),
                latency)

        @cfunc(PROCESS_SIGNATURE, nopython=True)
        def process(frames, argument):
            count = min(frames, max_block)
            staged_in = carray(float_pointer(a_stage_in), (channels, max_block))
            staged_out = carray(float_pointer(a_stage_out), (channels, max_block))
            for channel in range(channels):
                source = port_buffer(ports_in[channel], frames)
                for index in range(count):
                    staged_in[channel, index] = source[index]
            live = rebuild()
            callback_push(staged_in[:, :count], live)
            callback_pull(staged_out[:, :count], carray(float_pointer(a_taps), (0, max_block))[:, :count], live)
            for channel in range(channels):
                sink = port_buffer(ports_out[channel], frames)
                for index in range(count):
                    sink[index] = staged_out[channel, index]
                for index in range(count, frames):
                    sink[index] = 0.0
            write(wake_fd, void_pointer(a_wake), 1)
            calls = carray(int_pointer(a_calls), (1,))
            calls[0] += 1
            return 0

        return process
