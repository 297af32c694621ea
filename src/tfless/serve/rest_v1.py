"""TensorFlow Serving's REST API v1: model status, metadata, predict (row and columnar
formats), classify and regress, with TF Serving's URLs, JSON shapes and error codes.

Paths are matched with TF Serving's own regular expressions (case-insensitive); a /v1 path
they do not match is a 400 "Malformed request", as in TF Serving.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from ..graph import TensorSpec
from .errors import ServingError, invalid
from .http_body import convert, read_body, release_memory
from .repository import Servable
from .tensors import (
    check_shape,
    dumps,
    dumps_arrays,
    is_b64,
    loads,
    spec_dtype,
    tf_dtype,
    to_array,
)

PREDICT_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)
SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
INT64_MAX = 2**63 - 1


def json_response(payload: Any) -> Response:
    return json_bytes_response(dumps(payload))


def json_bytes_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


async def handle(request: Request) -> Response:
    server = request.app.state.server
    path, method = request.url.path, request.method
    if method == "POST" and (m := PREDICT_PATH.fullmatch(path)):
        name, version, label, verb = m.group(1), m.group(2), m.group(3), m.group(4).lower()
        request.state.api, request.state.model = verb, name
        return await _predict_like(request, server, name, _version(version), label, verb)
    if method == "GET" and (m := STATUS_PATH.fullmatch(path)):
        name, version, label, metadata = m.groups()
        if not name:
            raise invalid("Missing model name in request.")
        request.state.api = "metadata" if metadata else "status"
        request.state.model = name
        if metadata:
            return _metadata(request, server, name, _version(version), label)
        statuses = server.repository.status(name, _version(version), label)
        return json_response({"model_version_status": [s.as_json() for s in statuses]})
    raise invalid(f"Malformed request: {method} {path}")


def _version(text: str | None) -> int | None:
    if text is None:
        return None
    version = int(text)
    if version > INT64_MAX:  # TF Serving parses the version as an int64
        raise invalid(f"Failed to convert version: {text} to numeric.")
    return version


async def _predict_like(request: Request, server: Any, name: str, version: int | None,
                        label: str | None, verb: str) -> Response:
    options = server.options  # the body is all JSON: the lower of the two limits applies
    limit, flag = min((options.max_request_bytes, "--max-request-bytes"),
                      (options.max_json_bytes, "--max-json-bytes"))
    body = await read_body(request, limit, flag, options.body_timeout)
    with server.repository.use(name, version, label) as servable:
        request.state.version = str(servable.version)
        doc = await convert(len(body), loads, body)
        if not isinstance(doc, dict):
            raise invalid("The request body must be a JSON object, e.g. {\"instances\": [...]}")
        servable = _check_signature(doc, servable)
        if verb != "predict":
            return _classify_or_regress(doc, verb)
        arrays, rows = await convert(len(body), parse_predict_request, doc, servable.inputs)
        size, doc, body = len(body), None, b""  # the parsed objects are garbage from here
        await release_memory(size)
        outputs = await servable.infer(arrays, server.options.request_timeout)
        size = sum(o.nbytes for o in outputs) * 3  # ~3 JSON bytes per byte of float32
        encoded = await convert(size, encode_predict_response, outputs, servable.outputs, rows)
        return json_bytes_response(encoded)


def _check_signature(doc: dict, servable: Servable) -> Servable:
    """The servable of the request's signature_name (TF graph SavedModels have several)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid("'signature_name' must be a string")
    chosen = servable.for_signature(name)
    if chosen is None:
        raise ServingError("FAILED_PRECONDITION",
                           f'Serving signature name: "{name}" not found in signature def')
    return chosen


def _classify_or_regress(doc: dict, verb: str) -> Response:
    if not isinstance(doc.get("examples"), list):
        raise invalid(f"Missing 'examples' key (a list of examples) in the {verb} request")
    kind = "classification" if verb == "classify" else "regression"
    raise invalid(f"Expected {kind} signature method_name to be tensorflow/serving/{verb}. "
                  f"Was: {PREDICT_METHOD}")


# ----- predict -------------------------------------------------------------------------
def parse_predict_request(doc: dict, specs: list[TensorSpec]) -> tuple[list[np.ndarray], bool]:
    """Input arrays from a row ('instances') or columnar ('inputs') request; True if row."""
    if "instances" in doc and "inputs" in doc:
        raise invalid("The request has both 'instances' (row format) and 'inputs' (columnar "
                      "format); send exactly one of them")
    if "instances" in doc:
        arrays, rows = _from_instances(doc["instances"], specs), True
    elif "inputs" in doc:
        arrays, rows = _from_inputs(doc["inputs"], specs), False
    else:
        raise invalid("Missing 'inputs' or 'instances' key")
    for arr, spec in zip(arrays, specs):
        check_shape(arr, spec, f"input '{spec.name}'")
    batches = sorted({a.shape[0] for a in arrays})
    if len(batches) > 1:
        sizes = ", ".join(f"{s.name}: {a.shape[0]}" for s, a in zip(specs, arrays))
        raise invalid(f"All inputs must have the same batch size (axis 0); got {sizes}")
    return arrays, rows


def _names(specs: list[TensorSpec]) -> str:
    return ", ".join(repr(s.name) for s in specs)


def _check_keys(keys: Any, specs: list[TensorSpec], where: str) -> None:
    wanted = {s.name for s in specs}
    if set(keys) != wanted:
        missing = sorted(wanted - set(keys))
        unknown = sorted(set(keys) - wanted)
        raise invalid(f"{where}: missing inputs {missing or 'none'}, unknown inputs "
                      f"{unknown or 'none'}; the model's inputs are {_names(specs)}")


def _from_instances(instances: Any, specs: list[TensorSpec]) -> list[np.ndarray]:
    if not isinstance(instances, list):
        raise invalid("'instances' must be a list with one entry per example")
    if not instances:
        raise invalid("'instances' is empty; send at least one instance")
    # {"b64": ...} is a value (base64 DT_STRING data), not an object of named inputs
    named = [isinstance(i, dict) and not is_b64(i) for i in instances]
    if any(named) and not all(named):
        raise invalid("'instances' mixes objects (named inputs) with plain values; every "
                      "instance must have the same form")
    if named[0]:
        for i, inst in enumerate(instances):
            _check_keys(inst, specs, f"'instances' item {i}")
        return [to_array([inst[s.name] for inst in instances], s, f"input '{s.name}'")
                for s in specs]
    if len(specs) != 1:
        raise invalid(f"The model has {len(specs)} inputs ({_names(specs)}): each instance must "
                      "be an object keyed by input name")
    return [to_array(instances, specs[0], f"input '{specs[0].name}'")]


def _from_inputs(inputs: Any, specs: list[TensorSpec]) -> list[np.ndarray]:
    if isinstance(inputs, dict):
        _check_keys(inputs, specs, "'inputs'")
        return [to_array(inputs[s.name], s, f"input '{s.name}'") for s in specs]
    if len(specs) != 1:
        raise invalid(f"The model has {len(specs)} inputs ({_names(specs)}): 'inputs' must be "
                      "an object keyed by input name")
    return [to_array(inputs, specs[0], f"input '{specs[0].name}'")]


def encode_predict_response(outputs: list[np.ndarray], specs: list[TensorSpec],
                            rows: bool) -> bytes:
    """TF Serving's shapes: row format gives 'predictions' (a list per example; a dict per
    example when there are several outputs), columnar gives 'outputs' (the tensor, or a
    dict of tensors by output name)."""
    outputs = [np.ascontiguousarray(o) for o in outputs]
    if not rows:
        if len(outputs) == 1:
            return dumps_arrays({"outputs": outputs[0]}, outputs)
        return dumps_arrays({"outputs": {s.name: o for s, o in zip(specs, outputs)}}, outputs)
    if len(outputs) == 1:
        return dumps_arrays({"predictions": outputs[0]}, outputs)
    n = outputs[0].shape[0] if outputs[0].ndim else 0
    for s, o in zip(specs, outputs):
        if o.ndim == 0 or o.shape[0] != n:
            raise invalid(f"Tensor name: {s.name} has inconsistent batch size: "
                          f"{o.shape[0] if o.ndim else 0} expecting: {n}")
    predictions = [{s.name: o[i] for s, o in zip(specs, outputs)} for i in range(n)]
    return dumps_arrays({"predictions": predictions}, outputs)


# ----- metadata ------------------------------------------------------------------------
def _metadata(request: Request, server: Any, name: str, version: int | None,
              label: str | None) -> Response:
    with server.repository.use(name, version, label) as servable:
        request.state.version = str(servable.version)
        # a TF graph SavedModel carries its own SignatureDefs; served as they were saved
        defs = getattr(servable.model, "meta", {}).get("signature_defs") \
            or {SIGNATURE: signature_def(servable)}
        return json_response({
            "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": defs}},
        })


def signature_def(servable: Servable) -> dict[str, Any]:
    """The serving_default SignatureDef as TF Serving writes it for a Keras SavedModel."""
    return {
        "inputs": {s.name: _tensor_info(s, f"serving_default_{s.name}:0") for s in servable.inputs},
        "outputs": {s.name: _tensor_info(s, f"StatefulPartitionedCall:{i}")
                    for i, s in enumerate(servable.outputs)},
        "method_name": PREDICT_METHOD,
        "defaults": {},
    }


def _tensor_info(spec: TensorSpec, tensor_name: str) -> dict[str, Any]:
    dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape]
    return {"dtype": tf_dtype(spec_dtype(spec)),
            "tensor_shape": {"dim": dims, "unknown_rank": False},
            "name": tensor_name}
