"""Training engine: typed recipes (:mod:`~dflab.train.config`, :mod:`~dflab.train.recipes`), data streams
(:mod:`~dflab.train.data`), one plain loop (:mod:`~dflab.train.loop`) driven by schedule objects
(:mod:`~dflab.train.schedule`, :mod:`~dflab.train.schedules`), DDP helpers (:mod:`~dflab.train.ddp`) and the
``dflab train`` command (:mod:`~dflab.train.cli`)."""
