"""The study driver's room for trials under its tenant's active-run quota, on PostgreSQL,
where each statement of a transaction reads what is committed when it starts: a trial's run
that ends while the driver advances must not be shown running beside the trial made in its
place (a study that shows more trials training than its tenant may have)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.api.study_requests import trial_maker
from service.app import create_app
from service.config import Settings
from service.jobs import studies
from service.store import lifecycle
from service.store.db import make_engine, make_sessionmaker
from service.store.repo import Repository
from service.store.tables import RunStatus, StudyRow, TrialRow, TrialStatus
from tests.store.rows import V1_OPTIONS, linear
from tests.support.postgres import fresh_schema

pytestmark = pytest.mark.postgres

ADMIN = "tl_" + "R" * 43


@pytest.fixture
def quiet(postgres_base: str,
          monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[Settings, TestClient, sessionmaker[Session]]]:
    """The app on a fresh schema, keys required, its study driver not started (the test
    advances the study itself), and sessions of its store."""
    monkeypatch.setattr(studies.Driver, "start", lambda self: None)
    monkeypatch.setattr(studies.Driver, "stop", lambda self: None)
    with fresh_schema(postgres_base) as url:
        settings = Settings(database_url=url, workers=1, auth="required",
                            bootstrap_admin_key=ADMIN, tenant_rate_limit="10000/second")
        engine = make_engine(url)
        try:
            with TestClient(create_app(settings), base_url="http://localhost",
                            raise_server_exceptions=False) as client:
                yield settings, client, make_sessionmaker(engine)
        finally:
            engine.dispose()


def keyed(client: TestClient) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    made = client.post("/v1/keys", headers=admin, json={"tenant": "two-slots",
                                                          "scopes": ["read", "write"]})
    assert made.status_code == 201, made.text
    assert client.put("/v1/tenants/two-slots/quotas", headers=admin,
                      json={"max_active_runs": 2}).status_code == 200
    return {"Authorization": f"Bearer {made.json()['key']}"}


def a_dataset(client: TestClient, headers: dict[str, str]) -> str:
    dataset = client.post("/v1/datasets/synthetic", headers=headers,
                          json={"kind": "moons", "num_examples": 60, "seed": 3})
    assert dataset.status_code == 201, dataset.text
    return str(dataset.json()["id"])


def its_own_run(sessions: sessionmaker[Session], dataset_id: str) -> None:
    """A run of the tenant's own, queued (no worker takes it): one of its two active runs."""
    with sessions.begin() as session:
        mine = Repository(session, "two-slots")
        model = mine.create_model(kind="linear", config={"features": 2},
                                  params=linear([0, 0], 0.0), name="its own")
        mine.create_run(model=model, dataset=mine.get_dataset(dataset_id), epochs=5,
                        optimizer={"kind": "sgd", "learning_rate": 0.1}, batch_size=None,
                        shuffle_seed=None, dtype="float32", options=V1_OPTIONS)


def a_study(client: TestClient, headers: dict[str, str], dataset_id: str) -> str:
    made = client.post("/v1/studies", headers=headers, json={
        "dataset_id": dataset_id,
        "model": {"kind": "mlp", "features": 2, "task": "classification", "classes": 2,
                  "hidden": [4]},
        "run": {"epochs": 3, "optimizer": {"kind": "sgd", "learning_rate": 0.1}},
        "space": {"run.optimizer.learning_rate": {"type": "float", "low": 0.01,
                                                  "high": 0.1, "log": True}},
        "objective": {"metric": "loss", "goal": "minimize"},
        "sampler": {"kind": "random", "seed": 1},
        "max_trials": 4, "concurrency": 4})
    assert made.status_code == 201, made.text
    assert made.json()["concurrency"]["effective"] == 2  # the quota's two
    return str(made.json()["id"])


def shown(session: Session, study_id: str) -> list[tuple[int, str]]:
    return [(row.number, row.status) for row in session.scalars(
        select(TrialRow).where(TrialRow.study_id == study_id).order_by(TrialRow.number))]


def test_a_trial_whose_run_ends_while_the_driver_advances_is_never_shown_beside_its_successor(
        quiet: tuple[Settings, TestClient, sessionmaker[Session]]) -> None:
    settings, client, sessions = quiet
    headers = keyed(client)
    dataset_id = a_dataset(client, headers)
    its_own_run(sessions, dataset_id)
    study_id = a_study(client, headers, dataset_id)
    maker = trial_maker(settings)
    with sessions.begin() as session:
        first = studies.advance(session, study_id, maker)
    assert len(first.submit) == 1  # one slot left: one trial
    run_id = first.submit[0]
    with sessions.begin() as session:  # a worker starts it
        claimed = lifecycle.claim_run(session, run_id, "test", timeout=60, max_attempts=3)
        assert claimed is not None
        attempt = claimed.attempt
    with sessions.begin() as session:
        studies.advance(session, study_id, maker)
        assert shown(session, study_id) == [(0, TrialStatus.RUNNING)]

    class EndsMeanwhile:
        """The trial maker, but trial 0's run fails (its worker commits) just as the driver
        asks how much room there is."""

        def __init__(self) -> None:
            self.ended = False

        def room(self, session: Session, study: StudyRow, queued: int) -> int | None:
            if not self.ended:
                self.ended = True
                with sessions.begin() as other:
                    lifecycle.finish_run(other, run_id, RunStatus.FAILED, attempt=attempt,
                                         error=("internal", "its worker died", None))
            return maker.room(session, study, queued)

        def __call__(self, session: Session, study: StudyRow, number: int,
                     point: dict[str, Any], pause_at: int | None) -> tuple[str, str]:
            return maker(session, study, number, point, pause_at)

    with sessions.begin() as session:
        studies.advance(session, study_id, EndsMeanwhile())
    with sessions() as session:
        trials = shown(session, study_id)
        training = [n for n, status in trials
                    if status in (TrialStatus.QUEUED, TrialStatus.RUNNING)]
        assert len(training) <= 1, trials  # the tenant's quota, less its own run
        assert trials == [(0, TrialStatus.FAILED), (1, TrialStatus.QUEUED)], trials
