"""Explicit imports of every detector file; importing this fills ``DETECTORS`` and ``VARIANTS``."""
from dflab.models.detectors import big_arts  # noqa: F401  (BiG-Arts + face_xray variants)
from dflab.models.detectors import dadd  # noqa: F401
from dflab.models.detectors import mml  # noqa: F401
from dflab.models.detectors import lisiam  # noqa: F401  (LiSiam + Table VI variants)
from dflab.models.detectors import lae  # noqa: F401
from dflab.models.detectors import classifier  # noqa: F401
from dflab.models.detectors import meso  # noqa: F401
