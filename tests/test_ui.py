"""The UI server's JSON API: requests, errors, concurrency, files kept inside the work folder."""

import base64
import http.client
import io
import json
import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

import jaxrewrite as jr
from conftest import run
from jaxrewrite import modelfile, ui, zoo
from jaxrewrite.rewrite import editfile
from jaxrewrite.images import to_uint8
from jaxrewrite.tree import get
from jaxrewrite.ui import server as ui_server

SPIRE2TREE = editfile.read_json(zoo.shipped_edit("towns64", "spire2tree"))
REQUEST = {k: SPIRE2TREE[k] for k in ("object", "paste", "key")}
FAST = {"niter": 21}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui_api")
    (root / "work").mkdir()
    (root / "secret.json").write_text(json.dumps(SPIRE2TREE))  # outside the work folder
    server = ui.start("towns64", workdir=root / "work", cache_dir=str(root / "cache"))
    yield server
    server.stop()


def call(srv, method, path, body=None, headers=None, raw=None):
    """(status, parsed JSON or bytes) of one request."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=300)
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers={**hdrs, **(headers or {})})
    r = conn.getresponse()
    out = r.read()
    conn.close()
    kind = r.getheader("Content-Type") or ""
    return r.status, json.loads(out) if kind.startswith("application/json") else out


def wait_job(srv, job):
    while True:
        status, j = call(srv, "GET", "/api/job")
        assert status == 200 and j["id"] == job
        if j["state"] != "running":
            return j
        time.sleep(0.05)


def execute(srv, kind="edit", request=REQUEST, settings=FAST, layer="layer8"):
    status, out = call(srv, "POST", "/api/execute", {"kind": kind, "layer": layer, "request": request,
                                                     "settings": settings})
    assert status == 202, out
    return wait_job(srv, out["job"])


def test_page_and_info(srv):
    status, page = call(srv, "GET", "/")
    assert status == 200 and b"<script src=\"/static/app.js\">" in page
    for path in ("/static/app.js", "/static/app.css"):
        status, body = call(srv, "GET", path)
        assert status == 200 and len(body) > 1000
        assert b"http://" not in body and b"https://" not in body  # offline: nothing from a CDN
    status, info = call(srv, "GET", "/api/info")
    assert status == 200 and info["arch"] == "proggan" and info["size"] == 64
    layer8 = next(l for l in info["layers"] if l["name"] == "layer8")
    assert layer8 == {"name": "layer8", "keys": [32, 32], "values": [32, 32], "channels": 32}
    assert {"projected", "lambda", "closed"} <= {m["name"] for m in info["methods"]}
    assert info["shipped"] == ["dome2spire", "erase_windows", "spire2tree"] and info["history"] == []


def test_images_by_number_range_and_original(srv):
    status, out = call(srv, "POST", "/api/images", {"numbers": "200-202,300"})
    assert status == 200 and out["numbers"] == [200, 201, 202, 300]
    _, again = call(srv, "POST", "/api/images", {"numbers": [300]})
    assert again["images"][0] == out["images"][3]  # one image, whatever else is in the batch
    direct = jr.load("towns64")
    gen = direct.generator()
    expected = to_uint8(np.asarray(gen(direct.params, jr.z_for([300], gen.z_dim, 1))))[0]
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(again["images"][0].split(",", 1)[1]))))
    assert shown.shape == (64, 64, 3) and np.abs(shown.astype(int) - expected).max() <= 1  # batched: float noise


@pytest.mark.parametrize("body, message", [
    ({"numbers": "12-3"}, "runs backwards"),
    ({"numbers": "a-b"}, "look like"),
    ({"numbers": "0-100"}, "at most 64"),
    ({"numbers": [1_000_000]}, "run from 0"),
    ({"numbers": [True]}, "list of integers"),
    ({}, "missing 'numbers'"),
])
def test_bad_image_numbers(srv, body, message):
    status, out = call(srv, "POST", "/api/images", body)
    assert status == 400 and message in out["error"] and "\n" not in out["error"]


@pytest.mark.parametrize("method, path, raw, headers, code, message", [
    ("POST", "/api/images", b"{not json", None, 400, "not JSON"),
    ("POST", "/api/images", b"[1, 2]", None, 400, "JSON object"),
    ("POST", "/api/images", b"\xff\xfe", None, 400, "not JSON"),
    ("POST", "/api/images", b'{"numbers": "1"}', {"Content-Type": "text/plain"}, 415, "send JSON"),
    ("GET", "/api/nothing", None, None, 404, "no such page"),
    ("GET", "/../../etc/passwd", None, None, 404, "no such page"),
    ("GET", "/api/images", None, None, 405, "not allowed"),
    ("DELETE", "/api/info", None, None, 405, "not allowed"),
    ("GET", "/api/info", None, {"Host": "evil.example:80"}, 403, "unexpected Host"),
])
def test_malformed_requests_get_one_line(srv, method, path, raw, headers, code, message):
    status, out = call(srv, method, path, raw=raw, headers=headers)
    assert status == code and message in out["error"] and "Traceback" not in out["error"]


def test_oversized_body_is_refused_unread(srv):
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    conn.putrequest("POST", "/api/images")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(ui_server.MAX_BODY + 1))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and "over 16 MiB" in json.loads(r.read())["error"]
    conn.close()


def bad_mask(request, field):
    out = json.loads(json.dumps(request))
    (out[field] if field != "key" else out["key"][0])[1] = "data:image/png;base64,AAAA"
    return out


def empty_mask(request, field):
    out = json.loads(json.dumps(request))
    out[field][1] = editfile.encode_mask(np.zeros((64, 64), bool))
    return out


@pytest.mark.parametrize("body, message", [
    ({"kind": "edit", "layer": "layer99", "request": REQUEST}, "not a rewritable layer"),
    ({"kind": "edit", "layer": "layer8", "request": {"paste": REQUEST["paste"]}}, "missing 'object'"),
    ({"kind": "edit", "layer": "layer8", "request": bad_mask(REQUEST, "object")}, "'object': mask"),
    ({"kind": "edit", "layer": "layer8", "request": bad_mask(REQUEST, "key")}, "'key'[0]"),
    ({"kind": "edit", "layer": "layer8", "request": empty_mask(REQUEST, "paste")}, "mask is empty"),
    ({"kind": "edit", "layer": "layer8", "request": REQUEST, "settings": {"lr": -1}}, "lr must be"),
    ({"kind": "edit", "layer": "layer8", "request": REQUEST, "settings": {"rank": 0}}, "rank must be"),
    ({"kind": "edit", "layer": "layer8", "request": REQUEST, "settings": {"method": "magic"}}, "magic"),
    ({"kind": "edit", "layer": "layer8", "request": REQUEST, "settings": {"steps": 3}}, "unknown setting"),
    ({"kind": "edit", "layer": "layer8", "request": REQUEST, "settings": {"rank": 5000}}, "exceeds"),
    ({"kind": "teleport", "layer": "layer8", "request": REQUEST}, "kind must be"),
    ({"kind": "edit", "layer": "layer8", "request": "x"}, "must be an object"),
])
def test_bad_edits_are_refused_before_any_work(srv, body, message):
    before = srv.session.current
    status, out = call(srv, "POST", "/api/execute", body)
    assert status == 400 and message in out["error"], out
    assert srv.session.current is before and call(srv, "GET", "/api/info")[1]["history"] == []


def test_paste_view_and_search(srv):
    status, out = call(srv, "POST", "/api/paste", {"layer": "layer8", "request": REQUEST})
    assert status == 200 and out["image"].startswith("data:image/png") and out["box"] == [4, 18, 34, 38]
    status, found = call(srv, "POST", "/api/search", {"layer": "layer8", "request": {"key": REQUEST["key"]},
                                                      "count": 12})
    assert status == 200 and len(found["numbers"]) == 12 and len(set(found["numbers"])) == 12
    assert 293 in found["numbers"] or found["level"] > 0  # the context's own image ranks high
    _, plain = call(srv, "POST", "/api/images", {"numbers": found["numbers"][:2]})
    _, lit = call(srv, "POST", "/api/images", {"numbers": found["numbers"][:2], "highlight": True})
    assert lit["highlight"] and lit["images"] != plain["images"]
    status, sel = call(srv, "POST", "/api/search", {"layer": "layer8", "source": "selection",
                                                    "request": {"query": REQUEST["paste"]}})
    assert status == 200 and len(sel["numbers"]) == 12
    status, out = call(srv, "POST", "/api/search", {"layer": "layer8", "source": "selection", "request": {}})
    assert status == 400 and "'query'" in out["error"]


def test_edit_undo_revert_and_the_grid(srv):
    job = execute(srv)
    assert job["state"] == "done", job
    result = job["result"]
    assert result["layer"] == "layer8" and result["loss"][1] < result["loss"][0]
    assert len(result["grid"]["numbers"]) == 32 and min(result["grid"]["numbers"]) >= 10_000
    assert result["grid"]["before"] != result["grid"]["after"]
    edited = srv.session.current
    assert not np.array_equal(get(edited.params, "layer8.conv.kernel"),
                              get(srv.session.model.params, "layer8.conv.kernel"))
    _, orig = call(srv, "POST", "/api/images", {"numbers": [293], "original": True})
    _, now = call(srv, "POST", "/api/images", {"numbers": [293]})
    assert orig["images"] != now["images"]
    zero = execute(srv, "zero", {"key": REQUEST["key"]}, {"rank": 1})  # edits compose
    assert zero["state"] == "done" and zero["result"]["loss"] is None
    assert [h["kind"] for h in call(srv, "GET", "/api/info")[1]["history"]] == ["edit", "zero"]
    assert call(srv, "POST", "/api/undo", {})[1]["history"][0]["kind"] == "edit"
    assert srv.session.current is edited
    assert call(srv, "POST", "/api/revert", {})[1]["history"] == []
    status, out = call(srv, "POST", "/api/undo", {})
    assert status == 400 and "nothing to undo" in out["error"]


def test_erase(srv):
    request = editfile.read_json(zoo.shipped_edit("towns64", "erase_windows"))
    job = execute(srv, "erase", request, {"niter": 21, "drank": 10}, layer=request["jaxrewrite"]["layer"])
    assert job["state"] == "done" and len(job["result"]["units"]) == 10
    call(srv, "POST", "/api/revert", {})


def test_one_edit_at_a_time_while_views_still_answer(srv):
    status, out = call(srv, "POST", "/api/execute", {"kind": "edit", "layer": "layer8", "request": REQUEST,
                                                     "settings": {"niter": 4001}})
    assert status == 202
    try:
        status, busy = call(srv, "POST", "/api/execute", {"kind": "edit", "layer": "layer8", "request": REQUEST,
                                                          "settings": FAST})
        assert status == 409 and "an edit is running" in busy["error"]
        assert call(srv, "POST", "/api/undo", {})[0] == 409
        assert call(srv, "POST", "/api/revert", {})[0] == 409
        replies = []
        threads = [threading.Thread(target=lambda n=n: replies.append(call(srv, "POST", "/api/images",
                                                                            {"numbers": [n, n + 1]})[0]))
                   for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert replies == [200] * 6
        assert call(srv, "GET", "/api/job")[1]["state"] == "running"
    finally:
        job = wait_job(srv, out["job"])
    assert job["state"] == "done" and job["done"] > 0 and "update" in job["desc"]
    assert len(srv.session.history) == 1
    call(srv, "POST", "/api/revert", {})


def test_save_load_inside_the_work_folder_only(srv):
    work = srv.session.workdir
    status, out = call(srv, "POST", "/api/save", {"name": "trees", "request": REQUEST,
                                                  "settings": {"layer": "layer8", "rank": 1, "lr": 0.05}})
    assert status == 200 and out["files"] == ["trees"]
    saved = editfile.read_json(work / "trees.json")
    assert saved["jaxrewrite"] == {"layer": "layer8", "rank": 1, "lr": 0.05}
    request = editfile.read_edit(work / "trees.json")
    assert editfile.to_json(request) == editfile.to_json(editfile.parse_edit(SPIRE2TREE))  # the same masks
    status, loaded = call(srv, "POST", "/api/load", {"name": "trees"})
    assert status == 200 and loaded["settings"]["layer"] == "layer8"
    assert loaded["request"] == editfile.to_json(request)
    status, shipped = call(srv, "POST", "/api/load", {"name": "shipped:spire2tree"})
    assert status == 200 and shipped["request"] == editfile.to_json(editfile.parse_edit(SPIRE2TREE))
    status, up = call(srv, "POST", "/api/load", {"content": SPIRE2TREE})  # a file the official UI saved
    assert status == 200 and up["request"] == shipped["request"]
    for name in ("../secret", "../secret.json", "/etc/passwd", "a/b", ".hidden", "x" * 80, "sub\\x", "", 3):
        assert call(srv, "POST", "/api/save", {"name": name, "request": REQUEST})[0] == 400
        assert call(srv, "POST", "/api/load", {"name": name})[0] == 400
    for name in ("shipped:../spire2tree", "shipped:/etc/passwd", "missing"):
        status, out = call(srv, "POST", "/api/load", {"name": name})
        assert status == 400 and "\n" not in out["error"]
    status, out = call(srv, "POST", "/api/load", {"content": {"object": [1, "data:image/png;base64,!!"]}})
    assert status == 400 and "uploaded file" in out["error"]
    assert sorted(p.name for p in work.iterdir()) == ["trees.json"]
    assert not (work.parent / "trees.json").exists()


def test_download_model_and_checkpoint(srv, tmp_path):
    job = execute(srv)
    assert job["state"] == "done"
    status, data = call(srv, "GET", "/api/download?what=model")
    assert status == 200
    (tmp_path / "m.msgpack").write_bytes(data)
    model = modelfile.load(tmp_path / "m.msgpack")
    np.testing.assert_array_equal(get(model.params, "layer8.conv.kernel"),
                                  get(srv.session.current.params, "layer8.conv.kernel"))
    status, data = call(srv, "GET", "/api/download?what=checkpoint")
    assert status == 200 and data[:2] == b"PK"  # a torch zip file
    (tmp_path / "m.pt").write_bytes(data)
    np.testing.assert_array_equal(get(modelfile.load(tmp_path / "m.pt").params, "layer8.conv.kernel"),
                                  get(model.params, "layer8.conv.kernel"))
    assert call(srv, "GET", "/api/download?what=weights")[0] == 400
    call(srv, "POST", "/api/revert", {})


def test_cli_ui_refuses_bad_options_before_loading(tmp_path, capsys):
    assert run("ui", "--model", "towns64", "--workdir", tmp_path / "missing") == 2
    assert "--workdir" in capsys.readouterr().err
    assert run("ui", "--model", "towns64", "--port", "70000") == 2
    assert run("ui", "--model", tmp_path / "none.msgpack", "--workdir", tmp_path) == 2
    assert list(tmp_path.iterdir()) == []


def test_binding_another_address_warns(tmp_path, capsys):
    server = ui.start(jr.load("towns64"), name="towns64", host="0.0.0.0", workdir=tmp_path)
    try:
        assert "warning: serving on 0.0.0.0" in capsys.readouterr().err
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/info") as r:
            assert json.loads(r.read())["name"] == "towns64"
    finally:
        server.stop()


def test_show_in_a_notebook_is_an_iframe_of_a_background_server(tmp_path, monkeypatch):
    import sys
    import types

    class IFrame:
        def __init__(self, src, width, height):
            self.src, self.width, self.height = src, width, height

    display = types.ModuleType("IPython.display")
    display.IFrame = IFrame
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    frame = ui.show("towns64", workdir=tmp_path)
    try:
        assert isinstance(frame, IFrame) and frame.src == frame.server.url and frame.height == 900
        with urllib.request.urlopen(frame.src) as r:
            assert b"jaxrewrite" in r.read()
    finally:
        frame.server.stop()


def _models(golden):
    import factories

    rng = np.random.default_rng(0)
    yield "stylegan2", jr.convert(factories.stylegan2(rng, 16, 16, 1, {4: 16, 8: 16, 16: 8})), "layer4"
    yield "dcgan", jr.convert(factories.dcgan(rng)), "layer2"
    yield "nvidia", jr.load(golden / "nvidia" / "ada_auto32.pkl"), "layer4"


@pytest.mark.parametrize("which", ["stylegan2", "dcgan", "nvidia"])
def test_every_architecture_through_the_session(golden, tmp_path, which):
    """What the page does, on a StyleGAN2 (the upsampling layer included), a DCGAN and an NVIDIA
    pickle (downloaded back as the pickle, edited)."""
    from jaxrewrite.ui.session import Session

    _, model, layer = next(m for m in _models(golden) if m[0] == which)
    s = Session(model, name=which, workdir=tmp_path, stats_samples=20)
    info = s.info()
    size = info["size"]
    assert layer in [l["name"] for l in info["layers"]] and len(s.images("0-3")["images"]) == 4
    box = np.zeros((size, size), bool)
    box[size // 4:size // 2, size // 4:size // 2] = True
    request = editfile.to_json(jr.Request.from_arrays(object=(1, box), paste=(2, box), key=[(2, box), (3, box)]))
    assert s.paste_view(layer, request)["box"][2] > 0
    assert len(s.search(layer, {"key": request["key"]}, count=4)["numbers"]) == 4
    summary = s.execute(*s.prepare("edit", layer, request, {"niter": 5}))
    assert summary["loss"] and len(summary["grid"]["numbers"]) == 32
    name, data = s.download("checkpoint")
    assert name.endswith(".pkl" if which == "nvidia" else ".pt") and len(data) > 1000
    (tmp_path / name).write_bytes(data)
    weight = get(jr.load(tmp_path / name).params, summary["weight"])
    np.testing.assert_array_equal(weight, get(s.current.params, summary["weight"]))
