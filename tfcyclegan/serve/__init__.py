"""A local web app and its HTTP API: drop a photo in a browser, see it translated.

Modules, each importing only those above it: pool (the bounded worker pool and its queue),
models (the loaded models, described and picked by name), face_mode (the face pipeline behind
faces mode, when it is installed), app (FastAPI: the page, /v1/translate, /v1/models, /healthz,
the upload limit). tfcyclegan-serve (tfcyclegan/cli/serve.py) loads the models and runs uvicorn.
"""

from tfcyclegan.serve.app import Limits, ServeError, UploadLimit, create_app, translate_bytes
from tfcyclegan.serve.face_mode import UNAVAILABLE, FaceMode, FacesUnavailableError, start_face_mode
from tfcyclegan.serve.models import ModelRegistry, ServedModel, UnknownModelError
from tfcyclegan.serve.pool import QueueFull, Ticket, WorkerPool

__all__ = [
    "UNAVAILABLE", "FaceMode", "FacesUnavailableError", "Limits", "ModelRegistry", "QueueFull", "ServeError",
    "ServedModel", "Ticket", "UnknownModelError", "UploadLimit", "WorkerPool", "create_app", "start_face_mode",
    "translate_bytes",
]
