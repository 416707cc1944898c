"""The HTTP server: answers equal to the Python API's, micro-batching, metrics, API keys, every kind of bad
input refused with a one-line JSON error while a good client keeps being answered, the web page in a real
headless browser, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from mobilenets.serve import MicroBatcher, create_app

KEY = "test-key"


def png(size: tuple[int, int] = (80, 60), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@contextlib.contextmanager
def running(app):
    """The app on a real uvicorn server on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def png_header(width: int, height: int) -> bytes:
    """The start of a PNG declaring `width` x `height` pixels (no pixel data): what a decompression bomb shows."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def post(url: str, body: bytes, content_type: str = "image/png", key: str | None = KEY) -> tuple[int, dict]:
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url + "/v1/predict", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def classifier_onnx(classifier_run, tmp_path_factory):
    from mobilenets.tasks.classification.export import export_classifier

    path = tmp_path_factory.mktemp("served") / "classifier.onnx"
    return export_classifier(classifier_run[0] / "best.safetensors", "onnx", path, dynamic_batch=True).path


def test_classifier_answers_equal_predict_and_the_checkpoint_is_served_on_onnxruntime(classifier_run, tmp_path):
    from fastapi.testclient import TestClient

    from mobilenets import predict

    checkpoint = classifier_run[0] / "best.safetensors"
    image = tmp_path / "red.png"
    image.write_bytes(png())
    expected = predict(checkpoint, [image], topk=3)[0]
    app = create_app(checkpoint, top_k=3)
    assert type(app.state.servable.model).__name__ == "ExportedNetwork"  # the checkpoint runs as ONNX
    with TestClient(app) as client:
        raw = client.post("/v1/predict", content=image.read_bytes(), headers={"Content-Type": "image/png"})
        form = client.post("/v1/predict", files={"image": ("red.png", image.read_bytes(), "image/png")})
    for answer in (raw, form):
        assert answer.status_code == 200
        body = answer.json()
        assert (body["task"], body["width"], body["height"]) == ("classification", 80, 60)
        assert [p["class"] for p in body["predictions"]] == expected.classes
        np.testing.assert_allclose([p["score"] for p in body["predictions"]], expected.probabilities, atol=1e-4)


def test_detector_answers_coco_boxes_in_the_images_pixels(detector_run, tmp_path, monkeypatch):
    """A PNG answers as `predict` does; a 480x400 JPEG for the 96 px detector, decoded at a quarter of its size
    (draft mode), answers in its full size's pixels with the boxes `predict` finds on the fully decoded image."""
    from fastapi.testclient import TestClient
    from torchvision.ops import box_iou

    from mobilenets.serve import app as served
    from mobilenets.tasks.detection.inference import predict_images
    from mobilenets.tasks.detection.synthetic import SyntheticDetection

    decoded, decode_rgb = [], served.decode_rgb

    def recording(*args, **kwargs):
        image, size = decode_rgb(*args, **kwargs)
        decoded.append(image.size)
        return image, size

    monkeypatch.setattr(served, "decode_rgb", recording)

    checkpoint = detector_run[0] / "best.safetensors"
    scene = SyntheticDetection("val", size=160, length=1)[0][0]
    image, photo = tmp_path / "scene.png", tmp_path / "photo.jpg"
    scene.resize((240, 200)).save(image)
    scene.resize((480, 400)).save(photo, quality=95)
    expected, expected_photo = predict_images(checkpoint, [image, photo], threshold=0.05)[0]
    with TestClient(create_app(checkpoint, threshold=0.05)) as client:
        body = client.post("/v1/predict", content=image.read_bytes(), headers={"Content-Type": "image/png"}).json()
        body_photo = client.post("/v1/predict", content=photo.read_bytes(),
                                 headers={"Content-Type": "image/jpeg"}).json()
    assert body["task"] == "detection" and (body["width"], body["height"]) == (240, 200)
    found = body["detections"]
    assert abs(len(found) - len(expected.boxes)) <= 2 and found  # a score at the threshold may round either way
    for name, score, (x0, y0, x1, y1) in list(zip(expected.classes, expected.scores, expected.boxes, strict=True))[:20]:
        assert any(d["class"] == name and abs(d["score"] - score) < 1e-3  # ONNX against PyTorch (ties may swap)
                   and np.allclose(d["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=0.5) for d in found)
    assert (body_photo["width"], body_photo["height"]) == (480, 400) and decoded == [(240, 200), (120, 100)]
    best = sorted(range(len(expected_photo.scores)), key=expected_photo.scores.__getitem__)[-3:]
    served = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in body_photo["detections"])])
    assert len(best) == 3 and len(served)
    overlap = box_iou(torch.as_tensor(expected_photo.boxes)[best], served)
    for row, i in zip(overlap, best, strict=True):
        assert any(iou > 0.8 and d["class"] == expected_photo.classes[i] for iou, d in
                   zip(row.tolist(), body_photo["detections"], strict=True))


def test_requests_arriving_together_share_model_runs_of_at_most_the_batch_size():
    runs: list[int] = []

    def run_batch(items):
        runs.append(len(items))
        if "boom" in items:
            raise RuntimeError("model failed")
        return [] if "none" in items else [item * 10 for item in items]

    async def scenario():
        batcher = MicroBatcher(run_batch, max_batch_size=3, max_delay_ms=200)
        await batcher.start()
        answers = await asyncio.gather(*(batcher.submit(i) for i in range(8)))
        failed = await asyncio.gather(batcher.submit("boom"), return_exceptions=True)
        miscounted = await asyncio.wait_for(asyncio.gather(batcher.submit("none"), return_exceptions=True), 10)
        after = await batcher.submit(5)
        first = list(runs)
        runs.clear()
        await batcher.submit(6)  # alone, nobody on the way: runs at once
        await batcher.submit(7)

        async def arriving_late():
            with batcher.expecting():  # being read and decoded: the batch waits for it
                await asyncio.sleep(0.05)
            return await batcher.submit(9)

        together = await asyncio.gather(batcher.submit(8), arriving_late())
        await asyncio.wait_for(batcher.stop(), 10)
        return answers, failed, miscounted, after, together, first

    answers, failed, miscounted, after, together, first = asyncio.run(scenario())
    assert answers == [i * 10 for i in range(8)] and together == [80, 90]
    assert first[:3] == [3, 3, 2]  # eight requests at once: three runs, not eight
    assert runs == [1, 1, 2]  # lone requests run alone; one on its way joins the batch
    assert isinstance(failed[0], RuntimeError) and after == 50  # a failed run fails its requests, not the batcher
    assert str(miscounted[0]) == "run_batch gave 0 results for a batch of 1"  # and does not hang them or stop()
    with pytest.raises(ValueError, match="max_batch_size must be at least 1"):
        MicroBatcher(run_batch, max_batch_size=0)


def test_serving_starts_after_running_the_largest_batch_and_the_small_sizes_twice(classifier_run,
                                                                                      classifier_onnx, tmp_path):
    from mobilenets.serve.app import _warm_up_batches
    from mobilenets.serve.servable import load_servable
    from mobilenets.tasks.classification.export import export_classifier

    runs: list[list[str]] = []

    def run_batch(items):
        runs.append(list(items))
        return items

    async def scenario():
        batcher = MicroBatcher(run_batch, max_batch_size=3)
        await batcher.start(warm_up=[["blank"], ["blank", "blank"]])
        answer = await batcher.submit("request")
        await batcher.stop()
        return answer

    assert asyncio.run(scenario()) == "request" and runs == [["blank"], ["blank", "blank"], ["request"]]
    dynamic = load_servable(classifier_onnx)
    assert [len(batch) for batch in _warm_up_batches(dynamic, 3)] == [3, 3, 1, 1, 2, 2]
    assert [len(batch) for batch in _warm_up_batches(dynamic, 40)] == [40, 40, *(n for n in range(1, 17)
                                                                                  for _ in range(2))]
    x, _ = dynamic.prepare(Image.new("RGB", (64, 64)), (64, 64))
    assert _warm_up_batches(dynamic, 1)[0][0][0].shape == x.shape and dynamic.fixed_batch is None
    single = load_servable(export_classifier(classifier_run[0] / "best.safetensors", "onnx", tmp_path / "one.onnx",
                                             dynamic_batch=False).path)
    assert single.fixed_batch == 1 and [len(batch) for batch in _warm_up_batches(single, 16)] == [1, 1]


def test_bad_input_gets_one_line_json_errors_while_a_good_client_keeps_being_answered(classifier_onnx):
    app = create_app(classifier_onnx, api_key=KEY, max_body_bytes=100_000, max_pixels=1_000_000)
    good = png()
    big_noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(big_noise, "PNG")
    bad = {  # what is sent -> (status, words the error must contain)
        "empty": ((b"", "image/png", KEY), 400, "empty"),
        "not an image": ((b"hello, world" * 10, "image/jpeg", KEY), 400, "not an image"),
        "truncated": ((good[: len(good) // 2], "image/png", KEY), 400, "truncated"),
        "wrong type": ((good, "text/plain", KEY), 415, "content type 'text/plain'"),
        "too many pixels": ((png((1500, 1000)), "image/png", KEY), 413, "1500x1000 = 1,500,000 pixels"),
        "over Pillow's own limit": ((png_header(100_000, 100_000), "image/png", KEY), 413, "10000000000 pixels"),
        "too large": ((big_noise.getvalue(), "image/png", KEY), 413, "over the limit of 100,000"),
        "no key": ((good, "image/png", None), 401, "API key"),
        "wrong key": ((good, "image/png", "guess"), 401, "API key"),
        "form without a file": ((b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
                                 "multipart/form-data; boundary=x", KEY), 400, "no file"),
    }
    with running(app) as url:
        expected = post(url, good)[1]["predictions"]
        stop, answers = threading.Event(), []

        def good_client():
            while not stop.is_set():
                answers.append(post(url, good))

        client = threading.Thread(target=good_client)
        client.start()
        try:
            for name, ((body, content_type, key), status, words) in bad.items():
                got, error = post(url, body, content_type, key)
                assert got == status and words in error["error"] and "\n" not in error["error"], name
                assert list(error) == ["error"], name
        finally:
            stop.set()
            client.join()
        assert answers and all(s == 200 and a["predictions"] == expected for s, a in answers)
        with urllib.request.urlopen(url + "/health") as response:  # no key needed
            assert json.loads(response.read())["status"] == "ok"
        metrics_request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
        with urllib.request.urlopen(metrics_request) as response:
            metrics = response.read().decode()
        assert f'mobilenets_requests_total{{status="200"}} {len(answers) + 1}.0' in metrics
        assert 'mobilenets_requests_total{status="401"} 2.0' in metrics
        assert "mobilenets_batch_size_count" in metrics and "mobilenets_queue_depth" in metrics
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(url + "/metrics")
        for path, method, status in (("/nowhere", "GET", 404), ("/v1/predict", "GET", 405)):
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(urllib.request.Request(url + path, method=method))
            assert answer.value.code == status and list(json.loads(answer.value.read())) == ["error"]


def test_a_failure_of_the_servers_own_is_a_json_500_counted_and_logged_and_others_are_still_answered(caplog):
    """A custom Servable with bugs: its scale_for fails for one image size and its answer for one colour. Those
    are the server's failures, not bad input: a one-line JSON 500 (not the 400 of an unreadable upload), counted
    in /metrics, the traceback in the log; the next request is answered."""
    from mobilenets.serve.servable import Servable

    class Buggy(Servable):
        task, classes = "classification", ["red", "blue"]

        def scale_for(self, width: int, height: int) -> float:
            return 1 / (width - 13)

        def prepare(self, image, full_size):
            return torch.from_numpy(np.asarray(image.resize((8, 8)))).permute(2, 0, 1), None

        def answer(self, images, contexts):
            if (images[:, 2] > 200).any():
                raise RuntimeError("the model failed")
            return [{"predictions": [{"class": "red", "score": 1.0}]} for _ in contexts]

    from fastapi.testclient import TestClient

    with TestClient(create_app(Buggy())) as client:
        for body in (png((13, 9)), png(color=(0, 0, 255))):
            response = client.post("/v1/predict", content=body, headers={"Content-Type": "image/png"})
            assert response.status_code == 500
            assert response.json() == {"error": "internal error (the server's log has the traceback)"}
        assert client.post("/v1/predict", content=png(), headers={"Content-Type": "image/png"}).json()[
            "predictions"] == [{"class": "red", "score": 1.0}]
        metrics = client.get("/metrics").text
    assert 'mobilenets_requests_total{status="500"} 2.0' in metrics
    assert 'mobilenets_requests_total{status="200"} 1.0' in metrics
    failures = [r for r in caplog.records if r.name == "mobilenets.serve.app"]
    assert [r.exc_info[0] for r in failures] == [ZeroDivisionError, RuntimeError]


def test_uploads_are_prepared_by_at_most_prepare_threads_at_once():
    """Six clients at once, preparing takes 50 ms: two threads prepare side by side, never a third; a count under
    one is refused."""
    from mobilenets.serve.servable import Servable

    lock, busy, most = threading.Lock(), [0], [0]

    class Slow(Servable):
        task, classes = "classification", ["only"]

        def prepare(self, image, full_size):
            with lock:
                busy[0] += 1
                most[0] = max(most[0], busy[0])
            time.sleep(0.05)
            with lock:
                busy[0] -= 1
            return torch.zeros(3, 4, 4, dtype=torch.uint8), None

        def answer(self, images, contexts):
            return [{"predictions": [{"class": "only", "score": 1.0}]} for _ in contexts]

    statuses = []
    with running(create_app(Slow(), prepare_threads=2)) as url:
        clients = [threading.Thread(target=lambda: statuses.append(post(url, png(), key=None)[0])) for _ in range(6)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
    assert statuses == [200] * 6 and most[0] == 2
    with pytest.raises(ValueError, match="prepare_threads must be at least 1, got 0"):
        create_app(Slow(), prepare_threads=0)


def test_the_app_serves_again_after_a_restart_and_when_mounted_in_another_app():
    """Two lifespans one after the other (the model thread and the preparing pool start again), and the app mounted
    in another one, which does not run a mounted app's lifespan: it starts on the first request."""
    from fastapi.testclient import TestClient
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from mobilenets.serve.servable import Servable

    class Constant(Servable):
        """Records the size of every batch it answers; with `fail_first`, its first batch fails."""

        task, classes = "classification", ["only"]

        def __init__(self, fail_first: bool = False) -> None:
            self.batches: list[int] = []
            self.fail_first = fail_first

        def prepare(self, image, full_size):
            return torch.zeros(3, 4, 4, dtype=torch.uint8), None

        def answer(self, images, contexts):
            self.batches.append(len(images))
            if self.fail_first and len(self.batches) == 1:
                raise RuntimeError("the runtime failed once")
            return [{"predictions": [{"class": "only", "score": 1.0}]} for _ in contexts]

    headers = {"Content-Type": "image/png"}
    served = Constant()
    app = create_app(served, max_batch_size=5)
    for _ in range(2):
        with TestClient(app) as client:
            assert client.post("/v1/predict", content=png(), headers=headers).status_code == 200
    warm_up = [5, 5, 1, 1, 2, 2, 3, 3, 4, 4]  # each start: the largest batch, then every size, twice each
    assert served.batches == [*warm_up, 1, *warm_up, 1]
    flaky = Constant(fail_first=True)
    with TestClient(Starlette(routes=[Mount("/ml", app=create_app(flaky))])) as client:
        failed = client.post("/ml/v1/predict", content=png(), headers=headers)
        answer = client.post("/ml/v1/predict", content=png(), headers=headers).json()
    assert failed.status_code == 500 and list(failed.json()) == ["error"]  # its warm-up failed: started again
    assert answer["predictions"] == [{"class": "only", "score": 1.0}]
    assert flaky.batches == [16, 16, 16, *(n for n in range(1, 16) for _ in range(2)), 1]


def test_a_client_leaving_mid_upload_is_counted_as_499_and_logs_no_failure(classifier_onnx, caplog):
    app = create_app(classifier_onnx)
    with running(app) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as client:
            client.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                           b"Content-Length: 100000\r\n\r\n" + png()[:20])
        deadline = time.time() + 10
        while 'status="499"' not in (metrics := urllib.request.urlopen(url + "/metrics").read().decode()):
            assert time.time() < deadline, "the server never counted the disconnect"
            time.sleep(0.05)
        assert post(url, png())[0] == 200  # and it keeps answering
    assert 'mobilenets_requests_total{status="499"} 1.0' in metrics and 'status="500"' not in metrics
    assert not [r for r in caplog.records if r.name == "mobilenets.serve.app"]


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or "/usr/lib/chromium/chromedriver"
    return (browser, driver) if browser and os.path.exists(driver) else None


@pytest.mark.skipif(_chromium() is None, reason="needs chromium and chromium-driver (apt-get install chromium "
                                                "chromium-driver); .ci/run installs them")
def test_the_web_page_shows_the_top_classes_of_an_uploaded_image(classifier_onnx, tmp_path):
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver = _chromium()
    image = tmp_path / "red.png"
    image.write_bytes(png())
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    with running(create_app(classifier_onnx, api_key=KEY, top_k=3)) as url:
        expected = [p["class"] for p in post(url, image.read_bytes())[1]["predictions"]]
        page = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
        try:
            page.get(url + "/")
            page.find_element(By.ID, "key").send_keys(KEY)
            page.find_element(By.ID, "file").send_keys(str(image))
            rows = WebDriverWait(page, 30).until(lambda p: p.find_elements(By.CSS_SELECTOR, "#result .prediction"))
            assert [row.get_attribute("data-class") for row in rows] == expected
            assert "ms" in page.find_element(By.ID, "latency").text
            page.find_element(By.ID, "key").clear()  # a wrong key: the page shows the server's error
            page.find_element(By.ID, "file").send_keys(str(image))
            WebDriverWait(page, 30).until(lambda p: "API key" in p.find_element(By.ID, "error").text)
        finally:
            page.quit()


def test_sigterm_answers_the_requests_in_flight_then_exits(classifier_onnx):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "mobilenets", "serve", "--model", str(classifier_onnx),
                               "--port", str(port), "--max-delay-ms", "1000", "--max-batch-size", "64"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, server.stderr.read()
                time.sleep(0.2)
        answers: list = []
        clients = [threading.Thread(target=lambda: answers.append(post(url, png(), key=None))) for _ in range(4)]
        for client in clients:
            client.start()
        time.sleep(0.5)  # the four wait in the batcher's queue (1 s delay) when the signal comes
        server.send_signal(signal.SIGTERM)
        for client in clients:
            client.join(30)
        assert len(answers) == 4 and all(status == 200 for status, _ in answers)
        assert server.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    finally:
        if server.poll() is None:
            server.kill()


def test_a_port_in_use_is_one_line_before_the_model_loads(classifier_onnx, capsys):
    from mobilenets.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(classifier_onnx), "--port", str(port)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.splitlines() == [f"mobilenets: error: --host 127.0.0.1 --port {port}: cannot listen there "
                                  f"(Address already in use)"]


def test_class_names_that_were_not_utf8_are_answered_escaped_and_a_blank_api_key_is_refused(classifier_onnx):
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from mobilenets.tasks.classification.checkpoint import load_classifier
    from mobilenets.tasks.classification.serve import ServedClassifier

    classifier = load_classifier(classifier_onnx)
    names = ["\udcffbad", *classifier.classes[1:]]  # a folder name with the byte 0xff, as os.listdir gives it
    with TestClient(create_app(ServedClassifier(replace(classifier, classes=names), top_k=len(names)))) as client:
        assert client.get("/health").json()["classes"][0] == "\\xffbad"
        answer = client.post("/v1/predict", content=png(), headers={"Content-Type": "image/png"}).json()
    assert "\\xffbad" in [p["class"] for p in answer["predictions"]]
    for key in ("", " ", "key\n"):
        with pytest.raises(ValueError, match="the API key is empty or begins or ends with white space"):
            create_app(ServedClassifier(classifier), api_key=key)
