"""The one place where spec units (GB/s, ns, us, TFLOP/s, GB, MB) become SI base units.

Inside the simulator every quantity is in s, B, B/s, FLOP/s or Hz; specs carry the units people
read off datasheets, with the unit in the field name.
"""

from typing import Final

GB: Final = 1e9  # datasheets use decimal GB for capacity and bandwidth
MB: Final = 1e6
KiB: Final = 1024
NS: Final = 1e-9
US: Final = 1e-6


def GBps_to_Bps(bw_GBps: float) -> float:
    """Decimal gigabytes per second to bytes per second."""
    return bw_GBps * GB


def Bps_to_GBps(bw_Bps: float) -> float:
    """Bytes per second to decimal gigabytes per second."""
    return bw_Bps / GB


def ns_to_s(t_ns: float) -> float:
    """Nanoseconds to seconds."""
    return t_ns * NS


def us_to_s(t_us: float) -> float:
    """Microseconds to seconds."""
    return t_us * US


def TFLOPS_to_FLOPps(rate_TFLOPS: float) -> float:
    """Tera floating-point operations per second to FLOP/s."""
    return rate_TFLOPS * 1e12


def MB_to_B(size_MB: float) -> float:
    """Decimal megabytes to bytes."""
    return size_MB * MB


def MHz_to_Hz(clock_MHz: float) -> float:
    """Megahertz to hertz."""
    return clock_MHz * 1e6


def GB_to_B(size_GB: float) -> float:
    """Decimal gigabytes to bytes."""
    return size_GB * GB
