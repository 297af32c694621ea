"""TF Serving REST API v1 against a real `tfless serve`, with payloads as TF Serving's docs
show them, sent by `requests` and `httpx`; outputs must equal Model.predict."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import requests

from tests.serve.conftest import Models, Server, assert_served, predict

RNG = np.random.default_rng(0)
X = RNG.uniform(-1, 1, (5, 4)).astype(np.float32)
IDS = RNG.integers(0, 10, (5, 3)).astype(np.int32)


@pytest.fixture(scope="module")
def server(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d = tmp_path_factory.mktemp("rest-v1")
    config = d / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{ name: "mlp" base_path: "{models.mlp}" model_platform: "tensorflow" }}
  config {{ name: 'multi' base_path: '{models.multi}' }}
  config {{ name: "half_plus_two" base_path: "{models.half_plus_two}" }}
}}
""")
    srv = Server(["--model-config-file", str(config)], d / "server.log")
    yield srv
    assert srv.stop() == 0


def post(server: Server, path: str, payload) -> requests.Response:
    return requests.post(f"{server.url}{path}", json=payload, timeout=30)


def test_half_plus_two_as_in_the_docs(server: Server) -> None:
    r = requests.post(f"{server.url}/v1/models/half_plus_two:predict",
                      data='{"instances": [[1.0], [2.0], [5.0]]}', timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"predictions": [[2.5], [3.0], [4.5]]}


def test_model_status_exact_json(server: Server) -> None:
    want = {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert requests.get(f"{server.url}/v1/models/mlp", timeout=30).json() == want
    assert requests.get(f"{server.url}/v1/models/mlp/versions/1", timeout=30).json() == want


def test_metadata_signature_def(server: Server) -> None:
    meta = requests.get(f"{server.url}/v1/models/multi/metadata", timeout=30).json()
    assert meta["model_spec"] == {"name": "multi", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["method_name"] == "tensorflow/serving/predict"
    assert sig["inputs"]["x"] == {
        "dtype": "DT_FLOAT", "name": "serving_default_x:0",
        "tensor_shape": {"dim": [{"size": "-1", "name": ""}, {"size": "4", "name": ""}],
                         "unknown_rank": False}}
    assert sig["inputs"]["ids"]["dtype"] == "DT_INT32"
    assert set(sig["outputs"]) == {"probs", "score", "emb"}
    assert [d["size"] for d in sig["outputs"]["emb"]["tensor_shape"]["dim"]] == ["-1", "3", "2"]


def test_row_format_single_output_exact(server: Server, models: Models) -> None:
    r = post(server, "/v1/models/mlp:predict",
             {"signature_name": "serving_default", "instances": X.tolist()})
    assert r.status_code == 200, r.text
    got = np.asarray(r.json()["predictions"], dtype=np.float32)
    assert_served(got, predict(models.mlp, X))


def test_columnar_format_single_output(server: Server, models: Models) -> None:
    r = post(server, "/v1/models/mlp/versions/1:predict", {"inputs": X.tolist()})
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["outputs"]
    assert_served(np.asarray(r.json()["outputs"], np.float32),
                                  predict(models.mlp, X))
    r = post(server, "/v1/models/mlp:predict", {"inputs": {"x": X.tolist()}})
    assert_served(np.asarray(r.json()["outputs"], np.float32),
                                  predict(models.mlp, X))


def test_row_format_named_inputs_and_outputs(server: Server, models: Models) -> None:
    instances = [{"x": x.tolist(), "ids": i.tolist()} for x, i in zip(X, IDS)]
    r = post(server, "/v1/models/multi:predict", {"instances": instances})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    want = predict(models.multi, {"x": X, "ids": IDS})
    assert len(preds) == len(X) and all(set(p) == {"probs", "score", "emb"} for p in preds)
    for k, name in enumerate(["probs", "score", "emb"]):
        got = np.asarray([p[name] for p in preds], np.float32)
        assert_served(got, want[k])


def test_columnar_format_named_outputs(server: Server, models: Models) -> None:
    r = post(server, "/v1/models/multi:predict", {"inputs": {"x": X.tolist(), "ids": IDS.tolist()}})
    assert r.status_code == 200, r.text
    outs = r.json()["outputs"]
    want = predict(models.multi, {"x": X, "ids": IDS})
    for k, name in enumerate(["probs", "score", "emb"]):
        assert_served(np.asarray(outs[name], np.float32), want[k])


def test_gzip_body_and_httpx(server: Server, models: Models) -> None:
    body = gzip.compress(b'{"instances": %s}' % str(X.tolist()).encode())
    with httpx.Client(timeout=30) as client:
        r = client.post(f"{server.url}/v1/models/mlp:predict", content=body,
                        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert_served(np.asarray(r.json()["predictions"], np.float32),
                                  predict(models.mlp, X))


def test_non_finite_inputs_and_outputs(server: Server) -> None:
    r = requests.post(f"{server.url}/v1/models/half_plus_two:predict",
                      data='{"instances": [[NaN], [Infinity], [-Infinity], [1e-3]]}', timeout=30)
    assert r.status_code == 200, r.text
    assert r.text.replace(" ", "") == '{"predictions":[[NaN],[Infinity],[-Infinity],[2.0005]]}'


def test_classify_and_regress_on_a_predict_signature(server: Server) -> None:
    examples = {"examples": [{"x": [1.0, 2.0, 3.0, 4.0]}]}
    r = post(server, "/v1/models/mlp:classify", examples)
    assert r.status_code == 400
    assert r.json() == {"error": "Expected classification signature method_name to be "
                        "tensorflow/serving/classify. Was: tensorflow/serving/predict"}
    r = post(server, "/v1/models/mlp/versions/1:regress", examples)
    assert r.status_code == 400
    assert "regression signature" in r.json()["error"]


ROW = X[:2].tolist()


@pytest.mark.parametrize("method,path,body,status,fragment", [
    ("POST", "/v1/models/mlp:predict", b"{not json", 400, "JSON Parse error"),
    ("POST", "/v1/models/mlp:predict", b"[1, 2]", 400, "JSON object"),
    ("POST", "/v1/models/mlp:predict", {"instances": ROW, "inputs": ROW}, 400, "exactly one"),
    ("POST", "/v1/models/mlp:predict", {"rows": ROW}, 400, "Missing 'inputs' or 'instances'"),
    ("POST", "/v1/models/mlp:predict", {"instances": []}, 400, "empty"),
    ("POST", "/v1/models/mlp:predict", {"instances": [[1, 2, 3, 4], [1, 2]]}, 400, "tensor"),
    ("POST", "/v1/models/mlp:predict", {"instances": [[1, 2, 3]]}, 400, "expected shape [-1, 4]"),
    ("POST", "/v1/models/mlp:predict", {"inputs": [1, 2, 3, 4]}, 400, "got [4]"),
    ("POST", "/v1/models/mlp:predict", {"instances": [["a", "b", "c", "d"]]}, 400, "strings"),
    ("POST", "/v1/models/mlp:predict", {"instances": [[True, False, True, True]]}, 400, "booleans"),
    ("POST", "/v1/models/mlp:predict", {"instances": [{"x": [1, 2, 3, 4]}, [1, 2, 3, 4]]}, 400,
     "mixes"),
    ("POST", "/v1/models/mlp:predict", {"instances": [{"y": [1, 2, 3, 4]}]}, 400, "unknown inputs ['y']"),
    ("POST", "/v1/models/mlp:predict", {"signature_name": "other", "instances": ROW}, 400,
     'Serving signature name: "other" not found'),
    ("POST", "/v1/models/multi:predict", {"instances": ROW}, 400, "keyed by input name"),
    ("POST", "/v1/models/multi:predict", {"inputs": {"x": ROW}}, 400, "missing inputs ['ids']"),
    ("POST", "/v1/models/multi:predict", {"inputs": {"x": ROW, "ids": [[1.5, 2, 3], [1, 2, 3]]}},
     400, "expected integers (DT_INT32)"),
    ("POST", "/v1/models/multi:predict", {"inputs": {"x": ROW, "ids": [[1, 2, 3]]}}, 400,
     "same batch size"),
    ("POST", "/v1/models/nope:predict", {"instances": ROW}, 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/mlp/versions/7:predict", {"instances": ROW}, 404,
     "Servable not found for request: Specific(mlp, 7)"),
    ("POST", "/v1/models/mlp/labels/stable:predict", {"instances": ROW}, 400,
     "Unrecognized servable version label: stable"),
    ("POST", "/v1/models/mlp/versions/99999999999999999999:predict", {"instances": ROW}, 400,
     "Failed to convert version: 99999999999999999999 to numeric."),
    ("POST", "/v1/models/mlp:predict", {"instances": [{"b64": "AAAA"}]}, 400,
     '{"b64": ...} values are base64-encoded DT_STRING data; this input is DT_FLOAT'),
    ("POST", "/v1/models/mlp:predict", {"inputs": {"x": [[{"b64": "AAAA"}] * 4]}}, 400,
     "DT_STRING data"),
    ("POST", "/v1/models/mlp:predict", b'{"instances": [[1e999, 0, 0, 0]]}', 400,
     "JSON Parse error"),
    ("POST", "/v1/models/mlp:explain", {"instances": ROW}, 400, "Malformed request: POST"),
    ("GET", "/v1/models/mlp:predict", None, 400, "Malformed request: GET"),
    ("GET", "/v1/models", None, 400, "Missing model name"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models/mlp/versions/3", None, 404, "Could not find version 3 of model mlp"),
    ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found"),
    ("GET", "/v2/models/nope", None, 404, "Servable not found"),
    ("GET", "/nowhere", None, 404, "Not found"),
    ("DELETE", "/v1/models/mlp", None, 405, "not allowed"),
])
def test_bad_requests_get_clear_errors(server: Server, models: Models, method: str, path: str,
                                       body, status: int, fragment: str) -> None:
    kwargs = {"json": body} if isinstance(body, (dict, list)) else {"data": body}
    r = requests.request(method, f"{server.url}{path}", timeout=30, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert fragment in r.json()["error"], r.json()
    ok = post(server, "/v1/models/mlp:predict", {"instances": X.tolist()})  # still serving
    assert ok.status_code == 200


def test_case_insensitive_paths_as_tf_serving(server: Server) -> None:
    r = post(server, "/v1/MODELS/mlp/Versions/1:PREDICT", {"instances": ROW})
    assert r.status_code == 200, r.text


def test_access_log_is_json_lines(server: Server, tmp_path: Path) -> None:
    import json

    post(server, "/v1/models/mlp:predict", {"instances": ROW})
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    hits = [rec for rec in lines if rec.get("api") == "predict" and rec["model"] == "mlp"]
    assert hits and {"ts", "client", "method", "path", "status", "ms", "bytes_in", "bytes_out",
                     "version"} <= set(hits[-1])
    assert hits[-1]["client"].startswith("127.0.0.1:")


def test_large_request_converted_off_the_event_loop(server: Server, models: Models) -> None:
    """~700 KB of JSON each way: parsed and encoded on a thread, same answer."""
    x = np.random.default_rng(9).uniform(-1, 1, (20000, 4)).astype(np.float32)
    r = post(server, "/v1/models/mlp:predict", {"instances": x.tolist()})
    assert r.status_code == 200, r.text
    assert_served(np.asarray(r.json()["predictions"], np.float32),
                                  predict(models.mlp, x))
