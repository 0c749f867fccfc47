"""Shared bits of the worker library's tests: the library on sys.path, a fake RpcError, a quiet logger."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = os.path.dirname(HERE)
if LIBRARY not in sys.path:
    sys.path.insert(0, LIBRARY)

import logging  # noqa: E402

import grpc  # noqa: E402

# The library's log lines are asserted with assertLogs where they matter; elsewhere they would only clutter
# the test output (Python prints warnings of a logger without handlers to stderr).
logging.getLogger("lifeline.worker").addHandler(logging.NullHandler())


class FakeRpcError(grpc.RpcError):
    """What a failed call raises, without a server: code(), details(), trailing_metadata()."""

    def __init__(self, code: grpc.StatusCode, details: str = "", trailers=()):
        super().__init__(f"{code.name}: {details}")
        self._code, self._details, self._trailers = code, details, tuple(trailers)

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers


def unavailable(details: str = "connection refused") -> FakeRpcError:
    return FakeRpcError(grpc.StatusCode.UNAVAILABLE, details)


def stale(details: str = "the lease ended") -> FakeRpcError:
    return FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, details)
