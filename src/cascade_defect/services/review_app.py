"""The review page and its JSON API: reviewers label the frames waiting for a human.

`build_review_api(...)` is an `APIRouter` (mounted by `serve all` and by `serve review`):

| route | what |
| --- | --- |
| `GET /review/` | the page (plain HTML + JS, no build step; the key is asked for on the page) |
| `GET /v1/review/whoami` | the reviewer the key belongs to |
| `GET /v1/review/items?status=pending` | items with evidence, most uncertain first |
| `GET /v1/review/items/{id}` | one item with its label history |
| `GET /v1/review/items/{id}/image` | the frame's image (only images of review items are served) |
| `POST /v1/review/items/{id}/label` | `{"label", "boxes": [{"cls", "box": [x1,y1,x2,y2]}], "version"}`; 409 when stale |

Reviewers are named keys: `CASCADE_REVIEWER_KEYS="ana:KEY,bob:sha256:HEX"` (comma-separated
`name:key`, the key plain or as `sha256:HEX`, checked like the services' other keys). The name
goes on every label the key writes; keys are never logged or echoed.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Any, Callable, Mapping

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import FileResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from .auth import KeyRing, bearer_token
from .errors import ApiError
from .http import read_capped
from ..store.review_board import LabelConflict, ReviewBoard, parse_boxes
from .library import ConfigError, DataError, Database, ImageStore, image_store_path, review_image_root

STATIC = Path(__file__).parent / "static" / "review"
REVIEWER_KEYS_ENV = "CASCADE_REVIEWER_KEYS"


class Reviewers:
    """Named reviewer keys; `identify(header)` is the reviewer's name or a 401."""

    def __init__(self, named: Mapping[str, str]):
        self._rings = {name: KeyRing([key]) for name, key in named.items()}

    @classmethod
    def parse(cls, raw: str) -> "Reviewers":
        named: dict[str, str] = {}
        for n, part in enumerate(p.strip() for p in raw.split(",") if p.strip()):
            name, sep, key = part.partition(":")
            if not sep or not name.strip() or not key.strip():
                raise ConfigError(f"{REVIEWER_KEYS_ENV}: entry {n + 1} must be name:key (name:sha256:HEX also works)")
            if name.strip() in named:
                raise ConfigError(f"{REVIEWER_KEYS_ENV}: reviewer {name.strip()!r} is named twice")
            named[name.strip()] = key.strip()
        return cls(named)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Reviewers":
        from ..settings import Settings

        return cls.parse(Settings.load(environ).secret("reviewer_keys") or "")

    def __bool__(self) -> bool:
        return bool(self._rings)

    def identify(self, header: str | None) -> str:
        token = bearer_token(header)
        if token is None:
            raise ApiError(401, "unauthorized", "missing bearer key: send Authorization: Bearer KEY",
                           headers={"WWW-Authenticate": "Bearer"})
        found = [name for name, ring in self._rings.items() if ring.accepts(token)]  # checks every ring
        if not found:
            raise ApiError(401, "unauthorized", "invalid reviewer key", headers={"WWW-Authenticate": "Bearer"})
        return found[0]


def _data_error(exc: DataError) -> ApiError:
    status = 404 if exc.reason == "no such item" else 400
    return ApiError(status, "not_found" if status == 404 else "bad_label", str(exc))


MAX_LABEL_BODY = 64 * 1024
"""Bytes of a label request (a label and its boxes); larger bodies are refused with 413."""
MAX_LABEL_CHARS = 200


def image_file(ref: str, images: ImageStore | None, image_root: Path | None) -> Path | None:
    """The file a review item's image reference may be served from, or None.

    A stored reference (`sha256:...`) is served from the image store. A file name or path (review
    items of `run`) only from inside `image_root` when one is configured (`CASCADE_REVIEW_IMAGE_ROOT`),
    after resolving links: never from the working directory, never from anywhere else.
    """
    if images is not None and (path := images.path(ref)) is not None:
        return path
    if image_root is None or not ref or "\x00" in ref:
        return None
    root = Path(image_root).resolve()
    path = Path(ref) if Path(ref).is_absolute() else root / ref
    try:
        path = path.resolve()
    except (OSError, RuntimeError):
        return None
    return path if path.is_relative_to(root) and path.is_file() else None


def build_review_api(db: Database, reviewers: Reviewers, *, taus: Callable[[], Mapping[str, float]] = dict,
                     images: ImageStore | None = None, image_root: Path | None = None) -> APIRouter:
    """The page and API over one database; `taus()` gives the current per-domain τ (for the page).
    Images are served only from `images` and from inside `image_root` (see `image_file`)."""
    api = APIRouter(tags=["review"])

    def board() -> ReviewBoard:
        return ReviewBoard(db, taus=taus())

    @api.get("/review", include_in_schema=False)
    async def page_redirect():
        return RedirectResponse("/review/")

    @api.get("/review/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @api.get("/review/static/{name}", include_in_schema=False)
    async def static(name: str):
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise ApiError(404, "not_found", f"no static file {name!r}")
        return FileResponse(path, media_type=mimetypes.guess_type(name)[0] or "application/octet-stream")

    @api.get("/v1/review/whoami", summary="The reviewer this key belongs to")
    async def whoami(authorization: str | None = Header(None, include_in_schema=False)):
        return {"reviewer": reviewers.identify(authorization)}

    @api.get("/v1/review/items", summary="Review items with evidence, most uncertain first")
    async def items(status: str = "pending", domain: str | None = None, limit: int = 200,
                    authorization: str | None = Header(None, include_in_schema=False)):
        reviewers.identify(authorization)
        if status not in ("pending", "labelled", "all"):
            raise ApiError(422, "bad_request", f"status must be pending, labelled or all, not {status!r}")
        views = await run_in_threadpool(board().items, None if status == "all" else status, domain,
                                        max(1, min(int(limit), 1000)))
        return {"items": views}

    @api.get("/v1/review/items/{item_id}", summary="One review item with its label history")
    async def item(item_id: int, authorization: str | None = Header(None, include_in_schema=False)):
        reviewers.identify(authorization)
        try:
            return await run_in_threadpool(board().item, item_id)
        except DataError as exc:
            raise _data_error(exc) from None

    @api.get("/v1/review/items/{item_id}/image", summary="The frame's image")
    async def image(item_id: int, authorization: str | None = Header(None, include_in_schema=False)):
        reviewers.identify(authorization)
        it = board().queue.get(item_id)
        if it is None:
            raise ApiError(404, "not_found", f"review item {item_id}: no such item")
        path = image_file(it.image_ref, images, image_root)
        if path is None:
            raise ApiError(404, "image_missing", f"review item {item_id}: its image is not in the image store "
                           "(or under CASCADE_REVIEW_IMAGE_ROOT)")
        media = _sniff(path) if images is not None and path.is_relative_to(images.root) else \
            mimetypes.guess_type(path.name)[0]
        return FileResponse(path, media_type=media or "application/octet-stream",
                            headers={"X-Content-Type-Options": "nosniff"})

    @api.post("/v1/review/items/{item_id}/label", summary="Label an item (stale versions get 409)",
              openapi_extra=_LABEL_BODY)
    async def label(item_id: int, request: Request,
                    authorization: str | None = Header(None, include_in_schema=False)):
        who = reviewers.identify(authorization)  # the key first: nothing of the body is read without it
        name = f"review item {item_id}"
        raw = await read_capped(request, MAX_LABEL_BODY, f"{name}: label request")
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(422, "bad_request", f"{name}: the body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("label"), str) \
                or not isinstance(body.get("version"), int):
            raise ApiError(422, "bad_request", f"{name}: send {{label: str, version: int, boxes: [...]}}")
        if len(body["label"]) > MAX_LABEL_CHARS:
            raise ApiError(422, "bad_request", f"{name}: a label has at most {MAX_LABEL_CHARS} characters")
        try:
            boxes = parse_boxes(body.get("boxes") or [], name)
            b = board()
            written = await run_in_threadpool(lambda: b.submit(item_id, body["label"], who,
                                                               expected_version=body["version"], boxes=boxes))
        except LabelConflict as exc:
            current = await run_in_threadpool(board().item, item_id)
            raise ConflictError(str(exc), current) from None
        except DataError as exc:
            raise _data_error(exc) from None
        return {"label_id": written.label_id, "version": written.version, "labelled_by": who}

    return api


_LABEL_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["label", "version"],
    "properties": {"label": {"type": "string"}, "version": {"type": "integer"},
                   "boxes": {"type": "array", "items": {"type": "object"}}}}}}}}


def _sniff(path: Path) -> str | None:
    """Media type of a stored image from its first bytes (stored files have no extension)."""
    head = path.open("rb").read(12)
    for magic, media in ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"BM", "image/bmp"),
                         (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff")):
        if head.startswith(magic):
            return media
    return "image/webp" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None


class ConflictError(ApiError):
    """409 carrying the item as it is now, so the page can show the newer label."""

    def __init__(self, message: str, current: dict[str, Any]):
        super().__init__(409, "conflict", message)
        self.current = current

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}, "current": self.current}


def create_review_app(db_path: str | Path, *, bundle: str | None = None, image_root: str | Path | None = None,
                      reviewers: Reviewers | None = None) -> FastAPI:
    """The review page on its own (`cascade-defect serve review --db DB`): τ shown from `bundle` if given."""
    from .. import __version__
    from .http import EdgeMiddleware, install_docs, install_errors, install_probes
    from .metrics import ServiceMetrics

    reviewers = reviewers if reviewers is not None else Reviewers.from_env()
    if not reviewers:
        raise ConfigError(f"set {REVIEWER_KEYS_ENV} (name:key,...) before starting the review page")
    db = Database(db_path)
    taus: dict[str, float] = {}
    if bundle:
        from .library import load_policy, open_bundle

        policy = load_policy(open_bundle(bundle))
        taus = {d: th.tau for d, th in policy.domains.items() if th.tau is not None}
    metrics = ServiceMetrics("review")
    app = FastAPI(title="cascade-defect review", version=__version__,
                  description="Human review of the frames the cascade could not decide.",
                  docs_url=None, redoc_url=None, openapi_url=None)
    install_errors(app, metrics)
    install_docs(app, None)  # public as before; served offline
    install_probes(app, metrics, lambda: (True, {"role": "review", "pending": board_count(db)}), lambda _r: None)
    root = image_root if image_root is not None else review_image_root()
    app.include_router(build_review_api(db, reviewers, taus=lambda: taus,
                                        images=ImageStore(image_store_path(db_path)),
                                        image_root=Path(root).expanduser() if root else None))
    app.add_middleware(EdgeMiddleware, max_body=MAX_LABEL_BODY, metrics=metrics, role="review")
    app.state.db = db
    return app


def board_count(db: Database) -> int:
    return ReviewBoard(db).queue.count("pending")
