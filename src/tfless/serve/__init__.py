"""`tfless serve`: TF Serving's REST API v1 and the KServe V2 protocol on one Starlette app.

Parts: `model_config` (what to serve: one file, a versioned base directory, or a
model_config_list file), `repository` (versions, policies, labels, polling, hot reload),
`batching` (dynamic batching across concurrent requests), `rest_v1` and `kserve_v2` (the two
wire protocols), `app` (routes, limits, metrics, access log) and `command` (the CLI).
This package is kept light to import: the ASGI stack loads only when a server starts.
"""

from .options import ServeOptions

__all__ = ["ServeOptions"]
