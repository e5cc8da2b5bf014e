"""Schemas of datasets: inline and synthetic create requests, a dataset's metadata, its
arrays, pages of datasets and a dry run's preview."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Discriminator, Field, Tag

from service.api.schemas.annotations import ETAG_DESCRIPTION, Description, Tags
from service.api.schemas.common import (
    DRY_RUN_ID,
    RFC3339,
    Classes,
    Examples,
    Features,
    Inputs,
    Name,
    Public,
    Request,
    Seed,
    Targets,
    Weights,
    kind_or,
)


class DatasetCreate(Request):
    """Inline data: ``x`` is a list of numbers (one feature) or of rows (one per example);
    ``y`` holds numbers, or class names."""

    x: Inputs
    y: Targets
    name: Name = None
    description: Description = None
    tags: Tags = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"x": [[0.0], [1.0], [2.0], [3.0]], "y": [2.1, 4.9, 8.2, 10.9], "name": "tiny line"}
            ]
        }
    )


class LinearSynthetic(Request):
    """The tutorial's synthetic data: ``y = x @ true_W + true_b + noise_stddev * N(0, 1)``."""

    kind: Literal["linear"] = "linear"
    num_examples: Examples = 1000
    true_W: Weights = Field(default_factory=lambda: [3.0])
    true_b: float = 2.0
    noise_stddev: float = Field(1.0, ge=0)
    seed: Seed | None = Field(None, description="Omit for a random seed (reported back).")
    name: Name = None
    description: Description = None
    tags: Tags = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "num_examples": 1000,
                    "true_W": [3.0],
                    "true_b": 2.0,
                    "noise_stddev": 1.0,
                    "seed": 42,
                }
            ]
        }
    )


class BlobsSynthetic(Request):
    """Gaussian blobs for classification: ``classes`` centers drawn in [-10, 10]^features,
    examples spread around them by ``spread``, labels 0..classes-1."""

    kind: Literal["blobs"]
    num_examples: Examples = 300
    features: Features = 2
    classes: Classes = 3
    spread: float = Field(1.0, gt=0, le=1e6)
    seed: Seed | None = Field(None, description="Omit for a random seed (reported back).")
    name: Name = None
    description: Description = None
    tags: Tags = None


class MoonsSynthetic(Request):
    """Two interleaving half circles in 2-D (labels 0 and 1), with Gaussian ``noise``."""

    kind: Literal["moons"]
    num_examples: Examples = 200
    noise: float = Field(0.1, ge=0, le=1e6)
    seed: Seed | None = Field(None, description="Omit for a random seed (reported back).")
    name: Name = None
    description: Description = None
    tags: Tags = None


class CirclesSynthetic(Request):
    """A circle of radius 1 (label 0) around one of radius 0.5 (label 1) in 2-D, with
    Gaussian ``noise``."""

    kind: Literal["circles"]
    num_examples: Examples = 200
    noise: float = Field(0.1, ge=0, le=1e6)
    seed: Seed | None = Field(None, description="Omit for a random seed (reported back).")
    name: Name = None
    description: Description = None
    tags: Tags = None


SyntheticCreate = Annotated[
    Annotated[LinearSynthetic, Tag("linear")]
    | Annotated[BlobsSynthetic, Tag("blobs")]
    | Annotated[MoonsSynthetic, Tag("moons")]
    | Annotated[CirclesSynthetic, Tag("circles")],
    Discriminator(kind_or("linear")),
]


class LinearSyntheticParams(Public):
    """The parameters a synthetic line was made with, seed included."""

    kind: Literal["linear"] = "linear"
    num_examples: int
    true_W: list[float]
    true_b: float
    noise_stddev: float
    seed: int


class BlobsSyntheticParams(Public):
    """The parameters synthetic blobs were made with, seed included."""

    kind: Literal["blobs"]
    num_examples: int
    features: int
    classes: int
    spread: float
    seed: int


class MoonsSyntheticParams(Public):
    """The parameters synthetic moons were made with, seed included."""

    kind: Literal["moons"]
    num_examples: int
    noise: float
    seed: int


class CirclesSyntheticParams(Public):
    """The parameters synthetic circles were made with, seed included."""

    kind: Literal["circles"]
    num_examples: int
    noise: float
    seed: int


SyntheticMade = Annotated[
    LinearSyntheticParams | BlobsSyntheticParams | MoonsSyntheticParams | CirclesSyntheticParams,
    Field(discriminator="kind"),
]


class DatasetSummary(Public):
    """Per-feature mean and standard deviation of x, and those of y."""

    x_mean: list[float]
    x_std: list[float]
    y_mean: float
    y_std: float


class Dataset(Public):
    """A stored dataset's metadata."""

    id: str
    name: str | None
    num_examples: int
    features: int
    dtype: str
    created_at: RFC3339
    summary: DatasetSummary
    source: Literal["inline", "synthetic", "upload"]
    synthetic: SyntheticMade | None = None
    classes: list[str] | None = Field(
        None, description="The class names, when y held strings (y holds their indices)."
    )
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    etag: str = Field("", description=ETAG_DESCRIPTION)


class DatasetPage(Public):
    """A page of datasets; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[Dataset]
    next_cursor: str | None


class DatasetData(Public):
    """A dataset's arrays: ``x`` as rows (one per example) and ``y`` (class names, when the
    dataset has them)."""

    x: list[list[float]]
    y: list[float] | list[str]


class DatasetPreview(Dataset):
    """A dataset as a dry run would have created it."""

    id: None = DRY_RUN_ID  # type: ignore[assignment]
