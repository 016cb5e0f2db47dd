"""CUDA stages: one ``torch.cuda.Stream`` per stage, events instead of device-wide synchronisation.

A stage placed on ``cuda:N`` runs its blocking work in its own worker thread with its own stream made current
there. When that work returns messages, the stage records a ``torch.cuda.Event`` on its stream and attaches it to
each message (``Message.cuda_event``). A consumer waits on that event — on its own stream (GPU consumer) or on
the host (CPU consumer) — before touching the payload. Nothing ever calls ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

from typing import Any

from .messages import Message


class CudaStage:
    """The CUDA stream of one stage. Created in the stage's worker thread (see :meth:`bind_thread`)."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(device=self.device)  # type: ignore[no-untyped-call]

    def bind_thread(self) -> None:
        """Make this stage's stream current in the calling (worker) thread."""
        self.torch.cuda.set_device(self.device)
        self.torch.cuda.set_stream(self.stream)

    def wait_for(self, msg: Any) -> None:
        """Order this stream after the producer's work on ``msg`` (no host blocking)."""
        event = getattr(msg, "cuda_event", None)
        if event is not None:
            self.stream.wait_event(event)

    def mark(self, messages: list[Message]) -> None:
        """Record one event after the work just queued and attach it to every produced message."""
        if not messages:
            return
        event = self.torch.cuda.Event()  # type: ignore[no-untyped-call]
        event.record(self.stream)
        for msg in messages:
            msg.cuda_event = event


def host_wait(msg: Any) -> None:
    """A CPU consumer of a GPU-produced message waits for that message's event only."""
    event = getattr(msg, "cuda_event", None)
    if event is not None:
        event.synchronize()
