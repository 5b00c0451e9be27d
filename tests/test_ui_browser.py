"""The UI end to end in a real headless Chromium: a person's session authoring spire2tree on
towns64 with the mouse, checked against the command line on the JSON the page saved."""

import json
import os
import urllib.request

import numpy as np
import pytest

import browser
from conftest import run
from jaxrewrite import modelfile, ui, zoo
from jaxrewrite.rewrite import editfile
from jaxrewrite.tree import get

STEPS = 301  # enough to change the rule visibly; the default 2001 costs time, not coverage
SHOT = os.environ.get("JAXREWRITE_UI_SCREENSHOT")  # where to keep the screenshot after the edit (the README's)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ui_work")
    srv = ui.start("towns64", workdir=workdir, cache_dir=str(tmp_path_factory.mktemp("ui_cache")))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(server):
    driver = browser.chromium()
    try:
        driver.get(server.url)
        browser.wait(driver, "document.body.dataset.ready", what="the page to load")
        yield driver
    finally:
        driver.quit()


def fetch(url):
    with urllib.request.urlopen(url) as r:
        return r.read()


def js(driver, expr):
    return driver.execute_script(f"return ({expr});")


def add_context(d, count):
    browser.click(d, "addctx")
    browser.wait(d, f"document.querySelectorAll('#ctxtray img').length === {count}", what=f"context region {count}")


def test_author_spire2tree_from_scratch(page, server, tmp_path):
    d = page
    d.find_element("id", "numbers").clear()
    d.find_element("id", "numbers").send_keys("246,293,163,16")
    browser.click(d, "show")
    browser.wait(d, "document.querySelectorAll('#canvases .slot:not([hidden])').length === 4 && "
                    "document.querySelector('#canvases .slot').dataset.number === '246'", what="the 4 images")

    # copy the tree of 246, paste it onto the spire of 293
    browser.paint(d, 0, (28, 26, 55, 42), 64)
    browser.click(d, "copy")
    browser.wait(d, "document.getElementById('copyview').src.startsWith('data:')", what="the copy view")
    browser.paint(d, 1, (6, 20, 33, 36), 64)
    browser.click(d, "paste")
    browser.wait(d, "document.getElementById('pasteview').title.startsWith('pasted box')", what="the paste view")
    # the context: the spire of 293 (still the selection) and one of 163
    add_context(d, 1)
    browser.paint(d, 2, (8, 8, 31, 40), 64)
    # an eraser stroke over part of it, then painted again: the eraser works and is undone by paint
    browser.paint(d, 2, (8, 8, 20, 40), 64, erase=True)
    erased = js(d, "document.querySelectorAll('#canvases canvas')[2].getContext('2d')"
                   ".getImageData(80, 40, 1, 1).data[3]")
    assert erased == 0
    browser.paint(d, 2, (8, 8, 31, 40), 64)
    add_context(d, 2)

    # a third region, then removed from the tray by clicking its thumbnail
    browser.paint(d, 3, (7, 28, 31, 55), 64)
    add_context(d, 3)
    d.find_elements("css selector", "#ctxtray img")[2].click()
    browser.wait(d, "document.querySelectorAll('#ctxtray img').length === 2", what="the region to be removed")

    # Search ranks samples by the context key; the highlight lights where it fires
    browser.click(d, "search")
    browser.wait(d, "document.getElementById('status').textContent.startsWith('top matches')", what="the search")
    matched = [int(n) for n in js(d, "document.getElementById('numbers').value").split(",")]
    assert len(matched) == 12
    plain = js(d, "document.querySelector('#canvases img').src")
    browser.click(d, "highlight")
    browser.wait(d, f"document.querySelector('#canvases img').src !== {json.dumps(plain)}", what="the highlight")
    browser.click(d, "highlight")
    browser.wait(d, f"document.querySelector('#canvases img').src === {json.dumps(plain)}", what="no highlight")

    # execute at layer8
    d.execute_script("document.getElementById('layer').value = 'layer8'")
    d.find_element("id", "niter").clear()
    d.find_element("id", "niter").send_keys(str(STEPS))
    browser.click(d, "execute")
    browser.wait(d, "document.body.dataset.edits === '1'", timeout=300, what="the edit")
    assert "applied at layer8" in browser.status(d)
    assert js(d, "document.getElementById('history').children.length") == 1
    assert js(d, "document.getElementById('gridafter').src").startswith("data:image/png")
    if SHOT:
        d.set_window_size(1500, 1750)
        d.save_screenshot(SHOT)
        d.set_window_size(1500, 1250)

    # toggle original / edited: the canvases show the two models
    edited = js(d, "document.querySelector('#canvases img').src")
    browser.click(d, "toggle")
    browser.wait(d, f"document.querySelector('#canvases img').src !== {json.dumps(edited)}", what="the original")
    assert js(d, "document.getElementById('toggle').textContent") == "Toggle edited"
    browser.click(d, "toggle")
    browser.wait(d, f"document.querySelector('#canvases img').src === {json.dumps(edited)}", what="the edited")

    # save the request in the official format
    d.find_element("id", "savename").send_keys("my_spire2tree")
    browser.click(d, "save")
    saved = server.session.workdir / "my_spire2tree.json"
    browser.wait(d, "document.getElementById('status').textContent.startsWith('saved')", what="the save")
    obj = json.loads(saved.read_text())
    assert obj["object"][0] == 246 and obj["paste"][0] == 293 and [k[0] for k in obj["key"]] == [293, 163]
    assert obj["jaxrewrite"] == {"layer": "layer8", "rank": 1, "lr": 0.05}
    request = editfile.read_edit(saved)
    assert request.paste.mask[8 * 4 + 2, 28 * 4] == 255 and request.paste.mask[2, 2] == 0  # painted where meant

    # the command line on the saved JSON gives the weights the page made, bit for bit
    ui_model = tmp_path / "ui.msgpack"
    ui_model.write_bytes(fetch(server.url + "api/download?what=model"))
    cli_model = tmp_path / "cli.msgpack"
    assert run("--quiet", "edit", "--model", "towns64", "--edit", saved, "--niter", STEPS, "--out", cli_model,
               "--cache", server.session.cache_dir) == 0
    path = "layer8.conv.kernel"
    a, b = get(modelfile.load(ui_model).params, path), get(modelfile.load(cli_model).params, path)
    assert not np.array_equal(a, get(modelfile.load("towns64").params, path))
    np.testing.assert_array_equal(a, b)
    assert browser.severe_logs(d) == []


def test_load_a_shipped_edit_and_execute_it(page, server):
    d = page
    before = js(d, "document.getElementById('history').children.length")
    d.execute_script("document.getElementById('loadname').value = 'shipped:spire2tree'")
    browser.click(d, "load")
    browser.wait(d, "document.getElementById('status').textContent.startsWith('loaded')", what="the load")
    assert js(d, "document.getElementById('layer').value") == "layer8"
    shipped = editfile.read_edit(zoo.shipped_edit("towns64", "spire2tree"))
    assert js(d, "document.querySelectorAll('#ctxtray img').length") == len(shipped.key) == 8
    browser.wait(d, "document.getElementById('pasteview').title.startsWith('pasted box')", what="the paste view")
    edits = int(js(d, "document.body.dataset.edits || 0"))
    browser.click(d, "execute")
    browser.wait(d, f"document.body.dataset.edits === '{edits + 1}'", timeout=300, what="the edit")
    assert js(d, "document.getElementById('history').children.length") == before + 1
    last = server.session.history[-1].summary
    assert last["request"] == editfile.to_json(shipped)
    browser.click(d, "undo")
    browser.wait(d, f"document.getElementById('history').children.length === {before}", what="the undo")
    assert len(server.session.history) == before
