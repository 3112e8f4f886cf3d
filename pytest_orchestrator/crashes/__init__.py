"""The health monitor's crash records: what crashed, its root cause, its fingerprint, and bug reports.

Plain Python. A crash is an agent process that died without a result, an attempt that ended
in error or timeout, or a watchdog component that died or was restarted. Crashes with the
same fingerprint are one problem; a problem that keeps crashing gets one bug report.
"""

from __future__ import annotations

from .model import Crash, CrashGroup, CrashSample, RootCause

__all__ = ["Crash", "CrashGroup", "CrashSample", "RootCause"]
