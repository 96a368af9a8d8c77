"""Where state lives: the S3 object store, the bucket layout, the model registry (promotion included), the bucket's
history across versions (history.py), leases, a run's workspace, and the local SeaweedFS server."""
