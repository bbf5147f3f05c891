"""libsoxr's streaming C API called directly (cffi), for the per-frame resampling.

python-soxr's ``ResampleStream.resample_chunk`` wraps one ``soxr_process`` call in
~19 000 instructions of its own per call (numpy import and array conversion in and out,
a capsule per output): more than soxr's own work on a 20 ms frame (~21 000 at 8 -> 16
kHz, quality QQ), and every live connection makes 50 such calls a second each way it
resamples. The python-soxr extension links libsoxr statically and exports its C API
(``soxr_create``, ``soxr_process``, ...); :func:`open_stream` binds that API through
cffi's ABI mode (~3 000 instructions per call) and makes the stream exactly as
python-soxr's ``ResampleStream`` does (``soxr_io_spec(INT16_I, INT16_I)``,
``soxr_quality_spec(recipe, 0)``, no runtime spec), so the samples are the same,
sample for sample (the output buffer is never smaller than python-soxr's, so nothing is
released later than it would be). Where the extension does not export the API, is not
libsoxr 0.1, or cffi is missing, :func:`open_stream` returns None and the caller uses
python-soxr's own API.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["DirectStream", "open_stream"]

_CDEF = """
typedef const char * soxr_error_t;
typedef struct soxr * soxr_t;
typedef struct { int itype; int otype; double scale; void * e; unsigned long flags; }
    soxr_io_spec_t;
typedef struct { double precision; double phase_response; double passband_end;
                 double stopband_begin; void * e; unsigned long flags; } soxr_quality_spec_t;
soxr_io_spec_t soxr_io_spec(int itype, int otype);
soxr_quality_spec_t soxr_quality_spec(unsigned long recipe, unsigned long flags);
soxr_t soxr_create(double, double, unsigned, soxr_error_t *, soxr_io_spec_t const *,
                   soxr_quality_spec_t const *, void const *);
soxr_error_t soxr_process(soxr_t, const void * in, size_t ilen, size_t * idone,
                          void * out, size_t olen, size_t * odone);
void soxr_delete(soxr_t);
char const * soxr_version(void);
"""
#: libsoxr's interleaved 16-bit sample type (soxr.h: SOXR_INT16_I)
_INT16_I = 3
#: more output than soxr ever holds per unit of the out/in ratio (samples; measured:
#: ~1 840 at HQ 8 -> 16 kHz, ~8 400 at HQ 8 -> 48 kHz)
_DELAY_MAX = 4096
#: output buffer room made beyond a call's share when it grows (samples)
_SLACK = 2048


def _bind() -> tuple[Any, Any, dict[str, int]] | None:
    try:
        import cffi
        import soxr
        from soxr import soxr_ext
    except ImportError:
        return None
    try:
        ffi = cffi.FFI()
        ffi.cdef(_CDEF)
        lib = ffi.dlopen(soxr_ext.__file__)
        version = ffi.string(lib.soxr_version()).decode()
        recipes = {q: int(getattr(soxr_ext, q)) for q in ("QQ", "LQ", "MQ", "HQ", "VHQ")}
        if not version.startswith("libsoxr-0.1.") or int(soxr_ext.SOXR_INT16_I.value) \
                != _INT16_I or not hasattr(soxr, "ResampleStream"):
            return None
    except (AttributeError, OSError, TypeError, ValueError, cffi.CDefError):
        return None
    return ffi, lib, recipes


_BOUND = _bind()
_NULL: Any = _BOUND[0].NULL if _BOUND is not None else None


class DirectStream:
    """One streaming libsoxr resampler of mono 16-bit PCM (see the module docstring).

    Each :meth:`convert` makes the ``soxr_process`` calls python-soxr's ``process`` makes
    for the same input: input longer than ``48000 x in/out`` samples goes in pieces of
    that, the end of the stream is one call without input. The output room is the
    buffer's, never less than python-soxr's (``soxr_delay() + samples x ratio + 1``: all
    soxr may release then), so soxr releases the same samples at the same call. (Its int16
    output is dithered as it is released: the same samples released in other pieces
    could differ by a bit or two.)
    """

    __slots__ = ("_buf", "_cap", "_hold", "_odone", "_out", "_piece", "_process", "_soxr",
                 "ratio")

    def __init__(self, soxr_ptr: Any, in_rate: int, out_rate: int) -> None:
        ffi, lib, _ = _BOUND  # type: ignore[misc]
        self._soxr = soxr_ptr
        self.ratio = out_rate / in_rate
        #: python-soxr's input piece (samples)
        self._piece = int(48000 * float(in_rate) / float(out_rate))
        #: output room kept beyond a call's share: more than soxr may hold back
        self._hold = _DELAY_MAX * max(1, math.ceil(self.ratio))
        self._process: Callable[..., Any] = lib.soxr_process
        self._odone = ffi.new("size_t *")
        self._cap = 0
        self._grow(self._hold + _SLACK)

    def _grow(self, samples: int) -> None:
        ffi = _BOUND[0]  # type: ignore[index]
        self._cap = samples
        self._out = ffi.new("short[]", samples)
        self._buf = ffi.buffer(self._out)

    def convert(self, pcm: bytes, last: bool = False) -> bytes:
        """Resample ``pcm`` (16-bit samples; ``last``: the end, flush what is held)."""
        n = len(pcm) >> 1
        if 0 < n <= self._piece and not last and type(pcm) is bytes \
                and n * self.ratio + self._hold < self._cap:  # a network frame: one call
            if not self._process(self._soxr, pcm, n, _NULL, self._out, self._cap,
                                 self._odone):
                data: bytes = self._buf[:self._odone[0] * 2]
                return data
            raise RuntimeError("soxr: process failed")
        return self._convert(bytes(pcm), n, last)

    def _convert(self, pcm: bytes, n: int, last: bool) -> bytes:
        if not n and not last:
            return b""  # (no call: a null input is the end of the stream to libsoxr)
        if n * self.ratio + self._hold >= self._cap:
            self._grow(int(n * self.ratio) + self._hold + _SLACK)
        p, out, odone, room = self._soxr, self._out, self._odone, self._cap
        err = _NULL
        done = 0
        if n:
            src = _BOUND[0].from_buffer(pcm)  # type: ignore[index]
            for i in range(0, n, self._piece):
                err = self._process(p, src + 2 * i, min(self._piece, n - i), _NULL,
                                    out + done, room - done, odone)
                done += odone[0]
        if last:
            err = self._process(p, _NULL, 0, _NULL, out + done, room - done, odone)
            done += odone[0]
        if err:
            raise RuntimeError(f"soxr: {_BOUND[0].string(err).decode(errors='replace')}")  # type: ignore[index]
        data: bytes = self._buf[:done * 2]
        return data


def open_stream(in_rate: int, out_rate: int, quality: str) -> DirectStream | None:
    """A direct libsoxr stream as python-soxr would make it (None: not available here)."""
    if _BOUND is None:
        return None
    ffi, lib, recipes = _BOUND
    recipe = recipes.get(quality.upper())
    if recipe is None:
        return None
    err = ffi.new("soxr_error_t *")
    io = ffi.new("soxr_io_spec_t *", lib.soxr_io_spec(_INT16_I, _INT16_I))
    qs = ffi.new("soxr_quality_spec_t *", lib.soxr_quality_spec(recipe, 0))
    ptr = lib.soxr_create(float(in_rate), float(out_rate), 1, err, io, qs, ffi.NULL)
    if err[0] != ffi.NULL or ptr == ffi.NULL:
        return None
    return DirectStream(ffi.gc(ptr, lib.soxr_delete), in_rate, out_rate)
