"""Studies in the dashboard, in a real browser: the studies list, and a small grid study's page
followed live until it ends: every trial in the table, sorted by a click on a heading, the
best trial marked and linked to its run, model and file, the objective chart with its
best-so-far line, every trial's learning curve and the parallel-coordinates chart drawn;
axe-core finds nothing serious on either page."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.ui.axe import axe_script, serious_violations

pytestmark = pytest.mark.live

LR = "run.optimizer.learning_rate"
HIDDEN = "model.hidden"


def grid_study(api: httpx.Client, stamp: str, epochs: int = 3) -> dict[str, Any]:
    """A 2 × 2 grid study on tiny moons data, created over HTTP (not waited for)."""
    data = api.post("/v1/datasets/synthetic", json={
        "kind": "moons", "num_examples": 80, "noise": 0.2, "seed": 3}).json()
    made = api.post("/v1/studies", json={
        "name": f"grid-{stamp}", "dataset_id": data["id"],
        "model": {"kind": "mlp", "features": 2, "task": "classification", "classes": 2,
                  "hidden": [4]},
        "run": {"epochs": epochs, "optimizer": {"kind": "adam", "learning_rate": 0.01},
                "batch_size": 16, "validation": {"fraction": 0.25}},
        "space": {LR: {"type": "choice", "values": [0.003, 0.1]},
                  HIDDEN: {"type": "choice", "values": [[2], [8]]}},
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "sampler": {"kind": "grid"}, "concurrency": 2})
    assert made.status_code == 201, made.text
    return made.json()


def finished(api: httpx.Client, study_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        study = api.get(f"/v1/studies/{study_id}").json()
        if study["status"] != "running":
            return study  # type: ignore[no-any-return]
        time.sleep(0.3)
    raise AssertionError(f"study {study_id} still running")


def table(page: Any) -> list[int]:
    return page.eval_on_selector_all("#trials tbody tr",
                                     "rs => rs.map(r => Number(r.dataset.trial))")


def test_study_page_follows_a_grid_study_live(open_page: Any, api: httpx.Client) -> None:
    study = grid_study(api, f"live{time.monotonic_ns()}", epochs=6)
    watched = open_page()
    page = watched.page
    watched.goto(f"/ui/studies/{study['id']}")  # opened while the study runs
    page.wait_for_function("() => document.querySelector('#main').dataset.study === 'completed'",
                           timeout=120_000)
    ended = finished(api, study["id"])
    assert ended["status"] == "completed"
    trials = api.get(f"/v1/studies/{study['id']}/trials").json()["items"]
    assert len(trials) == 4
    # Every trial, in number order, each linked to its run.
    page.wait_for_function("() => document.querySelectorAll('#trials tbody tr').length === 4")
    assert table(page) == [0, 1, 2, 3]
    links = page.eval_on_selector_all("#trials tbody a.trial-run",
                                      "as => as.map(a => a.getAttribute('href'))")
    assert links == [f"/ui/runs/{t['run_id']}" for t in trials]
    statuses = page.eval_on_selector_all("#trials tbody tr", "rs => rs.map(r => r.dataset.status)")
    assert statuses == ["completed"] * 4
    # The best trial marked, in the table and its panel, linked to its run and model.
    best = ended["best"]
    marked = page.eval_on_selector_all("#trials tbody tr.best",
                                       "rs => rs.map(r => Number(r.dataset.trial))")
    assert marked == [best["number"]]
    assert "★ best" in page.text_content(f"#trials tbody tr[data-trial='{best['number']}']")
    assert page.text_content("#study-best h3") == f"Best trial: {best['number']}"
    assert page.get_attribute("#best-run", "href") == f"/ui/runs/{best['run_id']}"
    assert page.get_attribute("#best-model", "href") == f"/ui/models/{best['model_id']}"
    # Sorting by the objective, then the other way; absent values never come first.
    by_objective = [t["number"] for t in sorted(trials, key=lambda t: (t["objective"],
                                                                       t["number"]))]
    assert by_objective[0] == best["number"]
    page.click("#trials thead th[data-key='objective'] button")
    assert table(page) == by_objective
    assert page.get_attribute("#trials thead th[data-key='objective']",
                              "aria-sort") == "ascending"
    page.click("#trials thead th[data-key='objective'] button")
    assert table(page) == by_objective[::-1]
    assert page.get_attribute("#trials thead th[data-key='objective']",
                              "aria-sort") == "descending"
    page.click(f"#trials thead th[data-key='params.{LR}'] button")
    shown = page.eval_on_selector_all(f"#trials tbody td[data-key='params.{LR}']",
                                      "ts => ts.map(t => t.textContent)")
    assert shown == ["0.0030", "0.0030", "0.1000", "0.1000"]
    # The charts: four objectives and the best-so-far line, four curves of 6 epochs, one
    # parallel-coordinates line per trial over both hyperparameters and the objective.
    assert page.get_attribute("#study-objective", "data-points") == "4"
    assert page.get_attribute("#study-objective", "data-series") == "2"
    page.click("#study-objective figcaption button")
    best_so_far = page.eval_on_selector_all("#study-objective-table tbody tr",
                                            "rs => rs.map(r => r.cells[2].textContent)")
    assert best_so_far[-1] == f"{best['objective']:.4f}"
    page.wait_for_function("() => document.querySelector('#study-curves').dataset.trials === '4'")
    assert int(page.get_attribute("#study-curves", "data-points")) >= 6
    lines = page.eval_on_selector_all("#study-parcoords path.pc-line",
                                      "ps => ps.map(p => p.dataset.run)")
    assert lines == ["0", "1", "2", "3"]
    axes = page.eval_on_selector_all("#study-parcoords .pc-axis",
                                     "gs => gs.map(g => g.dataset.field)")
    assert axes == [LR, HIDDEN, "objective"]
    # A trial's link opens its run page.
    page.click(f"#trials tbody tr[data-trial='{best['number']}'] a.trial-run")
    page.wait_for_url(f"**/ui/runs/{best['run_id']}")
    page.wait_for_selector("#view-title code")
    assert page.text_content("#view-title code") == best["run_id"]


def test_pruned_trials_curves_stop_at_their_rung(open_page: Any, api: httpx.Client) -> None:
    """An ASHA study of three trials (rungs at 1 and 3 epochs): two are pruned at the first
    rung, their curves dashed and ending there; the survivor's goes on to 3 epochs."""
    data = api.post("/v1/datasets/synthetic", json={
        "kind": "moons", "num_examples": 80, "noise": 0.2, "seed": 3}).json()
    made = api.post("/v1/studies", json={
        "dataset_id": data["id"],
        "model": {"kind": "mlp", "features": 2, "task": "classification", "classes": 2,
                  "hidden": [4]},
        "run": {"epochs": 3, "optimizer": {"kind": "adam", "learning_rate": 0.01},
                "batch_size": 16, "validation": {"fraction": 0.25}},
        "space": {LR: {"type": "choice", "values": [0.001, 0.03, 0.3]}},
        "objective": {"metric": "val_loss", "goal": "minimize"},
        "sampler": {"kind": "grid"},
        "scheduler": {"kind": "asha", "min_epochs": 1, "reduction_factor": 3}})
    assert made.status_code == 201, made.text
    study = finished(api, made.json()["id"])
    assert study["status"] == "completed" and study["rungs"] == [1, 3]
    trials = api.get(f"/v1/studies/{study['id']}/trials").json()["items"]
    pruned = [t["number"] for t in trials if t["status"] == "pruned"]
    assert len(pruned) == 2
    watched = open_page()
    page = watched.page
    watched.goto(f"/ui/studies/{study['id']}")
    page.wait_for_function("() => document.querySelector('#study-curves').dataset.trials "
                           "=== '3'")
    assert page.get_attribute("#study-curves", "data-dashed") == ",".join(map(str, pruned))
    ends = dict(pair.split(":") for pair in
                page.get_attribute("#study-curves", "data-ends").split(","))
    survivor = study["best"]["number"]
    assert all(int(ends[str(n)]) < int(ends[str(survivor)]) for n in pruned), ends
    statuses = page.eval_on_selector_all("#trials tbody tr", "rs => rs.map(r => r.dataset.status)")
    assert sorted(statuses) == ["completed", "pruned", "pruned"]


def test_studies_list_links_to_each_study(open_page: Any, api: httpx.Client) -> None:
    stamp = f"list{time.monotonic_ns()}"
    study = grid_study(api, stamp, epochs=1)
    finished(api, study["id"])
    watched = open_page()
    page = watched.page
    watched.goto("/ui/")
    # The runs list has loaded (its trials' rows are there) before the link is followed: a
    # view left mid-fetch cancels its request, which the page's watcher counts as a failure.
    page.wait_for_selector("#runs tbody tr")
    page.click("nav a[href='/ui/studies']")
    page.wait_for_selector(f"#studies tr[data-study='{study['id']}']")
    row = f"#studies tr[data-study='{study['id']}']"
    assert page.get_attribute(row, "data-status") == "completed"
    assert "4 completed" in page.text_content(row)
    page.click(f"{row} a")
    page.wait_for_url(f"**/ui/studies/{study['id']}")
    page.wait_for_function("() => document.querySelector('#main').dataset.study === 'completed'")
    assert table(page) == [0, 1, 2, 3]


def test_study_pages_have_no_serious_accessibility_violations(open_page: Any,
                                                              api: httpx.Client) -> None:
    study = grid_study(api, f"axe{time.monotonic_ns()}", epochs=2)
    finished(api, study["id"])
    watched = open_page(init_script=axe_script())
    found = {}
    for path in ("/ui/studies", f"/ui/studies/{study['id']}"):
        watched.goto(path)
        watched.page.wait_for_function("() => document.querySelector('#main').dataset.state === "
                                       "'drawn'")
        watched.page.wait_for_load_state("networkidle")
        for button in watched.page.query_selector_all("figcaption button"):
            button.click()  # every figure's table shown too
        bad = serious_violations(watched.page)
        if bad:
            found[path] = bad
    assert not found, found
