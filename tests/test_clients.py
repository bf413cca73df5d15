"""Programs as clients, against the real server (gunicorn): 413 with requests and urllib, the Open
Inference Protocol through NVIDIA's tritonclient, and the README's Python examples and the curl
commands of the README and docs/."""
import io
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from bench.server import LiveServer

from .conftest import ROOT, png_bytes, rock_png, survey, whale_photo

pytestmark = pytest.mark.slow
LIMIT = 1 << 20                         #: MAX_CONTENT_LENGTH of the test server
ENDPOINTS = ("salt/segment", "rocks/classify", "similarity/search", "whales/identify")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model_dir, rock_folder, whale_folder):
    live = LiveServer(tmp_path_factory.mktemp("clients"), tiny_model_dir, gallery_data=rock_folder,
                      whales_data=whale_folder, env={"MAX_CONTENT_LENGTH": str(LIMIT)})
    yield live
    live.stop()


@pytest.fixture
def triton(server):
    return httpclient.InferenceServerClient(server.url.removeprefix("http://"))


def multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_oversize_upload_is_a_413_for_requests_and_urllib(server, endpoint):
    big = b"\x89PNG" + bytes(40 << 20)          # 40 MiB: far more than the socket buffers hold
    response = requests.post(f"{server.url}/api/v1/{endpoint}", files={"image": ("big.png", big)}, timeout=60)
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    body, content_type = multipart("big.png", big)
    request = urllib.request.Request(f"{server.url}/api/v1/{endpoint}", data=body, headers={"Content-Type": content_type})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=60)
    assert answer.value.code == 413
    assert b'"payload_too_large"' in answer.value.read()
    # the connection pool and the server are still fine afterwards
    assert requests.get(f"{server.url}/api/v1/health", timeout=10).json() == {"status": "ok"}


def test_v2_health_and_metadata(triton):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    for task in ("salt", "rocks", "similarity", "whales"):
        assert triton.is_model_ready(task)
        meta = triton.get_model_metadata(task)
        assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}] and meta["outputs"]
    assert not triton.is_model_ready("nonexistent")


def images_input(*images: bytes) -> httpclient.InferInput:
    tensor = httpclient.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=object))
    return tensor


def test_v2_infer_every_task_equals_v1(server, triton, whale_folder):
    tile = np.full((101, 101), 20, np.uint8)
    tile[:, :40] = 230                                           # the tiny model's salt: the bright part
    salt = triton.infer("salt", [images_input(png_bytes(tile), png_bytes(tile[::-1].copy()))],
                        parameters={"threshold": 0.5})
    mask = salt.as_numpy("mask")
    assert mask.shape == (2, 101, 101) and mask.dtype == np.uint8
    assert mask[0, :, :40].all() and not mask[0, :, 41:].any()
    np.testing.assert_allclose(salt.as_numpy("coverage"), [40 / 101] * 2, atol=1e-4)

    marble, schist = rock_png("marble", 3), rock_png("schist", 4)
    rocks = triton.infer("rocks", [images_input(marble, schist)],
                         outputs=[httpclient.InferRequestedOutput("label", binary_data=False),
                                  httpclient.InferRequestedOutput("probabilities", binary_data=True)])
    assert list(rocks.as_numpy("label")) == ["marble", "schist"]      # JSON output: str elements
    v1 = requests.post(f"{server.url}/api/v1/rocks/classify", files={"image": ("m.png", marble)}, timeout=30).json()
    np.testing.assert_allclose(rocks.as_numpy("probabilities")[0], list(v1["results"][0]["probabilities"].values()),
                               atol=1e-5)

    similar = triton.infer("similarity", [images_input(marble)], parameters={"k": 5})
    assert similar.as_numpy("ids").shape == (1, 5) and similar.as_numpy("ids").dtype == np.int64
    assert {x.decode() for x in similar.as_numpy("labels")[0]} == {"marble"}
    assert (np.diff(similar.as_numpy("scores")[0]) <= 1e-6).all()          # best first

    photo = (whale_folder / "images" / "w02e0p0.jpg").read_bytes()
    whales = triton.infer("whales", [images_input(photo)])
    assert whales.as_numpy("whale_ids").shape == (1, 5) and whales.as_numpy("whale_ids")[0, 0] == b"whale02"
    v1 = requests.post(f"{server.url}/api/v1/whales/identify", files={"image": ("w.jpg", photo)}, timeout=30).json()
    assert [p["whale_id"] for p in v1["results"][0]["predictions"]] == [x.decode() for x in whales.as_numpy("whale_ids")[0]]


def test_v2_errors_reach_the_client(triton):
    with pytest.raises(InferenceServerException) as bad_image:
        triton.infer("rocks", [images_input(rock_png("gneiss"), b"not an image")])
    assert bad_image.value.status() == "400" and "image[1]: invalid_image" in bad_image.value.message()
    with pytest.raises(InferenceServerException) as bad_option:
        triton.infer("similarity", [images_input(rock_png("gneiss"))], parameters={"k": 0})
    assert bad_option.value.status() == "400" and "invalid_k" in bad_option.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        triton.infer("basalt", [images_input(rock_png("gneiss"))])
    assert unknown.value.status() == "404"
    sizes = images_input(png_bytes(np.zeros((101, 101), np.uint8)), png_bytes(np.zeros((60, 80), np.uint8)))
    with pytest.raises(InferenceServerException, match="different sizes"):
        triton.infer("salt", [sizes])


def readme_examples() -> dict[str, str]:
    """The README's Python blocks that start with ``# example: NAME``."""
    blocks = re.findall(r"```python\n(# example: ([^\n]+)\n.*?)```", (ROOT / "README.md").read_text(), re.S)
    return {name: code for code, name in blocks}


def test_readme_python_examples_run(server, tmp_path):
    examples = readme_examples()
    assert set(examples) == {"v1 (requests)", "v2 (tritonclient)"}
    image = tmp_path / "rock.png"
    image.write_bytes(rock_png("quartzite", 7))
    env = {**os.environ, "GEOVISION_URL": server.url, "GEOVISION_HOSTPORT": server.url.removeprefix("http://"),
           "ROCK_IMAGE": str(image)}
    for name, code in examples.items():
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, f"{name}: {run.stderr}"
        assert run.stdout.split()[0] == "quartzite", (name, run.stdout)


def test_readme_examples_with_accounts_and_a_key(tmp_path, tiny_model_dir):
    """A production-like server (AUTH_REQUIRED=1): the README's first-admin commands through the real
    CLI (password twice on standard input, the key on the last line), then its examples with the key;
    without it every call is 401."""
    server = LiveServer(tmp_path / "auth", tiny_model_dir, env={"AUTH_REQUIRED": "1"})
    try:
        flask = [*server.flask, "users"]
        made = subprocess.run([*flask, "create", "admin", "--admin"], input="a long password\na long password\n",
                              cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
        printed = subprocess.run([*flask, "key", "admin"], cwd=ROOT, env=server.env, capture_output=True, text=True,
                                 timeout=60)
        key = printed.stdout.strip().splitlines()[-1]
        image = tmp_path / "rock.png"
        image.write_bytes(rock_png("quartzite", 7))
        env = {**os.environ, "GEOVISION_URL": server.url, "GEOVISION_HOSTPORT": server.url.removeprefix("http://"),
               "ROCK_IMAGE": str(image)}
        for name, code in readme_examples().items():
            refused = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
            assert refused.returncode != 0, name   # v1: raise_for_status (401); v2: the model is not ready to it
            run = subprocess.run([sys.executable, "-c", code], env={**env, "GEOVISION_KEY": key}, capture_output=True,
                                 text=True, timeout=60)
            assert run.returncode == 0, f"{name}: {run.stderr}"
            assert run.stdout.split()[0] == "quartzite", (name, run.stdout)
        assert requests.get(f"{server.url}/history", allow_redirects=False, timeout=10).status_code == 302
    finally:
        server.stop()


def test_v2_json_without_the_binary_extension(server):
    import base64

    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                        "data": [base64.b64encode(rock_png("andesite")).decode()]}]}
    answer = requests.post(f"{server.url}/v2/models/rocks/infer", json=body, timeout=30).json()
    assert answer["model_name"] == "rocks"
    assert {o["name"]: o["data"] for o in answer["outputs"]}["label"] == ["andesite"]
    assert requests.post(f"{server.url}/v2/models/rocks/infer", data=io.BytesIO(b"{oops"), timeout=30).status_code == 400


def doc_curl_commands() -> list[str]:
    """Every ``curl`` command of the README's and docs/' bash blocks (continued lines joined),
    except those that need an id from an earlier answer (written ``3f2c...``)."""
    commands = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" # ")[0].strip()
                if line.startswith("curl ") and "..." not in line:
                    commands.append(line)
    return commands


def test_doc_curl_commands_run(server, tmp_path):
    """The curl commands people copy from the README and docs/, run as written (with the files
    they name, small) against the served app: each answers 2xx (``curl -f``) with JSON."""
    import segyio

    commands = doc_curl_commands()
    assert len(commands) >= 10 and any("whales/identify" in c for c in commands)
    (tmp_path / "rock.jpg").write_bytes(rock_png("marble", 3))
    (tmp_path / "whale.jpg").write_bytes(png_bytes(whale_photo(1, 0, 0), fmt="JPEG"))
    tile = np.random.default_rng(0).integers(0, 255, (101, 101), dtype=np.uint8)
    (tmp_path / "tile1.png").write_bytes(png_bytes(tile))
    (tmp_path / "tile.png").write_bytes(png_bytes(tile))
    section = np.random.default_rng(1).integers(0, 255, (160, 240), dtype=np.uint8)
    (tmp_path / "section.png").write_bytes(png_bytes(section))
    (tmp_path / "section.tif").write_bytes(png_bytes(section, fmt="TIFF"))
    survey(tmp_path / "survey.sgy")                # inlines 1198-1202, crosslines 2101-2250, as in the docs
    with segyio.open(str(tmp_path / "survey.sgy"), "r+", ignore_geometry=True) as f:
        for t in range(f.tracecount):
            f.header[t].update({segyio.TraceField.INLINE_3D: 1198 + t // 150,
                                segyio.TraceField.CROSSLINE_3D: 2101 + t % 150})
    env = {**os.environ, "GEOVISION_KEY": "gv_00000000_unused"}   # no sign-in on this server
    for command in commands:
        command = command.replace("curl -s ", "curl -sSf ").replace("http://127.0.0.1:8000", server.url)
        run = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, (command, run.stderr)
        assert json.loads(run.stdout), command
