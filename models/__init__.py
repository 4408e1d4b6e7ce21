"""The model package. Its modules import Hugging Face transformers, whose hub client reads HF_HUB_OFFLINE
once, when it is first imported: set here, before any of them, so no process that loads a model (a task, a
worker that preloads the stack, a benchmark) ever reaches for a hub. Everything is loaded from local files."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
