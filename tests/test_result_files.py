"""The files a study leaves for people: the netCDF passes the CF checker (compliance-checker
cf:1.11) and opens with xarray and cf-xarray; the report page renders in a real headless
browser (system Chromium, driven by Playwright) with every figure and table row, offline."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr

from conftest import studyspec
from studyspec.collect import gather, write
from studyspec.load import loads
from studyspec.plan import build
from studyspec.store import Store

# a quick-start in miniature: prune, scratch with its mask, the line between them (3 small jobs)
TINY = """\
study: tiny
data: {dataset: mnist1d, batch_size: 64}
model: {arch: mlp, hidden: [8]}
train: {steps: 20, eval_every: 10}
sparsity: 0.5
sweep: {seed: [0]}
runs:
  prune: {regime: prune, schedule: {begin: 0.1, end: 0.6, every: 5}}
  scratch: {regime: fixed_mask, mask: prune.final, init: fresh}
paths:
  line: {kind: linear, from: scratch.final, to: prune.final, points: 3}
claims:
  E0: {kind: compare, metric: final_train_loss, a: scratch, b: prune, direction: greater, margin: 0.05 nats}
  E2: {kind: barrier, path: line, margin: 0.1 nats}
"""


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """The tiny study trained for real, collected and reported (one run for the module)."""
    root = tmp_path_factory.mktemp("tiny")
    spec = root / "tiny.yaml"
    spec.write_text(TINY.replace("study: tiny", f"study: tiny\noutput: {{store: {root / 'store'}, "
                                                f"results: {root / 'results'}}}"))
    studyspec("run", spec, "-j", "2", check=True)
    studyspec("report", spec, "train.eval_every=10", check=True)  # an override, as the file has it
    return root / "results" / "tiny.nc", root / "results" / "tiny" / "report"


def cf_check(nc: Path, tmp_path: Path) -> dict:
    out = tmp_path / (nc.name + ".cf.json")
    proc = subprocess.run([str(Path(sys.executable).with_name("compliance-checker")), "--test", "cf:1.11",
                           "-f", "json", "-o", str(out), str(nc)], capture_output=True, text=True)
    assert "exceptions occurred" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr  # the checker threw
    report = json.loads(out.read_text())["cf:1.11"]
    problems = [m for r in report["all_priorities"] for m in r.get("msgs", [])]
    assert proc.returncode == 0 and report["high_count"] == report["medium_count"] == report["low_count"] == 0, problems
    assert report["scored_points"] == report["possible_points"]
    return report


def test_collected_netcdf_passes_the_cf_checker(reported, tmp_path):
    nc, _ = reported
    cf_check(nc, tmp_path)
    with xr.open_dataset(nc) as ds:  # as in the README
        assert ds.attrs["Conventions"] == "CF-1.11"
        assert ds.train_loss.sel(step=20).mean("seed").sel(run="scratch").item() > 0
        assert ds.path_train_loss.sel(path="line").sizes == {"seed": 1, "t": 3}
        assert list(ds.run.values) == ["prune", "scratch"] and "_FillValue" not in ds.t.encoding
        assert ds.train_loss.attrs["units"] == "1" and ds.train_loss.attrs["long_name"].endswith("in nats")


def test_random_search_strings_and_cf_xarray(tmp_path):
    """String sweep values and a random search's coordinates: still CF, and cf-xarray finds the
    drawn values as the coordinates of every variable along `sample`."""
    import cf_xarray  # noqa: F401  (registers ds.cf)

    spec = loads(TINY.replace("sweep: {seed: [0]}", "sweep: {train.optimizer.name: [sgd, adam], random: {n: 3, "
                              "axes: {train.optimizer.lr: {loguniform: [1.0e-3, 1]}, model.hidden: {choice: [[8], [4]]}}}}"),
                 data_check=False)
    nc = write(gather(build(spec.study), Store(tmp_path / "store")).ds, tmp_path / "rs.nc")
    cf_check(nc, tmp_path)
    with xr.open_dataset(nc) as ds:
        assert list(ds.name.values) == ["sgd", "adam"] and ds.sel(name="adam", sample=2).lr.item() > 0
        assert set(ds.cf.get_associated_variable_names("run_done")["coordinates"]) >= {"lr", "hidden"}
        assert ds.cf["run_done"].dims == ds.run_done.dims  # cf-xarray reads the file's variables


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="no system Chromium (`apt-get install chromium`; .ci/run installs it)")
def test_report_page_renders_offline_in_a_browser(reported):
    from playwright.sync_api import sync_playwright

    _, folder = reported
    page_file = folder / "report.html"
    text = page_file.read_text()
    assert "<script" not in text and "http://" not in text.replace("http://cfconventions", "") \
        and "https://" not in text  # nothing to fetch: no scripts, fonts, stylesheets or CDNs
    md = (folder / "claims.md").read_text()
    md_rows = [line for line in md.splitlines() if line.startswith("|") and not line.startswith("|---")]
    figures = sorted(p.name for p in folder.glob("*.png"))
    assert figures
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(),  # root in CI: no sandbox; small /dev/shm
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            page = browser.new_page()
            errors, requests = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri(), wait_until="load")
            images = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
            rows = page.eval_on_selector_all("table:not(.versions) tr", "els => els.map(e => e.innerText)")
            headings = page.eval_on_selector_all("h2", "els => els.map(e => e.innerText)")
            spec_text = page.inner_text("pre:below(h2:text('Spec'))")
        finally:
            browser.close()
    assert len(images) == len(figures) and all(w > 0 and h > 0 for w, h in images), images
    assert len(rows) == len(md_rows) == 3  # the header and a row per claim, as in the Markdown report
    assert rows[1].split("\t")[0] == md_rows[1].split("|")[1].strip().strip("*")
    assert errors == [] and requests == [page_file.as_uri()]
    assert {"How this page was made", "Command-line overrides", "Spec", "Versions"} <= set(headings)
    assert "study: tiny" in spec_text and "studyspec report" in text and "torch" in text
