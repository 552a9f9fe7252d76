"""Canonical expression classes and each dataset's own label codes.

The canonical order is the FER+ order, as FERAtt's code uses it::

    0 neutral, 1 happiness, 2 surprise, 3 sadness, 4 anger, 5 disgust, 6 fear, 7 contempt

Every reader maps its dataset's codes to these names; a face store and every shard
record the ``classes`` list they contain (the canonical names in canonical order).
"""
from __future__ import annotations

CLASSES: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

# Synonyms seen in dataset folder names / file names -> canonical name.
SYNONYMS: dict[str, str] = {
    "neutral": "neutral", "ne": "neutral", "neu": "neutral", "calm": "neutral",
    "happiness": "happiness", "happy": "happiness", "ha": "happiness", "hap": "happiness", "joy": "happiness",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise", "sur": "surprise",
    "sadness": "sadness", "sad": "sadness", "sa": "sadness",
    "anger": "anger", "angry": "anger", "an": "anger", "ang": "anger",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust", "dis": "disgust",
    "fear": "fear", "fearful": "fear", "fe": "fear", "afraid": "fear",
    "contempt": "contempt", "contemptuous": "contempt", "co": "contempt",
}

# Per-dataset code -> canonical name (docs/datasets.md).
CKPLUS = {1: "anger", 2: "contempt", 3: "disgust", 4: "fear", 5: "happiness", 6: "sadness", 7: "surprise", 0: "neutral"}
FER2013 = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
AFFECTNET = {0: "neutral", 1: "happiness", 2: "sadness", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger", 7: "contempt"}
JAFFE = {"NE": "neutral", "HA": "happiness", "SU": "surprise", "SA": "sadness", "AN": "anger", "DI": "disgust", "FE": "fear"}
BU3DFE = {"NE": "neutral", "HA": "happiness", "SU": "surprise", "SA": "sadness", "AN": "anger", "DI": "disgust", "FE": "fear"}
RAFD = {"neutral": "neutral", "happy": "happiness", "surprised": "surprise", "sad": "sadness",
        "angry": "anger", "disgusted": "disgust", "fearful": "fear", "contemptuous": "contempt"}
RAFDB = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
KDEF = {"AF": "fear", "AN": "anger", "DI": "disgust", "HA": "happiness", "NE": "neutral", "SA": "sadness",
        "SU": "surprise"}
EXPW = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness", 5: "surprise", 6: "neutral"}

# The 68-point iBUG mirror permutation: index i of a flipped face takes point MIRROR68[i].
MIRROR68: tuple[int, ...] = tuple(
    list(range(16, -1, -1))                       # jaw 0..16
    + list(range(26, 16, -1))                     # brows 17..26
    + [27, 28, 29, 30]                            # nose bridge
    + [35, 34, 33, 32, 31]                        # nose bottom
    + [45, 44, 43, 42, 47, 46]                    # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]                    # left eye <- right eye
    + [54, 53, 52, 51, 50, 49, 48]                # outer lip top
    + [59, 58, 57, 56, 55]                        # outer lip bottom
    + [64, 63, 62, 61, 60]                        # inner lip top
    + [67, 66, 65]                                # inner lip bottom
)


def canonical(name: str) -> str:
    """Return the canonical class name for ``name`` (case-insensitive synonyms).

    Raises
    ------
    ValueError
        If ``name`` is not a known expression name.
    """
    key = str(name).strip().lower()
    if key not in SYNONYMS:
        raise ValueError(f"unknown expression label {name!r}; known: {', '.join(CLASSES)}")
    return SYNONYMS[key]


def index(name: str) -> int:
    """Canonical index of a class name (or synonym)."""
    return CLASS_INDEX[canonical(name)]


def present_classes(indices) -> list[str]:
    """The canonical names present in ``indices``, in canonical order."""
    s = {int(i) for i in indices}
    return [c for i, c in enumerate(CLASSES) if i in s]
