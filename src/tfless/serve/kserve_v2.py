"""The KServe V2 (Open Inference) protocol as Triton speaks it over HTTP: health, server and
model metadata, readiness, and infer with JSON tensors or the binary tensor data extension
(`Inference-Header-Content-Length`, `binary_data_size`, `binary_data_output`), so
`tritonclient.http` works with its defaults."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..graph import TensorSpec
from .errors import invalid, too_large
from .http_body import convert, read_body
from .repository import Servable
from .tensors import V2_TO_NUMPY, check_shape, dumps, dumps_arrays, loads, spec_dtype, to_array, v2_datatype

PLATFORM = "tfless"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(dumps(payload), status_code=status, media_type="application/json")


def _parameters(owner: dict, where: str) -> dict:
    """The 'parameters' object of a request, input or output ({} when absent)."""
    params = owner.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise invalid(f"{where}: 'parameters' must be a JSON object, got {type(params).__name__}")
    return params


def _flag(params: dict, key: str, default: bool, where: str) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise invalid(f"{where}: parameter '{key}' must be true or false, got {value!r}")
    return value


def _version(request: Request) -> int | None:
    text = request.path_params.get("version")
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit()):
        raise invalid(f"model version must be an integer, got '{text}'")
    return int(text)


async def server_metadata(request: Request) -> Response:
    return _json({"name": PLATFORM, "version": __version__, "extensions": ["binary_tensor_data"]})


async def live(request: Request) -> Response:
    return Response(status_code=200)


async def ready(request: Request) -> Response:
    return Response(status_code=200 if request.app.state.server.repository.is_ready() else 400)


async def model_ready(request: Request) -> Response:
    repository = request.app.state.server.repository
    name, version = request.path_params["model"], _version(request)
    if name not in repository.model_names():
        return _json({"error": f"Request for unknown model: '{name}' is not found"}, 404)
    return Response(status_code=200 if repository.is_ready(name, version) else 400)


def _tensor_meta(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": v2_datatype(spec_dtype(spec)),
            "shape": [-1 if d is None else d for d in spec.shape]}


async def model_metadata(request: Request) -> Response:
    repository = request.app.state.server.repository
    name, version = request.path_params["model"], _version(request)
    request.state.api, request.state.model = "model_metadata", name
    with repository.use(name, version) as servable:
        request.state.version = str(servable.version)
        return _json({
            "name": name,
            "versions": [str(v) for v in repository.available_versions(name)],
            "platform": PLATFORM,
            "inputs": [_tensor_meta(s) for s in servable.inputs],
            "outputs": [_tensor_meta(s) for s in servable.outputs],
        })


async def model_config(request: Request) -> Response:
    """A Triton-style model configuration. As in Triton, `dims` leave out the batch axis
    when max_batch_size > 0 (batching on), and are the full shape when it is 0."""
    server = request.app.state.server
    name, version = request.path_params["model"], _version(request)
    max_batch = server.options.max_batch_size

    def tensor_config(spec: TensorSpec) -> dict[str, Any]:
        dims = [-1 if d is None else d for d in spec.shape]
        return {"name": spec.name, "data_type": "TYPE_" + v2_datatype(spec_dtype(spec)),
                "dims": dims[1:] if max_batch > 0 else dims}

    with server.repository.use(name, version) as servable:
        config: dict[str, Any] = {
            "name": name, "platform": PLATFORM, "backend": PLATFORM, "max_batch_size": max_batch,
            "input": [tensor_config(s) for s in servable.inputs],
            "output": [tensor_config(s) for s in servable.outputs],
        }
        if max_batch > 0:
            config["dynamic_batching"] = {
                "max_queue_delay_microseconds": server.options.batch_timeout_micros}
        return _json(config)


async def infer(request: Request) -> Response:
    server = request.app.state.server
    name, version = request.path_params["model"], _version(request)
    request.state.api, request.state.model = "infer", name
    body = await read_body(request, server.options.max_request_bytes,
                           idle_timeout=server.options.body_timeout)
    header_length = request.headers.get("inference-header-content-length")
    json_bytes = int(header_length) if header_length and header_length.strip().isdigit() \
        else len(body)
    if json_bytes > server.options.max_json_bytes:  # binary tensors may be larger, JSON not
        raise too_large(f"The JSON part of the request ({json_bytes} bytes) is larger than the "
                        f"limit of {server.options.max_json_bytes} bytes (--max-json-bytes); "
                        "send large tensors in the binary extension")
    with server.repository.use(name, version) as servable:
        request.state.version = str(servable.version)
        doc, arrays = await convert(len(body), parse_infer_request, body, header_length, servable)
        wanted = requested_outputs(doc, servable)
        timeout = server.options.request_timeout
        client_timeout = _parameters(doc, "the inference request").get("timeout")
        if client_timeout is not None:
            if (not isinstance(client_timeout, int) or isinstance(client_timeout, bool)
                    or client_timeout <= 0):
                raise invalid("parameter 'timeout' must be a positive integer number of "
                              f"microseconds, got {client_timeout!r}")
            timeout = min(timeout, client_timeout / 1e6)
        outputs = await servable.infer(arrays, timeout)
        size = sum(o.nbytes for o in outputs) * 3
        return await convert(size, encode_infer_response, doc, servable, outputs, wanted)


def parse_infer_request(body: bytes, header_length: str | None,
                        servable: Servable) -> tuple[dict, list[np.ndarray]]:
    """The JSON header and the input arrays, from JSON 'data' or the binary section."""
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise invalid(f"Inference-Header-Content-Length {header_length!r} must be a byte "
                          f"count within the {len(body)}-byte request body")
        split = int(header_length)
        header, binary = body[:split], memoryview(body)[split:]
    else:
        header, binary = body, memoryview(b"")
    doc = loads(header)
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise invalid("The inference request must be a JSON object with a non-empty 'inputs' list")
    specs = {s.name: s for s in servable.inputs}
    model = f"model '{servable.name}'"
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, tensor in enumerate(doc["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise invalid(f"inputs[{i}] must be an object with a 'name'")
        name = tensor["name"]
        spec = specs.get(name)
        if spec is None:
            raise invalid(f"unexpected inference input '{name}' for {model}; its inputs are "
                          f"{list(specs)}")
        if name in arrays:
            raise invalid(f"input '{name}' is given twice")
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise invalid(f"input '{name}': 'shape' must be a list of non-negative integers")
        datatype = tensor.get("datatype")
        expected = v2_datatype(spec_dtype(spec))
        if datatype != expected:
            raise invalid(f"inference input '{name}' data-type is '{datatype}', but {model} "
                          f"expects '{expected}'")
        count = math.prod(shape)  # Python ints: a huge shape must not wrap around
        size = _parameters(tensor, f"input '{name}'").get("binary_data_size")
        if size is not None:
            dtype = V2_TO_NUMPY[datatype]
            if (not isinstance(size, int) or isinstance(size, bool)
                    or size != count * dtype.itemsize):
                raise invalid(f"input '{name}': binary_data_size {size!r} does not match shape "
                              f"{shape} of {datatype} ({count * dtype.itemsize} bytes)")
            if offset + size > len(binary):
                raise invalid(f"input '{name}': its {size} bytes of binary data run past the end "
                              "of the request body")
            arr = np.frombuffer(binary[offset:offset + size], dtype=dtype.newbyteorder("<"))
            arr = arr.astype(dtype, copy=False).reshape(shape)
            offset += size
        elif "data" in tensor:
            arr = to_array(tensor["data"], spec, f"input '{name}'")
            if arr.size != count:
                raise invalid(f"input '{name}': {arr.size} values in 'data' do not fill shape "
                              f"{shape} ({count} values)")
            arr = arr.reshape(shape)
        else:
            raise invalid(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
        check_shape(arr, spec, f"input '{name}'")
        arrays[name] = arr
    if offset != len(binary):
        raise invalid(f"the request body has {len(binary) - offset} bytes of binary data that no "
                      "input's binary_data_size accounts for")
    missing = [n for n in specs if n not in arrays]
    if missing:
        raise invalid(f"expected {len(specs)} inputs but got {len(arrays)} inputs for {model}; "
                      f"missing {missing}")
    ordered = [arrays[s.name] for s in servable.inputs]
    if len({a.shape[0] for a in ordered}) > 1:
        raise invalid("all inputs must have the same batch size (the first dimension)")
    return doc, ordered


def requested_outputs(doc: dict, servable: Servable) -> list[tuple[int, bool]]:
    """(output index, as binary) for each output to return, in the order asked."""
    params = _parameters(doc, "the inference request")
    binary_default = _flag(params, "binary_data_output", False, "the inference request")
    names = [s.name for s in servable.outputs]
    asked = doc.get("outputs")
    if asked is None:
        return [(i, binary_default) for i in range(len(names))]
    if not isinstance(asked, list):
        raise invalid("'outputs' must be a list of {\"name\": ...} objects")
    wanted = []
    for out in asked:
        name = out.get("name") if isinstance(out, dict) else None
        if name not in names:
            raise invalid(f"unexpected inference output '{name}' for model '{servable.name}'; "
                          f"its outputs are {names}")
        out_params = _parameters(out, f"output '{name}'")
        if "classification" in out_params:
            raise invalid(f"output '{name}': the classification extension is not supported")
        wanted.append((names.index(name),
                       _flag(out_params, "binary_data", binary_default, f"output '{name}'")))
    return wanted


def encode_infer_response(doc: dict, servable: Servable, outputs: list[np.ndarray],
                          wanted: list[tuple[int, bool]]) -> Response:
    entries, blobs, in_json = [], [], []
    for index, binary in wanted:
        arr = np.ascontiguousarray(outputs[index])
        entry: dict[str, Any] = {"name": servable.outputs[index].name,
                                 "datatype": v2_datatype(arr.dtype), "shape": list(arr.shape)}
        if binary:
            blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.ravel()
            in_json.append(arr)
        entries.append(entry)
    payload: dict[str, Any] = {"model_name": servable.name, "model_version": str(servable.version)}
    if "id" in doc:
        payload["id"] = doc["id"]
    payload["outputs"] = entries
    header = dumps_arrays(payload, in_json)
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(header + b"".join(blobs), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(header))})
