"""The papers' tables that ``ferdata reproduce`` runs: cells, the data each needs, the papers' numbers.

A :class:`Table` names the datasets it reads (``--data NAME=ROOT``: the reader and its
options), whether its cells train on renders, and its :class:`Cell` s. A cell is one
``ferdata cv`` run: a recipe (``recipes/``) plus overrides, on one dataset, and the
paper's figures for it (percent; ``sd`` where the paper prints one). Numbers are copied
from the papers' tables (``docs/training.md``, "Reproducing a table").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

__all__ = ["Cell", "Dataset", "Table", "TABLES", "table"]


@dataclass(frozen=True)
class Dataset:
    reader: str                          # a ferdata.datasets reader
    options: Tuple[Tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Cell:
    row: str                             # the method, as the paper names it
    column: str                          # the data / evaluation column
    data: str                            # a key of Table.datasets
    recipe: str                          # a file in recipes/
    overrides: Tuple[Tuple[str, object], ...] = ()   # TrainConfig keys; model_kwargs are merged into the
    # recipe's (model_kwargs_only replaces them, model_kwargs_drop removes keys)
    synthetic: bool = False              # evaluated on renders of the test subjects (another seed)
    paper: Dict[str, Tuple[float, Optional[float]]] = field(default_factory=dict)   # metric -> (mean, sd)

    @property
    def id(self) -> str:
        slug = "".join(c if c.isalnum() else "-" for c in f"{self.column}-{self.row}".lower())
        return re.sub("-+", "-", slug).strip("-")


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    datasets: Dict[str, Dataset]
    cells: Tuple[Cell, ...]
    renders: bool = False                # cells train on renders (ferdata render first)
    metrics: Tuple[str, ...] = ("accuracy",)
    stats: str = ""                      # the paper's statistics, as it reports them


def _feratt_cells(data: str, name: str, recipe: str, numbers: dict) -> Tuple[Cell, ...]:
    # §4.2: the baseline is PreActResNet18 on 32 x 32 faces, trained like the others (one protocol for all)
    rows = (("Baseline", (("model", "preactresnet18"), ("pretrained", "none"), ("model_kwargs_only", {}))),
            ("FERAtt+Cls", (("model", "feratt_cls"), ("model_kwargs_drop", ("embedding_dim",)))),
            ("FERAtt+Rep+Cls", ()))
    cells = []
    for column, synthetic in (("Synthetic", True), ("Real", False)):
        for row, over in rows:
            acc, prec, rec, f1 = numbers[(row, column)]
            cells.append(Cell(row, f"{name} {column}", data, recipe, over, synthetic,
                              {"accuracy": acc, "precision": prec, "recall": rec, "f1_of_macro": f1}))
    return tuple(cells)


# FERAtt (seed 000) Table 1: mean ± sd over the leave-10-subjects-out folds, percent.
_BU = {("Baseline", "Synthetic"): ((69.37, 2.84), (71.48, 1.46), (69.56, 2.76), (70.50, 2.05)),
       ("FERAtt+Cls", "Synthetic"): ((75.15, 3.13), (77.34, 1.40), (75.45, 2.57), (76.38, 1.98)),
       ("FERAtt+Rep+Cls", "Synthetic"): ((77.90, 2.59), (79.58, 1.77), (78.05, 2.34), (78.81, 2.01)),
       ("Baseline", "Real"): ((75.22, 4.60), (77.58, 3.72), (75.49, 4.68), (76.52, 4.19)),
       ("FERAtt+Cls", "Real"): ((80.41, 4.33), (82.30, 2.99), (80.79, 3.75), (81.54, 3.38)),
       ("FERAtt+Rep+Cls", "Real"): ((82.11, 4.39), (83.72, 3.09), (82.42, 4.08), (83.06, 3.59))}
_CK = {("Baseline", "Synthetic"): ((77.63, 2.11), (68.42, 2.97), (68.56, 1.91), (68.49, 2.43)),
       ("FERAtt+Cls", "Synthetic"): ((84.60, 0.93), (74.94, 0.38), (76.30, 1.19), (75.61, 0.76)),
       ("FERAtt+Rep+Cls", "Synthetic"): ((85.15, 1.07), (74.68, 1.37), (77.45, 0.55), (76.04, 0.97)),
       ("Baseline", "Real"): ((86.67, 3.15), (81.62, 7.76), (80.15, 9.50), (80.87, 8.63)),
       ("FERAtt+Cls", "Real"): ((85.42, 2.89), (75.65, 2.77), (78.79, 2.30), (77.18, 2.55)),
       ("FERAtt+Rep+Cls", "Real"): ((90.30, 1.36), (83.64, 5.28), (84.90, 8.52), (84.25, 6.85))}

TABLES: Dict[str, Table] = {t.name: t for t in (
    Table("feratt-table1", "FERAtt (seed 000) Table 1: Synthetic / Real BU-3DFE and CK+",
          {"bu3dfe": Dataset("bu3dfe"), "ckplus": Dataset("ckplus")},
          _feratt_cells("bu3dfe", "BU-3DFE", "feratt_bu3dfe.toml", _BU)
          + _feratt_cells("ckplus", "CK+", "feratt_ckplus.toml", _CK),
          renders=True, metrics=("accuracy", "precision", "recall", "f1_of_macro"),
          stats="Friedman: BU-3DFE p = 0.0498; CK+ Synthetic p = 0.0388, Real p = 0.0381; Nemenyi post-hoc"),
    Table("seed001-table1", "LBP + attention CNN (seed 001) Table 1: LBP variants on FER2013",
          {"fer2013": Dataset("fer2013")},
          tuple(Cell(row, "FER2013", "fer2013", "lbp_attention_fer2013.toml", over, False,
                     {"accuracy": (acc, None)})
                for row, over, acc in (("Original LBP", (("lbp", "original"),), 72.56),
                                       ("Uniform LBP", (("lbp", "uniform_P8_R1"),), 70.32),
                                       ("Circle LBP", (("lbp", "circle_P8_R1"),), 75.82)))),
    Table("seed002-table5", "Visual-attention CNN (seed 002) Table 5: RaFD-FRONT and RaFD-POSE (5-fold)",
          {"rafd_front": Dataset("rafd", (("angles", (90,)),)), "rafd_pose": Dataset("rafd", (("angles", (0, 45, 90, 135, 180)),))},
          (Cell("Baseline CNN", "RaFD-FRONT", "rafd_front", "va_cnn_rafd_front.toml",
                (("model_kwargs", {"pooling": "flatten"}),), False, {"accuracy": (97.3, 1.2)}),
           Cell("CNN with Visual Attention (Eq. 4)", "RaFD-FRONT", "rafd_front", "va_cnn_rafd_front.toml",
                (("model", "va_cnn"),), False, {"accuracy": (95.2, 2.0)}),
           Cell("CNN with Visual Attention (Eq. 5)", "RaFD-FRONT", "rafd_front", "va_cnn_rafd_front.toml",
                (("model", "va_cnn_symmetric"),), False, {"accuracy": (94.8, 0.8)}),
           Cell("Baseline CNN", "RaFD-POSE", "rafd_pose", "va_cnn_rafd_pose.toml",
                (("model_kwargs", {"pooling": "flatten"}),), False, {"accuracy": (87.2, None)}),
           Cell("Global average pooling", "RaFD-POSE", "rafd_pose", "va_cnn_rafd_pose.toml",
                (("model_kwargs", {"pooling": "gap"}),), False, {"accuracy": (92.8, None)}),
           Cell("CNN with Visual Attention (Eq. 4)", "RaFD-POSE", "rafd_pose", "va_cnn_rafd_pose.toml",
                (("model", "va_cnn"),), False, {"accuracy": (93.1, None)}))),
    Table("seed004-table2", "Deep-Emotion + MSA (seed 004) Table II: test accuracy on FER+",
          {"ferplus": Dataset("ferplus")},
          tuple(Cell(row, "FER+", "ferplus", recipe, over, False, {"accuracy": (acc, None)})
                for row, recipe, over, acc in (
                    ("Deep-Emotion (no STN)", "deep_emotion_ferplus.toml", (("model_kwargs", {"stn": False}),), 60.61),
                    ("Deep-Emotion (STN)", "deep_emotion_ferplus.toml", (), 66.05),
                    ("Deep-Emotion (STN + MSA)", "deep_emotion_msa_ferplus.toml", (), 67.86),
                    ("Custom VGGFace (STN)", "vggface_stn_msa_ferplus.toml",
                     (("model_kwargs", {"msa": False}),), 81.61),
                    ("Custom VGGFace (STN + MSA)", "vggface_stn_msa_ferplus.toml", (), 82.54)))),
)}


def table(name: str) -> Table:
    from ..errors import FerdataError

    if name not in TABLES:
        raise FerdataError(f"unknown table {name!r}; known: {', '.join(TABLES)} (ferdata reproduce --list)")
    return TABLES[name]
