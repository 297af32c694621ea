"""KServe V2 against a real `tfless serve`, driven by `tritonclient.http` with its defaults
(binary tensors both ways), with JSON tensors, with gzip, and by raw HTTP."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np
import orjson
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.serve.conftest import Models, Server, assert_served, predict

X = np.random.default_rng(1).uniform(-1, 1, (6, 4)).astype(np.float32)
IDS = np.random.default_rng(2).integers(0, 10, (6, 3)).astype(np.int32)


@pytest.fixture(scope="module")
def server(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("kserve-v2")
    config = d / "models.json"
    config.write_bytes(orjson.dumps({"model_config_list": {"config": [
        {"name": "mlp", "base_path": str(models.mlp)},
        {"name": "multi", "base_path": str(models.multi)},
    ]}}))
    srv = Server(["--model-config-file", str(config), "--max-batch-size", "32"], d / "server.log")
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(url=server.url.removeprefix("http://"), network_timeout=30)
    yield c
    c.close()


def _input(name: str, arr: np.ndarray, datatype: str, binary: bool = True) -> triton.InferInput:
    inp = triton.InferInput(name, list(arr.shape), datatype)
    inp.set_data_from_numpy(arr, binary_data=binary)
    return inp


def test_health_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("multi", "1")
    assert not client.is_model_ready("multi", "2")
    meta = client.get_server_metadata()
    assert meta["name"] == "tfless" and "binary_tensor_data" in meta["extensions"]
    model = client.get_model_metadata("multi")
    assert model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]},
                               {"name": "ids", "datatype": "INT32", "shape": [-1, 3]}]
    assert [o["name"] for o in model["outputs"]] == ["probs", "score", "emb"]
    config = client.get_model_config("multi")
    assert config["max_batch_size"] == 32 and "dynamic_batching" in config
    # Triton's convention: with max_batch_size > 0 the dims leave out the batch axis
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("x", "TYPE_FP32", [4]), ("ids", "TYPE_INT32", [3])]
    assert [t["dims"] for t in config["output"]] == [[2], [1], [3, 2]]


def test_infer_with_client_defaults_binary(client: triton.InferenceServerClient,
                                           models: Models) -> None:
    result = client.infer("mlp", [_input("x", X, "FP32")])
    response = result.get_response()
    assert response["model_name"] == "mlp" and response["model_version"] == "1"
    assert response["outputs"][0]["parameters"]["binary_data_size"] == X.shape[0] * 3 * 4
    assert_served(result.as_numpy("probs"), predict(models.mlp, X))


def test_infer_json_tensors(client: triton.InferenceServerClient, models: Models) -> None:
    outputs = [triton.InferRequestedOutput(n, binary_data=False) for n in ("emb", "probs")]
    result = client.infer("multi", [_input("x", X, "FP32", False), _input("ids", IDS, "INT32", False)],
                          outputs=outputs, request_id="req-7")
    response = result.get_response()
    assert response["id"] == "req-7"
    assert [o["name"] for o in response["outputs"]] == ["emb", "probs"]
    assert all("data" in o for o in response["outputs"])
    want = predict(models.multi, [X, IDS])
    assert_served(result.as_numpy("probs"), want[0])
    assert_served(result.as_numpy("emb"), want[2])
    assert result.as_numpy("score") is None


def test_infer_mixed_binary_gzip_and_version(client: triton.InferenceServerClient,
                                             models: Models) -> None:
    outputs = [triton.InferRequestedOutput("score", binary_data=True),
               triton.InferRequestedOutput("probs", binary_data=False)]
    result = client.infer("multi", [_input("x", X, "FP32", True), _input("ids", IDS, "INT32", False)],
                          model_version="1", outputs=outputs, request_compression_algorithm="gzip",
                          response_compression_algorithm="gzip")
    want = predict(models.multi, [X, IDS])
    assert_served(result.as_numpy("score"), want[1])
    assert_served(result.as_numpy("probs"), want[0])


def test_infer_errors_reach_the_client(client: triton.InferenceServerClient) -> None:
    cases = [
        (("nope", [_input("x", X, "FP32")]), "404", "Servable not found"),
        (("mlp", [_input("x", X.astype(np.float64), "FP64")]), "400", "expects 'FP32'"),
        (("mlp", [_input("x", X[:, :3].copy(), "FP32")]), "400", "expected shape [-1, 4]"),
        (("mlp", [_input("y", X, "FP32")]), "400", "unexpected inference input 'y'"),
        (("multi", [_input("x", X, "FP32")]), "400", "missing ['ids']"),
    ]
    for args, status, fragment in cases:
        with pytest.raises(InferenceServerException) as info:
            client.infer(*args)
        assert info.value.status() == status and fragment in info.value.message(), info.value
    with pytest.raises(InferenceServerException) as info:
        client.infer("mlp", [_input("x", X, "FP32")], outputs=[triton.InferRequestedOutput("z")])
    assert "unexpected inference output 'z'" in info.value.message()
    assert client.infer("mlp", [_input("x", X, "FP32")]).as_numpy("probs").shape == (6, 3)


def test_raw_binary_request_by_hand(server: Server, models: Models) -> None:
    header = orjson.dumps({"inputs": [{"name": "x", "shape": [6, 4], "datatype": "FP32",
                                       "parameters": {"binary_data_size": X.nbytes}}],
                           "parameters": {"binary_data_output": True}})
    r = requests.post(f"{server.url}/v2/models/mlp/versions/1/infer", data=header + X.tobytes(),
                      headers={"Inference-Header-Content-Length": str(len(header))}, timeout=30)
    assert r.status_code == 200, r.text
    split = int(r.headers["Inference-Header-Content-Length"])
    meta = orjson.loads(r.content[:split])
    out = meta["outputs"][0]
    assert out["shape"] == [6, 3] and out["parameters"]["binary_data_size"] == 72
    got = np.frombuffer(r.content[split:], "<f4").reshape(6, 3)
    assert_served(got, predict(models.mlp, X))


@pytest.mark.parametrize("header,extra,fragment", [
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                  "parameters": {"binary_data_size": 12}}]}, struct.pack("<3f", 1, 2, 3),
     "binary_data_size 12 does not match"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                  "parameters": {"binary_data_size": 16}}]}, b"\0" * 8, "past the end"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
     b"\0" * 4, "no input's binary_data_size"),
    ({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}, b"",
     "do not fill shape"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ["a", "b", "c", "d"]}]},
     b"", "strings"),
    ({"inputs": []}, b"", "non-empty 'inputs'"),
    ({"inputs": [{"name": "x", "shape": [2**40, 2**40], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
     b"", "do not fill shape [1099511627776, 1099511627776] (1208925819614629174706176 values)"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
      "parameters": "binary"}, b"", "the inference request: 'parameters' must be a JSON object"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4],
                  "parameters": [16]}]}, b"", "input 'x': 'parameters' must be a JSON object"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
      "outputs": [{"name": "probs", "parameters": "binary"}]}, b"",
     "output 'probs': 'parameters' must be a JSON object"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
      "parameters": {"binary_data_output": "no"}}, b"", "'binary_data_output' must be true or false"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
      "parameters": {"timeout": True}}, b"", "'timeout' must be a positive integer"),
    ({"inputs": [{"name": "x", "shape": [True, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
     b"", "'shape' must be a list of non-negative integers"),
])
def test_malformed_v2_requests(server: Server, header: dict, extra: bytes, fragment: str) -> None:
    body = orjson.dumps(header)
    r = requests.post(f"{server.url}/v2/models/mlp/infer", data=body + extra, timeout=30,
                      headers={"Inference-Header-Content-Length": str(len(body))})
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]
    ok = requests.post(f"{server.url}/v2/models/mlp/infer", timeout=30, json={"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
    assert ok.status_code == 200, ok.text  # still serving
