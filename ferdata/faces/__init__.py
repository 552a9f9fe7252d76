"""Ingest stage: landmarks, alignment, masks, alignment quality, ingest, the face store (``docs/datasets.md``)."""
