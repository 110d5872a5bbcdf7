"""The Gallery at scale: a page of tiles from 10,000 stored results, memory while a batch runs,
a killed batch resumed, and the batch's speed against a plain ``sc.explain`` loop.

    PYTHONPATH=$PWD python bench/gallery.py                      # everything (~5 min on 2 CPU cores)
    PYTHONPATH=$PWD python bench/gallery.py --parts grid --images 10000
    PYTHONPATH=$PWD python bench/gallery.py --parts speed --threads 1

Parts:
- grid: a folder of N small labelled PNGs whose results are synthesised straight into the store
  (10,000 real maps would take hours here); then the times to open it: the result table, a
  filtered page of 48 tiles (query + thumbnails), and the Gallery page itself under AppTest
  (script run on the server, first open and a page switch).
- memory: a batch over pasted-object images in a subprocess, killed half way; a second
  subprocess resumes it. Resident memory (VmRSS) after each image; what each computed.
- speed: images per second of ``gallery.run`` (store writes and thumbnails included) and of a
  plain loop calling ``sc.explain`` on the same images, for gradient + Grad-CAM and with
  SmoothGrad-50 added; the ratio of the two in the same run.
Writes the numbers as JSON (--out).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
import saliency_core as sc
from saliency_core import gallery
from saliency_core.evaluation.labelled import DEMO_CLASSES, open_folder

CLASSES = [
    "tabby",
    "tiger cat",
    "espresso",
    "tripod",
    "moped",
    "missile",
    "analog clock",
    "sorrel",
    "cup",
    "bubble",
]
CHEAP = ["gradient", "gradcam"]


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def median_time(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---- grid ----------------------------------------------------------------------------------------------


def _png(seed: int, side: int = 32) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def synthesise(model, root: Path, store: gallery.ResultStore, n: int) -> None:
    """``n`` labelled PNGs under ``root`` and, in ``store``, a prediction and a gradient and a
    Grad-CAM map for each, as a run would have written them (real maps of one photo, copied)."""
    from saliency_core.engine import render as rd
    from saliency_core.evaluation.data import photo_path

    rng = np.random.default_rng(0)
    photo = sc.load_image(photo_path("chelsea.png"))
    template = {}
    for m in CHEAP:
        exp = sc.explain(model, photo, method=m)
        r = rd.render(exp.saliency, exp.image, target_label=exp.target_label)
        template[m] = (
            exp.record(),
            gallery.encode_map(exp.saliency),
            gallery.store._jpeg(r.overlay),
            json.dumps(list(exp.saliency.shape)),
        )
    crop_thumb = gallery.store._jpeg(model.crop(photo))
    mkey = gallery.model_key(model)
    pkeys = {m: gallery.params_key(model, m, {}) for m in CHEAP}
    index = {name: model.labels.index(name) for name in CLASSES}
    files, predictions, maps = [], [], []
    for i in range(n):
        label = CLASSES[i % len(CLASSES)]
        folder = root / label.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        data = _png(i)
        (folder / f"{i:05d}.png").write_bytes(data)
        h = sc.image_hash(sc.load_image(data))
        truth = index[label]
        predicted = (
            truth if rng.random() < 0.7 else int(rng.choice([c for c in index.values() if c != truth]))
        )
        confidence = float(rng.uniform(0.05, 0.99))
        top5 = [[predicted, model.labels[predicted], confidence]] + [
            [int(c), model.labels[int(c)], (1 - confidence) / 4] for c in rng.choice(1000, 4, replace=False)
        ]
        files.append((hashlib.sha256(data).hexdigest(), h, None, 32, 32))
        predictions.append(
            (
                mkey,
                h,
                predicted,
                confidence,
                json.dumps(top5),
                " ".join(str(t[0]) for t in top5),
                "2026-01-01T00:00:00",
                crop_thumb,
            )
        )
        for m in CHEAP:
            record, blob, overlay, shape = template[m]
            record = {**record, "image_hash": h, "target": predicted, "target_label": model.labels[predicted]}
            maps.append(
                (
                    mkey,
                    h,
                    m,
                    pkeys[m],
                    predicted,
                    json.dumps(record),
                    None,
                    "2026-01-01T00:00:00",
                    shape,
                    overlay,
                    blob,
                )
            )
        if len(maps) >= 2000 or i == n - 1:
            with store._write() as db:
                db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", files)
                db.executemany(
                    "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", predictions
                )
                db.executemany("INSERT OR REPLACE INTO maps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", maps)
            files, predictions, maps = [], [], []


def bench_grid(n: int, work: Path) -> dict:
    model = sc.load_model("demo")
    root = work / "sets" / "big"
    db = work / "data" / "gallery.sqlite"
    store = gallery.ResultStore(db)
    started = time.perf_counter()
    synthesise(model, root, store, n)
    made = time.perf_counter() - started
    size_mb = sum(p.stat().st_size for p in db.parent.glob("gallery.sqlite*")) / 2**20
    (root / "classes.json").write_text(json.dumps({c.replace(" ", "_"): [c] for c in CLASSES}))
    started = time.perf_counter()
    labelled = open_folder(root, model.labels)
    opened = time.perf_counter() - started
    assert len(labelled) == n, (len(labelled), labelled.problems[:3])

    fresh = gallery.ResultStore(db)
    start = time.perf_counter()
    rows = gallery.table(fresh, model, labelled, CHEAP, {})
    first_table = time.perf_counter() - start
    assert (rows["status"] == "done").sum() == n
    table_s = median_time(lambda: gallery.table(fresh, model, labelled, CHEAP, {}), 3)
    full = max(1, int((rows["correct"] == False).sum()) // gallery.PAGE_SIZE)  # noqa: E712  full pages
    pages = iter(range(10_000))

    def one_page():
        filtered = gallery.filter_rows(rows, outcome="incorrect", order="confident mistakes first")
        page = gallery.page_of(filtered, next(pages) % full + 1)
        tiles = gallery.tiles(fresh, model, page, "gradcam", {})
        assert len(tiles) == gallery.PAGE_SIZE and all(t.jpeg for t in tiles)

    page_s = median_time(one_page, 7)

    def whole_page():
        gallery.table(fresh, model, labelled, CHEAP, {})
        one_page()

    open_s = median_time(whole_page, 3)
    app = bench_page(work, n)
    app.update(bench_browser(work))
    return {
        "images": n,
        "synthesis_s": round(made, 1),
        "store_mb": round(size_mb),
        "open_folder_s": round(opened, 2),
        "table_first_s": round(first_table, 3),
        "table_s": round(table_s, 3),
        "page_of_48_s": round(page_s, 4),
        "table_and_page_of_48_s": round(open_s, 3),
        **app,
    }


def bench_page(work: Path, n: int) -> dict:
    """The Gallery page under AppTest on the synthesised set: the script's run time on the server."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    original = PagesManager.__init__

    def init(self, *args, **kwargs):  # as tests/conftest.py: stay in st.navigation mode
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = init
    os.environ["SALIENCY_GALLERY_DIR"] = str(work / "sets")
    os.environ["SALIENCY_DB"] = str(work / "data" / "reviews.sqlite")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900).run()
    at.switch_page("pages/gallery.py")
    at.session_state["gallery_request"] = {
        "kind": "folder",
        "folder": "big",
        "methods": CHEAP,
        "params": {"samples": 50, "noise": 0.15, "seed": 0, "steps": 50, "baseline": "black"},
        "model": "demo",
    }
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    tiles = [b for b in at.button if (b.key or "").startswith("gopen_")]
    assert len(tiles) == gallery.PAGE_SIZE, len(tiles)
    times = []
    for page in (2, 3, 4, 5, 6):
        at.number_input(key="gf_page").set_value(page)
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
        assert not at.exception
    at.radio(key="gf_outcome").set_value("Mistakes only")
    start = time.perf_counter()
    at.run()
    mistakes = time.perf_counter() - start
    return {
        "page_first_open_s": round(first, 2),
        "page_switch_s": round(statistics.median(times), 3),
        "page_filter_mistakes_s": round(mistakes, 3),
    }


def bench_browser(work: Path) -> dict:
    """The same in Chromium against `streamlit run`: from a click to the new page's 48 tiles on
    screen (server run, transfer and drawing)."""
    import socket
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SALIENCY_GALLERY_DIR": str(work / "sets"),
        "SALIENCY_DB": str(work / "data" / "reviews.sqlite"),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1600, "height": 2600})
            page.goto(f"{url}/gallery")
            page.get_by_text("Server folder", exact=True).click()  # the set panel is open on a first visit
            folder = page.locator("[data-testid='stSelectbox']").filter(has_text="Folder")
            folder.click()
            page.get_by_role("option", name="big", exact=True).click()
            # Timed inside the page by a MutationObserver (no polling that would slow the page down):
            # from the action to the first DOM change after which the first tile names another
            # image and the page holds 48 tiles ("shown"), and to the moment every tile's picture
            # has loaded ("loaded").
            page.evaluate(
                """size => {
                const check = () => {
                    if (window.__done !== null || window.__started === undefined) return;
                    const text = [...document.querySelectorAll("[data-testid='stMarkdownContainer']")]
                        .find(e => e.textContent.includes("true:"));
                    const pictures = [...document.images].filter(i => (i.alt || "").includes("overlay of"));
                    if (text && text.textContent !== window.__before && pictures.length === size
                            && document.querySelectorAll("[class*='st-key-gopen_']").length === size) {
                        if (window.__shown === null) window.__shown = performance.now() - window.__started;
                        if (pictures.every(i => i.complete && i.naturalWidth > 0))
                            window.__done = performance.now() - window.__started;
                    }
                };
                window.__done = null;
                new MutationObserver(check).observe(document.body, {subtree: true, childList: true,
                                                                    characterData: true, attributes: true});
                document.addEventListener("load", check, true);   // a picture finishing loads no DOM change
            }""",
                gallery.PAGE_SIZE,
            )

            def timed(action, timeout: float = 600) -> tuple[float, float]:
                page.evaluate("""() => {
                    const t = [...document.querySelectorAll("[data-testid='stMarkdownContainer']")]
                        .find(e => e.textContent.includes("true:"));
                    window.__before = t ? t.textContent : null;
                    window.__done = null;
                    window.__shown = null;
                    window.__started = performance.now();
                }""")
                action()
                deadline = time.time() + timeout
                while time.time() < deadline:
                    done = page.evaluate("() => [window.__shown, window.__done]")
                    if done[1] is not None:
                        return done[0] / 1000, done[1] / 1000
                    time.sleep(0.25)
                raise AssertionError("the page did not show the new tiles")

            first_open = timed(lambda: page.get_by_role("button", name="Open and compute").click())
            times = []
            for number in (2, 3, 4, 5, 6, 7, 8):
                box = page.get_by_label("Page", exact=True)
                box.fill(str(number))
                times.append(timed(lambda box=box: box.press("Enter")))
            mistakes = timed(lambda: page.get_by_text("Mistakes only", exact=True).click())
            page.screenshot(path=str(work / "bench_grid.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    return {
        "browser_first_open_s": round(first_open[1], 2),
        "browser_page_switch_tiles_shown_s": round(statistics.median(t[0] for t in times), 3),
        "browser_page_switch_pictures_loaded_s": round(statistics.median(t[1] for t in times), 3),
        "browser_page_switch_all_s": [[round(a, 3), round(b, 3)] for a, b in times],
        "browser_filter_mistakes_s": [round(mistakes[0], 3), round(mistakes[1], 3)],
    }


# ---- memory, kill and resume -----------------------------------------------------------------------------

WORKER = """
import os, sys, torch
torch.set_num_threads(int(sys.argv[3]))
import saliency_core as sc
from saliency_core import gallery
from saliency_core.evaluation.labelled import open_folder
model = sc.load_model("demo")
labelled = open_folder(sys.argv[1], model.labels)
store = gallery.ResultStore(sys.argv[2])
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))
def progress(p):
    print("progress", p.done, p.computed, f"{rss():.1f}", flush=True)
r = gallery.run(model, labelled, ["gradient", "gradcam"], {}, store, progress=progress)
print("finished", r.stored, r.computed, len(r.failed), flush=True)
"""


def bench_memory(n: int, work: Path, threads: int) -> dict:
    from saliency_core.evaluation.data import pasted_objects

    root = work / "pasted"
    for item in pasted_objects(n, seed=1).items:
        label = item.name.split("_")[2]
        (root / label).mkdir(parents=True, exist_ok=True)
        item.image().save(root / label / item.name)
    (root / "classes.json").write_text(
        json.dumps({k: DEMO_CLASSES[k] for k in ("cat", "espresso", "motorcycle", "tripod")})
    )
    db = work / "memory.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}

    def launch():
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), str(db), str(threads)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    first, killed_at = launch(), None
    trace_first = []
    for line in first.stdout:
        parts = line.split()
        if parts[:1] == ["progress"]:
            trace_first.append((int(parts[2]), float(parts[3])))
            if int(parts[2]) >= n // 2:
                first.kill()
                killed_at = int(parts[2])
                break
    first.wait()
    second = launch()
    trace, finished = [], None
    for line in second.stdout:
        parts = line.split()
        if parts[:1] == ["progress"]:
            trace.append((int(parts[2]), float(parts[3])))
        elif parts[:1] == ["finished"]:
            finished = {"stored": int(parts[1]), "computed": int(parts[2]), "unreadable": int(parts[3])}
    second.wait()
    computed = [(c, mb) for c, mb in trace if c > 0]
    a, b = computed[len(computed) // 10], computed[-1]
    return {
        "images": n,
        "killed_after": killed_at,
        "resumed": finished,
        "rss_mb_first_run": [mb for c, mb in trace_first if c in (1, killed_at)],
        "rss_mb_resumed": {"after_1": computed[0][1], f"after_{a[0]}": a[1], f"after_{b[0]}": b[1]},
        "rss_growth_mb_per_100_images": round((b[1] - a[1]) / max(b[0] - a[0], 1) * 100, 2),
    }


# ---- speed ---------------------------------------------------------------------------------------------


def bench_speed(work: Path, cheap_images: int, smooth_images: int) -> dict:
    from saliency_core.evaluation.labelled import demo_set

    model = sc.load_model("demo")
    warm = sc.load_image(demo_set(model.labels).items[0].read())
    for m in CHEAP + ["smoothgrad"]:  # first calls (capability probe, allocator) before timing
        sc.explain(model, warm, method=m, samples=4)
    out = {}
    for name, methods, count in (
        ("gradient+gradcam", CHEAP, cheap_images),
        ("gradient+gradcam+smoothgrad50", CHEAP + ["smoothgrad"], smooth_images),
    ):
        labelled = demo_set(model.labels)
        labelled.items = labelled.items[:count]
        params = {"samples": 50, "noise": 0.15, "seed": 0}

        def ours_once(
            rep: int, name=name, labelled=labelled, methods=methods, params=params, count=count
        ) -> float:
            store = gallery.ResultStore(work / f"speed-{name}-{rep}.sqlite")  # empty: everything computed
            start = time.perf_counter()
            report = gallery.run(model, labelled, methods, params, store)
            assert report.computed == count
            return time.perf_counter() - start

        def plain_once(rep: int, labelled=labelled, methods=methods, params=params) -> float:
            start = time.perf_counter()
            for it in labelled.items:  # the reference: the same reads and maps by sc.explain, nothing stored
                image = sc.load_image(it.read(), name=it.name)
                model.predict(image, k=5)
                for m in methods:
                    sc.explain(model, image, method=m, **sc.METHODS[m].params_for(params))
            return time.perf_counter() - start

        # two rounds in alternating order, the faster of each kept: other people's work on this
        # machine slows either side at random
        first = [ours_once(0), plain_once(0)]
        second = [plain_once(1), ours_once(1)]
        ours, plain = min(first[0], second[1]), min(first[1], second[0])
        out[name] = {
            "images": count,
            "gallery_images_per_s": round(count / ours, 3),
            "plain_explain_images_per_s": round(count / plain, 3),
            "gallery_time_over_plain": round(ours / plain, 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="grid,memory,speed")
    parser.add_argument("--images", type=int, default=10_000, help="stored results for the grid part")
    parser.add_argument("--memory-images", type=int, default=120)
    parser.add_argument("--speed-images", type=int, default=16, help="images for gradient + Grad-CAM")
    parser.add_argument("--smooth-images", type=int, default=6, help="images with SmoothGrad-50 added")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (this machine is shared)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results-gallery-cpu.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    work = Path(tempfile.mkdtemp(prefix="gallery-bench-"))
    results = {
        "cpu": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg(),
    }
    try:
        if "speed" in parts:
            results["speed"] = bench_speed(work, args.speed_images, args.smooth_images)
            print(json.dumps(results["speed"], indent=2), flush=True)
        if "memory" in parts:
            results["memory"] = bench_memory(args.memory_images, work, args.threads)
            print(json.dumps(results["memory"], indent=2), flush=True)
        if "grid" in parts:
            results["grid"] = bench_grid(args.images, work)
            print(json.dumps(results["grid"], indent=2), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["load_average_at_end"] = (
        os.getloadavg()
    )  # other people's work on a shared machine slows every number
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
