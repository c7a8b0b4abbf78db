"""HTTP services: the design's four roles (router, gate, specialist, oracle) as thin transports.

Each role is a FastAPI app over the same library objects the CLI's `run` uses (the router is
built by `cascade.assemble.build_router`, as for every transport). `cascade-defect serve ROLE --bundle B` starts
one role on uvicorn; `serve all` runs every role in one process. Nothing in the library imports
this package.
"""
