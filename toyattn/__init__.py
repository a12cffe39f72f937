"""toyattn: the companion package of a hands-on course on transformer attention.

Modules by concept (each says which lesson teaches it):

* :mod:`toyattn.device`   - choosing CPU/GPU, seeding, ``describe()`` (lesson 0)
* :mod:`toyattn.progress` - notebook-aware progress bars
* :mod:`toyattn.checks`   - exercise checks, one module per lesson
* :mod:`toyattn.course`   - paired notebooks and exercise generation (instructors)

Lessons add their modules (models, hooks, plotting, heads, symmetry, circuits) beside these.
"""

from .device import describe, get_device, seed_everything, to_numpy, try_gpu

__version__ = "0.1.0"

__all__ = ["__version__", "describe", "get_device", "seed_everything", "to_numpy", "try_gpu"]
