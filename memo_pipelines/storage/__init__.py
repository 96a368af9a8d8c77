"""Where state lives: the S3 object store, the bucket layout, the model registry, leases, and the local SeaweedFS server."""
