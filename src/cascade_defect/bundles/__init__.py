"""Model bundles: a directory (local path or object-store URI) holding a manifest, each layer's
weights and the calibration. `bundle.Bundle` reads and writes one; `uri` resolves `file://`,
`s3://` and `az://` locations to a verified local copy. Sits below the layers: gate/, oracle/
and specialist/ read their artefacts through it, and it imports none of them.
"""
