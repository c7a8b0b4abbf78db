"""Scale-out transports over the same library objects: a Redis Streams queue worker, Ray Data batch
and Ray Serve deployments (see docs/scale-out.md). Every transport calls the one `Router` and writes
the same decision records as `cascade-defect run`."""
