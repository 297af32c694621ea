"""Server settings shared by the CLI, the app and each worker process."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ServeOptions:
    """What `tfless serve` was asked to do. Batching is on when max_batch_size > 0."""

    path: str | None = None
    model_name: str = "default"
    model_config_file: str | None = None
    host: str = "127.0.0.1"
    port: int = 8501
    max_batch_size: int = 0
    batch_timeout_micros: int = 0
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_queue_size: int = 1000
    workers: int = 1
    poll_seconds: float = 1.0
    request_timeout: float = 30.0
    max_request_bytes: int = 64 * 1024 * 1024
    # JSON costs ~30 bytes of Python objects per number while it is parsed (a 57 MB JSON
    # request peaked at 844 MB): JSON bodies get a lower limit than binary tensors
    max_json_bytes: int = 16 * 1024 * 1024
    max_connections: int = 1000  # open connections; more are closed when accepted
    header_timeout: float = 10.0  # seconds to receive a request's headers
    body_timeout: float = 30.0  # longest pause while a request body arrives
    keepalive_timeout: float = 5.0  # an idle keep-alive connection is closed after this
    warmup: bool = True
    access_log: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServeOptions:
        return cls(**data)
