"""The web service: FastAPI app (:mod:`dflab.serve.app`), SQLite job store and worker pool (:mod:`dflab.serve.jobs`)."""
