"""The LatencyLab coordinator (FastAPI)."""
