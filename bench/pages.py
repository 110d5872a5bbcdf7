"""Time each page's bundled demo run with the page's defaults (median of 3), on this machine.

    PYTHONPATH=$PWD python bench/pages.py                      # every page, the pages' defaults
    PYTHONPATH=$PWD python bench/pages.py --pages validate --repeats 1 --profile full
    PYTHONPATH=$PWD python bench/pages.py --apptest            # the same runs driven through the pages
    PYTHONPATH=/path/to/old/tree:$PWD python bench/pages.py --profile before   # issue 17's defaults

The engine functions are called with the defaults the pages import from pages/_defaults.py, so
the two cannot drift. ``--profile full`` is the full setting each page offers one click away;
``--profile before`` the defaults the pages had before issue 17 (run it against the engine of
that time to get the "before" column). ``--apptest`` drives the real pages (streamlit's AppTest,
no browser): it times the run that the page's button starts, rendering included.

Printed: wall-clock and CPU seconds (process time of all threads). On a machine shared with
other work the wall time is inflated; the CPU time much less so. Run it on a quiet machine for
the numbers to quote; --threads sets torch's threads (the dashboard uses torch's default).
Nothing here downloads anything: the demo model comes from its installed package.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]  # "pages" is the app's folder
if ROOT not in sys.path:
    sys.path.append(ROOT)  # pages._defaults; an engine earlier on PYTHONPATH wins (--profile before)

import torch

import pages._defaults as defaults
import saliency_core as sc

PAGES = (
    "explain",
    "validate",
    "stability",
    "sanity-cascading",
    "sanity-independent",
    "review-next",
    "report",
)

# The defaults before issue 17 (for the "before" column; see the module docstring).
BEFORE = {"validate_step": 0.05, "validate_batch": 4, "stability_variants": 8, "sanity_map_steps": None}


def _engine(module: str):
    """An engine module by its path in the layered package, or by its earlier flat path (the engine
    before issue 17, for ``--profile before``): always from the ``saliency_core`` that was imported."""
    import importlib

    flat = {
        "engine.samples": "samples",
        "evaluation.validate": "validate",
        "evaluation.data": "data",
        "evaluation.stability": "metrics.stability",
        "evaluation.sanity": "metrics.randomisation",
    }
    base = os.path.dirname(sc.__file__)
    name = module if os.path.isdir(os.path.join(base, module.split(".")[0])) else flat[module]
    found = importlib.import_module(f"saliency_core.{name}")
    if not os.path.abspath(found.__file__).startswith(base + os.sep):
        raise SystemExit(f"saliency_core.{name} came from {found.__file__}, not from {base}: set PYTHONPATH.")
    return found


def _settings(profile: str) -> dict:
    if profile == "before":
        return dict(BEFORE)
    if profile == "full":
        return {
            "validate_step": defaults.VALIDATE_STEPS[defaults.VALIDATE_FULL_STEP],
            "validate_batch": None,
            "stability_variants": defaults.STABILITY_FULL_VARIANTS,
            "sanity_map_steps": None,
        }
    return {
        "validate_step": defaults.VALIDATE_STEPS[defaults.VALIDATE_STEP],
        "validate_batch": None,
        "stability_variants": defaults.STABILITY_VARIANTS,
        "sanity_map_steps": defaults.SANITY_MAP_STEPS,
    }


def _photos() -> list[tuple[str, str]]:
    return list(_engine("engine.samples").sample_images().items())


def engine_runs(model, profile: str) -> dict[str, Callable[[], object]]:
    """page -> a callable doing what the page computes for its demo with its defaults."""
    s = _settings(profile)
    methods, params = list(defaults.METHODS), dict(defaults.PARAMS)
    photos = _photos()
    first = photos[0][1]

    def explain():
        from saliency_core import pipeline

        for name, path in photos[: defaults.EXPLAIN_SAMPLES]:
            pipeline.explain_image(model, path, name, methods, params)

    def validate():
        va, demo_dataset = _engine("evaluation.validate"), _engine("evaluation.data").demo_dataset
        options = dict(
            methods=methods,
            params=params,
            faithfulness=defaults.VALIDATE_FAITHFULNESS,
            step_fraction=s["validate_step"],
            seed=params["seed"],
        )
        if s["validate_batch"]:
            options["batch_size"] = s["validate_batch"]
        return va.run_validation(model, demo_dataset(), va.ValidationSettings(**options))

    def stability():
        stab = _engine("evaluation.stability")
        return stab.stability_check(model, first, methods, count=s["stability_variants"], params=params)

    def sanity(mode: str):
        rz = _engine("evaluation.sanity")
        blocks = rz.layer_blocks(model)
        depth = rz.default_depth(blocks)
        extra = {}
        if s["sanity_map_steps"]:
            extra["maps_at"] = rz.checkpoints(depth, s["sanity_map_steps"])
        for m in methods:  # the page runs one method at a time
            rz.sanity_check(
                model,
                first,
                [m],
                mode=mode,
                depth=depth,
                seed=0,
                params=sc.METHODS[m].params_for(params),
                **extra,
            )

    def review_next():
        # what "Next" computes for the second item (the page computes it ahead in the background)
        image = sc.load_image(photos[1][1])
        target = model.predict(image, k=1)[0][0]
        for m in methods:
            sc.explain(model, image, method=m, target=target, **sc.METHODS[m].params_for(params))

    def report():
        from saliency_core import report as rp

        sources = [(name, open(path, "rb").read()) for name, path in photos[: defaults.EXPLAIN_SAMPLES]]
        built = rp.build_report(model, sources, methods, params=params, model_source="demo")
        built.to_html()
        built.to_pdf()

    return {
        "explain": explain,
        "validate": validate,
        "stability": stability,
        "sanity-cascading": lambda: sanity("cascading"),
        "sanity-independent": lambda: sanity("independent"),
        "review-next": review_next,
        "report": report,
    }


def apptest_runs(profile: str) -> dict[str, Callable[[], object]]:
    """page -> a callable that opens the page in AppTest and times what its button starts."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    if profile != "demo":
        raise SystemExit("--apptest times the pages as they are: --profile demo only.")
    original = PagesManager.__init__

    def init(self, *args, **kwargs):  # as tests/conftest.py: stay in st.navigation mode
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    PagesManager.__init__ = init

    def page(path: str, button: str | None, before: Callable | None = None) -> Callable:
        def run():
            at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=900).run()
            at.switch_page(path)
            at.run()
            if before is not None:
                before(at)
            clock = {}
            if button is not None:
                next(b for b in at.button if b.label.startswith(button)).click()
            start, cpu = time.perf_counter(), time.process_time()
            at.run()
            clock["wall"], clock["cpu"] = time.perf_counter() - start, time.process_time() - cpu
            if at.exception:
                raise RuntimeError(f"{path}: {at.exception[0].value}")
            return clock

        return run

    def explain():
        start, cpu = time.perf_counter(), time.process_time()
        at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=900).run()
        if at.exception:
            raise RuntimeError(at.exception[0].value)
        return {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}

    def sanity_mode(mode: str):
        def choose(at):
            next(r for r in at.radio if r.label == "Randomisation").set_value(mode)

        return page("pages/sanity.py", "Run the sanity check", choose)

    def review_next():
        at = AppTest.from_file(os.path.join(ROOT, "app.py"), default_timeout=900).run()
        at.switch_page("pages/review.py")
        at.run()
        next(b for b in at.button if b.label.startswith("Open batch")).click()
        at.run()
        time.sleep(30)  # the reviewer looks at the first item; the next one is computed meanwhile
        next(b for b in at.button if b.label.startswith("Next")).click()
        start, cpu = time.perf_counter(), time.process_time()
        at.run()
        clock = {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu}
        import threading

        for thread in threading.enumerate():  # the item after it, computed ahead: let it finish
            if thread.name == "saliency-prefetch":
                thread.join()
        return clock

    return {
        "explain": explain,
        "validate": page("pages/validate.py", "Run validation"),
        "stability": page("pages/stability.py", "Check stability"),
        "sanity-cascading": sanity_mode("cascading"),
        "sanity-independent": sanity_mode("independent"),
        "review-next": review_next,
        "report": page("pages/report.py", "Build report"),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", default=",".join(PAGES), help=f"comma-separated, from {', '.join(PAGES)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", choices=("demo", "full", "before"), default="demo")
    parser.add_argument("--apptest", action="store_true", help="drive the pages through streamlit's AppTest")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default=None, help="write the table as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pages = [p.strip() for p in args.pages.split(",") if p.strip()]
    unknown = [p for p in pages if p not in PAGES]
    if unknown:
        parser.error(f"unknown page(s) {', '.join(unknown)}; choose from {', '.join(PAGES)}")
    if args.apptest:
        runs = apptest_runs(args.profile)
    else:
        model = sc.load_model("demo")
        runs = engine_runs(model, args.profile)
        runs["explain"]()  # warm-up: first-call allocations, lazy imports
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {'AppTest' if args.apptest else 'engine'} runs, profile {args.profile}, torch threads "
        f"{torch.get_num_threads()}, {os.cpu_count()} CPUs, load average {load:.1f} at the start; "
        f"engine from {os.path.dirname(sc.__file__)}"
    )
    print(f"{'page':<20} {'median wall s':>14} {'median CPU s':>13} {'runs':>5}  each run (wall s)")
    rows = []
    for page in pages:
        walls, cpus = [], []
        for _ in range(args.repeats):
            start, cpu = time.perf_counter(), time.process_time()
            clock = runs[page]()
            wall, used = time.perf_counter() - start, time.process_time() - cpu
            if isinstance(clock, dict) and "wall" in clock:  # AppTest: the timed part only
                wall, used = clock["wall"], clock["cpu"]
            walls.append(wall)
            cpus.append(used)
        row = {
            "page": page,
            "profile": args.profile,
            "apptest": args.apptest,
            "median_wall_s": round(statistics.median(walls), 2),
            "median_cpu_s": round(statistics.median(cpus), 2),
            "runs": [round(w, 2) for w in walls],
            "threads": torch.get_num_threads(),
            "load_average": load,
        }
        rows.append(row)
        print(
            f"{page:<20} {row['median_wall_s']:>14.1f} {row['median_cpu_s']:>13.1f} {len(walls):>5}  "
            + ", ".join(f"{w:.1f}" for w in walls),
            flush=True,
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
